package qemuimg

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"

	"github.com/goqio/goqio/internal/testbin"
)

// fsxattr is the kernel's struct fsxattr (FS_IOC_FSGETXATTR).
type fsxattr struct {
	xflags, extsize, nextents, projid, cowextsize uint32
	pad                                           [8]byte
}

// fileAttrs are a file's attribute flags (FS_IOC_GETFLAGS) and extent
// size hint flag and value, as far as the file system has them.
func fileAttrs(path string) [3]uint32 {
	f, err := os.Open(path)
	if err != nil {
		return [3]uint32{}
	}
	defer f.Close()
	var fl int32
	var x fsxattr
	syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), 0x80086601, uintptr(unsafe.Pointer(&fl))) // FS_IOC_GETFLAGS
	syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), 0x801c581f, uintptr(unsafe.Pointer(&x)))  // FS_IOC_FSGETXATTR
	return [3]uint32{uint32(fl), x.xflags & 0x800, x.extsize}
}

// TestFileAttrs: the file protocol's nocow and extent_size_hint create
// options act on the files as qemu-img's do, with its warning where the
// file system has no extent size hints (tmpfs) and silently where it does
// or where the hint is the default one: create of raw, qcow2 (and its
// data file), luks, and convert's target.
func TestFileAttrs(t *testing.T) {
	_, qemuImg := testbin.QEMU(t)
	goqio := testbin.Goqio(t)
	dirs := []string{t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "goqio-attrs"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	obj := []string{"--object", "secret,id=s0,data=x"}
	cases := [][]string{
		{"create", "-f", "raw", "-o", "extent_size_hint=2M", "x.img", "1M"},
		{"create", "-f", "raw", "-o", "extent_size_hint=0", "x.img", "1M"},
		{"create", "-f", "raw", "x.img", "1M"},
		{"create", "-f", "raw", "-o", "nocow=on", "x.img", "1M"},
		{"create", "-f", "raw", "-o", "extent_size_hint=5G", "x.img", "1M"},
		{"create", "-f", "qcow2", "-o", "extent_size_hint=2M,nocow=on", "x.img", "1M"},
		{"create", "-f", "qcow2", "-o", "extent_size_hint=64k,data_file=x.data", "x.img", "1M"},
		append(append([]string{"create", "-f", "luks"}, obj...), "-o", "key-secret=s0,iter-time=10,nocow=on,extent_size_hint=2M,preallocation=off", "x.img", "1M"),
		append(append([]string{"create", "-f", "luks"}, obj...), "-o", "key-secret=s0,iter-time=10,extent_size_hint=9G", "x.img", "1M"),
		{"create", "-f", "luks", "-o", "nocow=maybe", "x.img", "1M"},
		{"convert", "-O", "raw", "-o", "extent_size_hint=2M", "src.raw", "x.img"},
		{"convert", "-O", "qcow2", "-o", "extent_size_hint=1M,nocow=on", "src.raw", "x.img"},
		{"convert", "-O", "raw", "-o", "extent_size_hint=9G", "src.raw", "x.img"},
	}
	for _, dir := range dirs {
		if err := os.WriteFile(filepath.Join(dir, "src.raw"), make([]byte, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range cases {
			var res [2]result
			var attrs [2][2][3]uint32
			for i, prog := range []string{qemuImg, goqio} {
				os.Remove(filepath.Join(dir, "x.img"))
				os.Remove(filepath.Join(dir, "x.data"))
				res[i] = run(t, dir, prog, args)
				attrs[i] = [2][3]uint32{fileAttrs(filepath.Join(dir, "x.img")), fileAttrs(filepath.Join(dir, "x.data"))}
			}
			if res[0] != res[1] || attrs[0] != attrs[1] {
				t.Errorf("in %s, qemu-img %q:\nqemu-img: rc %d attrs %x\n%s%s\ngoqio: rc %d attrs %x\n%s%s", dir, args,
					res[0].rc, attrs[0], res[0].out, res[0].err, res[1].rc, attrs[1], res[1].out, res[1].err)
			}
		}
	}
}
