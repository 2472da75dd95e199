package qcow2

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Per-parser fuzz targets. Each puts the fuzzed bytes into one structure of
// a valid image (the corpus's valid.qcow2: 64 KiB clusters, 4 MiB, header
// at 0, refcount table 0x10000, refcount block 0x20000, L1 0x30000, L2
// 0x40000, data 0x50000-0x7ffff) and drives the code that parses it:
// opening, reading, writing, mapping, listing snapshots, checking and
// repairing. Nothing may panic or hang; seeds come from testdata/crafted.
// The decoders themselves (header, extensions, entries, refcount blocks,
// snapshot table, bitmap directory) are fuzzed without a file, with their
// round trips, in internal/layout (fuzz_test.go).

const corpusDir = "../../testdata/crafted"

// corpusImages returns the images of the crafted corpus.
func corpusImages(tb testing.TB) [][]byte {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.qcow2.gz"))
	var out [][]byte
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			tb.Fatal(err)
		}
		r, err := gzip.NewReader(fh)
		if err != nil {
			tb.Fatal(err)
		}
		b, err := io.ReadAll(r)
		fh.Close()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// validImage is the corpus's valid image.
func validImage(tb testing.TB) []byte { return corpusImage(tb, "valid") }

// corpusImage is the corpus's image NAME.qcow2.gz.
func corpusImage(tb testing.TB, name string) []byte {
	fh, err := os.Open(filepath.Join(corpusDir, name+".qcow2.gz"))
	if err != nil {
		tb.Fatal(err)
	}
	defer fh.Close()
	r, err := gzip.NewReader(fh)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// slice returns b[off:off+n], zero-padded when b is shorter.
func slice(b []byte, off, n int) []byte {
	out := make([]byte, n)
	if off < len(b) {
		copy(out, b[off:])
	}
	return out
}

// exercise opens the image at p read-write (else read-only), reads and
// maps all of it, writes a little, lists snapshots, then checks and
// repairs it, all within limit (generous: checking is proportional to the
// L1 size times the L2 size, as in QEMU, and fuzz workers share the CPUs).
func exercise(t *testing.T, p string, limit time.Duration) {
	if raceEnabled {
		limit *= 10 // the race detector slows this ~10x
	}
	within(t, limit, func() {
		d, err := Open(p, Options{})
		if err != nil {
			if d, err = Open(p, Options{ReadOnly: true}); err != nil {
				return
			}
		}
		d.Snapshots()
		buf := make([]byte, 65536)
		for off := int64(0); off < min(d.Size(), 8<<20); off += 65536 {
			d.ReadAt(buf[:min(65536, d.Size()-off)], off)
			d.BlockStatus(off, 65536, true)
		}
		if d.Size() > 0 {
			d.WriteAt(bytes.Repeat([]byte{9}, 4096), min(65536, d.Size()-1)&^511)
			d.WriteZeroes(0, min(d.Size(), 65536)&^511, 0)
		}
		d.Close()
		for _, fix := range []CheckMode{0, FixLeaks | FixErrors} {
			c, err := OpenForCheck(p, fix != 0)
			if err != nil {
				return
			}
			c.Check(io.Discard, fix)
			c.Close()
		}
	}, "opening, using and checking the image took more than %v", limit)
}

// withPatch writes valid with b copied at off (and the file grown to hold
// it) into dir, returning the path.
func withPatch(t *testing.T, dir string, valid []byte, off int, b []byte) string {
	img := bytes.Clone(valid)
	if end := off + len(b); end > len(img) {
		img = append(img, make([]byte, end-len(img))...)
	}
	copy(img[off:], b)
	p := filepath.Join(dir, "f.qcow2")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzHeader: any header on the valid image opens or fails cleanly (the
// parser's round trip is layout's FuzzHeader).
func FuzzHeader(f *testing.F) {
	for _, img := range corpusImages(f) {
		f.Add(slice(img, 0, 112))
	}
	valid := validImage(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseHeader(b); err != nil {
			return
		}
		if len(b) <= 4096 {
			exercise(t, withPatch(t, dir, valid, 0, b), 20*time.Second)
		}
	})
}

// FuzzExtensions: any bytes in the header extension area (after the
// 104-byte header up to the end of the first cluster).
func FuzzExtensions(f *testing.F) {
	for _, img := range corpusImages(f) {
		f.Add(slice(img, 104, 512))
	}
	f.Add([]byte{0xe2, 0x79, 0x2a, 0xca, 0, 0, 0, 5, 'q', 'c', 'o', 'w', '2', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x68, 0x53, 0x7f, 0x6d, 0, 0, 0, 48, 0, 0, 'd', 'i', 'r', 't', 'y'})
	valid := validImage(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 65536-104 {
			return
		}
		exercise(t, withPatch(t, dir, valid, 104, b), 20*time.Second)
	})
}

// FuzzL1L2: any L1 entry and any L2 table contents.
func FuzzL1L2(f *testing.F) {
	for _, img := range corpusImages(f) {
		f.Add(binary.BigEndian.Uint64(slice(img, 0x30000, 8)), slice(img, 0x40000, 256))
	}
	valid := validImage(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, l1 uint64, l2 []byte) {
		if len(l2) > 65536 {
			return
		}
		img := bytes.Clone(valid)
		binary.BigEndian.PutUint64(img[0x30000:], l1)
		exercise(t, withPatch(t, dir, img, 0x40000, l2), 20*time.Second)
	})
}

// FuzzRefcounts: the driver's refcount entry accessors for every width
// (layout's FuzzRefcounts has the encoding's own properties), and any
// refcount table entry and refcount block contents under writes and check.
func FuzzRefcounts(f *testing.F) {
	for _, img := range corpusImages(f) {
		f.Add(uint8(4), binary.BigEndian.Uint64(slice(img, 0x10000, 8)), slice(img, 0x20000, 64))
	}
	valid := validImage(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, order uint8, rt uint64, rb []byte) {
		if len(rb) > 65536 {
			return
		}
		d := &Driver{geometry: geometry{refOrder: uint(order % 7)}}
		bits := int64(1) << d.refOrder
		block := bytes.Clone(rb)
		for i := int64(0); i < int64(len(block))*8/bits; i++ {
			v := d.refGet(block, i)
			d.refSet(block, i, v)
		}
		if !bytes.Equal(block, rb) {
			t.Fatalf("refcount width %d: get/set changed the block", bits)
		}
		img := bytes.Clone(valid)
		binary.BigEndian.PutUint64(img[0x10000:], rt)
		exercise(t, withPatch(t, dir, img, 0x20000, rb), 20*time.Second)
	})
}

// FuzzSnapshotTable: any snapshot table (count and contents), placed after
// the image's last cluster.
func FuzzSnapshotTable(f *testing.F) {
	entry := make([]byte, 48)
	binary.BigEndian.PutUint64(entry, 0x30000) // snapshot L1: the active one
	binary.BigEndian.PutUint32(entry[8:], 1)
	binary.BigEndian.PutUint16(entry[12:], 1) // id "1"
	binary.BigEndian.PutUint16(entry[14:], 1) // name "s"
	entry[40], entry[41] = '1', 's'
	f.Add(uint16(1), entry)
	f.Add(uint16(2), append(bytes.Clone(entry), entry...))
	f.Add(uint16(1000), entry)
	valid := validImage(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, n uint16, tbl []byte) {
		if len(tbl) > 1<<20 {
			return
		}
		img := bytes.Clone(valid)
		at := len(img)
		binary.BigEndian.PutUint32(img[60:], uint32(n))
		binary.BigEndian.PutUint64(img[64:], uint64(at))
		exercise(t, withPatch(t, dir, img, at, tbl), 20*time.Second)
	})
}
