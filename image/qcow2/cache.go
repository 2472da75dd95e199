package qcow2

import "github.com/goqio/goqio/image/qcow2/internal/metacache"

// The metadata caches (QEMU's l2_table_cache and refcount_block_cache) are
// internal/metacache's: a unit of its own, tested alone, that reads and
// writes whole tables through a cacheStore and keeps the write ordering
// between the two caches the driver asks for (see the package doc).

// cacheStore is what a metadata cache sees of the image: the file, the
// overlap check before every table it writes back (ign is the metadata
// kind its tables are, not an overlap for them), and the file's blkdebug
// events.
type cacheStore struct {
	d   *Driver
	ign int
}

func (s cacheStore) ReadTable(buf []byte, off int64) error { return s.d.file.ReadAt(buf, off) }

func (s cacheStore) WriteTable(buf []byte, off int64) error {
	return s.d.file.WriteAt(buf, off, false)
}

func (s cacheStore) Sync() error { return s.d.file.Flush() }

func (s cacheStore) CheckWrite(off, n int64) error { return s.d.preWriteCheck(s.ign, off, n) }

func (s cacheStore) Event(name string) { s.d.file.DebugEvent(name) }

// newCaches makes the refcount block cache and the L2 table cache, of
// rbMax and l2Max tables.
func (d *Driver) newCaches(rbMax, l2Max int) {
	d.rbc = metacache.New(cacheStore{d, olRefcountBlock}, metacache.Config{
		Max: rbMax, TableSize: d.clusterSize, WriteEvent: "refblock_update_part",
	})
	d.l2c = metacache.New(cacheStore{d, olActiveL2}, metacache.Config{
		Max: l2Max, TableSize: d.clusterSize, LoadEvent: "l2_load", WriteEvent: "l2_update",
	})
}
