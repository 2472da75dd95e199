package qcow2

import "sort"

// tableCache holds metadata tables (L2 tables or refcount blocks), one
// cluster each, keyed by host offset. Dirty tables are written back by
// flush. Buffers handed out stay valid until the next evict, which the
// driver calls only between requests, with its lock held.
type tableCache struct {
	d      *Driver
	tables map[int64]*table
	max    int
	// ign is the metadata kind these tables are (not an overlap for them)
	ign int
	// dependsOn is flushed before this cache, once: refcount blocks
	// before the L2 tables that reference newly allocated clusters, and L2
	// tables that dropped references before the refcount blocks that free
	// those clusters (QEMU's qcow2_cache_set_dependency).
	dependsOn *tableCache
	// free are the buffers of evicted tables, reused by the next loads
	// (so that a walk through a large image does not churn the heap)
	free [][]byte
}

type table struct {
	buf   []byte
	dirty bool
}

func newTableCache(d *Driver, max int) *tableCache {
	return &tableCache{d: d, tables: map[int64]*table{}, max: max}
}

// get returns the table at off, reading it from the file if needed.
func (c *tableCache) get(off int64) ([]byte, error) {
	if t, ok := c.tables[off]; ok {
		return t.buf, nil
	}
	buf := c.newBuf()
	if c == c.d.l2c {
		c.d.file.DebugEvent("l2_load")
	}
	if err := c.d.file.ReadAt(buf, off); err != nil {
		return nil, err
	}
	c.tables[off] = &table{buf: buf}
	return buf, nil
}

// getEmpty returns a zeroed table for off without reading it.
func (c *tableCache) getEmpty(off int64) []byte {
	if t, ok := c.tables[off]; ok {
		clear(t.buf)
		return t.buf
	}
	buf := c.newBuf()
	clear(buf)
	c.tables[off] = &table{buf: buf}
	return buf
}

// newBuf is a cluster-sized buffer, an evicted table's when there is one
// (its old contents are overwritten by the caller).
func (c *tableCache) newBuf() []byte {
	if n := len(c.free); n > 0 && int64(len(c.free[n-1])) == c.d.clusterSize {
		b := c.free[n-1]
		c.free = c.free[:n-1]
		return b
	}
	return make([]byte, c.d.clusterSize)
}

func (c *tableCache) markDirty(off int64) {
	if t, ok := c.tables[off]; ok {
		t.dirty = true
	}
}

// drop forgets the table at off without writing it (its cluster was freed).
func (c *tableCache) drop(off int64) { delete(c.tables, off) }

// flush writes the dirty tables, in offset order.
func (c *tableCache) flush() error {
	_, err := c.writeBack()
	return err
}

// writeBack is flush, reporting how many of this cache's tables it wrote.
func (c *tableCache) writeBack() (int, error) {
	if err := c.flushDependency(); err != nil {
		return 0, err
	}
	var offs []int64
	for off, t := range c.tables {
		if t.dirty {
			offs = append(offs, off)
		}
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	for i, off := range offs {
		t := c.tables[off]
		if err := c.d.preWriteCheck(c.ign, off, c.d.clusterSize); err != nil {
			return i, err
		}
		if c == c.d.rbc {
			c.d.file.DebugEvent("refblock_update_part")
		} else if c == c.d.l2c {
			c.d.file.DebugEvent("l2_update")
		}
		if err := c.d.file.WriteAt(t.buf, off, false); err != nil {
			return i, err
		}
		t.dirty = false
	}
	return len(offs), nil
}

// flushDependency writes the cache this one depends on (and syncs the file
// when that wrote anything) and forgets the dependency.
func (c *tableCache) flushDependency() error {
	dep := c.dependsOn
	if dep == nil {
		return nil
	}
	wrote, err := dep.writeBack()
	if err != nil {
		return err
	}
	c.dependsOn = nil
	if wrote > 0 {
		// as QEMU's qcow2_cache_flush: the dependency is on the disk
		// before anything that relies on it is written
		return c.d.file.Flush()
	}
	return nil
}

// setDependency makes c flush dep before its own tables. A dependency the
// other way round is settled first by flushing, so the two caches never
// wait on each other.
func (c *tableCache) setDependency(dep *tableCache) error {
	if dep.dependsOn != nil {
		if err := dep.flushDependency(); err != nil {
			return err
		}
	}
	if c.dependsOn != nil && c.dependsOn != dep {
		if err := c.flushDependency(); err != nil {
			return err
		}
	}
	c.dependsOn = dep
	return nil
}

// evict writes back and forgets every table once the cache holds more than
// its maximum.
func (c *tableCache) evict() error {
	if len(c.tables) <= c.max {
		return nil
	}
	if err := c.flush(); err != nil {
		return err
	}
	for _, t := range c.tables {
		c.free = append(c.free, t.buf)
	}
	c.tables = map[int64]*table{}
	return nil
}
