package layout

import (
	"bytes"
	"testing"
)

// TestWalkExtensions: extensions in file order, up to the end marker; an
// extension header or data past the area is too large, after the ones
// before it were seen.
func TestWalkExtensions(t *testing.T) {
	area := EncodeExtensions([]Extension{{ExtBackingFormat, []byte("raw")}, {0x12345678, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}}})
	if len(area) != 16+24+8 {
		t.Fatalf("area of %d bytes", len(area))
	}
	list, err := ParseExtensions(append(area, 0xff)) // bytes after the end marker are not read
	if err != nil || len(list) != 2 || string(list[0].Data) != "raw" || list[1].Type != 0x12345678 || len(list[1].Data) != 9 {
		t.Fatalf("%+v, %v", list, err)
	}
	for _, tc := range []struct {
		cut, seen int
		err       error
	}{{4, 0, ErrExtensionTooLarge}, {8 + 2, 0, ErrExtensionTooLarge}, {8 + 3, 1, nil}, {16 + 8 + 5, 1, ErrExtensionTooLarge}} {
		var seen int
		err := WalkExtensions(area[:tc.cut], func(uint32, []byte) error { seen++; return nil })
		if err != tc.err || seen != tc.seen {
			t.Errorf("cut at %d: %v after %d extensions", tc.cut, err, seen)
		}
	}
	if list, err := ParseExtensions(area[:16]); err != nil || len(list) != 1 {
		t.Errorf("area ending without an end marker: %+v, %v", list, err)
	}
	b := make([]byte, 15)
	if _, ok := PutExtension(b, 0, ExtBackingFormat, []byte("qcow2")); ok {
		t.Error("PutExtension past the buffer")
	}
	if n, ok := PutExtension(make([]byte, 16), 0, ExtBackingFormat, []byte("qcow2")); !ok || n != 16 {
		t.Errorf("PutExtension: %d, %v", n, ok)
	}
}

func TestSnapshotAndBitmapEntries(t *testing.T) {
	e := SnapshotEntry{L1Offset: 0x30000, L1Size: 2, VMStateSize: 1 << 33, DateSec: 1, DateNsec: 2, VMClockNsec: 3,
		ExtraSize: 32, DiskSize: 1 << 30, ICount: -1, UnknownExtra: []byte("8 bytes!"), ID: "1", Name: "snap"}
	b := make([]byte, e.EncodedLen())
	if n := e.Encode(b); n != 40+32+1+4 || n != int64(len(b)) {
		t.Fatalf("Encode: %d bytes", n)
	}
	if b[32] != 0 || b[35] != 0 { // the 32-bit VM state size: 0 when it does not fit
		t.Fatalf("32-bit VM state size %x", b[32:36])
	}
	got, n, ok := DecodeSnapshot(b, 0)
	if !ok || n != int64(len(b)) || got.VMStateSize != e.VMStateSize || got.ID != "1" || got.Name != "snap" ||
		!bytes.Equal(got.UnknownExtra, e.UnknownExtra) || got.DiskSize != e.DiskSize || got.ICount != -1 {
		t.Fatalf("DecodeSnapshot: %+v %d %v", got, n, ok)
	}
	if _, _, ok := DecodeSnapshot(b[:len(b)-1], 0); ok {
		t.Fatal("a cut entry decodes")
	}
	// without extra data: the sizes from the fixed part and the image
	short := bytes.Clone(b[:40])
	be.PutUint32(short[36:], 0)
	be.PutUint16(short[12:], 0)
	be.PutUint16(short[14:], 0)
	be.PutUint32(short[32:], 77)
	if got, _, ok := DecodeSnapshot(short, 5<<20); !ok || got.VMStateSize != 77 || got.DiskSize != 5<<20 || got.ICount != -1 {
		t.Fatalf("entry without extra data: %+v", got)
	}

	d := BitmapDirEntry{TableOffset: 0x70000, TableSize: 3, Flags: BitmapFlagAuto, Type: BitmapTypeDirtyTracking, GranularityBits: 16, Name: "bitmap0"}
	db := make([]byte, d.Size())
	if n := d.Encode(db); n != 32 {
		t.Fatalf("bitmap entry of %d bytes", n)
	}
	if got, n, ok := DecodeBitmapDirEntry(db); !ok || n != 32 || got.Name != "bitmap0" || got.TableOffset != 0x70000 || got.Flags != BitmapFlagAuto {
		t.Fatalf("DecodeBitmapDirEntry: %+v %d %v", got, n, ok)
	}
	if _, _, ok := DecodeBitmapDirEntry(db[:31]); ok {
		t.Fatal("a cut bitmap entry decodes")
	}
}
