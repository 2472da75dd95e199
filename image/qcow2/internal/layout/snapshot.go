package layout

import "strings"

// Snapshot table entries: a fixed part of SnapshotHeaderLen bytes, extra
// data (the first SnapshotKnownExtra bytes of it known: the 64-bit VM state
// size, the disk size, the instruction count), the id and the name; each
// entry starts 8-byte aligned.
const (
	SnapshotHeaderLen  = 40
	SnapshotKnownExtra = 24
	MaxSnapshotExtra   = 1024 // QEMU's bound on one entry's extra data
	MaxSnapshotsSize   = 1024 * MaxSnapshots
)

// SnapshotEntry is one snapshot table entry as QEMU's qcow2_read_snapshots
// keeps it (enough to check it and to write the table again).
type SnapshotEntry struct {
	L1Offset     uint64
	L1Size       uint32
	VMStateSize  uint64 // the 64-bit size from the extra data when present
	DateSec      uint32
	DateNsec     uint32
	VMClockNsec  uint64
	ExtraSize    uint32 // extra_data_size as read
	DiskSize     uint64 // the image's size when the extra data has none
	ICount       int64  // -1 when the extra data has none
	UnknownExtra []byte // the extra data after the known fields
	ID, Name     string
}

// DecodeSnapshotHeader decodes the fixed part of an entry (b holds at least
// SnapshotHeaderLen bytes), returning the entry without its extra data,
// id and name (DiskSize is diskSize, ICount -1) and the id's and the
// name's lengths.
func DecodeSnapshotHeader(b []byte, diskSize uint64) (SnapshotEntry, int64, int64) {
	e := SnapshotEntry{
		L1Offset:    be.Uint64(b[0:]),
		L1Size:      be.Uint32(b[8:]),
		DateSec:     be.Uint32(b[16:]),
		DateNsec:    be.Uint32(b[20:]),
		VMClockNsec: be.Uint64(b[24:]),
		VMStateSize: uint64(be.Uint32(b[32:])),
		ExtraSize:   be.Uint32(b[36:]),
		DiskSize:    diskSize,
		ICount:      -1,
	}
	return e, int64(be.Uint16(b[12:])), int64(be.Uint16(b[14:]))
}

// DecodeKnownExtra sets the fields the first len(x) (at most
// SnapshotKnownExtra) bytes of the extra data hold.
func (e *SnapshotEntry) DecodeKnownExtra(x []byte) {
	if len(x) >= 8 {
		e.VMStateSize = be.Uint64(x[0:])
	}
	if len(x) >= 16 {
		e.DiskSize = be.Uint64(x[8:])
	}
	if len(x) >= 24 {
		e.ICount = int64(be.Uint64(x[16:]))
	}
}

// DecodeSnapshot decodes one whole entry from the start of b (the rest of
// a table read into memory), returning it and its length without
// alignment padding; false when b cannot hold it. Extra data beyond
// MaxSnapshotExtra is kept as it is: bounding it is the reader's choice.
func DecodeSnapshot(b []byte, diskSize uint64) (SnapshotEntry, int64, bool) {
	if len(b) < SnapshotHeaderLen {
		return SnapshotEntry{}, 0, false
	}
	e, idLen, nameLen := DecodeSnapshotHeader(b, diskSize)
	off := int64(SnapshotHeaderLen)
	n := off + int64(e.ExtraSize) + idLen + nameLen
	if n > int64(len(b)) {
		return SnapshotEntry{}, 0, false
	}
	known := min(SnapshotKnownExtra, int64(e.ExtraSize))
	e.DecodeKnownExtra(b[off : off+known])
	if int64(e.ExtraSize) > SnapshotKnownExtra {
		e.UnknownExtra = append([]byte(nil), b[off+SnapshotKnownExtra:off+int64(e.ExtraSize)]...)
	}
	off += int64(e.ExtraSize)
	e.ID = string(b[off : off+idLen])
	off += idLen
	e.Name = string(b[off : off+nameLen])
	return e, n, true
}

// cstr is s as C sees it: up to the first NUL.
func cstr(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

// EncodedLen is the bytes Encode writes for the entry: QEMU's
// qcow2_write_snapshots writes at least the known extra data, and the id
// and name as C strings.
func (e *SnapshotEntry) EncodedLen() int64 {
	return SnapshotHeaderLen + max(SnapshotKnownExtra, int64(e.ExtraSize)) + int64(len(cstr(e.ID))+len(cstr(e.Name)))
}

// Encode writes the entry at the start of b (at least EncodedLen bytes,
// zeroed) as QEMU's qcow2_write_snapshots does, returning the bytes
// written (EncodedLen when UnknownExtra holds ExtraSize-24 bytes).
func (e *SnapshotEntry) Encode(b []byte) int64 {
	be.PutUint64(b[0:], e.L1Offset)
	be.PutUint32(b[8:], e.L1Size)
	id, name := cstr(e.ID), cstr(e.Name)
	be.PutUint16(b[12:], uint16(len(id)))
	be.PutUint16(b[14:], uint16(len(name)))
	be.PutUint32(b[16:], e.DateSec)
	be.PutUint32(b[20:], e.DateNsec)
	be.PutUint64(b[24:], e.VMClockNsec)
	if e.VMStateSize <= 0xffffffff {
		be.PutUint32(b[32:], uint32(e.VMStateSize))
	}
	be.PutUint32(b[36:], uint32(max(SnapshotKnownExtra, int64(e.ExtraSize))))
	pos := int64(SnapshotHeaderLen)
	be.PutUint64(b[pos:], e.VMStateSize)
	be.PutUint64(b[pos+8:], e.DiskSize)
	be.PutUint64(b[pos+16:], uint64(e.ICount))
	pos += SnapshotKnownExtra
	if int64(e.ExtraSize) > SnapshotKnownExtra {
		pos += int64(copy(b[pos:], e.UnknownExtra))
	}
	pos += int64(copy(b[pos:], id))
	pos += int64(copy(b[pos:], name))
	return pos
}
