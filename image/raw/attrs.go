package raw

import (
	"os"
	"unsafe"

	"github.com/goqio/goqio/image"
	"golang.org/x/sys/unix"
)

// FileAttrs are the file protocol's create options that act on the new
// file (file-posix's raw_co_create): nocow, the btrfs attribute (chattr
// +C), and extent_size_hint, an XFS extent size hint. Both are tries:
// a file system without them keeps the file as it is.
type FileAttrs struct {
	NoCOW bool
	// ExtentSizeHint, when HintGiven, replaces the default hint of 1 MiB
	// (0: none)
	ExtentSizeHint int64
	HintGiven      bool
	// Warn receives QEMU's warning when an explicit non-zero hint could
	// not be set (nil drops it).
	Warn func(msg string)
}

const (
	fsNoCOWFlag      = 0x00800000 // FS_NOCOW_FL
	fsXflagExtSize   = 0x00000800 // FS_XFLAG_EXTSIZE
	fsIocFSGetXattr  = 0x801c581f // FS_IOC_FSGETXATTR: _IOR('X', 31, struct fsxattr)
	fsIocFSSetXattr  = 0x401c5820 // FS_IOC_FSSETXATTR: _IOW('X', 32, struct fsxattr)
	defaultExtSizeHi = 1 << 20
)

// fsxattr is the kernel's struct fsxattr.
type fsxattr struct {
	xflags, extsize, nextents, projid, cowextsize uint32
	pad                                           [8]byte
}

// Apply sets the attributes on f, a file just created (and emptied).
func (a FileAttrs) Apply(f *os.File) {
	fd := int(f.Fd())
	if a.NoCOW {
		// errors ignored, as QEMU ignores them
		if fl, err := unix.IoctlGetInt(fd, unix.FS_IOC_GETFLAGS); err == nil {
			unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, fl|fsNoCOWFlag)
		}
	}
	hint := int64(defaultExtSizeHi)
	if a.HintGiven {
		hint = a.ExtentSizeHint
	}
	var x fsxattr
	err := ioctl(fd, fsIocFSGetXattr, unsafe.Pointer(&x))
	if err == nil {
		x.xflags |= fsXflagExtSize
		x.extsize = uint32(hint)
		err = ioctl(fd, fsIocFSSetXattr, unsafe.Pointer(&x))
	}
	if err != nil && a.HintGiven && hint != 0 && a.Warn != nil {
		a.Warn("Failed to set extent size hint: " + image.StrerrorOf(err))
	}
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}
