package qcow2

import "github.com/goqio/goqio/image/qcow2/internal/layout"

// geometry is the shape of an image, decided by its header when it is
// opened: cluster, L2 table, subcluster and refcount block sizes. It is a
// value that nothing changes in place. The Driver holds one (embedded, so
// that d.clusterSize reads it) and the allocator points to it; the only
// time it changes is amend's change of refcount order (refcount_order.go),
// which replaces the whole value under the driver's lock, between two
// requests, once the refcount cache is flushed and emptied.
type geometry struct {
	clusterBits uint
	clusterSize int64
	l2Bits      uint
	l2Size      int64 // entries per L2 table
	l2EntrySize int64 // 8, or 16 with extended L2 entries
	extL2       bool  // extended L2 entries: 32 subclusters per cluster
	// subclusters: the cluster itself without extended L2 entries
	scBits       uint
	scSize       int64
	scPerCluster int64
	// refcounts: entries of 1 << refOrder bits, refBlockSize of them (1 <<
	// refBlockBits) in a refcount block, none above refMax
	refOrder     uint
	refBlockBits uint
	refBlockSize int64
	refMax       uint64
}

// newGeometry is the geometry of an image of clusters of 1 << clusterBits
// bytes, with extended L2 entries or not, and refcounts of 1 << refOrder
// bits. The caller has checked the values (openOn does as QEMU's
// qcow2_do_open, in its order).
func newGeometry(clusterBits uint, extL2 bool, refOrder uint) geometry {
	g := geometry{clusterBits: clusterBits, clusterSize: 1 << clusterBits, extL2: extL2}
	g.l2EntrySize, g.scPerCluster = 8, 1
	g.l2Bits = clusterBits - 3
	g.scBits = clusterBits
	if extL2 {
		g.l2EntrySize, g.scPerCluster = 16, layout.SubclustersPerCluster
		g.l2Bits--
		g.scBits -= 5
	}
	g.l2Size = 1 << g.l2Bits
	g.scSize = g.clusterSize / g.scPerCluster
	return g.withRefOrder(refOrder)
}

// withRefOrder is g with refcounts of 1 << order bits.
func (g geometry) withRefOrder(order uint) geometry {
	g.refOrder = order
	g.refMax = 1<<(1<<order-1) + (1<<(1<<order-1) - 1)
	g.refBlockBits = g.clusterBits + 3 - order
	g.refBlockSize = 1 << g.refBlockBits
	return g
}

// sizeToClusters is the number of clusters n bytes take.
func (g *geometry) sizeToClusters(n int64) int64 {
	return (n + g.clusterSize - 1) >> g.clusterBits
}

// scIndex is the subcluster index of off within its cluster.
func (g *geometry) scIndex(off int64) int64 { return (off >> g.scBits) & (g.scPerCluster - 1) }

// inSameRefblock reports whether host offsets a and b are counted in the
// same refcount block.
func (g *geometry) inSameRefblock(a, b int64) bool {
	return a>>(g.clusterBits+g.refBlockBits) == b>>(g.clusterBits+g.refBlockBits)
}
