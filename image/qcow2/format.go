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

	extEnd           = layout.ExtEnd
	extBackingFormat = layout.ExtBackingFormat
	extFeatureTable  = layout.ExtFeatureTable
	extBitmaps       = layout.ExtBitmaps
	extCryptoHeader  = layout.ExtCryptoHeader
	extDataFile      = layout.ExtDataFile

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
type extension = layout.Extension

// feature is an entry of the feature name table.
type feature = layout.Feature

// qemuFeatures is the feature name table QEMU 7.2 writes.
var qemuFeatures = layout.QemuFeatures

func encodeFeatures(fs []feature) []byte { return layout.EncodeFeatures(fs) }
func decodeFeatures(b []byte) []feature  { return layout.DecodeFeatures(b) }

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
