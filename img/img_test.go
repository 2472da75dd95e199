package img

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
)

func TestAllocatedSectors(t *testing.T) {
	sec := func(pattern string) []byte {
		var b []byte
		for _, c := range pattern {
			v := byte(0)
			if c == 'd' {
				v = 1
			}
			b = append(b, bytes.Repeat([]byte{v}, sectorSize)...)
		}
		return b
	}
	for _, tc := range []struct {
		buf             string
		min, sector, al int64
		data            bool
		n               int64
	}{
		{"dddd", 8, 0, 8, true, 4},
		{"zzzz", 8, 0, 8, false, 4},
		{"ddzzzzzzzzzzdd", 8, 0, 8, true, 14},      // a zero run shorter than min between data
		{"dzzzzzzzzzzzzzzzzzz", 8, 0, 8, true, 8},  // data up to the alignment, then zeroes
		{"zzzzzzzzzzzd", 8, 0, 8, false, 8},        // zeroes up to the alignment
		{"zzzd", 8, 0, 8, true, 4},                 // a short zero head before data is data
		{"dzzzzzzzzzzzzzzzzzzz", 1, 0, 1, true, 1}, // -S 512
		{"ddzzzzzzzzzzzzzzzzzzzzzzzzzz", 8, 6, 8, true, 2},
	} {
		data, n := allocatedSectorsMin(sec(tc.buf), int64(len(tc.buf)), tc.min, tc.sector, tc.al)
		if !data {
			_, n = allocatedSectors(sec(tc.buf), int64(len(tc.buf)), tc.sector, tc.al)
		}
		if data != tc.data || n != tc.n {
			t.Errorf("%s (min %d at %d): got %v %d, want %v %d", tc.buf, tc.min, tc.sector, data, n, tc.data, tc.n)
		}
	}
}

func TestQemuProgress(t *testing.T) {
	var b bytes.Buffer
	p := &QemuProgress{W: &b}
	for _, v := range []float32{0, 0.5, 1.5, 2.6, 2.7, 50, 100} {
		p.Report(v)
	}
	p.End()
	want := "    (0.00/100%)\r    (1.50/100%)\r    (2.60/100%)\r    (50.00/100%)\r    (100.00/100%)\r\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

type cancelAt struct {
	cancel func()
	at     float32
}

func (c *cancelAt) Report(p float32) {
	if p >= c.at {
		c.cancel()
	}
}
func (c *cancelAt) End() {}

// TestConvertCancel: a cancelled convert stops with the context's error
// and leaves a target that opens and reads.
func TestConvertCancel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.qcow2")
	if err := qcow2.Create(src, qcow2.CreateOptions{Size: 32 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
		t.Fatal(err)
	}
	d, err := formats.Open(src, formats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteAt(bytes.Repeat([]byte{7}, 32<<20), 0, false); err != nil {
		t.Fatal(err)
	}
	d.Close()
	for _, at := range []float32{0, 10} {
		ctx, cancel := context.WithCancel(context.Background())
		dst := filepath.Join(dir, "dst.qcow2")
		err := Convert(ctx, ConvertOptions{Sources: []string{src}, Target: dst, TargetFormat: "qcow2",
			Progress: &cancelAt{cancel: cancel, at: at}})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancel at %v%%: got %v", at, err)
		}
		n, err := formats.Open(dst, formats.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("target after cancel: %v", err)
		}
		buf := make([]byte, 4096)
		if err := n.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		n.Close()
		os.Remove(dst)
	}
}

func TestConvertErrors(t *testing.T) {
	t.Parallel()
	var e *Error
	err := Convert(context.Background(), ConvertOptions{Target: "x"})
	if !errors.As(err, &e) || e.Msg != "Must specify image file name" || !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("got %v", err)
	}
	err = Convert(context.Background(), ConvertOptions{Sources: []string{"/nonexistent"}, Target: "x"})
	if !errors.Is(err, ErrOpen) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v (%#v)", err, err)
	}
	_, err = Measure(context.Background(), MeasureOptions{})
	if !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("measure: got %v", err)
	}
}
