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

// failingWriterAt fails its Nth WriteAt (counting from 1) with err.
type failingWriterAt struct {
	fail, n int
	err     error
}

func (w *failingWriterAt) WriteAt(p []byte, off int64) (int, error) {
	w.n++
	if w.n == w.fail {
		return 0, w.err
	}
	return len(p), nil
}

// A write error while Create writes the first clusters is returned, with
// qcow2_co_create's message for whichever write failed.
func TestCreateBootstrapWriteError(t *testing.T) {
	for _, tc := range []struct {
		fail int
		want string
	}{
		{1, "Could not write qcow2 header: No space left on device"},
		{2, "Could not write refcount table: No space left on device"},
	} {
		w := &failingWriterAt{fail: tc.fail, err: syscall.ENOSPC}
		err := writeBootstrap(w, make([]byte, 512), make([]byte, 1024), 512)
		if err == nil || err.Error() != tc.want {
			t.Errorf("write %d fails: got %v, want %q", tc.fail, err, tc.want)
		}
	}
	if err := writeBootstrap(&failingWriterAt{}, make([]byte, 512), make([]byte, 1024), 512); err != nil {
		t.Errorf("no failure: %v", err)
	}
}

// Create on /dev/full fails as qemu-img create does there, instead of
// losing the write error and failing later to read the header back.
func TestCreateOnFullDevice(t *testing.T) {
	f, err := os.OpenFile("/dev/full", os.O_RDWR, 0)
	if err != nil {
		t.Skip("no writable /dev/full:", err)
	}
	f.Close()
	err = Create("/dev/full", CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16})
	want := "Could not write qcow2 header: No space left on device"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}
