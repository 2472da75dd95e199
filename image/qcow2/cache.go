package qcow2

import "sort"

// tableCache holds metadata tables (L2 tables or refcount blocks), one
// cluster each, keyed by host offset: at most max of them, as QEMU's
// Qcow2Cache holds a fixed number of entries (block/qcow2-cache.c).
//
// A table that must make room for another is the least recently used one
// that no caller holds (QEMU's lru_counter with ref == 0); a dirty one is
// written back first, after the cache it depends on (qcow2_cache_entry_flush),
// so that a request walking many tables (a zero write or discard over a
// huge image, a check, an amend) stays within the cache size.
//
// Who holds a table: QEMU counts references (qcow2_cache_get/put). Here a
// buffer from get or getEmpty is held (pinned) until the next safe point
// (safePoint, called at the start of every request and between the steps
// of the loops that walk many tables, where no buffer is held); a buffer
// from peek is not pinned and is valid only until the next get, getEmpty
// or peek on the same cache (for a table read and let go at once). When
// every table is pinned the cache grows past max (QEMU would abort) and
// shrinks back at the next safe point.
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
	// lru is the sentinel of the list of tables, most recently used first
	lru table
	// epoch counts safe points; a table whose pin is the current epoch is
	// held by a caller
	epoch uint64
	// free are the buffers of evicted tables, reused by the next loads
	// (so that a walk through a large image does not churn the heap)
	free [][]byte
}

type table struct {
	off        int64
	buf        []byte
	dirty      bool
	pin        uint64
	prev, next *table
}

func newTableCache(d *Driver, max int) *tableCache {
	c := &tableCache{d: d, tables: map[int64]*table{}, max: max, epoch: 1}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	return c
}

func (c *tableCache) unlink(t *table) {
	t.prev.next, t.next.prev = t.next, t.prev
	t.prev, t.next = nil, nil
}

func (c *tableCache) pushFront(t *table) {
	t.prev, t.next = &c.lru, c.lru.next
	c.lru.next.prev = t
	c.lru.next = t
}

// touch makes t the most recently used table.
func (c *tableCache) touch(t *table) {
	if c.lru.next != t {
		c.unlink(t)
		c.pushFront(t)
	}
}

// get returns the table at off, reading it from the file if needed; the
// buffer is pinned until the next safe point.
func (c *tableCache) get(off int64) ([]byte, error) {
	t, err := c.load(off, true)
	if err != nil {
		return nil, err
	}
	t.pin = c.epoch
	return t.buf, nil
}

// peek is get without the pin: the buffer is valid until the next get,
// getEmpty or peek on this cache.
func (c *tableCache) peek(off int64) ([]byte, error) {
	t, err := c.load(off, true)
	if err != nil {
		return nil, err
	}
	return t.buf, nil
}

// getEmpty returns a zeroed table for off without reading it, pinned as
// get's. Making room for it can write back another table: the error is
// that write's (QEMU's qcow2_cache_get_empty fails with it).
func (c *tableCache) getEmpty(off int64) ([]byte, error) {
	t, err := c.load(off, false)
	if err != nil {
		return nil, err
	}
	clear(t.buf)
	t.pin = c.epoch
	return t.buf, nil
}

// load is QEMU's qcow2_cache_do_get: a cached table is found; otherwise,
// room is made (writing the victim back first) and the table read.
func (c *tableCache) load(off int64, read bool) (*table, error) {
	if t, ok := c.tables[off]; ok {
		c.touch(t)
		return t, nil
	}
	if len(c.tables) >= c.max {
		if err := c.evictOne(); err != nil {
			return nil, err
		}
	}
	buf := c.newBuf()
	if read {
		if c == c.d.l2c {
			c.d.file.DebugEvent("l2_load")
		}
		if err := c.d.file.ReadAt(buf, off); err != nil {
			c.free = append(c.free, buf)
			return nil, err
		}
	}
	t := &table{off: off, buf: buf}
	c.tables[off] = t
	c.pushFront(t)
	return t, nil
}

// victim is the least recently used table no caller holds, nil if none.
func (c *tableCache) victim() *table {
	for t := c.lru.prev; t != &c.lru; t = t.prev {
		if t.pin != c.epoch {
			return t
		}
	}
	return nil
}

// evictOne writes back (if dirty) and forgets the victim, if there is one.
func (c *tableCache) evictOne() error {
	t := c.victim()
	if t == nil {
		return nil
	}
	if t.dirty {
		if err := c.entryFlush(t); err != nil {
			return err
		}
	}
	c.remove(t)
	return nil
}

func (c *tableCache) remove(t *table) {
	c.unlink(t)
	delete(c.tables, t.off)
	c.free = append(c.free, t.buf)
	t.buf = nil
}

// newBuf is a cluster-sized buffer, an evicted table's when there is one
// (its old contents are overwritten by the caller).
func (c *tableCache) newBuf() []byte {
	if n := len(c.free); n > 0 && int64(len(c.free[n-1])) == c.d.clusterSize {
		b := c.free[n-1]
		c.free[n-1] = nil
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

// cached is the table at off if it is cached (nil if not), without
// loading it or changing its place in the LRU list.
func (c *tableCache) cached(off int64) []byte {
	if t, ok := c.tables[off]; ok {
		return t.buf
	}
	return nil
}

// has reports whether the table at off is cached.
func (c *tableCache) has(off int64) bool {
	_, ok := c.tables[off]
	return ok
}

// drop forgets the table at off without writing it (its cluster was
// freed). Its buffer is not reused: a caller may still hold it.
func (c *tableCache) drop(off int64) {
	if t, ok := c.tables[off]; ok {
		c.unlink(t)
		delete(c.tables, off)
	}
}

// reset forgets every table without writing any (the caller flushed them,
// or they are stale).
func (c *tableCache) reset() {
	for t := c.lru.next; t != &c.lru; {
		next := t.next
		c.free = append(c.free, t.buf)
		t.buf, t.prev, t.next = nil, nil, nil
		t = next
	}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	c.tables = map[int64]*table{}
}

// safePoint releases every pin: the caller holds no buffer of this cache.
func (c *tableCache) safePoint() { c.epoch++ }

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
		if err := c.writeTable(c.tables[off]); err != nil {
			return i, err
		}
	}
	return len(offs), nil
}

// entryFlush is QEMU's qcow2_cache_entry_flush: one dirty table written
// back, after the cache it depends on.
func (c *tableCache) entryFlush(t *table) error {
	if err := c.flushDependency(); err != nil {
		return err
	}
	return c.writeTable(t)
}

// writeTable writes one dirty table (overlap check, blkdebug event).
func (c *tableCache) writeTable(t *table) error {
	if err := c.d.preWriteCheck(c.ign, t.off, c.d.clusterSize); err != nil {
		return err
	}
	if c == c.d.rbc {
		c.d.file.DebugEvent("refblock_update_part")
	} else if c == c.d.l2c {
		c.d.file.DebugEvent("l2_update")
	}
	if err := c.d.file.WriteAt(t.buf, t.off, false); err != nil {
		return err
	}
	t.dirty = false
	return nil
}

// flushDependency is QEMU's qcow2_cache_flush_dependency: the cache this
// one depends on is written and the file synced (qcow2_cache_flush), then
// the dependency forgotten. The sync is asked for even when the dependency
// had nothing left to write: its tables may have been written without one
// (qcow2_write_caches writes the L2 cache before the refcount cache that
// depends on it), and the file skips a sync with no write since the last,
// as QEMU's bdrv_co_flush does.
func (c *tableCache) flushDependency() error {
	dep := c.dependsOn
	if dep == nil {
		return nil
	}
	if _, err := dep.writeBack(); err != nil {
		return err
	}
	if err := c.d.file.Flush(); err != nil {
		return err
	}
	c.dependsOn = nil
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

// evict is a safe point that also brings the cache back to its maximum
// (it can be past it after a step that held more tables than that).
func (c *tableCache) evict() error {
	c.safePoint()
	for len(c.tables) > c.max {
		if err := c.evictOne(); err != nil {
			return err
		}
	}
	return nil
}
