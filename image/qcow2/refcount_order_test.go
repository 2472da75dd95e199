package qcow2

import (
	"bytes"
	"io"
	"testing"

	"github.com/goqio/goqio/image"
)

// TestRefcountOrderSetter: refSetOrder writes what refSet writes at
// that order.
func TestRefcountOrderSetter(t *testing.T) {
	for order := uint(0); order <= 6; order++ {
		d := &Driver{geometry: geometry{refOrder: order}}
		a, b := make([]byte, 64), make([]byte, 64)
		for i := int64(0); i < 8; i++ {
			v := uint64(i*7+1) & (1<<(1<<order) - 1)
			d.refSet(a, i, v)
			refSetOrder(order, b, i, v)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("order %d: %x, refSet %x", order, b, a)
		}
	}
}

// TestChangeRefcountOrder: amend through every width keeps the guest
// data and a clean image, also after reopening; a width too narrow for a
// refcount is refused and leaves the image as it was.
func TestChangeRefcountOrder(t *testing.T) {
	t.Parallel()
	path := create(t, CreateOptions{Size: 8 << 20, ClusterSize: 4096})
	open := func() (*Driver, *image.Disk) {
		d, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return d, image.New(d, "t", image.Options{})
	}
	_, disk := open()
	want := make([]byte, 8<<20)
	for i := range want[:3<<20] {
		want[i] = byte(i/4096 + 1)
	}
	if err := disk.WriteAt(want[:3<<20], 0, false); err != nil {
		t.Fatal(err)
	}
	disk.Close()
	check := func(d *Driver, disk *image.Disk, bits int) {
		t.Helper()
		if got := 1 << d.refOrder; got != bits {
			t.Fatalf("refcount bits %d, want %d", got, bits)
		}
		r, err := d.Check(io.Discard, 0)
		if err != nil || r.Corruptions != 0 || r.Leaks != 0 {
			t.Fatalf("%d bits: check %+v %v", bits, r, err)
		}
		got := make([]byte, len(want))
		if err := disk.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bits: guest data changed", bits)
		}
	}
	for _, bits := range []int{1, 64, 2, 32, 4, 8, 16} {
		d, disk := open()
		var last, total int64
		if err := d.Amend(AmendOptions{RefcountBits: bits, Status: func(done, all int64) { last, total = done, all }}); err != nil {
			t.Fatalf("%d bits: %v", bits, err)
		}
		if last != total || total == 0 {
			t.Errorf("%d bits: progress ends at %d/%d", bits, last, total)
		}
		check(d, disk, bits)
		disk.Close()
		d, disk = open()
		check(d, disk, bits)
		disk.Close()
	}
}
