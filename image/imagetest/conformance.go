package imagetest

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"

	"github.com/goqio/goqio/image"
)

// Conformance runs the suite every driver must pass, on a fresh image of
// at least 4 MiB made by open for each subtest. Writable drivers only.
func Conformance(t *testing.T, open func(t *testing.T) *image.Disk) {
	t.Run("RoundTrip", func(t *testing.T) {
		d := open(t)
		defer d.Close()
		size := d.Size()
		model := make([]byte, size)
		if err := d.ReadAt(model, 0); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewSource(1))
		for i := 0; i < 200; i++ {
			off := rng.Int63n(size)
			n := rng.Int63n(min(size-off, 200000) + 1)
			buf := make([]byte, n)
			rng.Read(buf)
			switch rng.Intn(4) {
			case 0, 1:
				if err := d.WriteAt(buf, off, false); err != nil {
					t.Fatalf("write %d+%d: %v", off, n, err)
				}
				copy(model[off:], buf)
			case 2:
				var f image.ZeroFlags
				if rng.Intn(2) == 0 {
					f |= image.ZeroMayUnmap
				}
				if err := d.WriteZeroes(off, n, f, false); err != nil {
					t.Fatalf("zero %d+%d: %v", off, n, err)
				}
				clear(model[off : off+n])
			case 3:
				got := make([]byte, n)
				if err := d.ReadAt(got, off); err != nil {
					t.Fatalf("read %d+%d: %v", off, n, err)
				}
				if !bytes.Equal(got, model[off:off+n]) {
					t.Fatalf("read %d+%d: content differs from the model", off, n)
				}
			}
		}
		all := make([]byte, size)
		if err := d.ReadAt(all, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(all, model) {
			t.Fatal("final content differs from the model")
		}
	})
	t.Run("Bounds", func(t *testing.T) {
		d := open(t)
		defer d.Close()
		size := d.Size()
		b := make([]byte, 2)
		for _, off := range []int64{size - 1, size, size + 1, -1} {
			if err := d.ReadAt(b, off); !errors.Is(err, image.ErrOutOfRange) {
				t.Errorf("read 2 at %d: %v, want ErrOutOfRange", off, err)
			}
			if err := d.WriteAt(b, off, false); !errors.Is(err, image.ErrOutOfRange) {
				t.Errorf("write 2 at %d: %v, want ErrOutOfRange", off, err)
			}
			if err := d.WriteZeroes(off, 2, 0, false); !errors.Is(err, image.ErrOutOfRange) {
				t.Errorf("zero 2 at %d: %v, want ErrOutOfRange", off, err)
			}
			if err := d.Discard(off, 2); !errors.Is(err, image.ErrOutOfRange) {
				t.Errorf("discard 2 at %d: %v, want ErrOutOfRange", off, err)
			}
		}
		if err := d.ReadAt(nil, size); err != nil {
			t.Errorf("zero-length read at the end: %v", err)
		}
		if err := d.WriteAt(nil, size, false); err != nil {
			t.Errorf("zero-length write at the end: %v", err)
		}
	})
	t.Run("DiscardKeepsNeighbours", func(t *testing.T) {
		d := open(t)
		defer d.Close()
		buf := bytes.Repeat([]byte{0x5a}, 1<<20)
		if err := d.WriteAt(buf, 0, false); err != nil {
			t.Fatal(err)
		}
		if err := d.Discard(65536+512, 128*1024); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 65536+512)
		if err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, buf[:len(got)]) {
			t.Fatalf("data before the discarded range changed (%v)", err)
		}
		end := int64(65536 + 512 + 128*1024)
		got = make([]byte, 1<<20-end)
		if err := d.ReadAt(got, end); err != nil || !bytes.Equal(got, buf[end:]) {
			t.Fatalf("data after the discarded range changed (%v)", err)
		}
	})
	t.Run("BlockStatusCovers", func(t *testing.T) {
		d := open(t)
		defer d.Close()
		for _, wz := range []bool{false, true} {
			off := int64(0)
			for off < d.Size() {
				e, err := d.BlockStatus(off, d.Size()-off, wz)
				if err != nil {
					t.Fatal(err)
				}
				if e.Len <= 0 {
					t.Fatalf("block status at %d: length %d", off, e.Len)
				}
				off += e.Len
			}
			if off != d.Size() {
				t.Fatalf("block status covered %d of %d bytes", off, d.Size())
			}
			e, err := d.BlockStatus(d.Size(), 1, wz)
			if err != nil || e.Len != 0 || e.Status&image.StatusEOF == 0 {
				t.Fatalf("block status at the end: %+v %v", e, err)
			}
		}
	})
	t.Run("Flush", func(t *testing.T) {
		d := open(t)
		defer d.Close()
		if err := d.WriteAt([]byte("x"), 7, true); err != nil {
			t.Fatal(err)
		}
		if err := d.Flush(); err != nil {
			t.Fatal(err)
		}
	})
}
