package image_test

import (
	"bytes"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
)

func TestParseDetectZeroes(t *testing.T) {
	for _, tc := range []struct {
		v     string
		unmap bool
		want  image.DetectZeroes
		err   string
	}{
		{"off", false, image.DetectZeroesOff, ""},
		{"on", false, image.DetectZeroesOn, ""},
		{"unmap", true, image.DetectZeroesUnmap, ""},
		{"unmap", false, 0, "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap"},
		{"ON", true, 0, "invalid parameter value: ON"},
		{"", true, 0, "invalid parameter value: "},
	} {
		z, err := image.ParseDetectZeroes(tc.v, tc.unmap)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q unmap=%v: error %v, want %q", tc.v, tc.unmap, err, tc.err)
			}
			continue
		}
		if err != nil || z != tc.want || z.String() != tc.v {
			t.Errorf("%q: got %v %v", tc.v, z, err)
		}
	}
}

// TestDetectZeroes: a data write of zeroes becomes the zero write write -z
// would be (same pieces, ZeroMayUnmap with unmap, one flush with FUA);
// other data, detect-zeroes off, or a driver that cannot zero leave it a
// data write.
func TestDetectZeroes(t *testing.T) {
	zero := make([]byte, 200000)
	for _, tc := range []struct {
		name   string
		opts   image.Options
		zeroer bool
		buf    []byte
		fua    bool
		want   []string
	}{
		{"on", image.Options{DetectZeroes: image.DetectZeroesOn}, true, zero, false,
			[]string{"zero 1000+64536 flags=0", "zero 65536+131072 flags=0", "zero 196608+4392 flags=0"}},
		{"unmap", image.Options{DetectZeroes: image.DetectZeroesUnmap, Unmap: true}, true, zero, false,
			[]string{"zero 1000+64536 flags=1", "zero 65536+131072 flags=1", "zero 196608+4392 flags=1"}},
		{"fua", image.Options{DetectZeroes: image.DetectZeroesOn}, true, zero, true,
			[]string{"zero 1000+64536 flags=0", "zero 65536+131072 flags=0", "zero 196608+4392 flags=0", "flush 0+0"}},
		{"writethrough", image.Options{DetectZeroes: image.DetectZeroesOn, WriteThrough: true}, true, zero[:512], false,
			[]string{"zero 1000+512 flags=0", "flush 0+0"}},
		{"data", image.Options{DetectZeroes: image.DetectZeroesOn}, true, append(make([]byte, 4095), 1), false,
			[]string{"write 1000+4096"}},
		{"off", image.Options{}, true, zero[:4096], false, []string{"write 1000+4096"}},
		{"no zeroer", image.Options{DetectZeroes: image.DetectZeroesUnmap, Unmap: true}, false, zero[:4096], false,
			[]string{"write 1000+4096"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := imagetest.NewMem(1<<20, image.Limits{ZeroAlignment: 65536}, true)
			var drv image.Driver = m
			if tc.zeroer {
				drv = m.Zeroing()
			}
			var trace []string
			tc.opts.Trace = func(s string) { trace = append(trace, s) }
			d := image.New(drv, "mem", tc.opts)
			if err := d.WriteAt(tc.buf, 1000, tc.fua); err != nil {
				t.Fatal(err)
			}
			if got := calls(m.Calls()); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("driver saw %q, want %q", got, tc.want)
			}
			detected := strings.HasPrefix(tc.want[0], "zero")
			if detected != (len(trace) > 0 && strings.HasPrefix(trace[0], "detect-zeroes: write off=0x3e8")) {
				t.Errorf("trace %q", trace)
			}
		})
	}
}

// TestDetectZeroesPadded: with a request alignment, the padded request is
// tested (its padding read from the image) and becomes a zero write of the
// padded range; the head and tail blocks of write -z are tested too. On a
// raw format Disk the caller's buffer is tested before padding and the zero
// write is padded as write -z is, with no further test.
func TestDetectZeroesPadded(t *testing.T) {
	lim := image.Limits{RequestAlignment: 512}
	zd := image.Options{DetectZeroes: image.DetectZeroesOn}
	for _, tc := range []struct {
		name string
		opts image.Options
		data bool // byte 0 of the image is not zero
		op   func(d *image.Disk) error
		want []string
	}{
		{"zero padding", zd, false, func(d *image.Disk) error { return d.WriteAt(make([]byte, 1000), 100, false) },
			[]string{"read 0+512", "read 1024+512", "zero 0+1536 flags=0"}},
		{"data in padding", zd, true, func(d *image.Disk) error { return d.WriteAt(make([]byte, 1000), 100, false) },
			[]string{"read 0+512", "read 1024+512", "write 0+1536"}},
		{"write -z head", zd, false, func(d *image.Disk) error { return d.WriteZeroes(100, 2000, 0, false) },
			[]string{"read 0+512", "read 2048+512", "zero 0+512 flags=0", "zero 512+1536 flags=0", "zero 2048+512 flags=0"}},
		{"write -z head with data", zd, true, func(d *image.Disk) error { return d.WriteZeroes(100, 2000, 0, false) },
			[]string{"read 0+512", "read 2048+512", "write 0+512", "zero 512+1536 flags=0", "zero 2048+512 flags=0"}},
		{"raw format", image.Options{DetectZeroes: image.DetectZeroesOn, RawFormat: true}, false,
			func(d *image.Disk) error { return d.WriteAt(make([]byte, 1000), 100, false) },
			[]string{"read 0+512", "read 1024+512", "write 0+512", "zero 512+512 flags=0", "write 1024+512"}},
		{"raw format with data", image.Options{DetectZeroes: image.DetectZeroesOn, RawFormat: true}, true,
			func(d *image.Disk) error { return d.WriteAt(make([]byte, 1000), 100, false) },
			[]string{"read 0+512", "read 1024+512", "write 0+512", "zero 512+512 flags=0", "write 1024+512"}},
		{"raw format data", image.Options{DetectZeroes: image.DetectZeroesOn, RawFormat: true}, false,
			func(d *image.Disk) error { return d.WriteAt([]byte{1}, 100, false) },
			[]string{"read 0+512", "write 0+512"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := imagetest.NewMem(1<<20, lim, true)
			if tc.data {
				image.New(m, "mem", image.Options{}).WriteAt(bytes.Repeat([]byte{9}, 512), 0, false)
				m.Calls()
			}
			d := image.New(m.Zeroing(), "mem", tc.opts)
			if err := tc.op(d); err != nil {
				t.Fatal(err)
			}
			if got := calls(m.Calls()); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("driver saw %q, want %q", got, tc.want)
			}
		})
	}
}

// cow makes a backing image of size bytes, filled with 0x55 in [0, data),
// and an overlay of size ovSize over it with CopyOnRead.
func cow(t *testing.T, size, data, ovSize, cluster, granule int64) (*imagetest.Overlay, *image.Disk, *imagetest.MemDriver) {
	t.Helper()
	bm := imagetest.NewMem(size, image.Limits{}, false)
	back := image.New(bm, "base", image.Options{ReadOnly: true})
	if data > 0 {
		image.New(bm, "base", image.Options{}).WriteAt(bytes.Repeat([]byte{0x55}, int(data)), 0, false)
		bm.Calls()
	}
	ov := imagetest.NewOverlay(ovSize, cluster, granule, back)
	return ov, image.New(ov, "overlay", image.Options{CopyOnRead: true}), bm
}

// TestCopyOnRead: a read copies the whole clusters it touches that the
// overlay does not store, as data or (all zeroes) as a zero write, returns
// the data, and later reads are served by the overlay alone.
func TestCopyOnRead(t *testing.T) {
	ov, d, bm := cow(t, 1<<20, 100000, 2<<20, 65536, 65536)
	buf := make([]byte, 200)
	if err := d.ReadAt(buf, 65500); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte{0x55}, 200)) {
		t.Error("copy-on-read returned the wrong data")
	}
	want := []string{"read 0+131072", "write 0+131072"}
	if got := calls(ov.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("overlay saw %q, want %q", got, want)
	}
	if got := ov.State()[:4]; got != "dd.." {
		t.Errorf("overlay state %q", got)
	}
	// a cluster of zeroes from the backing file becomes a zero write; a
	// cluster past the backing file's end too
	if err := d.ReadAt(buf, 200000); err != nil {
		t.Fatal(err)
	}
	if err := d.ReadAt(buf, 1<<20+5); err != nil {
		t.Fatal(err)
	}
	want = []string{"read 196608+65536", "zero 196608+65536 flags=0", "read 1048576+65536", "zero 1048576+65536 flags=0"}
	if got := calls(ov.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("overlay saw %q, want %q", got, want)
	}
	// allocated: an ordinary read, nothing reaches the backing file
	bm.Calls()
	if err := d.ReadAt(buf, 10); err != nil {
		t.Fatal(err)
	}
	if got := calls(ov.Calls()); !reflect.DeepEqual(got, []string{"read 10+200"}) {
		t.Errorf("allocated read: overlay saw %q", got)
	}
	if c := bm.Calls(); len(c) != 0 {
		t.Errorf("allocated read reached the backing file: %v", c)
	}
	// a zero-length read copies the cluster around an unaligned offset,
	// not at an aligned one
	d.ReadAt(nil, 5<<16)
	d.ReadAt(nil, 6<<16+1)
	if got := calls(ov.Calls()); !reflect.DeepEqual(got, []string{"read 393216+65536", "zero 393216+65536 flags=0"}) {
		t.Errorf("zero-length reads: overlay saw %q", got)
	}
}

// TestCopyOnReadRuns: the widened request is walked in runs of one
// allocation status; unallocated runs are bounded by 16 MiB; the image end
// inside a cluster ends the walk; copies are not flushed on a write-through
// Disk.
func TestCopyOnReadRuns(t *testing.T) {
	ov, _, _ := cow(t, 40<<20, 40<<20, 40<<20+1000, 65536, 65536)
	d := image.New(ov, "overlay", image.Options{CopyOnRead: true, WriteThrough: true})
	d.WriteAt([]byte{1}, 3<<20, false)
	ov.Calls()
	buf := make([]byte, 40<<20+1000-100)
	if err := d.ReadAt(buf, 100); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"read 0+3145728", "write 0+3145728", // up to the cluster written
		"read 3145728+65536", // allocated: read directly
		"read 3211264+16777216", "write 3211264+16777216",
		"read 19988480+16777216", "write 19988480+16777216",
		"read 36765696+5178344", "write 36765696+5178344", // to the end of the image, inside the last cluster
	}
	if got := calls(ov.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("overlay saw %q,\nwant %q", got, want)
	}
	exp := bytes.Repeat([]byte{0x55}, len(buf))
	exp[3<<20-100] = 1
	copy(exp[40<<20-100:], make([]byte, 1000))
	if !bytes.Equal(buf, exp) {
		t.Error("wrong data")
	}
}

// TestCopyOnReadSplit: with an allocation granule below the cluster size,
// a read whose cluster's runs end outside the request is refused (QEMU 7.2
// aborts) before anything is copied; one whose runs line up is copied.
func TestCopyOnReadSplit(t *testing.T) {
	ov, d, _ := cow(t, 1<<20, 1<<20, 1<<20, 65536, 2048)
	d0 := image.New(ov, "overlay", image.Options{})
	d0.WriteAt(bytes.Repeat([]byte{1}, 2048), 2048, false)
	ov.Calls()
	for _, r := range [][2]int64{{0, 100}, {4096, 100}} {
		err := d.ReadAt(make([]byte, r[1]), r[0])
		if image.Errno(err) != syscall.EINVAL {
			t.Errorf("read %d+%d: %v, want EINVAL", r[0], r[1], err)
		}
		if c := ov.Calls(); len(c) != 0 {
			t.Errorf("refused read %d+%d reached the overlay: %v", r[0], r[1], c)
		}
	}
	// inside the allocated granule: an ordinary read
	if err := d.ReadAt(make([]byte, 100), 3000); err != nil {
		t.Fatal(err)
	}
	ov.Calls()
	if err := d.ReadAt(make([]byte, 65536), 0); err != nil {
		t.Fatal(err)
	}
	want := []string{"read 0+2048", "write 0+2048", "read 2048+2048", "read 4096+61440", "write 4096+61440"}
	if got := calls(ov.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("overlay saw %q, want %q", got, want)
	}
	if got := ov.State()[:32]; got != strings.Repeat("d", 32) {
		t.Errorf("state %q", got)
	}
}

// TestDetectZeroWrite: a compressed write of zeroes is done as a zero write
// by the generic layer; other data is left to the caller.
func TestDetectZeroWrite(t *testing.T) {
	m := imagetest.NewMem(1<<20, image.Limits{ZeroAlignment: 65536}, true)
	d := image.New(m.Zeroing(), "mem", image.Options{DetectZeroes: image.DetectZeroesUnmap, Unmap: true})
	if done, err := d.DetectZeroWrite(make([]byte, 65536), 512, false); !done || err != nil {
		t.Fatalf("zeroes: %v %v", done, err)
	}
	want := []string{"zero 512+65024 flags=1", "zero 65536+512 flags=1"}
	if got := calls(m.Calls()); !reflect.DeepEqual(got, want) {
		t.Errorf("driver saw %q, want %q", got, want)
	}
	if done, err := d.DetectZeroWrite([]byte{0, 1}, 0, false); done || err != nil {
		t.Errorf("data: %v %v", done, err)
	}
	if done, err := d.DetectZeroWrite(nil, 0, false); !done || err != nil {
		t.Errorf("empty: %v %v", done, err)
	}
	off := image.New(m.Zeroing(), "mem", image.Options{})
	if done, _ := off.DetectZeroWrite(make([]byte, 512), 0, false); done {
		t.Error("detect-zeroes off: done")
	}
	if c := m.Calls(); len(c) != 0 {
		t.Errorf("driver saw %v", c)
	}
}
