package qcow2

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
	"github.com/goqio/goqio/image/qcow2/internal/metacache"
)

// The refcount allocator on its own, over an in-memory file: no header,
// no L1 or L2 tables, no Driver.

// allocTest is an allocator over a file of 512-byte clusters with 64-bit
// refcounts (64 per block, a block covering 32 KiB, the one-cluster
// refcount table 2 MiB): cluster 1 is the refcount table, cluster 2
// refcount block 0, and clusters 0-2 are counted.
type allocTest struct {
	a       *allocator
	g       geometry
	mem     *imagetest.MemDriver
	rec     *imagetest.Recorder
	disk    *image.Disk
	stderr  bytes.Buffer
	corrupt []string
	moved   [][2]int64
}

func (e *allocTest) corruption(msg string) error {
	e.corrupt = append(e.corrupt, msg)
	return &image.CorruptError{What: msg}
}

// allocEnvOf is allocTest as the allocator's allocEnv (allocTest's own
// stderr is the buffer the messages go to).
type allocEnvOf struct{ *allocTest }

func (e allocEnvOf) stderr() io.Writer { return &e.allocTest.stderr }
func (e allocEnvOf) reftableMoved(off int64, clusters uint32) {
	e.moved = append(e.moved, [2]int64{off, int64(clusters)})
}

// diskStore is a metacache.Store straight over a Disk.
type diskStore struct{ d *image.Disk }

func (s diskStore) ReadTable(b []byte, off int64) error  { return s.d.ReadAt(b, off) }
func (s diskStore) WriteTable(b []byte, off int64) error { return s.d.WriteAt(b, off, false) }
func (s diskStore) Sync() error                          { return s.d.Flush() }
func (s diskStore) CheckWrite(off, n int64) error        { return nil }
func (s diskStore) Event(string)                         {}

func newAllocTest(t *testing.T, clusterBits, order uint) *allocTest {
	t.Helper()
	e := &allocTest{g: newGeometry(clusterBits, false, order)}
	cs := e.g.clusterSize
	e.mem = imagetest.NewMem(4<<20, image.Limits{}, true)
	e.rec = &imagetest.Recorder{Driver: e.mem.Zeroing()}
	e.disk = image.New(e.rec, "mem", image.Options{Unmap: true})
	// the refcount table points to block 0, which counts clusters 0-2
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(2*cs))
	if err := e.disk.WriteAt(b[:], cs, false); err != nil {
		t.Fatal(err)
	}
	blk := make([]byte, cs)
	for i := int64(0); i < 3; i++ {
		e.g.refSet(blk, i, 1)
	}
	if err := e.disk.WriteAt(blk, 2*cs, false); err != nil {
		t.Fatal(err)
	}
	e.rec.Ops = nil
	e.mem.Calls()
	cfg := metacache.Config{Max: 4, TableSize: cs}
	e.a = &allocator{
		geometry: &e.g, file: e.disk, env: allocEnvOf{e},
		rbc: metacache.New(diskStore{e.disk}, cfg), l2c: metacache.New(diskStore{e.disk}, cfg),
		pass:           [discardOther + 1]bool{discardAlways: true},
		refTable:       make([]uint64, cs/8),
		refTableOffset: cs,
	}
	e.a.refTable[0] = uint64(2 * cs)
	e.a.updateMaxRefTableIndex()
	return e
}

// refcounts are the refcounts of clusters 0..n-1, as the allocator sees them.
func (e *allocTest) refcounts(t *testing.T, n int64) []uint64 {
	t.Helper()
	out := make([]uint64, n)
	for i := range out {
		rc, err := e.a.getRefcount(int64(i))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = rc
	}
	return out
}

func (e *allocTest) alloc(t *testing.T, clusters int64) int64 {
	t.Helper()
	off, err := e.a.allocClusters(clusters * e.g.clusterSize)
	if err != nil {
		t.Fatal(err)
	}
	return off / e.g.clusterSize
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestAllocatorFirstFit: allocations take the first free run from the free
// cluster index; a free lowers it and discards the cluster (for a kind of
// discard that passes); allocClustersAt takes what is free of a run.
func TestAllocatorFirstFit(t *testing.T) {
	t.Parallel()
	e := newAllocTest(t, 9, 6)
	cs := e.g.clusterSize
	if c := e.alloc(t, 1); c != 3 {
		t.Fatalf("first allocation at cluster %d, want 3", c)
	}
	if c := e.alloc(t, 3); c != 4 {
		t.Fatalf("next at %d, want 4", c)
	}
	e.mem.Calls()
	e.a.freeClusters(5*cs, cs, discardAlways)
	e.a.freeClusters(4*cs, cs, discardNever)
	if e.a.freeClusterIndex != 4 {
		t.Fatalf("free cluster index %d after freeing 4 and 5, want 4", e.a.freeClusterIndex)
	}
	if got := e.refcounts(t, 8); !equalU64(got, []uint64{1, 1, 1, 1, 0, 0, 1, 0}) {
		t.Fatalf("refcounts %v", got)
	}
	var discards []string
	for _, c := range e.mem.Calls() {
		if c.Op == "discard" {
			discards = append(discards, c.String())
		}
	}
	if len(discards) != 1 || !strings.Contains(discards[0], "2560") {
		t.Errorf("discards %v, want one of cluster 5 (offset 2560)", discards)
	}
	// a run of two fits in 4-5 again; the next one starts past 6
	if c := e.alloc(t, 2); c != 4 {
		t.Fatalf("two clusters at %d, want 4", c)
	}
	if c := e.alloc(t, 2); c != 7 {
		t.Fatalf("two more at %d, want 7 (6 is used)", c)
	}
	// allocClustersAt stops at the first used cluster
	if n, err := e.a.allocClustersAt(9*cs, 3); n != 3 || err != nil {
		t.Fatalf("allocClustersAt 9+3: %d %v", n, err)
	}
	if n, err := e.a.allocClustersAt(12*cs, 0); n != 0 || err != nil {
		t.Fatalf("allocClustersAt of nothing: %d %v", n, err)
	}
	if n, err := e.a.allocClustersAt(8*cs, 4); n != 0 || err != nil {
		t.Fatalf("allocClustersAt over a used cluster: %d %v", n, err)
	}
	// refcounts stay in the cache until it is flushed
	if err := e.a.cacheFlush(e.a.rbc); err != nil {
		t.Fatal(err)
	}
	blk := make([]byte, cs)
	if err := e.disk.ReadAt(blk, 2*cs); err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 16; i++ {
		want := uint64(1)
		if i >= 12 {
			want = 0
		}
		if got := e.g.refGet(blk, i); got != want {
			t.Errorf("cluster %d: refcount %d on disk, want %d", i, got, want)
		}
	}
}

// TestAllocatorNewRefblock: the first allocation past what block 0 covers
// places a new block that counts itself, writes it before the table entry
// that points to it, and searches again.
func TestAllocatorNewRefblock(t *testing.T) {
	t.Parallel()
	e := newAllocTest(t, 9, 6)
	cs := e.g.clusterSize
	e.a.freeClusterIndex = 64 // the first cluster block 1 counts
	if c := e.alloc(t, 1); c != 64 {
		t.Fatalf("allocation at %d, want 64", c)
	}
	if e.a.refTable[1] != uint64(65*cs) || e.a.maxRefTableIndex != 1 {
		t.Fatalf("refcount table entry 1 = %#x (max index %d), want the block at cluster 65", e.a.refTable[1], e.a.maxRefTableIndex)
	}
	var order []int64
	for _, o := range e.rec.Ops {
		order = append(order, o.Off)
	}
	if len(order) != 2 || order[0] != 65*cs || order[1] != cs+8 {
		t.Fatalf("writes at %v, want the block (%d) then its table entry (%d)", order, 65*cs, cs+8)
	}
	if rc := e.refcounts(t, 67)[64:]; !equalU64(rc, []uint64{1, 1, 0}) {
		t.Fatalf("refcounts of 64-66: %v", rc)
	}
	if len(e.corrupt) != 0 || len(e.moved) != 0 {
		t.Fatalf("corruptions %v, table moved %v", e.corrupt, e.moved)
	}
}

// TestAllocatorGrowsTable: an allocation past what the refcount table
// covers makes a new table after new blocks that count it, switches the
// header to it (and tells the driver) and frees the old one, whose
// cluster the allocation then takes.
func TestAllocatorGrowsTable(t *testing.T) {
	t.Parallel()
	e := newAllocTest(t, 9, 6)
	cs := e.g.clusterSize
	e.a.freeClusterIndex = 64 * 64 // past the 2 MiB the table covers
	c := e.alloc(t, 1)
	if len(e.moved) != 1 {
		t.Fatalf("table moved %v, want once", e.moved)
	}
	tableOff, clusters := e.moved[0][0], e.moved[0][1]
	if e.a.refTableOffset != tableOff || int64(len(e.a.refTable)) != clusters*cs/8 || clusters < 2 {
		t.Fatalf("table at %d, %d entries; reported %d, %d clusters", e.a.refTableOffset, len(e.a.refTable), tableOff, clusters)
	}
	if e.a.refTable[0] != uint64(2*cs) || e.a.refTable[64] == 0 {
		t.Fatalf("new table: entry 0 %#x, entry 64 %#x", e.a.refTable[0], e.a.refTable[64])
	}
	// the header fields (refcount_table_offset, _clusters) were written
	var hdr []byte
	for _, o := range e.rec.Ops {
		if o.Off == 48 {
			hdr = o.Data
		}
	}
	if len(hdr) != 12 || int64(binary.BigEndian.Uint64(hdr)) != tableOff || int64(binary.BigEndian.Uint32(hdr[8:])) != clusters {
		t.Fatalf("header write %x", hdr)
	}
	// the old table's cluster, freed, is where the search starts again
	// and what the allocation gets (as QEMU's)
	if c != 1 || e.a.freeClusterIndex != 2 || e.stderr.Len() != 0 {
		t.Fatalf("allocated cluster %d, free cluster index %d (%q), want 1, 2", c, e.a.freeClusterIndex, e.stderr.String())
	}
	rc := e.refcounts(t, tableOff/cs+clusters+1)
	for i := tableOff / cs; i < tableOff/cs+clusters; i++ {
		if rc[i] != 1 {
			t.Errorf("new table cluster %d: refcount %d", i, rc[i])
		}
	}
	if rc[1] != 1 || rc[64*64] != 0 {
		t.Errorf("refcounts of clusters 1 and 4096: %d %d, want 1 0", rc[1], rc[64*64])
	}
}

// TestAllocatorRefcountLimits: a refcount cannot go past the width's
// maximum nor below zero; the failed update is undone, and a free that
// fails is reported (QEMU's message) and leaks.
func TestAllocatorRefcountLimits(t *testing.T) {
	t.Parallel()
	e := newAllocTest(t, 9, 0) // 1-bit refcounts: at most 1
	cs := e.g.clusterSize
	e.a.refTable = make([]uint64, cs/8)
	e.a.refTable[0] = uint64(2 * cs)
	if err := e.a.updateRefcount(0, 3*cs, 1, false, discardNever); err != syscall.EINVAL {
		t.Fatalf("refcount 2 with 1-bit refcounts: %v, want EINVAL", err)
	}
	e.a.freeClusters(2*cs, 2*cs, discardNever) // cluster 3 is free: undone
	if got := e.refcounts(t, 4); !equalU64(got, []uint64{1, 1, 1, 0}) {
		t.Fatalf("refcounts after failed updates %v, want them as they were", got)
	}
	if s := e.stderr.String(); s != "qcow2_free_clusters failed: Invalid argument\n" {
		t.Errorf("stderr %q", s)
	}
}

// TestAllocatorCorruption: an unaligned refcount block offset is reported
// to the driver as a corruption and fails the request.
func TestAllocatorCorruption(t *testing.T) {
	t.Parallel()
	e := newAllocTest(t, 12, 6) // 4 KiB clusters: the offset mask keeps 512
	e.a.refTable[0] = 4096 + 512
	if _, err := e.a.allocClusters(512); err == nil {
		t.Fatal("allocation with a corrupt refcount table succeeded")
	}
	if len(e.corrupt) != 1 || e.corrupt[0] != "Refblock offset 0x1200 unaligned (reftable index: 0)" {
		t.Fatalf("corruptions %q", e.corrupt)
	}
}

// TestAllocatorClaimed: the free byte offset of compressed clusters is
// forgotten when its cluster is taken by another allocation.
func TestAllocatorClaimed(t *testing.T) {
	t.Parallel()
	e := newAllocTest(t, 9, 6)
	cs := e.g.clusterSize
	e.a.freeByteOffset = 3*cs + 100
	e.a.claimed(4*cs, 1)
	if e.a.freeByteOffset == 0 {
		t.Fatal("forgotten for another cluster")
	}
	if c := e.alloc(t, 1); c != 3 || e.a.freeByteOffset != 0 {
		t.Fatalf("allocation at %d, free byte offset %d: want 3, 0", c, e.a.freeByteOffset)
	}
}
