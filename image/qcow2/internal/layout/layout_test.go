package layout

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestHeaderFields(t *testing.T) {
	h := Header{Version: 3, ClusterBits: 16, Size: 1 << 30, L1Size: 2, L1TableOffset: 0x30000,
		RefcountTableOffset: 0x10000, RefcountTableClusters: 1, NbSnapshots: 3, SnapshotsOffset: 0x90000,
		IncompatibleFeatures: IncompatDirty, RefcountOrder: 4, HeaderLength: HeaderSize}
	full := make([]byte, 512)
	if n := h.Encode(full); n != HeaderSize {
		t.Fatalf("Encode: %d bytes", n)
	}
	for _, tc := range []struct {
		first, last Field
		off, n      int
	}{
		{FieldSize, FieldSize, 24, 8},
		{FieldL1Size, FieldL1TableOffset, 36, 12},
		{FieldL1TableOffset, FieldRefcountTableClusters, 40, 20},
		{FieldRefcountTableOffset, FieldRefcountTableClusters, 48, 12},
		{FieldNbSnapshots, FieldNbSnapshots, 60, 4},
		{FieldNbSnapshots, FieldSnapshotsOffset, 60, 12},
		{FieldIncompatible, FieldIncompatible, 72, 8},
	} {
		off, b := h.EncodeFields(tc.first, tc.last)
		if off != int64(tc.off) || len(b) != tc.n || !bytes.Equal(b, full[tc.off:tc.off+tc.n]) {
			t.Errorf("EncodeFields(%v, %v) = %d, %x; want %d, %x", tc.first, tc.last, off, b, tc.off, full[tc.off:tc.off+tc.n])
		}
	}
	// a v2 header encodes its fields only, the run of v3 fields all the same
	v2 := h
	v2.Version = 2
	b := bytes.Repeat([]byte{0xaa}, 512)
	if n := v2.Encode(b); n != HeaderV2Size || b[HeaderV2Size] != 0xaa {
		t.Fatalf("v2 Encode wrote %d bytes, b[72] = %#x", n, b[HeaderV2Size])
	}
	if _, f := v2.EncodeFields(FieldIncompatible, FieldIncompatible); binary.BigEndian.Uint64(f) != IncompatDirty {
		t.Fatalf("v2 incompatible field: %x", f)
	}
	h2, err := DecodeHeader(full)
	if err != nil || h2 != h {
		t.Fatalf("DecodeHeader: %+v, %v", h2, err)
	}
	if _, err := DecodeHeader(full[:71]); err != ErrNotQcow2 {
		t.Fatalf("short header: %v", err)
	}
}

func TestEntries(t *testing.T) {
	e := L2At(0x50000)
	if e.Offset() != 0x50000 || !e.Copied() || e.Compressed() || e.Zero() || e.Type() != ClusterNormal {
		t.Fatalf("L2At: %#x %v", uint64(e), e.Type())
	}
	if e.WithCopied(false) != L2Entry(0x50000) || L2Entry(0x50000).WithCopied(true) != e {
		t.Fatal("WithCopied")
	}
	if (L2Entry(0x50000)|L2Zero).Type() != ClusterZeroAlloc || L2Zero.Type() != ClusterZeroPlain || L2Entry(0).Type() != ClusterUnallocated {
		t.Fatal("zero types")
	}
	if L2Entry(0x0300000000000002).Reserved() != 0x0300000000000002 || L1Entry(0x0100000000000001).Reserved() == 0 {
		t.Fatal("reserved bits")
	}
	if l := L1At(0x40000); l.Offset() != 0x40000 || !l.Copied() || l.WithCopied(false) != 0x40000 {
		t.Fatal("L1At")
	}
	for _, cb := range []uint{9, 12, 16, 21} {
		for _, tc := range []struct{ off, n int64 }{{0x12345, 1}, {0x50000, 512}, {0x501ff, 2}, {0x7fff0, 1 << cb}} {
			c := Compressed(cb, tc.off, tc.n)
			off, size := c.CompressedRange(cb)
			if !c.Compressed() || c.Type() != ClusterCompressed || off != tc.off || size < tc.n || size >= tc.n+512 {
				t.Errorf("cluster bits %d, %d bytes at %#x: %#x decodes to %d bytes at %#x", cb, tc.n, tc.off, uint64(c), size, off)
			}
		}
		if MaxCompressedOffset(cb) != min(uint64(1)<<(62-(cb-8))-1, MaxClusterOffset) {
			t.Errorf("MaxCompressedOffset(%d)", cb)
		}
	}
	b := SubAllocRange(2, 5) | SubZeroRange(7, 8)
	if b.Alloc() != 0x1c || b.Zeroes() != 0x80 || !b.Allocated(2) || b.Allocated(5) || !b.IsZero(7) || b.Conflicting() {
		t.Fatalf("bitmap %#x", uint64(b))
	}
	if b.FirstAlloc() != 2 || b.LastAllocFromEnd() != 27 || L2Bitmap(0).FirstAlloc() != 32 {
		t.Fatal("FirstAlloc/LastAllocFromEnd")
	}
	if !(SubAllocRange(3, 4) | SubZeroRange(3, 4)).Conflicting() || BitmapAllAlloc|BitmapAllZeroes != ^L2Bitmap(0) {
		t.Fatal("Conflicting")
	}
}
