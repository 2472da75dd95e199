package qcow2

import (
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// On-disk constants (docs/interop/qcow2.txt), the driver's short names for
// those of the format layer (internal/layout).
const (
	magic = layout.Magic

	headerV2Size = layout.HeaderV2Size
	headerV3Size = layout.HeaderV3Size
	headerSize   = layout.HeaderSize

	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extFeatureTable  = 0x6803f857
	extBitmaps       = 0x23852875
	extCryptoHeader  = 0x0537be77
	extDataFile      = 0x44415441

	incompatDirty       = layout.IncompatDirty
	incompatCorrupt     = layout.IncompatCorrupt
	incompatDataFile    = layout.IncompatDataFile
	incompatCompression = layout.IncompatCompression
	incompatExtL2       = layout.IncompatExtL2
	incompatMask        = layout.IncompatMask

	compatLazyRefcounts = layout.CompatLazyRefcounts

	autoclearBitmaps     = layout.AutoclearBitmaps
	autoclearDataFileRaw = layout.AutoclearDataFileRaw
	autoclearMask        = layout.AutoclearMask

	reftOffsetMask       = layout.ReftOffsetMask
	reftableEntrySize    = layout.ReftableEntrySize
	maxReftableSize      = layout.MaxReftableSize
	maxL1Size            = layout.MaxL1Size
	maxClusterOffset     = layout.MaxClusterOffset
	maxBackingNameLength = layout.MaxBackingNameLength
	minClusterBits       = layout.MinClusterBits
	maxClusterBits       = layout.MaxClusterBits
	maxRefcountOrder     = layout.MaxRefcountOrder
	maxSnapshots         = layout.MaxSnapshots
	intMax               = 1<<31 - 1 // C's INT_MAX, a bound of many QEMU requests
)

// Header is the qcow2 header (internal/layout).
type Header = layout.Header

// parseHeader decodes the fixed header from b (at least 72 bytes). It
// checks nothing beyond the magic; validation is Open's job.
func parseHeader(b []byte) (Header, error) { return layout.DecodeHeader(b) }

// writeHeaderFields writes the run of header fields first..last as h has
// them (the others are not written) and syncs, as QEMU's partial
// bdrv_pwrite_sync of the header.
func (d *Driver) writeHeaderFields(h *Header, first, last layout.Field) error {
	off, b := h.EncodeFields(first, last)
	return d.writeSync(b, off)
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

// clusterType is the kind of a cluster (internal/layout).
type clusterType = layout.ClusterType

const (
	clusterUnallocated  = layout.ClusterUnallocated
	clusterZeroPlain    = layout.ClusterZeroPlain
	clusterZeroAlloc    = layout.ClusterZeroAlloc
	clusterNormal       = layout.ClusterNormal
	clusterCompressed   = layout.ClusterCompressed
	clusterUnallocAlloc = layout.ClusterUnallocAlloc
	clusterInvalid      = layout.ClusterInvalid
)

func decodeU64s(b []byte) []uint64 { return layout.DecodeU64s(b) }
func encodeU64s(t []uint64) []byte { return layout.EncodeU64s(t) }
