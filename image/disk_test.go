package image_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"syscall"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
)

func calls(cs []imagetest.Call) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}

// TestPaddedWritesEqualByteWrites is the property: on a driver that takes
// only aligned requests, any sequence of unaligned writes, zero writes and
// reads through Disk gives the same bytes as a byte-granular model.
func TestPaddedWritesEqualByteWrites(t *testing.T) {
	for _, align := range []int64{512, 4096} {
		for _, zero := range []bool{false, true} {
			t.Run(fmt.Sprintf("align%d-zero%v", align, zero), func(t *testing.T) {
				const size = 256 << 10
				m := imagetest.NewMem(size, image.Limits{RequestAlignment: align, MaxTransfer: 64 << 10}, zero)
				var drv image.Driver = m
				if zero {
					drv = m.Zeroing()
				}
				d := image.New(drv, "mem", image.Options{Unmap: true})
				model := make([]byte, size)
				rng := rand.New(rand.NewSource(align))
				for i := 0; i < 2000; i++ {
					off := rng.Int63n(size)
					n := rng.Int63n(min(size-off, 3*align) + 1)
					if rng.Intn(10) == 0 {
						n = rng.Int63n(size-off) + 1
					}
					switch rng.Intn(3) {
					case 0:
						buf := make([]byte, n)
						rng.Read(buf)
						if err := d.WriteAt(buf, off, false); err != nil {
							t.Fatalf("write %d+%d: %v", off, n, err)
						}
						copy(model[off:], buf)
					case 1:
						if err := d.WriteZeroes(off, n, 0, false); err != nil {
							t.Fatalf("zero %d+%d: %v", off, n, err)
						}
						clear(model[off : off+n])
					case 2:
						buf := make([]byte, n)
						if err := d.ReadAt(buf, off); err != nil {
							t.Fatalf("read %d+%d: %v", off, n, err)
						}
						if !bytes.Equal(buf, model[off:off+n]) {
							t.Fatalf("read %d+%d differs from the model", off, n)
						}
					}
					if !bytes.Equal(m.Bytes(), model) {
						t.Fatalf("after step %d the image differs from the model", i)
					}
				}
			})
		}
	}
}

// TestZeroSplit: the driver sees QEMU's head / aligned middle / tail pieces.
func TestZeroSplit(t *testing.T) {
	m := imagetest.NewMem(1<<20, image.Limits{ZeroAlignment: 65536}, true)
	d := image.New(m.Zeroing(), "mem", image.Options{})
	for _, tc := range []struct {
		off, n int64
		flags  image.ZeroFlags
		want   []string
	}{
		{1024, 127 * 1024, 0, []string{"zero 1024+64512 flags=0", "zero 65536+65536 flags=0"}},
		{512, 131072, image.ZeroMayUnmap, []string{"zero 512+65024 flags=1", "zero 65536+65536 flags=1", "zero 131072+512 flags=1"}},
		{1024, 1024, 0, []string{"zero 1024+1024 flags=0"}},
	} {
		if err := d.WriteZeroes(tc.off, tc.n, tc.flags, false); err != nil {
			t.Fatal(err)
		}
		if got := calls(m.Calls()); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("zero %d+%d: driver saw %q, want %q", tc.off, tc.n, got, tc.want)
		}
	}
}

// TestZeroFallback: ENOTSUP from the driver makes Disk write zeroes, unless
// ZeroNoFallback, which returns ENOTSUP instead. Other errors are returned.
func TestZeroFallback(t *testing.T) {
	m := imagetest.NewMem(1<<20, image.Limits{ZeroAlignment: 65536}, true)
	m.ZeroFunc = func(off, n int64, f image.ZeroFlags) error {
		if off%65536 != 0 || n%65536 != 0 {
			return image.ErrNotSupported
		}
		return nil
	}
	d := image.New(m.Zeroing(), "mem", image.Options{})
	if err := d.WriteAt(bytes.Repeat([]byte{1}, 1<<20), 0, false); err != nil {
		t.Fatal(err)
	}
	m.Calls()
	if err := d.WriteZeroes(4096, 131072, 0, false); err != nil {
		t.Fatal(err)
	}
	want := []string{"zero 4096+61440 flags=0", "write 4096+61440", "zero 65536+65536 flags=0", "zero 131072+4096 flags=0", "write 131072+4096"}
	if got := calls(m.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("driver saw %q, want %q", got, want)
	}
	buf := make([]byte, 131072)
	d.ReadAt(buf, 4096)
	if !bytes.Equal(buf, make([]byte, 131072)) {
		t.Error("zeroed range does not read as zeroes")
	}
	err := d.WriteZeroes(4096, 4096, image.ZeroNoFallback, false)
	if !errors.Is(err, image.ErrNotSupported) || image.Errno(err) != syscall.EOPNOTSUPP {
		t.Errorf("no-fallback zero write: %v, want ErrNotSupported", err)
	}
	m.ZeroFunc = func(off, n int64, f image.ZeroFlags) error { return syscall.ENOSPC }
	if err := d.WriteZeroes(0, 65536, 0, false); image.Errno(err) != syscall.ENOSPC {
		t.Errorf("zero write with a failing driver: %v, want ENOSPC", err)
	}
}

// TestZeroWithoutDriverSupport: a driver without Zeroer gets explicit
// zeroes in pieces of at most 16 MiB; NO_FALLBACK is refused up front.
func TestZeroWithoutDriverSupport(t *testing.T) {
	m := imagetest.NewMem(40<<20, image.Limits{}, false)
	d := image.New(m, "mem", image.Options{})
	if err := d.WriteZeroes(0, 40<<20, 0, false); err != nil {
		t.Fatal(err)
	}
	want := []string{"write 0+16777216", "write 16777216+16777216", "write 33554432+8388608"}
	if got := calls(m.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("driver saw %q, want %q", got, want)
	}
	if err := d.WriteZeroes(0, 512, image.ZeroNoFallback, false); !errors.Is(err, image.ErrNotSupported) {
		t.Errorf("got %v, want ErrNotSupported", err)
	}
}

// TestUnalignedNoFallback: with a request alignment, an unaligned -z -n is
// ENOTSUP before anything is done; without -n the edges are written as data.
func TestUnalignedNoFallback(t *testing.T) {
	m := imagetest.NewMem(1<<20, image.Limits{RequestAlignment: 512}, true)
	d := image.New(m.Zeroing(), "mem", image.Options{})
	if err := d.WriteZeroes(1, 3, image.ZeroNoFallback, false); !errors.Is(err, image.ErrNotSupported) {
		t.Fatalf("got %v, want ErrNotSupported", err)
	}
	if c := m.Calls(); len(c) != 0 {
		t.Fatalf("driver saw %v", c)
	}
	if err := d.WriteZeroes(100, 2000, 0, false); err != nil {
		t.Fatal(err)
	}
	want := []string{"read 0+512", "read 2048+512", "write 0+512", "zero 512+1536 flags=0", "write 2048+512"}
	if got := calls(m.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("driver saw %q, want %q", got, want)
	}
}

// TestDiscard: pieces the driver refuses are skipped; -d ignore does nothing.
func TestDiscard(t *testing.T) {
	m := imagetest.NewMem(1<<20, image.Limits{DiscardAlignment: 65536}, true)
	d := image.New(m.Zeroing(), "mem", image.Options{Unmap: true})
	if err := d.Discard(4096, 131072); err != nil {
		t.Fatal(err)
	}
	want := []string{"discard 4096+61440", "discard 65536+65536", "discard 131072+4096"}
	if got := calls(m.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("driver saw %q, want %q", got, want)
	}
	d = image.New(m.Zeroing(), "mem", image.Options{Unmap: false})
	if err := d.Discard(0, 65536); err != nil || len(m.Calls()) != 0 {
		t.Errorf("discard without unmap reached the driver (%v)", err)
	}
}

func TestReadOnlyAndFUA(t *testing.T) {
	m := imagetest.NewMem(1<<20, image.Limits{}, false)
	ro := image.New(m, "mem", image.Options{ReadOnly: true})
	if err := ro.WriteAt([]byte{1}, 0, false); !errors.Is(err, image.ErrReadOnly) {
		t.Errorf("write on read-only: %v", err)
	}
	wt := image.New(m, "mem", image.Options{WriteThrough: true})
	wt.WriteAt([]byte{1}, 0, false)
	wb := image.New(m, "mem", image.Options{})
	wb.WriteAt([]byte{1}, 0, true)
	wb.WriteAt([]byte{1}, 0, false)
	want := []string{"write 0+1", "flush 0+0", "write 0+1", "flush 0+0", "write 0+1"}
	if got := calls(m.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("driver saw %q, want %q", got, want)
	}
}

func TestBlockStatusDefaults(t *testing.T) {
	m := imagetest.NewMem(100000, image.Limits{}, false)
	d := image.New(m, "mem", image.Options{})
	e, err := d.BlockStatus(5, 1<<30, false)
	if err != nil || e.Len != 99995 || e.Status != image.StatusData|image.StatusAllocated|image.StatusEOF {
		t.Errorf("got %+v %v", e, err)
	}
	alloc, n, err := d.IsAllocated(100000, 5)
	if alloc || n != 0 || err != nil {
		t.Errorf("past the end: %v %d %v", alloc, n, err)
	}
}

func TestConformanceMem(t *testing.T) {
	imagetest.Conformance(t, func(t *testing.T) *image.Disk {
		m := imagetest.NewMem(4<<20, image.Limits{RequestAlignment: 512, ZeroAlignment: 65536, MaxTransfer: 1 << 20}, true)
		return image.New(m.Zeroing(), "mem", image.Options{Unmap: true})
	})
}

func TestFaultInjection(t *testing.T) {
	m := imagetest.NewMem(1<<20, image.Limits{RequestAlignment: 512}, false)
	f := &imagetest.FaultDriver{Driver: m, Err: syscall.EIO, FailRead: 1}
	d := image.New(f, "mem", image.Options{})
	// an unaligned write must read first; the failed read leaves the image untouched
	if err := d.WriteAt([]byte{1, 2, 3}, 10, false); image.Errno(err) != syscall.EIO {
		t.Fatalf("got %v, want EIO", err)
	}
	if !bytes.Equal(m.Bytes(), make([]byte, 1<<20)) {
		t.Fatal("a failed read-modify-write changed the image")
	}
}
