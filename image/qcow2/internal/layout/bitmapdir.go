package layout

// Persistent dirty bitmaps: the bitmap directory (pointed to by the
// bitmaps extension) is a list of entries, each BitmapDirEntryLen bytes,
// extra data and the name, padded to 8 bytes; each bitmap's table holds
// one word per bitmap cluster.
const (
	BitmapDirEntryLen = 24

	BitmapFlagInUse       = 1 << 0
	BitmapFlagAuto        = 1 << 1
	BitmapFlagExtraCompat = 1 << 2
	BitmapReservedFlags   = ^uint32(BitmapFlagInUse | BitmapFlagAuto | BitmapFlagExtraCompat)

	BitmapTypeDirtyTracking = 1

	// bitmap table entries: the data cluster's offset, or with offset 0,
	// bit 0 set for a cluster of all ones
	BitmapTableReserved = 0xff000000000001fe
	BitmapTableAllOnes  = 1
)

// BitmapDirEntry is an entry of the bitmap directory.
type BitmapDirEntry struct {
	TableOffset     uint64
	TableSize       uint32 // in entries
	Flags           uint32
	Type            uint8
	GranularityBits uint8
	ExtraData       []byte
	Name            string
}

// BitmapDirEntrySize is the bytes an entry with extra bytes of extra data
// and a name of nameLen bytes takes in the directory, padding included.
func BitmapDirEntrySize(extra, nameLen int64) int64 {
	return (BitmapDirEntryLen + extra + nameLen + 7) &^ 7
}

// DecodeBitmapDirEntry decodes the entry at the start of b (the rest of
// the directory), returning it and the bytes it takes with its padding;
// false when b cannot hold it.
func DecodeBitmapDirEntry(b []byte) (BitmapDirEntry, int64, bool) {
	if len(b) < BitmapDirEntryLen {
		return BitmapDirEntry{}, 0, false
	}
	nameLen := int64(be.Uint16(b[18:]))
	extra := int64(be.Uint32(b[20:]))
	n := BitmapDirEntrySize(extra, nameLen)
	if n > int64(len(b)) {
		return BitmapDirEntry{}, 0, false
	}
	e := BitmapDirEntry{
		TableOffset:     be.Uint64(b[0:]),
		TableSize:       be.Uint32(b[8:]),
		Flags:           be.Uint32(b[12:]),
		Type:            b[16],
		GranularityBits: b[17],
		Name:            string(b[BitmapDirEntryLen+extra : BitmapDirEntryLen+extra+nameLen]),
	}
	if extra != 0 {
		e.ExtraData = append([]byte(nil), b[BitmapDirEntryLen:BitmapDirEntryLen+extra]...)
	}
	return e, n, true
}

// Size is the bytes the entry takes in the directory.
func (e *BitmapDirEntry) Size() int64 {
	return BitmapDirEntrySize(int64(len(e.ExtraData)), int64(len(e.Name)))
}

// Encode writes the entry at the start of b (at least Size bytes, zeroed)
// and returns Size.
func (e *BitmapDirEntry) Encode(b []byte) int64 {
	be.PutUint64(b[0:], e.TableOffset)
	be.PutUint32(b[8:], e.TableSize)
	be.PutUint32(b[12:], e.Flags)
	b[16] = e.Type
	b[17] = e.GranularityBits
	be.PutUint16(b[18:], uint16(len(e.Name)))
	be.PutUint32(b[20:], uint32(len(e.ExtraData)))
	n := copy(b[BitmapDirEntryLen:], e.ExtraData)
	copy(b[BitmapDirEntryLen+n:], e.Name)
	return e.Size()
}
