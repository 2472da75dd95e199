package qcow2

import (
	"io"

	"github.com/goqio/goqio/image/qcow2/internal/metacache"
)

// allocator is the refcount allocator (QEMU's qcow2-refcount.c): the
// refcount table, the free cluster index, the compressed clusters' free
// byte offset and the queue of freed ranges to discard, with what finds,
// takes and frees clusters (refcount.go: allocClusters, allocClustersAt,
// freeClusters, updateRefcount, allocRefcountBlock, refcountArea).
//
// The Driver embeds it (d.refTable, d.allocClusters still read and call
// it) and d.mu guards it. Its methods see nothing of the Driver: only the
// geometry, the file, the two metadata caches (the refcount blocks it
// updates, the L2 cache whose tables it drops and orders itself against)
// and allocEnv, for corruption reports, warnings and the header. Other
// parts of the driver replace the refcount table wholesale, under d.mu:
// open, check's rebuild, truncate's shrink, amend's refcount-order change
// and make-empty (chain.go).
//
// Its methods keep the receiver name d that they had as the Driver's, so
// that their bodies read as QEMU's and as before.
type allocator struct {
	*geometry // the driver's (fixed at open)
	file      allocFile
	env       allocEnv
	// rbc holds the refcount blocks; l2c is the L2 cache, flushed before
	// a new refcount block is written and made a dependency of a refcount
	// decrease (the same caches as the Driver's)
	rbc, l2c *metacache.Cache
	// discards of freed clusters reach the file for these kinds of
	// discard (pass-discard-*, set at open)
	pass [discardOther + 1]bool

	refTable         []uint64 // the refcount table, entry i for refcount block i
	refTableOffset   int64
	maxRefTableIndex int64 // the last nonzero entry of refTable
	// freeClusterIndex is where the search for free clusters starts
	// (QEMU's free_cluster_index), lowered when a cluster is freed
	freeClusterIndex int64
	// freeByteOffset is where the next compressed cluster may start inside
	// a partly used cluster (QEMU's free_byte_offset), 0 when none.
	freeByteOffset int64
	// discards are the freed host ranges not yet discarded in the file
	discards [][2]int64
	// cacheDiscards: discards of freed clusters wait for the end of the
	// operation (processDiscards) instead of being made at once
	cacheDiscards bool
}

// allocFile is what the allocator does to the image file (an
// *image.Disk).
type allocFile interface {
	WriteAt(b []byte, off int64, fua bool) error
	Flush() error
	Discard(off, n int64) error
	DebugEvent(name string)
}

// allocEnv is what the allocator needs of the rest of the driver.
type allocEnv interface {
	// corruption reports a corruption (QEMU's qcow2_signal_corruption)
	// and returns the error the request fails with.
	corruption(msg string) error
	// stderr receives the driver's warnings.
	stderr() io.Writer
	// reftableMoved records in the in-memory header the refcount table
	// the allocator wrote and switched to (refcountArea has written the
	// header fields themselves).
	reftableMoved(off int64, clusters uint32)
}

// initAllocator connects the allocator to the driver, once the caches
// and the runtime options are there.
func (d *Driver) initAllocator() {
	a := &d.allocator
	a.geometry, a.file, a.env = &d.geometry, d.file, d
	a.rbc, a.l2c = d.rbc, d.l2c
	a.pass = [discardOther + 1]bool{
		discardAlways:   true,
		discardSnapshot: d.rt.passSnapshot,
		discardRequest:  d.rt.passRequest,
		discardOther:    d.rt.passOther,
	}
}

func (d *Driver) reftableMoved(off int64, clusters uint32) {
	d.hdr.RefcountTableOffset = uint64(off)
	d.hdr.RefcountTableClusters = clusters
}

func (d *allocator) corruption(msg string) error { return d.env.corruption(msg) }
func (d *allocator) stderr() io.Writer           { return d.env.stderr() }

// writeSync writes metadata the caches do not hold and syncs the file.
func (d *allocator) writeSync(b []byte, off int64) error {
	if err := d.file.WriteAt(b, off, false); err != nil {
		return err
	}
	return d.file.Flush()
}

// cacheFlush is QEMU's qcow2_cache_flush (Driver.cacheFlush).
func (d *allocator) cacheFlush(c *metacache.Cache) error {
	if err := c.Flush(); err != nil {
		return err
	}
	return d.file.Flush()
}
