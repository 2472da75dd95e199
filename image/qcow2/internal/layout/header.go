package layout

import (
	"encoding/binary"
	"errors"
)

// Magic is the first word of every qcow2 image: "QFI\xfb".
const Magic = 0x514649fb

// Header sizes.
const (
	HeaderV2Size = 72  // the whole v2 header
	HeaderV3Size = 104 // the fixed part every v3 header has
	HeaderSize   = 112 // what QEMU 7.2 writes: v3 with compression type and padding
)

// Byte offsets of the header fields.
const (
	OffMagic                 = 0   // uint32
	OffVersion               = 4   // uint32
	OffBackingFileOffset     = 8   // uint64
	OffBackingFileSize       = 16  // uint32
	OffClusterBits           = 20  // uint32
	OffSize                  = 24  // uint64
	OffCryptMethod           = 32  // uint32
	OffL1Size                = 36  // uint32
	OffL1TableOffset         = 40  // uint64
	OffRefcountTableOffset   = 48  // uint64
	OffRefcountTableClusters = 56  // uint32
	OffNbSnapshots           = 60  // uint32
	OffSnapshotsOffset       = 64  // uint64
	OffIncompatible          = 72  // uint64, v3
	OffCompatible            = 80  // uint64, v3
	OffAutoclear             = 88  // uint64, v3
	OffRefcountOrder         = 96  // uint32, v3
	OffHeaderLength          = 100 // uint32, v3
	OffCompressionType       = 104 // uint8, v3 with header_length > 104
)

// Field is one header field: its offset and width in bytes.
type Field struct{ Off, Len int }

// End is the offset just past the field.
func (f Field) End() int { return f.Off + f.Len }

// The header fields, for EncodeFields.
var (
	FieldBackingFileOffset     = Field{OffBackingFileOffset, 8}
	FieldBackingFileSize       = Field{OffBackingFileSize, 4}
	FieldSize                  = Field{OffSize, 8}
	FieldL1Size                = Field{OffL1Size, 4}
	FieldL1TableOffset         = Field{OffL1TableOffset, 8}
	FieldRefcountTableOffset   = Field{OffRefcountTableOffset, 8}
	FieldRefcountTableClusters = Field{OffRefcountTableClusters, 4}
	FieldNbSnapshots           = Field{OffNbSnapshots, 4}
	FieldSnapshotsOffset       = Field{OffSnapshotsOffset, 8}
	FieldIncompatible          = Field{OffIncompatible, 8}
	FieldCompatible            = Field{OffCompatible, 8}
	FieldAutoclear             = Field{OffAutoclear, 8}
)

// Feature bits.
const (
	IncompatDirty       = 1 << 0
	IncompatCorrupt     = 1 << 1
	IncompatDataFile    = 1 << 2
	IncompatCompression = 1 << 3
	IncompatExtL2       = 1 << 4
	IncompatMask        = IncompatDirty | IncompatCorrupt | IncompatDataFile | IncompatCompression | IncompatExtL2

	CompatLazyRefcounts = 1 << 0

	AutoclearBitmaps     = 1 << 0
	AutoclearDataFileRaw = 1 << 1
	AutoclearMask        = AutoclearBitmaps | AutoclearDataFileRaw
)

// Limits of the format as QEMU 7.2 enforces them.
const (
	ReftableEntrySize    = 8
	MaxReftableSize      = 8 << 20 / ReftableEntrySize // QCOW_MAX_REFTABLE_SIZE in entries
	MaxL1Size            = 32 << 20                    // QCOW_MAX_L1_SIZE in bytes
	MaxClusterOffset     = (1 << 56) - 1
	MaxBackingNameLength = 1023
	MinClusterBits       = 9
	MaxClusterBits       = 21
	MaxRefcountOrder     = 6
	MaxSnapshots         = 65536
)

// Header is the qcow2 header. The v3 fields are zero for v2 images (with
// RefcountOrder 4 and HeaderLength 72 implied).
//
//	 0 magic                  4 version           8 backing_file_offset
//	16 backing_file_size     20 cluster_bits     24 size
//	32 crypt_method          36 l1_size          40 l1_table_offset
//	48 refcount_table_offset 56 refcount_table_clusters
//	60 nb_snapshots          64 snapshots_offset
//	72 incompatible_features 80 compatible_features 88 autoclear_features
//	96 refcount_order       100 header_length   104 compression_type
type Header struct {
	Version               uint32
	BackingFileOffset     uint64
	BackingFileSize       uint32
	ClusterBits           uint32
	Size                  uint64
	CryptMethod           uint32
	L1Size                uint32
	L1TableOffset         uint64
	RefcountTableOffset   uint64
	RefcountTableClusters uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
	IncompatibleFeatures  uint64
	CompatibleFeatures    uint64
	AutoclearFeatures     uint64
	RefcountOrder         uint32
	HeaderLength          uint32
	CompressionType       uint8
}

// ErrNotQcow2 is DecodeHeader's error for bytes without the magic (QEMU's
// message).
var ErrNotQcow2 = errors.New("Image is not in qcow2 format")

var be = binary.BigEndian

// DecodeHeader decodes the fixed header from b (at least 72 bytes; the v3
// fields are read when b holds them). It checks nothing beyond the magic;
// validation is the driver's job at open.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderV2Size || be.Uint32(b) != Magic {
		return Header{}, ErrNotQcow2
	}
	h := Header{
		Version:               be.Uint32(b[OffVersion:]),
		BackingFileOffset:     be.Uint64(b[OffBackingFileOffset:]),
		BackingFileSize:       be.Uint32(b[OffBackingFileSize:]),
		ClusterBits:           be.Uint32(b[OffClusterBits:]),
		Size:                  be.Uint64(b[OffSize:]),
		CryptMethod:           be.Uint32(b[OffCryptMethod:]),
		L1Size:                be.Uint32(b[OffL1Size:]),
		L1TableOffset:         be.Uint64(b[OffL1TableOffset:]),
		RefcountTableOffset:   be.Uint64(b[OffRefcountTableOffset:]),
		RefcountTableClusters: be.Uint32(b[OffRefcountTableClusters:]),
		NbSnapshots:           be.Uint32(b[OffNbSnapshots:]),
		SnapshotsOffset:       be.Uint64(b[OffSnapshotsOffset:]),
		RefcountOrder:         4,
		HeaderLength:          HeaderV2Size,
	}
	if h.Version >= 3 && len(b) >= HeaderV3Size {
		h.IncompatibleFeatures = be.Uint64(b[OffIncompatible:])
		h.CompatibleFeatures = be.Uint64(b[OffCompatible:])
		h.AutoclearFeatures = be.Uint64(b[OffAutoclear:])
		h.RefcountOrder = be.Uint32(b[OffRefcountOrder:])
		h.HeaderLength = be.Uint32(b[OffHeaderLength:])
		if h.HeaderLength > HeaderV3Size && len(b) > HeaderV3Size {
			h.CompressionType = b[OffCompressionType]
		}
	}
	return h, nil
}

// Encode writes the header fields into b (a cluster-sized buffer) as QEMU's
// qcow2_update_header does, returning the number of header bytes (72 for
// v2, 112 for v3). A v2 header leaves b[72:] alone.
func (h *Header) Encode(b []byte) int {
	h.put(b, h.Version >= 3)
	if h.Version < 3 {
		return HeaderV2Size
	}
	return HeaderSize
}

func (h *Header) put(b []byte, v3 bool) {
	be.PutUint32(b[OffMagic:], Magic)
	be.PutUint32(b[OffVersion:], h.Version)
	be.PutUint64(b[OffBackingFileOffset:], h.BackingFileOffset)
	be.PutUint32(b[OffBackingFileSize:], h.BackingFileSize)
	be.PutUint32(b[OffClusterBits:], h.ClusterBits)
	be.PutUint64(b[OffSize:], h.Size)
	be.PutUint32(b[OffCryptMethod:], h.CryptMethod)
	be.PutUint32(b[OffL1Size:], h.L1Size)
	be.PutUint64(b[OffL1TableOffset:], h.L1TableOffset)
	be.PutUint64(b[OffRefcountTableOffset:], h.RefcountTableOffset)
	be.PutUint32(b[OffRefcountTableClusters:], h.RefcountTableClusters)
	be.PutUint32(b[OffNbSnapshots:], h.NbSnapshots)
	be.PutUint64(b[OffSnapshotsOffset:], h.SnapshotsOffset)
	if !v3 {
		return
	}
	be.PutUint64(b[OffIncompatible:], h.IncompatibleFeatures)
	be.PutUint64(b[OffCompatible:], h.CompatibleFeatures)
	be.PutUint64(b[OffAutoclear:], h.AutoclearFeatures)
	be.PutUint32(b[OffRefcountOrder:], h.RefcountOrder)
	be.PutUint32(b[OffHeaderLength:], h.HeaderLength)
	b[OffCompressionType] = h.CompressionType
}

// EncodeFields is the run of header fields from first to last (inclusive,
// in file order) as h has them, with the offset to write it at: the
// partial header updates QEMU makes with bdrv_pwrite_sync. The fields are
// encoded whatever h's version.
func (h *Header) EncodeFields(first, last Field) (int64, []byte) {
	if last.End() <= first.Off {
		panic("layout: header fields out of order")
	}
	b := make([]byte, HeaderSize)
	h.put(b, true)
	return int64(first.Off), b[first.Off:last.End()]
}
