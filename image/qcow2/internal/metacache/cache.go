// Package metacache is the qcow2 driver's metadata cache: L2 tables or
// refcount blocks, one cluster each, keyed by host offset, at most a fixed
// number of them, as QEMU's Qcow2Cache (block/qcow2-cache.c).
//
// It knows nothing of the qcow2 format: it reads and writes whole tables
// through a Store (the image file, with the overlap check and the blkdebug
// events the driver adds), and keeps the write ordering between two caches
// that the driver asks for (SetDependency). The driver's lock guards it:
// a Cache is not safe for concurrent use.
//
// A table that must make room for another is the least recently used one
// that no caller holds (QEMU's lru_counter with ref == 0); a dirty one is
// written back first, after the cache it depends on
// (qcow2_cache_entry_flush), so that a request walking many tables (a zero
// write or discard over a huge image, a check, an amend) stays within the
// cache size.
//
// Who holds a table: QEMU counts references (qcow2_cache_get/put). Here a
// buffer from Get or GetEmpty is held (pinned) until the next safe point
// (SafePoint, called at the start of every request and between the steps
// of the loops that walk many tables, where no buffer is held); a buffer
// from Peek is not pinned and is valid only until the next Get, GetEmpty
// or Peek on the same cache (for a table read and let go at once). When
// every table is pinned the cache grows past its maximum (QEMU would
// abort) and shrinks back at the next Evict.
package metacache

import "sort"

// Store is what a cache needs of the file under it.
type Store interface {
	// ReadTable reads the table at host offset off into buf (one table).
	ReadTable(buf []byte, off int64) error
	// WriteTable writes a table back at off.
	WriteTable(buf []byte, off int64) error
	// Sync makes what was written stable (the file's flush; the file may
	// skip it when nothing was written since the last).
	Sync() error
	// CheckWrite is asked before a table is written back: an error
	// refuses the write and is returned by whatever caused it (the
	// driver's overlap check).
	CheckWrite(off, n int64) error
	// Event is told of the debug events named in Config (blkdebug's).
	Event(name string)
}

// Config is a cache's shape.
type Config struct {
	// Max is how many tables the cache holds when none is pinned.
	Max int
	// TableSize is the size of a table in bytes (the cluster size).
	TableSize int64
	// LoadEvent is sent to the Store before a table is read from the
	// file, WriteEvent before one is written back ("" for none).
	LoadEvent, WriteEvent string
}

// Cache is a metadata cache; make one with New.
type Cache struct {
	st     Store
	cfg    Config
	tables map[int64]*table
	// last is the table found last (nil: none), looked at before the map:
	// a walk marks the same table dirty once per entry it changes
	last *table
	// dependsOn is flushed before this cache, once: refcount blocks
	// before the L2 tables that reference newly allocated clusters, and L2
	// tables that dropped references before the refcount blocks that free
	// those clusters (QEMU's qcow2_cache_set_dependency).
	dependsOn *Cache
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

// New makes an empty cache over st.
func New(st Store, cfg Config) *Cache {
	c := &Cache{st: st, cfg: cfg, tables: map[int64]*table{}, epoch: 1}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	return c
}

// Max is the number of tables the cache holds when none is pinned.
func (c *Cache) Max() int { return c.cfg.Max }

// Len is the number of tables cached.
func (c *Cache) Len() int { return len(c.tables) }

// FreeBuffers is the number of evicted tables' buffers kept for reuse.
func (c *Cache) FreeBuffers() int { return len(c.free) }

// IsDirty reports whether the table at off is cached and not yet written
// back.
func (c *Cache) IsDirty(off int64) bool {
	t := c.lookup(off)
	return t != nil && t.dirty
}

// lookup is the cached table at off, nil if none.
func (c *Cache) lookup(off int64) *table {
	if t := c.last; t != nil && t.off == off {
		return t
	}
	t := c.tables[off]
	if t != nil {
		c.last = t
	}
	return t
}

// forget removes t from the map and the LRU list.
func (c *Cache) forget(t *table) {
	c.unlink(t)
	delete(c.tables, t.off)
	if c.last == t {
		c.last = nil
	}
}

func (c *Cache) unlink(t *table) {
	t.prev.next, t.next.prev = t.next, t.prev
	t.prev, t.next = nil, nil
}

func (c *Cache) pushFront(t *table) {
	t.prev, t.next = &c.lru, c.lru.next
	c.lru.next.prev = t
	c.lru.next = t
}

// touch makes t the most recently used table.
func (c *Cache) touch(t *table) {
	if c.lru.next != t {
		c.unlink(t)
		c.pushFront(t)
	}
}

// Get returns the table at off, reading it from the file if needed; the
// buffer is pinned until the next safe point.
func (c *Cache) Get(off int64) ([]byte, error) {
	t, err := c.load(off, true)
	if err != nil {
		return nil, err
	}
	t.pin = c.epoch
	return t.buf, nil
}

// Peek is Get without the pin: the buffer is valid until the next Get,
// GetEmpty or Peek on this cache.
func (c *Cache) Peek(off int64) ([]byte, error) {
	t, err := c.load(off, true)
	if err != nil {
		return nil, err
	}
	return t.buf, nil
}

// GetEmpty returns a zeroed table for off without reading it, pinned as
// Get's. Making room for it can write back another table: the error is
// that write's (QEMU's qcow2_cache_get_empty fails with it).
func (c *Cache) GetEmpty(off int64) ([]byte, error) {
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
func (c *Cache) load(off int64, read bool) (*table, error) {
	if t := c.lookup(off); t != nil {
		c.touch(t)
		return t, nil
	}
	if len(c.tables) >= c.cfg.Max {
		if err := c.evictOne(); err != nil {
			return nil, err
		}
	}
	buf := c.newBuf()
	if read {
		if c.cfg.LoadEvent != "" {
			c.st.Event(c.cfg.LoadEvent)
		}
		if err := c.st.ReadTable(buf, off); err != nil {
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
func (c *Cache) victim() *table {
	for t := c.lru.prev; t != &c.lru; t = t.prev {
		if t.pin != c.epoch {
			return t
		}
	}
	return nil
}

// evictOne writes back (if dirty) and forgets the victim, if there is one.
func (c *Cache) evictOne() error {
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

func (c *Cache) remove(t *table) {
	c.forget(t)
	c.free = append(c.free, t.buf)
	t.buf = nil
}

// newBuf is a table-sized buffer, an evicted table's when there is one
// (its old contents are overwritten by the caller).
func (c *Cache) newBuf() []byte {
	if n := len(c.free); n > 0 && int64(len(c.free[n-1])) == c.cfg.TableSize {
		b := c.free[n-1]
		c.free[n-1] = nil
		c.free = c.free[:n-1]
		return b
	}
	return make([]byte, c.cfg.TableSize)
}

// MarkDirty marks the table at off, if cached, as to be written back.
func (c *Cache) MarkDirty(off int64) {
	if t := c.lookup(off); t != nil {
		t.dirty = true
	}
}

// Cached is the table at off if it is cached (nil if not), without
// loading it or changing its place in the LRU list.
func (c *Cache) Cached(off int64) []byte {
	if t := c.lookup(off); t != nil {
		return t.buf
	}
	return nil
}

// Has reports whether the table at off is cached.
func (c *Cache) Has(off int64) bool { return c.lookup(off) != nil }

// Drop forgets the table at off without writing it (its cluster was
// freed). Its buffer is not reused: a caller may still hold it.
func (c *Cache) Drop(off int64) {
	if t := c.lookup(off); t != nil {
		c.forget(t)
	}
}

// Reset forgets every table without writing any (the caller flushed them,
// or they are stale); their buffers are reused.
func (c *Cache) Reset() {
	for t := c.lru.next; t != &c.lru; {
		next := t.next
		c.free = append(c.free, t.buf)
		t.buf, t.prev, t.next = nil, nil, nil
		t = next
	}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	c.tables = map[int64]*table{}
	c.last = nil
}

// SafePoint releases every pin: the caller holds no buffer of this cache.
func (c *Cache) SafePoint() { c.epoch++ }

// Flush writes the dirty tables, in offset order, after the cache this one
// depends on. It does not sync the file after them (QEMU's
// qcow2_cache_write).
func (c *Cache) Flush() error {
	_, err := c.WriteBack()
	return err
}

// WriteBack is Flush, reporting how many of this cache's tables it wrote.
func (c *Cache) WriteBack() (int, error) {
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
func (c *Cache) entryFlush(t *table) error {
	if err := c.flushDependency(); err != nil {
		return err
	}
	return c.writeTable(t)
}

// writeTable writes one dirty table (overlap check, debug event).
func (c *Cache) writeTable(t *table) error {
	if err := c.st.CheckWrite(t.off, c.cfg.TableSize); err != nil {
		return err
	}
	if c.cfg.WriteEvent != "" {
		c.st.Event(c.cfg.WriteEvent)
	}
	if err := c.st.WriteTable(t.buf, t.off); err != nil {
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
func (c *Cache) flushDependency() error {
	dep := c.dependsOn
	if dep == nil {
		return nil
	}
	if _, err := dep.WriteBack(); err != nil {
		return err
	}
	if err := c.st.Sync(); err != nil {
		return err
	}
	c.dependsOn = nil
	return nil
}

// DependsOn is the cache whose tables are written (and synced) before this
// one's next write, nil when none.
func (c *Cache) DependsOn() *Cache { return c.dependsOn }

// SetDependency makes c flush dep before its own tables. A dependency the
// other way round is settled first by flushing, so the two caches never
// wait on each other.
func (c *Cache) SetDependency(dep *Cache) error {
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

// Evict is a safe point that also brings the cache back to its maximum
// (it can be past it after a step that held more tables than that).
func (c *Cache) Evict() error {
	c.SafePoint()
	for len(c.tables) > c.cfg.Max {
		if err := c.evictOne(); err != nil {
			return err
		}
	}
	return nil
}
