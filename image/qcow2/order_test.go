package qcow2

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/goqio/goqio/image"
)

// TestAdmissionOrder: a request admitted (holding the metadata lock) takes
// effect, and allocates, before any request that comes after it, however
// the goroutines are scheduled: two overlapping writes end with the second
// one's data, two allocating writes get host offsets in their order.
func TestAdmissionOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i := 0; i < 30; i++ {
		path := filepath.Join(dir, "o.qcow2")
		if err := Create(path, CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
			t.Fatal(err)
		}
		d, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		admitted := make(chan struct{}, 1)
		d.SetAdmit(func() *image.Req { admitted <- struct{}{}; return nil })
		done := make(chan error, 4)
		submit := func(p []byte, off int64) {
			go func() { _, err := d.WriteAt(p, off); done <- err }()
			<-admitted // the submitter goes on once the request is in
		}
		submit(bytes.Repeat([]byte{1}, 4096), 0)
		submit(bytes.Repeat([]byte{2}, 4096), 0)
		submit(bytes.Repeat([]byte{3}, 4096), 2<<16)
		submit(bytes.Repeat([]byte{4}, 4096), 1<<16)
		for j := 0; j < 4; j++ {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		d.SetAdmit(nil)
		got := make([]byte, 4096)
		if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{2}, 4096)) {
			t.Fatalf("run %d: the second write did not win (%v, %x...)", i, err, got[:4])
		}
		var hosts []int64
		for _, off := range []int64{0, 2 << 16, 1 << 16} {
			e, err := d.BlockStatus(off, 4096, false)
			if err != nil {
				t.Fatal(err)
			}
			hosts = append(hosts, e.Offset)
		}
		if !(hosts[0] < hosts[1] && hosts[1] < hosts[2]) {
			t.Fatalf("run %d: host offsets %#x not in submission order", i, hosts)
		}
		d.Close()
	}
}
