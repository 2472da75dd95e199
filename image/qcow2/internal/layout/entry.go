package layout

import "math/bits"

// Flags of L1 and L2 entries (QCOW_OFLAG_*).
const (
	FlagCopied     = uint64(1) << 63 // refcount is exactly 1: writable in place
	FlagCompressed = uint64(1) << 62 // L2 only: a compressed cluster descriptor
	FlagZero       = uint64(1) << 0  // L2 only, standard entries: reads as zeroes
)

// Masks of L1 and L2 entries and of refcount table entries.
const (
	L1OffsetMask       = 0x00fffffffffffe00
	L2OffsetMask       = 0x00fffffffffffe00
	ReftOffsetMask     = 0xfffffffffffffe00
	L1ReservedMask     = 0x7f000000000001ff
	L2StdReservedMask  = 0x3f000000000001fe
	BitmapTableOffMask = 0x00fffffffffffe00
)

// L1Entry is an entry of an L1 table: the host offset of an L2 table and
// the COPIED flag.
type L1Entry uint64

// Offset is the L2 table's host offset (0: none).
func (e L1Entry) Offset() int64 { return int64(uint64(e) & L1OffsetMask) }

// Copied reports the COPIED flag.
func (e L1Entry) Copied() bool { return uint64(e)&FlagCopied != 0 }

// Reserved is the entry's reserved bits that are set (0 for a valid entry).
func (e L1Entry) Reserved() uint64 { return uint64(e) & L1ReservedMask }

// WithCopied is e with the COPIED flag set or cleared.
func (e L1Entry) WithCopied(on bool) L1Entry {
	if on {
		return e | L1Entry(FlagCopied)
	}
	return e &^ L1Entry(FlagCopied)
}

// L1At is the L1 entry of an L2 table at off with refcount 1 (COPIED).
func L1At(off int64) L1Entry { return L1Entry(uint64(off) | FlagCopied) }

// L2Entry is the first (with extended L2 entries: the only non-bitmap)
// word of an L2 table entry: a standard cluster descriptor (host offset,
// COPIED, the zero flag) or, with FlagCompressed, a compressed one.
type L2Entry uint64

// Offset is the host offset of a standard descriptor (0: none).
func (e L2Entry) Offset() int64 { return int64(uint64(e) & L2OffsetMask) }

// Copied reports the COPIED flag.
func (e L2Entry) Copied() bool { return uint64(e)&FlagCopied != 0 }

// Compressed reports a compressed cluster descriptor.
func (e L2Entry) Compressed() bool { return uint64(e)&FlagCompressed != 0 }

// Zero reports the zero flag of a standard descriptor (without extended
// L2 entries the cluster reads as zeroes; with them the bit is reserved).
func (e L2Entry) Zero() bool { return uint64(e)&FlagZero != 0 }

// Reserved is the set reserved bits of a standard descriptor (0 for a
// valid one; a compressed descriptor has none).
func (e L2Entry) Reserved() uint64 { return uint64(e) & L2StdReservedMask }

// WithCopied is e with the COPIED flag set or cleared.
func (e L2Entry) WithCopied(on bool) L2Entry {
	if on {
		return e | L2Entry(FlagCopied)
	}
	return e &^ L2Entry(FlagCopied)
}

// L2At is the standard descriptor of a cluster at host offset off with
// refcount 1 (COPIED).
func L2At(off int64) L2Entry { return L2Entry(uint64(off) | FlagCopied) }

// L2Zero is the descriptor of an unallocated cluster that reads as zeroes.
const L2Zero = L2Entry(FlagZero)

// compressedShift is where the sector count of a compressed descriptor
// starts: bits 0..x-1 are the host offset, x..61 the additional sectors,
// x = 62 - (cluster_bits - 8).
func compressedShift(clusterBits uint) uint { return 62 - (clusterBits - 8) }

// MaxCompressedOffset is the largest host offset a compressed descriptor
// of this cluster size can hold.
func MaxCompressedOffset(clusterBits uint) uint64 {
	return min(uint64(1)<<compressedShift(clusterBits)-1, MaxClusterOffset)
}

// CompressedOffset is the host offset of a compressed descriptor's data.
func (e L2Entry) CompressedOffset(clusterBits uint) int64 {
	return int64(uint64(e) & (1<<compressedShift(clusterBits) - 1))
}

// CompressedSectors is the number of 512-byte sectors the compressed data
// spans (counted from the sector holding its first byte).
func (e L2Entry) CompressedSectors(clusterBits uint) int64 {
	x := compressedShift(clusterBits)
	return int64((uint64(e)>>x)&(1<<(clusterBits-8)-1)) + 1
}

// CompressedRange is the host offset of a compressed descriptor's data and
// the most bytes it can take from there (QEMU's
// qcow2_parse_compressed_l2_entry).
func (e L2Entry) CompressedRange(clusterBits uint) (int64, int64) {
	off := e.CompressedOffset(clusterBits)
	return off, e.CompressedSectors(clusterBits)*512 - off&511
}

// Compressed is the descriptor of n bytes of compressed data at host
// offset off (n >= 1).
func Compressed(clusterBits uint, off, n int64) L2Entry {
	nsec := (off+n-1)/512 - off/512
	return L2Entry(uint64(off) | FlagCompressed | uint64(nsec)<<compressedShift(clusterBits))
}

// ClusterType is the kind of a cluster (QEMU's QCow2ClusterType and, with
// extended L2 entries, QCow2SubclusterType).
type ClusterType int

// The cluster types.
const (
	ClusterUnallocated ClusterType = iota
	ClusterZeroPlain
	ClusterZeroAlloc
	ClusterNormal
	ClusterCompressed
	// with extended L2 entries only (subcluster types):
	ClusterUnallocAlloc // a subcluster of an allocated cluster that is not yet allocated itself
	ClusterInvalid      // an L2 bitmap that contradicts its entry
)

func (t ClusterType) String() string {
	return [...]string{"unallocated", "zero-plain", "zero-alloc", "normal", "compressed", "unallocated-alloc", "invalid"}[t]
}

// Type is QEMU's qcow2_get_cluster_type for an image without extended L2
// entries and without an external data file.
func (e L2Entry) Type() ClusterType {
	switch {
	case e.Compressed():
		return ClusterCompressed
	case e.Zero():
		if e.Offset() != 0 {
			return ClusterZeroAlloc
		}
		return ClusterZeroPlain
	case e.Offset() == 0:
		return ClusterUnallocated
	}
	return ClusterNormal
}

// Extended L2 entries: 32 subclusters per cluster.
const SubclustersPerCluster = 32

// L2Bitmap is the second word of an extended L2 entry: bit i (0-31) the
// allocation bit of subcluster i, bit 32+i its zero bit.
type L2Bitmap uint64

// The bitmaps with every allocation or every zero bit set.
const (
	BitmapAllAlloc  = L2Bitmap(1)<<32 - 1
	BitmapAllZeroes = BitmapAllAlloc << 32
)

// SubAllocRange is QCOW_OFLAG_SUB_ALLOC_RANGE: allocation bits [from, to).
func SubAllocRange(from, to int64) L2Bitmap {
	return (L2Bitmap(1)<<to - 1) &^ (L2Bitmap(1)<<from - 1)
}

// SubZeroRange is QCOW_OFLAG_SUB_ZERO_RANGE: zero bits [from, to).
func SubZeroRange(from, to int64) L2Bitmap { return SubAllocRange(from, to) << 32 }

// Alloc is the allocation bits.
func (b L2Bitmap) Alloc() uint32 { return uint32(b) }

// Zeroes is the zero bits.
func (b L2Bitmap) Zeroes() uint32 { return uint32(b >> 32) }

// Allocated reports subcluster sc's allocation bit.
func (b L2Bitmap) Allocated(sc int64) bool { return b&(1<<sc) != 0 }

// IsZero reports subcluster sc's zero bit.
func (b L2Bitmap) IsZero(sc int64) bool { return b&(1<<(32+sc)) != 0 }

// Conflicting reports a subcluster with both bits set (an invalid bitmap).
func (b L2Bitmap) Conflicting() bool { return b.Alloc()&b.Zeroes() != 0 }

// FirstAlloc is the index of the first allocated subcluster (32: none).
func (b L2Bitmap) FirstAlloc() int { return bits.TrailingZeros32(b.Alloc()) }

// LastAllocFromEnd is the number of unallocated subclusters after the last
// allocated one (32: none allocated).
func (b L2Bitmap) LastAllocFromEnd() int { return bits.LeadingZeros32(b.Alloc()) }
