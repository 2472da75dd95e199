package qcow2

import (
	"bytes"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// unhex decodes annotated hex: everything after '#' on a line is a comment.
func unhex(t testing.TB, s string) []byte {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		l, _, _ = strings.Cut(l, "#")
		b.WriteString(strings.Join(strings.Fields(l), ""))
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The header qemu-img create -f qcow2 t.qcow2 1M writes.
const header1M = `
514649fb 00000003        # magic, version 3
0000000000000000         # backing file offset
00000000 00000010        # backing file size, cluster bits (64 KiB)
0000000000100000         # size 1 MiB
00000000 00000001        # crypt method, l1 size
0000000000030000         # l1 table offset
0000000000010000         # refcount table offset
00000001 00000000        # refcount table clusters, snapshots
0000000000000000         # snapshots offset
0000000000000000         # incompatible features
0000000000000000         # compatible features
0000000000000000         # autoclear features
00000004 00000070        # refcount order 4 (16 bits), header length 112
00 00000000000000        # compression type zlib, padding
`

func TestParseHeader(t *testing.T) {
	h, err := parseHeader(unhex(t, header1M))
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Version: 3, ClusterBits: 16, Size: 1 << 20, L1Size: 1, L1TableOffset: 0x30000,
		RefcountTableOffset: 0x10000, RefcountTableClusters: 1, RefcountOrder: 4, HeaderLength: 112}
	if h != want {
		t.Fatalf("got %+v\nwant %+v", h, want)
	}
	buf := make([]byte, 112)
	if n := h.Encode(buf); n != 112 || !bytes.Equal(buf, unhex(t, header1M)) {
		t.Fatalf("encode gives %x", buf)
	}
	v2 := h
	v2.Version = 2
	if n := v2.Encode(buf); n != 72 {
		t.Fatalf("v2 header is %d bytes", n)
	}
	if _, err := parseHeader([]byte("QFI")); err == nil {
		t.Fatal("short header accepted")
	}
	bad := unhex(t, header1M)
	bad[3] = 0
	if _, err := parseHeader(bad); err == nil || err.Error() != "Image is not in qcow2 format" {
		t.Fatalf("bad magic: %v", err)
	}
}

// TestRefcountWidths: entries of every width, where they sit in the block.
func TestRefcountWidths(t *testing.T) {
	for _, tc := range []struct {
		order uint
		i     int64
		v     uint64
		hex   string // the first bytes of the block after setting entry i to v
	}{
		{0, 3, 1, "08"},        // bit 3 of byte 0
		{0, 9, 1, "0002"},      // bit 1 of byte 1
		{1, 1, 3, "0c"},        // bits 2-3
		{2, 1, 0xa, "a0"},      // high nibble
		{3, 2, 0xff, "0000ff"}, // one byte each
		{4, 1, 0x1234, "00001234"},
		{5, 1, 0x12345678, "0000000012345678"},
		{6, 0, 0x0102030405060708, "0102030405060708"},
	} {
		d := &Driver{geometry: geometry{refOrder: tc.order}}
		b := make([]byte, 64)
		d.refSet(b, tc.i, tc.v)
		want := unhex(t, tc.hex)
		if !bytes.Equal(b[:len(want)], want) {
			t.Errorf("order %d: entry %d = %#x gives %x, want %x", tc.order, tc.i, tc.v, b[:len(want)], want)
		}
		if got := d.refGet(b, tc.i); got != tc.v {
			t.Errorf("order %d: read back %#x", tc.order, got)
		}
		for j := int64(0); j < 8; j++ {
			if j != tc.i && d.refGet(b, j) != 0 {
				t.Errorf("order %d: entry %d disturbed", tc.order, j)
			}
		}
	}
}

func TestClusterTypes(t *testing.T) {
	for _, tc := range []struct {
		entry    string
		typ      clusterType
		newAlloc bool
	}{
		{"0000000000000000", clusterUnallocated, true},
		{"0000000000000001", clusterZeroPlain, true},
		{"8000000000050001", clusterZeroAlloc, false}, // COPIED zero-alloc is reused
		{"0000000000050001", clusterZeroAlloc, true},  // shared
		{"8000000000050000", clusterNormal, false},
		{"0000000000050000", clusterNormal, true},
		{"4000000000012345", clusterCompressed, true},
	} {
		e := unhex(t, tc.entry)
		v := layout.L2Entry(0)
		for _, c := range e {
			v = v<<8 | layout.L2Entry(c)
		}
		d := &Driver{}
		if v.Type() != tc.typ || d.needsNewAlloc(v) != tc.newAlloc {
			t.Errorf("%s: %v %v, want %v %v", tc.entry, v.Type(), d.needsNewAlloc(v), tc.typ, tc.newAlloc)
		}
	}
}

func TestFeatureTable(t *testing.T) {
	b := encodeFeatures(qemuFeatures)
	if len(b) != 384 || b[0] != 0 || b[1] != 0 || string(b[2:11]) != "dirty bit" || b[48*5] != 1 {
		t.Fatalf("feature table %x", b[:64])
	}
	if fs := decodeFeatures(b); len(fs) != 8 || fs[4].Name != "extended L2 entries" {
		t.Fatalf("decoded %v", fs)
	}
}

func TestRefcountMetadataSize(t *testing.T) {
	// 64 KiB clusters, 16-bit refcounts: one block describes 32768 clusters
	if got := refcountMetadataSize(10, 65536, 4, false); got != 1 {
		t.Errorf("got %d blocks", got)
	}
	if got := refcountMetadataSize(40000, 65536, 4, false); got != 2 {
		t.Errorf("got %d blocks", got)
	}
	// 512-byte clusters, 64-bit refcounts: 64 clusters a block
	if got := refcountMetadataSize(64, 512, 6, false); got != 2 {
		t.Errorf("got %d blocks", got)
	}
}

func create(t *testing.T, o CreateOptions) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.qcow2")
	if o.ClusterSize == 0 {
		o.ClusterSize = 65536
	}
	if o.Version == 0 {
		o.Version = 3
	}
	if o.RefcountBits == 0 {
		o.RefcountBits = 16
	}
	if err := Create(path, o); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConformance(t *testing.T) {
	for _, o := range []CreateOptions{
		{Size: 4 << 20},
		{Size: 4 << 20, ClusterSize: 512, RefcountBits: 64},
		{Size: 4 << 20, ClusterSize: 4096, Version: 2},
		{Size: 4 << 20, ClusterSize: 2 << 20, RefcountBits: 1},
	} {
		o := o
		t.Run("", func(t *testing.T) {
			imagetest.Conformance(t, func(t *testing.T) *image.Disk {
				d, err := Open(create(t, o), Options{Unmap: true})
				if err != nil {
					t.Fatal(err)
				}
				return image.New(d, "t", image.Options{Unmap: true})
			})
		})
	}
}

// TestReopen: what one driver wrote, another reads, with refcounts intact.
func TestReopen(t *testing.T) {
	path := create(t, CreateOptions{Size: 8 << 20, ClusterSize: 4096, RefcountBits: 2})
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("goqio"), 300000)
	if _, err := d.WriteAt(data, 12345); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err = Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got := make([]byte, len(data))
	if _, err := d.ReadAt(got, 12345); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back differs (%v)", err)
	}
	for ci := int64(0); ci < 10; ci++ {
		if rc, err := d.getRefcount(ci); err != nil || rc != 1 {
			t.Fatalf("cluster %d refcount %d %v", ci, rc, err)
		}
	}
}

// TestOpenErrors: QEMU's refusals.
func TestOpenErrors(t *testing.T) {
	path := create(t, CreateOptions{Size: 1 << 20})
	orig, _ := os.ReadFile(path)
	for _, tc := range []struct {
		off  int
		b    []byte
		want string
	}{
		{4, []byte{0, 0, 0, 9}, "Unsupported qcow2 version 9"},
		{20, []byte{0, 0, 0, 40}, "Unsupported cluster size: 2^40"},
		{36, []byte{0, 0x40, 0, 1}, "Active L1 table too large"},
		{36, []byte{0, 0, 0, 0}, "L1 table is too small"},
		{40, []byte{0, 0, 0, 0, 0, 3, 0, 1}, "Active L1 table offset invalid"},
		{48, []byte{0, 0, 0, 0, 0, 1, 0, 1}, "Reference count table offset invalid"},
		{72, []byte{0, 0, 0, 0, 0, 0, 1, 0}, "Unsupported qcow2 feature(s): Unknown incompatible feature: 100"},
		{72, []byte{0, 0, 0, 0, 0, 0, 0, 2}, "qcow2: Image is corrupt; cannot be opened read/write"},
		{96, []byte{0, 0, 0, 7}, "Reference count entry width too large; may not exceed 64 bits"},
		{100, []byte{0, 0, 0, 50}, "qcow2 header too short"},
	} {
		b := append([]byte(nil), orig...)
		copy(b[tc.off:], tc.b)
		p := filepath.Join(t.TempDir(), "bad.qcow2")
		os.WriteFile(p, b, 0o644)
		_, err := Open(p, Options{})
		if err == nil || err.Error() != tc.want {
			t.Errorf("patch at %d: %v, want %q", tc.off, err, tc.want)
		}
	}
}

// addImageSeeds seeds a fuzz target with the images in testdata/ and a
// bare 1 MiB header.
func addImageSeeds(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.qcow2")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add(unhex(f, header1M))
}

// FuzzOpen: any byte string as an image file opens or fails cleanly, and
// reading it through does not panic.
func FuzzOpen(f *testing.F) {
	addImageSeeds(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := fuzzImage(t, dir, b)
		if !ok {
			return
		}
		within(t, 3*time.Second, func() {
			d, err := Open(p, Options{ReadOnly: true})
			if err != nil {
				return
			}
			defer d.Close()
			d.Snapshots()
			buf := make([]byte, 4096)
			for off := int64(0); off < min(d.Size(), 1<<24); off += 4096 * 61 {
				d.ReadAt(buf[:min(4096, d.Size()-off)], off)
				d.BlockStatus(off, 1<<20, true)
			}
		}, "opening and reading a %d-byte image took more than 3 s", len(b))
	})
}

// FuzzCheck: checking and repairing (check -r all, including a rebuild of
// the refcount structure) any byte string as an image does not panic or
// hang, and its memory stays bounded by the file size; a second check of a
// repaired image runs as well.
func FuzzCheck(f *testing.F) {
	addImageSeeds(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := fuzzImage(t, dir, b)
		if !ok {
			return
		}
		within(t, 5*time.Second, func() {
			for _, fix := range []CheckMode{0, FixLeaks | FixErrors, 0} {
				d, err := OpenForCheck(p, fix != 0)
				if err != nil {
					return
				}
				d.Check(io.Discard, fix)
				d.Close()
			}
		}, "checking a %d-byte image took more than 5 s", len(b))
		if st, err := os.Stat(p); err == nil && st.Size() > int64(len(b))*4+(64<<20) {
			t.Fatalf("repair grew a %d-byte image to %d bytes", len(b), st.Size())
		}
	})
}

// fuzzImage writes a fuzz input of at most 1 MiB as dir/fuzz.qcow2; larger
// ones are skipped.
func fuzzImage(t *testing.T, dir string, b []byte) (string, bool) {
	if len(b) > 1<<20 {
		return "", false
	}
	p := filepath.Join(dir, "fuzz.qcow2")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, true
}

// within runs f and fails t with the message when f takes longer than
// limit (f keeps running; the process ends soon after).
func within(t *testing.T, limit time.Duration, f func(), format string, a ...any) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf(format, a...)
	}
}
