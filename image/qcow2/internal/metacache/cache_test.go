package metacache

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
)

const ts = 512 // table size of the tests

// store is a Store over an in-memory file behind imagetest's Recorder,
// logging every call it receives ("r", "w" and "c" with the table's index,
// "sync", "ev:" and the event's name) and refusing writes to the
// tables in refuse.
type store struct {
	name   string
	disk   *image.Disk
	rec    *imagetest.Recorder
	log    *[]string
	refuse map[int64]bool
}

var errOverlap = errors.New("overlap")

func (s *store) add(f string, a ...any) { *s.log = append(*s.log, s.name+fmt.Sprintf(f, a...)) }

func (s *store) ReadTable(b []byte, off int64) error {
	s.add("r%d", off/ts)
	return s.disk.ReadAt(b, off)
}

func (s *store) WriteTable(b []byte, off int64) error {
	s.add("w%d", off/ts)
	return s.disk.WriteAt(b, off, false)
}

func (s *store) Sync() error {
	*s.log = append(*s.log, "sync")
	return s.disk.Flush()
}

func (s *store) CheckWrite(off, n int64) error {
	if n != ts {
		return fmt.Errorf("check of %d bytes", n)
	}
	if s.refuse[off] {
		s.add("refuse%d", off/ts)
		return errOverlap
	}
	return nil
}

func (s *store) Event(name string) { s.add("ev:%s", name) }

// file is 64 tables of ts bytes, table i filled with byte i.
type file struct {
	disk *image.Disk
	rec  *imagetest.Recorder
	log  []string
}

func newFile(t *testing.T) *file {
	mem := imagetest.NewMem(64*ts, image.Limits{}, false)
	for i := 0; i < 64; i++ {
		if _, err := mem.WriteAt(bytes.Repeat([]byte{byte(i)}, ts), int64(i)*ts); err != nil {
			t.Fatal(err)
		}
	}
	rec := &imagetest.Recorder{Driver: mem}
	return &file{disk: image.New(rec, "mem", image.Options{}), rec: rec}
}

// cache makes a cache named name (its log entries begin with it).
func (f *file) cache(name string, max int, refuse ...int64) (*Cache, *store) {
	s := &store{name: name, disk: f.disk, rec: f.rec, log: &f.log, refuse: map[int64]bool{}}
	for _, i := range refuse {
		s.refuse[i*ts] = true
	}
	return New(s, Config{Max: max, TableSize: ts, LoadEvent: "load", WriteEvent: "write"}), s
}

// took returns the log since the last call and forgets it.
func (f *file) took() string {
	s := strings.Join(f.log, " ")
	f.log = nil
	return s
}

func (f *file) expect(t *testing.T, what, want string) {
	t.Helper()
	if got := f.took(); got != want {
		t.Errorf("%s: %q, want %q", what, got, want)
	}
}

// written is the index of every table the Recorder saw reach the file,
// in order, and checks each was written with its first byte fill(i) and
// the rest as read.
func (f *file) written(t *testing.T, fill func(i int64) byte) []int64 {
	t.Helper()
	var out []int64
	for _, o := range f.rec.Ops {
		if o.Off%ts != 0 || len(o.Data) != ts {
			t.Fatalf("write of %d bytes at %d", len(o.Data), o.Off)
		}
		i := o.Off / ts
		if o.Data[0] != fill(i) || !bytes.Equal(o.Data[1:], bytes.Repeat([]byte{byte(i)}, ts-1)) {
			t.Errorf("table %d written with %d..., want %d", i, o.Data[0], fill(i))
		}
		out = append(out, i)
	}
	f.rec.Ops = nil
	return out
}

func peek(t *testing.T, c *Cache, i int64) []byte {
	t.Helper()
	b, err := c.Peek(i * ts)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != ts {
		t.Fatalf("table %d: %d bytes", i, len(b))
	}
	return b
}

func get(t *testing.T, c *Cache, i int64) []byte {
	t.Helper()
	b, err := c.Get(i * ts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func has(c *Cache, idx ...int64) bool {
	for _, i := range idx {
		if !c.Has(i * ts) {
			return false
		}
	}
	return true
}

// TestEvictsLRUUnpinned: the table that makes room is the least recently
// used one no caller holds; a cached table is read once.
func TestEvictsLRUUnpinned(t *testing.T) {
	t.Parallel()
	f := newFile(t)
	c, _ := f.cache("", 2)
	if b := peek(t, c, 1); b[0] != 1 {
		t.Fatalf("table 1 reads %d", b[0])
	}
	peek(t, c, 2)
	peek(t, c, 1) // 2 is now the least recently used
	f.expect(t, "loads", "ev:load r1 ev:load r2")
	peek(t, c, 3)
	if !has(c, 1, 3) || c.Has(2*ts) || c.Len() != 2 {
		t.Fatalf("after loading 3: want 1 and 3 cached")
	}
	// a pinned table stays, however long unused
	c.SafePoint()
	get(t, c, 1)
	peek(t, c, 3)
	peek(t, c, 4)
	if !has(c, 1, 4) || c.Has(3*ts) {
		t.Fatalf("pinned table 1 evicted, or 3 kept")
	}
	// Cached neither loads nor reorders
	if c.Cached(5*ts) != nil || c.Cached(1*ts) == nil {
		t.Fatalf("Cached")
	}
	f.expect(t, "more loads", "ev:load r3 ev:load r4")
	if len(f.rec.Ops) != 0 || c.FreeBuffers() != 0 {
		t.Fatalf("clean evictions wrote %d tables, kept %d buffers", len(f.rec.Ops), c.FreeBuffers())
	}
}

// TestDirtyWrittenBeforeEviction: a dirty victim is written back (checked
// first) before the table that replaces it is read, into its buffer.
func TestDirtyWrittenBeforeEviction(t *testing.T) {
	t.Parallel()
	f := newFile(t)
	c, _ := f.cache("", 1)
	b, err := c.GetEmpty(7 * ts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 7
	}
	b[0] = 0x77
	c.MarkDirty(7 * ts)
	if !c.IsDirty(7*ts) || c.IsDirty(8*ts) {
		t.Fatal("IsDirty")
	}
	c.SafePoint()
	b2 := peek(t, c, 8)
	f.expect(t, "eviction", "ev:write w7 ev:load r8")
	if &b2[0] != &b[0] || b2[0] != 8 {
		t.Errorf("the victim's buffer is not reused for the next table")
	}
	if w := f.written(t, func(int64) byte { return 0x77 }); !slices.Equal(w, []int64{7}) {
		t.Errorf("written %v, want [7]", w)
	}
	// GetEmpty zeroes a reused buffer without reading
	c.SafePoint()
	if b, err := c.GetEmpty(9 * ts); err != nil || b[0] != 0 {
		t.Fatalf("GetEmpty: %v %v", b[0], err)
	}
	f.expect(t, "empty table", "")
	// Drop forgets a dirty table without writing it
	c.MarkDirty(9 * ts)
	c.Drop(9 * ts)
	if c.Has(9*ts) || c.IsDirty(9*ts) || c.Cached(9*ts) != nil {
		t.Fatal("a dropped table (the last one looked up) is still found")
	}
	if err := c.Flush(); err != nil || c.Len() != 0 {
		t.Fatalf("flush after drop: %v, %d cached", err, c.Len())
	}
	f.expect(t, "dropped", "")
}

// TestGrowsWhenPinnedShrinksAtSafePoint: with every table pinned the cache
// grows past its maximum; Evict brings it back, writing back the dirty
// victims (least recently used first) and keeping the most recent.
func TestGrowsWhenPinnedShrinksAtSafePoint(t *testing.T) {
	t.Parallel()
	f := newFile(t)
	c, _ := f.cache("", 2)
	for i := int64(1); i <= 5; i++ {
		b := get(t, c, i)
		b[0] = byte(0x10 + i)
		if i != 3 {
			c.MarkDirty(i * ts)
		}
	}
	if c.Len() != 5 || c.Max() != 2 {
		t.Fatalf("%d tables cached with 5 pinned, max %d", c.Len(), c.Max())
	}
	f.took()
	if len(f.rec.Ops) != 0 {
		t.Fatal("wrote while every table was pinned")
	}
	if err := c.Evict(); err != nil {
		t.Fatal(err)
	}
	f.expect(t, "evict", "ev:write w1 ev:write w2")
	if c.Len() != 2 || !has(c, 4, 5) || !c.IsDirty(4*ts) {
		t.Fatalf("after Evict: %d cached, want 4 and 5, dirty", c.Len())
	}
	if c.FreeBuffers() != 3 {
		t.Errorf("%d free buffers, want 3", c.FreeBuffers())
	}
	// Flush writes the rest in offset order, and only once
	if n, err := c.WriteBack(); n != 2 || err != nil {
		t.Fatalf("WriteBack: %d %v", n, err)
	}
	if n, err := c.WriteBack(); n != 0 || err != nil {
		t.Fatalf("second WriteBack: %d %v", n, err)
	}
	f.expect(t, "flush", "ev:write w4 ev:write w5")
	f.rec.Ops = nil
	c.Reset()
	if c.Len() != 0 || c.FreeBuffers() != 5 {
		t.Fatalf("Reset: %d cached, %d buffers", c.Len(), c.FreeBuffers())
	}
}

// TestDependencyOrder: the tables of a cache's dependency are written and
// synced before its own, once; a dependency the other way round is
// settled first; eviction of a dirty table honours it.
func TestDependencyOrder(t *testing.T) {
	t.Parallel()
	f := newFile(t)
	l2, _ := f.cache("l2:", 2)
	rb, _ := f.cache("rb:", 2)
	dirty := func(c *Cache, i int64) {
		get(t, c, i)[0] = 0xee
		c.MarkDirty(i * ts)
	}
	dirty(l2, 10)
	dirty(rb, 21)
	dirty(rb, 20)
	if err := l2.SetDependency(rb); err != nil {
		t.Fatal(err)
	}
	f.took()
	if l2.DependsOn() != rb || rb.DependsOn() != nil {
		t.Fatal("DependsOn")
	}
	if err := l2.Flush(); err != nil {
		t.Fatal(err)
	}
	f.expect(t, "l2 after rb", "rb:ev:write rb:w20 rb:ev:write rb:w21 sync l2:ev:write l2:w10")
	if l2.DependsOn() != nil {
		t.Fatal("dependency kept after the flush")
	}
	// once settled, l2 writes alone
	dirty(l2, 11)
	l2.Flush()
	f.expect(t, "settled", "l2:ev:load l2:r11 l2:ev:write l2:w11")

	// the other way round: rb depends on l2 while l2 depends on rb
	dirty(rb, 22)
	l2.SetDependency(rb)
	dirty(l2, 12)
	f.took()
	if err := rb.SetDependency(l2); err != nil {
		t.Fatal(err)
	}
	f.expect(t, "settle l2's first", "rb:ev:write rb:w22 sync")
	if l2.DependsOn() != nil || rb.DependsOn() != l2 {
		t.Fatal("dependencies after SetDependency the other way round")
	}
	// a dirty refblock evicted waits for l2's tables (and a sync)
	dirty(rb, 23)
	l2.SafePoint()
	if err := rb.Evict(); err != nil { // drops the clean 20, 21
		t.Fatal(err)
	}
	f.took()
	peek(t, rb, 24) // evicts the clean 22
	peek(t, rb, 25) // evicts the dirty 23, after l2's 12
	f.expect(t, "eviction after the dependency", "rb:ev:load rb:r24 l2:ev:write l2:w12 sync rb:ev:write rb:w23 rb:ev:load rb:r25")
	// the sync is asked for even when the dependency had nothing to write
	l2.SetDependency(rb)
	dirty(l2, 13)
	f.took()
	l2.Flush()
	f.expect(t, "empty dependency", "sync l2:ev:write l2:w13")
	if w := f.written(t, func(int64) byte { return 0xee }); !slices.Equal(w, []int64{20, 21, 10, 11, 22, 12, 23, 13}) {
		t.Errorf("%d tables reached the file: %v", len(w), w)
	}
}

// TestOverlapCheckRefuses: a write the store's check refuses is not made,
// its error returned by whatever caused it, the table kept dirty.
func TestOverlapCheckRefuses(t *testing.T) {
	t.Parallel()
	f := newFile(t)
	c, _ := f.cache("", 1, 3)
	get(t, c, 3)[0] = 0x33
	c.MarkDirty(3 * ts)
	if err := c.Flush(); err != errOverlap {
		t.Fatalf("Flush: %v, want the check's error", err)
	}
	c.SafePoint()
	if _, err := c.Peek(4 * ts); err != errOverlap {
		t.Fatalf("Peek making room: %v, want the check's error", err)
	}
	if _, err := c.GetEmpty(4 * ts); err != errOverlap {
		t.Fatalf("GetEmpty making room: %v, want the check's error", err)
	}
	if err := c.Evict(); err != nil {
		t.Fatalf("Evict under the maximum: %v", err)
	}
	f.expect(t, "refused", "ev:load r3 refuse3 refuse3 refuse3")
	if len(f.rec.Ops) != 0 || !c.IsDirty(3*ts) || c.Has(4*ts) {
		t.Fatal("refused table written, cleaned or replaced")
	}
	// a read error leaves nothing cached
	c.Drop(3 * ts)
	if _, err := c.Get(64 * ts); err == nil || c.Len() != 0 {
		t.Fatalf("read past the end: %v, %d cached", err, c.Len())
	}
}
