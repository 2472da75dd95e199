package qcow2

import (
	"encoding/binary"
	"fmt"
)

// On-disk constants (docs/interop/qcow2.txt).
const (
	magic = 0x514649fb // "QFI\xfb"

	headerV2Size = 72
	headerV3Size = 104 // the fixed part every v3 header has
	headerSize   = 112 // what QEMU 7.2 writes: v3 with compression type and padding

	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extFeatureTable  = 0x6803f857
	extBitmaps       = 0x23852875
	extCryptoHeader  = 0x0537be77
	extDataFile      = 0x44415441

	incompatDirty       = 1 << 0
	incompatCorrupt     = 1 << 1
	incompatDataFile    = 1 << 2
	incompatCompression = 1 << 3
	incompatExtL2       = 1 << 4
	incompatMask        = incompatDirty | incompatCorrupt | incompatDataFile | incompatCompression | incompatExtL2

	compatLazyRefcounts = 1 << 0

	autoclearBitmaps     = 1 << 0
	autoclearDataFileRaw = 1 << 1
	autoclearMask        = autoclearBitmaps | autoclearDataFileRaw

	// L1 and L2 entry bits.
	oflagCopied     = uint64(1) << 63
	oflagCompressed = uint64(1) << 62
	oflagZero       = uint64(1) << 0

	l1eOffsetMask        = 0x00fffffffffffe00
	l2eOffsetMask        = 0x00fffffffffffe00
	reftOffsetMask       = 0xfffffffffffffe00
	l1eReservedMask      = 0x7f000000000001ff
	l2eStdReservedMask   = 0x3f000000000001fe
	reftableEntrySize    = 8
	maxReftableSize      = 8 << 20 / reftableEntrySize // QCOW_MAX_REFTABLE_SIZE in entries
	maxL1Size            = 32 << 20                    // QCOW_MAX_L1_SIZE in bytes
	maxClusterOffset     = (1 << 56) - 1
	maxBackingNameLength = 1023
	minClusterBits       = 9
	maxClusterBits       = 21
	maxRefcountOrder     = 6
	maxSnapshots         = 65536
	intMax               = 1<<31 - 1 // C's INT_MAX, a bound of many QEMU requests
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

// parseHeader decodes the fixed header from b (at least 72 bytes). It
// checks nothing beyond the magic; validation is Open's job.
func parseHeader(b []byte) (Header, error) {
	if len(b) < headerV2Size || binary.BigEndian.Uint32(b) != magic {
		return Header{}, fmt.Errorf("Image is not in qcow2 format")
	}
	be := binary.BigEndian
	h := Header{
		Version:               be.Uint32(b[4:]),
		BackingFileOffset:     be.Uint64(b[8:]),
		BackingFileSize:       be.Uint32(b[16:]),
		ClusterBits:           be.Uint32(b[20:]),
		Size:                  be.Uint64(b[24:]),
		CryptMethod:           be.Uint32(b[32:]),
		L1Size:                be.Uint32(b[36:]),
		L1TableOffset:         be.Uint64(b[40:]),
		RefcountTableOffset:   be.Uint64(b[48:]),
		RefcountTableClusters: be.Uint32(b[56:]),
		NbSnapshots:           be.Uint32(b[60:]),
		SnapshotsOffset:       be.Uint64(b[64:]),
		RefcountOrder:         4,
		HeaderLength:          headerV2Size,
	}
	if h.Version >= 3 && len(b) >= headerV3Size {
		h.IncompatibleFeatures = be.Uint64(b[72:])
		h.CompatibleFeatures = be.Uint64(b[80:])
		h.AutoclearFeatures = be.Uint64(b[88:])
		h.RefcountOrder = be.Uint32(b[96:])
		h.HeaderLength = be.Uint32(b[100:])
		if h.HeaderLength > headerV3Size && len(b) > headerV3Size {
			h.CompressionType = b[104]
		}
	}
	return h, nil
}

// encode writes the header fields into b (a cluster-sized buffer) as QEMU's
// qcow2_update_header does, returning the number of header bytes (72 for v2,
// 112 for v3).
func (h *Header) encode(b []byte) int {
	be := binary.BigEndian
	be.PutUint32(b[0:], magic)
	be.PutUint32(b[4:], h.Version)
	be.PutUint64(b[8:], h.BackingFileOffset)
	be.PutUint32(b[16:], h.BackingFileSize)
	be.PutUint32(b[20:], h.ClusterBits)
	be.PutUint64(b[24:], h.Size)
	be.PutUint32(b[32:], h.CryptMethod)
	be.PutUint32(b[36:], h.L1Size)
	be.PutUint64(b[40:], h.L1TableOffset)
	be.PutUint64(b[48:], h.RefcountTableOffset)
	be.PutUint32(b[56:], h.RefcountTableClusters)
	be.PutUint32(b[60:], h.NbSnapshots)
	be.PutUint64(b[64:], h.SnapshotsOffset)
	if h.Version < 3 {
		return headerV2Size
	}
	be.PutUint64(b[72:], h.IncompatibleFeatures)
	be.PutUint64(b[80:], h.CompatibleFeatures)
	be.PutUint64(b[88:], h.AutoclearFeatures)
	be.PutUint32(b[96:], h.RefcountOrder)
	be.PutUint32(b[100:], h.HeaderLength)
	b[104] = h.CompressionType
	return headerSize
}

// extension is a header extension kept as read.
type extension struct {
	Type uint32
	Data []byte
}

// feature is an entry of the feature name table.
type feature struct {
	Type uint8 // 0 incompatible, 1 compatible, 2 autoclear
	Bit  uint8
	Name string
}

// qemuFeatures is the feature name table QEMU 7.2 writes.
var qemuFeatures = []feature{
	{0, 0, "dirty bit"},
	{0, 1, "corrupt bit"},
	{0, 2, "external data file"},
	{0, 3, "compression type"},
	{0, 4, "extended L2 entries"},
	{1, 0, "lazy refcounts"},
	{2, 0, "bitmaps"},
	{2, 1, "raw external data"},
}

func encodeFeatures(fs []feature) []byte {
	b := make([]byte, 48*len(fs))
	for i, f := range fs {
		b[48*i] = f.Type
		b[48*i+1] = f.Bit
		copy(b[48*i+2:48*i+48], f.Name)
	}
	return b
}

func decodeFeatures(b []byte) []feature {
	// QEMU reads the extension into a zeroed buffer with room for two
	// more entries: a short last entry is zero-padded, and the table
	// ends at the first entry with an empty name
	if r := len(b) % 48; r != 0 {
		b = append(append([]byte(nil), b...), make([]byte, 48-r)...)
	}
	var fs []feature
	for len(b) >= 48 && b[2] != 0 {
		name := b[2:48]
		n := 0
		for n < len(name) && name[n] != 0 {
			n++
		}
		fs = append(fs, feature{b[0], b[1], string(name[:n])})
		b = b[48:]
	}
	return fs
}

// clusterType is the kind of a standard cluster descriptor.
type clusterType int

const (
	clusterUnallocated clusterType = iota
	clusterZeroPlain
	clusterZeroAlloc
	clusterNormal
	clusterCompressed
	// with extended L2 entries only (subcluster types):
	clusterUnallocAlloc // a subcluster of an allocated cluster that is not yet allocated itself
	clusterInvalid      // an L2 bitmap that contradicts its entry
)

func (t clusterType) String() string {
	return [...]string{"unallocated", "zero-plain", "zero-alloc", "normal", "compressed", "unallocated-alloc", "invalid"}[t]
}

// decodeU64s is a table of big-endian 64-bit words (an L1, refcount or
// bitmap table).
func decodeU64s(b []byte) []uint64 {
	t := make([]uint64, len(b)/8)
	for i := range t {
		t[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	return t
}

// encodeU64s is the table t as big-endian 64-bit words.
func encodeU64s(t []uint64) []byte {
	b := make([]byte, 8*len(t))
	for i, e := range t {
		binary.BigEndian.PutUint64(b[8*i:], e)
	}
	return b
}

// Extended L2 entries: 32 subclusters per cluster; the second 64-bit word
// of an entry is the bitmap, allocation bits 0-31, zero bits 32-63.
const (
	subclustersPerCluster = 32
	bitmapAllAlloc        = uint64(1)<<32 - 1
	bitmapAllZeroes       = bitmapAllAlloc << 32
)

// subAllocRange is QCOW_OFLAG_SUB_ALLOC_RANGE: allocation bits [from, to).
func subAllocRange(from, to int64) uint64 {
	return (uint64(1)<<to - 1) &^ (uint64(1)<<from - 1)
}

// subZeroRange is QCOW_OFLAG_SUB_ZERO_RANGE: zero bits [from, to).
func subZeroRange(from, to int64) uint64 { return subAllocRange(from, to) << 32 }

// typeOf is QEMU's qcow2_get_cluster_type for an image without extended L2.
func typeOf(entry uint64) clusterType {
	switch {
	case entry&oflagCompressed != 0:
		return clusterCompressed
	case entry&oflagZero != 0:
		if entry&l2eOffsetMask != 0 {
			return clusterZeroAlloc
		}
		return clusterZeroPlain
	case entry&l2eOffsetMask == 0:
		return clusterUnallocated
	}
	return clusterNormal
}
