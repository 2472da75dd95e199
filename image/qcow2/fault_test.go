package qcow2

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
	"github.com/goqio/goqio/image/raw"
)

// openFaulty opens path with a fault-injecting layer under the qcow2 driver.
func openFaulty(t *testing.T, path string, failWrite int, errno syscall.Errno) (*Driver, *imagetest.FaultDriver) {
	t.Helper()
	rd, err := raw.Open(path, raw.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fd := &imagetest.FaultDriver{Driver: rd, Err: errno, FailWrite: failWrite}
	d, err := openOn(image.New(fd, path, image.Options{Grow: true}), path, Options{Unmap: true})
	if err != nil {
		t.Fatal(err)
	}
	return d, fd
}

// workload is a mix of allocating, partial, zero and discard requests.
func workload(d *Driver) error {
	steps := []func() error{
		func() error { _, err := d.WriteAt(bytes.Repeat([]byte{2}, 100000), 3<<20); return err },
		func() error { _, err := d.WriteAt(bytes.Repeat([]byte{3}, 777), 70000); return err },
		func() error { return d.WriteZeroes(1<<20, 128<<10, image.ZeroMayUnmap) },
		func() error { return d.Discard(0, 64<<10) },
		func() error { _, err := d.WriteAt(bytes.Repeat([]byte{4}, 3<<20), 5<<20); return err },
		func() error { return d.Truncate(40<<20, image.PreallocOff) },
		func() error { _, err := d.WriteAt(bytes.Repeat([]byte{5}, 4096), 39<<20); return err },
		func() error { return d.Flush() },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// TestFaultAtEveryWrite: an EIO or ENOSPC at any write of the file leaves an
// image that qemu-img check finds free of corruption (leaks are allowed),
// with the data written before the workload intact.
func TestFaultAtEveryWrite(t *testing.T) {
	qimg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "goqio-fault-"); err == nil {
			dir = d
			defer os.RemoveAll(d)
		}
	}
	for _, cl := range []int64{65536, 512} {
		base := filepath.Join(dir, fmt.Sprintf("base-%d.qcow2", cl))
		if err := Create(base, CreateOptions{Size: 32 << 20, ClusterSize: cl, Version: 3, RefcountBits: 16}); err != nil {
			t.Fatal(err)
		}
		d, _ := openFaulty(t, base, 0, 0)
		before := bytes.Repeat([]byte{1}, 2<<20)
		if _, err := d.WriteAt(before, 10<<20); err != nil { // a range the workload never touches
			t.Fatal(err)
		}
		d.Close()
		// count the writes the workload makes
		counting := copyFile(t, base)
		d, fd := openFaulty(t, counting, 0, 0)
		if err := workload(d); err != nil {
			t.Fatal(err)
		}
		total := fd.WritesSeen
		d.Close()
		if total < 5 {
			t.Fatalf("workload made only %d writes", total)
		}
		for _, errno := range []syscall.Errno{syscall.EIO, syscall.ENOSPC} {
			step := max(1, total/40) // at most ~40 failure points per cluster size
			for n := 1; n <= total; n += step {
				p := copyFile(t, base)
				defer os.Remove(p)
				d, _ := openFaulty(t, p, n, errno)
				werr := workload(d)
				d.Close()
				if werr == nil {
					t.Errorf("cluster %d, %v at write %d: the workload did not fail", cl, errno, n)
				}
				out, err := exec.Command(qimg, "check", "-f", "qcow2", p).CombinedOutput()
				if code := exitCode(err); code != 0 && code != 3 {
					t.Fatalf("cluster %d, %v at write %d of %d: qemu-img check exit %d:\n%s", cl, errno, n, total, code, out)
				}
				r, err := Open(p, Options{ReadOnly: true})
				if err != nil {
					t.Fatalf("%v at write %d: reopen: %v", errno, n, err)
				}
				got := make([]byte, len(before))
				r.ReadAt(got, 10<<20)
				r.Close()
				if !bytes.Equal(got, before) {
					t.Fatalf("cluster %d, %v at write %d: earlier data changed", cl, errno, n)
				}
			}
		}
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(*exec.ExitError); ok {
		return e.ExitCode()
	}
	return -1
}

var copies int

func copyFile(t *testing.T, src string) string {
	t.Helper()
	copies++
	dst := fmt.Sprintf("%s.%d", src, copies)
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}
