package layout

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
)

// Fuzz targets of the format layer, without a file: every decoder takes
// any bytes without panicking, and what it decodes encodes back to the
// same values. (The driver's fuzz targets in image/qcow2 put the same
// structures into an image and open, use and check it.)

// seedHeader is a v3 header as qemu-img create writes it for 1 MiB.
func seedHeader() []byte {
	h := Header{Version: 3, ClusterBits: 16, Size: 1 << 20, L1Size: 1, L1TableOffset: 0x30000,
		RefcountTableOffset: 0x10000, RefcountTableClusters: 1, RefcountOrder: 4, HeaderLength: HeaderSize}
	b := make([]byte, HeaderSize)
	h.Encode(b)
	return b
}

// FuzzHeader: DecodeHeader takes any bytes; a decoded header encodes to
// bytes that decode to it again, and each field run of EncodeFields is
// the same bytes as the whole header's.
func FuzzHeader(f *testing.F) {
	f.Add(seedHeader())
	v2 := seedHeader()[:HeaderV2Size]
	binary.BigEndian.PutUint32(v2[OffVersion:], 2)
	f.Add(v2)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeader(b)
		if err != nil {
			return
		}
		out := bytes.Repeat([]byte{0xa5}, 512)
		n := h.Encode(out)
		h2, err := DecodeHeader(out)
		if err != nil || h2 != h {
			t.Fatalf("header does not survive Encode: %+v\n%+v (%v)", h, h2, err)
		}
		if h.Version < 3 {
			if n != HeaderV2Size || out[HeaderV2Size] != 0xa5 {
				t.Fatalf("v2 Encode wrote %d bytes", n)
			}
			return
		}
		fields := []Field{FieldBackingFileOffset, FieldBackingFileSize, FieldSize, FieldL1Size, FieldL1TableOffset,
			FieldRefcountTableOffset, FieldRefcountTableClusters, FieldNbSnapshots, FieldSnapshotsOffset,
			FieldIncompatible, FieldCompatible, FieldAutoclear}
		for i, first := range fields {
			for _, last := range fields[i:] {
				off, run := h.EncodeFields(first, last)
				if off != int64(first.Off) || !bytes.Equal(run, out[first.Off:last.End()]) {
					t.Fatalf("EncodeFields(%v, %v) = %d, %x; the header has %x", first, last, off, run, out[first.Off:last.End()])
				}
			}
		}
	})
}

// FuzzExtensions: any extension area parses or fails cleanly; a parsed
// list encodes to an area that parses to the same list; the feature name
// table and the bitmaps and crypto extensions decode any bytes and encode
// back.
func FuzzExtensions(f *testing.F) {
	f.Add(EncodeExtensions([]Extension{{ExtBackingFormat, []byte("qcow2")}, {ExtFeatureTable, EncodeFeatures(QemuFeatures)}}))
	f.Add(EncodeExtensions([]Extension{{ExtBitmaps, BitmapsExt{1, 0, 24, 0x50000}.Encode()}, {ExtCryptoHeader, CryptoExt{0x10000, 0x1000}.Encode()}}))
	f.Add([]byte{0x68, 0x53, 0xf8, 0x57, 0, 0, 0, 48, 0, 0, 'd', 'i', 'r', 't', 'y'})
	f.Fuzz(func(t *testing.T, b []byte) {
		list, err := ParseExtensions(b)
		if err != nil && err != ErrExtensionTooLarge {
			t.Fatalf("ParseExtensions: %v", err)
		}
		list2, err := ParseExtensions(EncodeExtensions(list))
		if err != nil || len(list2) != len(list) {
			t.Fatalf("extensions do not survive encoding: %d, then %d (%v)", len(list), len(list2), err)
		}
		for i := range list {
			if list[i].Type != list2[i].Type || !bytes.Equal(list[i].Data, list2[i].Data) {
				t.Fatalf("extension %d: %+v, then %+v", i, list[i], list2[i])
			}
		}
		fs := DecodeFeatures(b)
		if fs2 := DecodeFeatures(EncodeFeatures(fs)); !reflect.DeepEqual(fs, fs2) && len(fs) > 0 {
			t.Fatalf("feature table: %+v, then %+v", fs, fs2)
		}
		if e, ok := DecodeBitmapsExt(b); ok {
			if !bytes.Equal(e.Encode(), b) {
				t.Fatalf("bitmaps extension %x encodes as %x", b, e.Encode())
			}
		}
		if e, ok := DecodeCryptoExt(b); ok {
			if !bytes.Equal(e.Encode(), b) {
				t.Fatalf("crypto extension %x encodes as %x", b, e.Encode())
			}
		}
	})
}

// FuzzSnapshotTable: a table of entries decodes entry by entry or stops
// cleanly; each entry re-encodes to a fixed point, and with its known
// extra data and C-string id and name, to itself.
func FuzzSnapshotTable(f *testing.F) {
	e := SnapshotEntry{L1Offset: 0x30000, L1Size: 1, ExtraSize: 24, DiskSize: 1 << 20, ICount: -1, ID: "1", Name: "s"}
	b := make([]byte, e.EncodedLen())
	e.Encode(b)
	f.Add(b, uint64(1<<20))
	f.Add(append(append(bytes.Clone(b), 0, 0, 0, 0, 0, 0), b...), uint64(0))
	f.Fuzz(func(t *testing.T, tbl []byte, size uint64) {
		for pos := int64(0); pos < int64(len(tbl)); pos = (pos + 7) &^ 7 {
			e, n, ok := DecodeSnapshot(tbl[pos:], size)
			if !ok {
				return
			}
			if n < SnapshotHeaderLen || pos+n > int64(len(tbl)) {
				t.Fatalf("entry at %d: length %d of %d", pos, n, len(tbl))
			}
			pos += n
			out := make([]byte, e.EncodedLen())
			if w := e.Encode(out); w != e.EncodedLen() {
				t.Fatalf("Encode wrote %d bytes, EncodedLen %d", w, e.EncodedLen())
			}
			e2, n2, ok := DecodeSnapshot(out, size)
			if !ok || n2 != int64(len(out)) {
				t.Fatalf("re-encoded entry does not decode: %v %d/%d", ok, n2, len(out))
			}
			out2 := make([]byte, e2.EncodedLen())
			e2.Encode(out2)
			if !bytes.Equal(out, out2) {
				t.Fatalf("re-encoding is no fixed point:\n%x\n%x", out, out2)
			}
			if e.ExtraSize >= SnapshotKnownExtra && cstr(e.ID) == e.ID && cstr(e.Name) == e.Name && !reflect.DeepEqual(e, e2) {
				t.Fatalf("entry does not survive encoding:\n%+v\n%+v", e, e2)
			}
		}
	})
}

// FuzzBitmapDirectory: a directory decodes entry by entry or stops
// cleanly, and each entry encodes back to itself.
func FuzzBitmapDirectory(f *testing.F) {
	e := BitmapDirEntry{TableOffset: 0x60000, TableSize: 1, Type: BitmapTypeDirtyTracking, GranularityBits: 16, Name: "b0"}
	b := make([]byte, e.Size())
	e.Encode(b)
	f.Add(append(bytes.Clone(b), b...))
	f.Fuzz(func(t *testing.T, dir []byte) {
		for pos := int64(0); pos < int64(len(dir)); {
			e, n, ok := DecodeBitmapDirEntry(dir[pos:])
			if !ok {
				return
			}
			if n != e.Size() || n < BitmapDirEntryLen || n%8 != 0 {
				t.Fatalf("entry at %d: length %d, Size %d", pos, n, e.Size())
			}
			out := make([]byte, n)
			e.Encode(out)
			e2, n2, ok := DecodeBitmapDirEntry(out)
			if !ok || n2 != n || !reflect.DeepEqual(e, e2) {
				t.Fatalf("entry does not survive encoding:\n%+v\n%+v", e, e2)
			}
			if !bytes.Equal(out[:BitmapDirEntryLen], dir[pos:pos+BitmapDirEntryLen]) {
				t.Fatalf("fixed part %x encodes as %x", dir[pos:pos+BitmapDirEntryLen], out[:BitmapDirEntryLen])
			}
			pos += n
		}
	})
}

// FuzzEntries: the entry methods agree with the bits they name, and
// compressed descriptors round-trip at every cluster size.
func FuzzEntries(f *testing.F) {
	f.Add(uint64(0x8000000000050000), uint64(0x00000003_0000000c), uint8(16), int64(0x12345), int64(777))
	f.Add(uint64(0x4000000000012345), uint64(0), uint8(9), int64(0x7fff0), int64(1))
	f.Fuzz(func(t *testing.T, w, bm uint64, cb uint8, off, n int64) {
		cbits := uint(MinClusterBits + cb%(MaxClusterBits-MinClusterBits+1))
		e := L2Entry(w)
		if e.Offset() != int64(w&L2OffsetMask) || e.Copied() != (w>>63 == 1) || e.Compressed() != (w>>62&1 == 1) || e.Zero() != (w&1 == 1) {
			t.Fatalf("L2 entry %#x: bits", w)
		}
		if e.WithCopied(true) != L2Entry(w|1<<63) || e.WithCopied(false) != L2Entry(w&^(1<<63)) {
			t.Fatalf("L2 entry %#x: WithCopied", w)
		}
		switch typ := e.Type(); {
		case e.Compressed() != (typ == ClusterCompressed),
			typ == ClusterNormal && (e.Offset() == 0 || e.Zero()),
			typ == ClusterUnallocated && (e.Offset() != 0 || e.Zero()):
			t.Fatalf("L2 entry %#x: type %v", w, typ)
		}
		if l := L1Entry(w); l.Offset() != int64(w&L1OffsetMask) || l.Reserved() != w&L1ReservedMask || l.Copied() != (w>>63 == 1) {
			t.Fatalf("L1 entry %#x", w)
		}
		coff, csize := e.CompressedRange(cbits)
		if uint64(coff) >= 1<<(62-(cbits-8)) || csize < 1 || csize > 1<<(cbits+1) {
			t.Fatalf("compressed %#x, %d cluster bits: %d bytes at %#x", w, cbits, csize, coff)
		}
		off = int64(uint64(off) % (MaxCompressedOffset(cbits) + 1))
		n = 1 + int64(uint64(n)%(1<<cbits))
		if off+n-1 <= int64(MaxCompressedOffset(cbits)) {
			c := Compressed(cbits, off, n)
			if o, s := c.CompressedRange(cbits); !c.Compressed() || c.Copied() || o != off || s < n || s >= n+512 {
				t.Fatalf("%d bytes at %#x, %d cluster bits: %#x decodes to %d bytes at %#x", n, off, cbits, uint64(c), s, o)
			}
		}
		b := L2Bitmap(bm)
		if uint64(b.Alloc())|uint64(b.Zeroes())<<32 != bm || b.Conflicting() != (b.Alloc()&b.Zeroes() != 0) {
			t.Fatalf("bitmap %#x", bm)
		}
		from, to := int64(cb%33), int64(uint64(off)%33)
		if from <= to {
			r := SubAllocRange(from, to)
			for sc := int64(0); sc < SubclustersPerCluster; sc++ {
				if r.Allocated(sc) != (sc >= from && sc < to) || SubZeroRange(from, to).IsZero(sc) != r.Allocated(sc) {
					t.Fatalf("range [%d, %d) at %d", from, to, sc)
				}
			}
		}
	})
}

// FuzzRefcounts: at every width, reading and writing back every entry of
// any block leaves it as it was, and a written entry reads back.
func FuzzRefcounts(f *testing.F) {
	f.Add(uint8(4), []byte{0, 1, 0, 1, 0, 0, 0, 2}, uint16(3), uint64(5))
	f.Fuzz(func(t *testing.T, o uint8, block []byte, i uint16, v uint64) {
		order := uint(o % (MaxRefcountOrder + 1))
		b := bytes.Clone(block)
		n := int64(len(b)) * 8 >> order
		for j := int64(0); j < n; j++ {
			RefcountSet(b, order, j, RefcountGet(b, order, j))
		}
		if !bytes.Equal(b, block) {
			t.Fatalf("order %d: get/set changed the block", order)
		}
		if n == 0 {
			return
		}
		j := int64(i) % n
		RefcountSet(b, order, j, v&RefcountMax(order))
		if got := RefcountGet(b, order, j); got != v&RefcountMax(order) {
			t.Fatalf("order %d entry %d: %#x, want %#x", order, j, got, v&RefcountMax(order))
		}
		for k := int64(0); k < n; k++ {
			if k != j && RefcountGet(b, order, k) != RefcountGet(block, order, k) {
				t.Fatalf("order %d: setting entry %d changed entry %d", order, j, k)
			}
		}
	})
}
