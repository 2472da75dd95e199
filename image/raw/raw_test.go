package raw_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
	"github.com/goqio/goqio/image/raw"
)

func newRaw(t *testing.T, size int64, opts raw.Options) (*image.Disk, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.raw")
	if err := raw.Create(path, size, image.PreallocOff); err != nil {
		t.Fatal(err)
	}
	drv, err := raw.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return image.New(drv, path, image.Options{Unmap: true, ReadOnly: opts.ReadOnly}), path
}

func TestConformance(t *testing.T) {
	t.Run("buffered", func(t *testing.T) {
		imagetest.Conformance(t, func(t *testing.T) *image.Disk {
			d, _ := newRaw(t, 4<<20, raw.Options{})
			return d
		})
	})
	t.Run("direct", func(t *testing.T) {
		probe := filepath.Join(t.TempDir(), "probe")
		os.WriteFile(probe, nil, 0o644)
		if _, err := raw.Open(probe, raw.Options{Direct: true}); err != nil {
			t.Skipf("O_DIRECT not supported here: %v", err)
		}
		imagetest.Conformance(t, func(t *testing.T) *image.Disk {
			d, _ := newRaw(t, 4<<20, raw.Options{Direct: true})
			if d.Limits().RequestAlignment < 512 {
				t.Errorf("O_DIRECT request alignment %d", d.Limits().RequestAlignment)
			}
			return d
		})
	})
}

// TestSizeRounding: a file of 65537 bytes is a 66048-byte image whose tail
// reads as zeroes; a write there extends the file.
func TestSizeRounding(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd.raw")
	if err := os.WriteFile(path, bytes.Repeat([]byte{7}, 65537), 0o644); err != nil {
		t.Fatal(err)
	}
	drv, err := raw.Open(path, raw.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := image.New(drv, path, image.Options{})
	defer d.Close()
	if d.Size() != 66048 {
		t.Fatalf("size %d, want 66048", d.Size())
	}
	buf := make([]byte, 512)
	if err := d.ReadAt(buf, 65536); err != nil {
		t.Fatal(err)
	}
	if buf[0] != 7 || !bytes.Equal(buf[1:], make([]byte, 511)) {
		t.Fatalf("tail reads %v...", buf[:4])
	}
	if err := d.WriteAt(bytes.Repeat([]byte{5}, 48), 66000, false); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Size() != 66048 {
		t.Fatalf("file is %d bytes, want 66048", st.Size())
	}
}

// TestProbedHeader: a probed raw image refuses a write that would make
// block 0 look like another format.
func TestProbedHeader(t *testing.T) {
	d, _ := newRaw(t, 1<<20, raw.Options{Probed: true, ProbeHeader: func(b []byte) bool { return bytes.HasPrefix(b, []byte("QFI\xfb")) }})
	defer d.Close()
	if d.Limits().RequestAlignment != 512 {
		t.Fatalf("probed alignment %d, want 512", d.Limits().RequestAlignment)
	}
	if err := d.WriteAt([]byte("QFI\xfb\x00\x00\x00\x03"), 0, false); !errors.Is(err, image.ErrPermission) {
		t.Fatalf("header write: %v, want ErrPermission", err)
	}
	if err := d.WriteAt([]byte("hello"), 0, false); err != nil {
		t.Fatalf("plain write to block 0: %v", err)
	}
}

// TestBlockStatusHoles: with wantZero, holes punched by discard read as zero
// runs; without it, everything is data.
func TestBlockStatusHoles(t *testing.T) {
	d, _ := newRaw(t, 1<<20, raw.Options{})
	defer d.Close()
	if err := d.WriteAt(bytes.Repeat([]byte{1}, 1<<20), 0, false); err != nil {
		t.Fatal(err)
	}
	if err := d.Discard(256<<10, 256<<10); err != nil {
		t.Fatal(err)
	}
	e, err := d.BlockStatus(0, 1<<20, false)
	if err != nil || e.Len != 1<<20 || e.Status&image.StatusData == 0 {
		t.Fatalf("want_zero=false: %+v %v", e, err)
	}
	var runs []image.Extent
	for off := int64(0); off < d.Size(); {
		e, err := d.BlockStatus(off, d.Size()-off, true)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, e)
		off += e.Len
	}
	if len(runs) != 3 || runs[1].Status&image.StatusZero == 0 || runs[1].Len != 256<<10 || runs[1].Offset != 256<<10 {
		t.Fatalf("runs %+v", runs)
	}
	buf := make([]byte, 256<<10)
	d.ReadAt(buf, 256<<10)
	if !bytes.Equal(buf, make([]byte, len(buf))) {
		t.Fatal("discarded range does not read as zeroes")
	}
}

// TestCreate: qemu-img's layout: size rounded up to 512, first block written.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		size int64
		p    image.Prealloc
		want int64
	}{{100000, image.PreallocOff, 100352}, {0, image.PreallocOff, 0}, {1 << 20, image.PreallocFull, 1 << 20}, {1 << 20, image.PreallocFalloc, 1 << 20}} {
		path := filepath.Join(dir, "c.raw")
		if err := raw.Create(path, tc.size, tc.p); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil || st.Size() != tc.want {
			t.Fatalf("create %d %v: size %v %v", tc.size, tc.p, st.Size(), err)
		}
	}
	if err := raw.Create(filepath.Join(dir, "m.raw"), 1, image.PreallocMetadata); err == nil {
		t.Fatal("metadata preallocation accepted for raw")
	}
}

func TestReadOnly(t *testing.T) {
	_, path := newRaw(t, 1<<20, raw.Options{})
	drv, err := raw.Open(path, raw.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close()
	if err := drv.WriteZeroes(0, 512, 0); !errors.Is(err, image.ErrReadOnly) {
		t.Fatalf("zero write on read-only: %v", err)
	}
}
