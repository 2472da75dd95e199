package image

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// Error is a sentinel error of this package. Each one stands for the errno
// that QEMU's block layer would return in the same situation, so that a
// command can print the same strerror text as qemu-io.
type Error struct {
	msg   string
	errno syscall.Errno
}

func (e *Error) Error() string { return e.msg }

// Errno is the errno QEMU returns for this error.
func (e *Error) Errno() syscall.Errno { return e.errno }

var (
	// ErrNotSupported is returned by a driver that cannot do an operation
	// (QEMU's -ENOTSUP). From a driver's WriteZeroes it asks Disk to fall back
	// to writing explicit zeroes; from Discard it is swallowed by Disk.
	ErrNotSupported = &Error{"image: operation not supported", syscall.EOPNOTSUPP}
	// ErrOutOfRange is returned for a request that reaches beyond the end of
	// the image (QEMU's -EIO from blk_check_byte_request).
	ErrOutOfRange = &Error{"image: request beyond end of image", syscall.EIO}
	// ErrReadOnly is returned for a write to an image opened read-only.
	ErrReadOnly = &Error{"image: image is read-only", syscall.EACCES}
	// ErrInvalid is returned for a request a driver refuses as malformed
	// (QEMU's -EINVAL), e.g. a misaligned compressed write.
	ErrInvalid = &Error{"image: invalid request", syscall.EINVAL}
	// ErrPermission is returned when a write is refused for safety, e.g. a
	// write to block 0 of a probed raw image that would change its format.
	ErrPermission = &Error{"image: operation not permitted", syscall.EPERM}
	// ErrCorrupt is returned when image metadata is found to be inconsistent.
	// It is usually wrapped in a *CorruptError that says where.
	ErrCorrupt = &Error{"image: image is corrupt", syscall.EIO}
	// ErrWrongFormat is returned by a format's probe or open when the file is
	// not of that format.
	ErrWrongFormat = &Error{"image: wrong format", syscall.EINVAL}
	// ErrNoMedium is returned for every request to an image that a driver
	// made unusable after detecting fatal corruption (QEMU's -ENOMEDIUM).
	ErrNoMedium = &Error{"image: no medium (the image was made unusable)", syscall.ENOMEDIUM}
	// ErrClosed is returned by an operation on a closed Disk.
	ErrClosed = &Error{"image: disk is closed", syscall.EBADF}
)

// CorruptError tells where a driver found corrupt metadata.
type CorruptError struct {
	Offset int64  // host offset of the offending structure
	What   string // what was wrong
}

func (e *CorruptError) Error() string { return "image: corrupt metadata: " + e.What }

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Errno returns the errno that err stands for: the errno of an *Error or a
// syscall.Errno found in its chain, else EIO.
func Errno(err error) syscall.Errno {
	var ie *Error
	if errors.As(err, &ie) {
		return ie.errno
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return syscall.EIO
}

// Strerror is glibc's strerror text for errno e, as QEMU prints it. Go's
// texts are glibc's without the capital letter, except for the errnos Go
// does not name.
func Strerror(e syscall.Errno) string {
	if s, ok := strerrors[e]; ok {
		return s
	}
	s := e.Error()
	if s == "" || strings.HasPrefix(s, "errno ") {
		return fmt.Sprintf("Unknown error %d", int(e))
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// strerrors are glibc's texts for the errnos Go has none for.
var strerrors = map[syscall.Errno]string{
	0:   "Success",
	133: "Memory page has hardware error", // EHWPOISON
}

// StrerrorOf is the strerror text of the errno that err stands for
// (Strerror(Errno(err))).
func StrerrorOf(err error) string { return Strerror(Errno(err)) }
