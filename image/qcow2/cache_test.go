package qcow2

import (
	"bytes"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// openSmallCache opens a 64 KiB-cluster image of size bytes with an L2
// cache of two tables (l2-cache-size=128k) and a refcount cache of four.
func openSmallCache(t *testing.T, size int64) *Driver {
	t.Helper()
	l2, rc := uint64(128<<10), uint64(256<<10)
	d, err := Open(create(t, CreateOptions{Size: size}), Options{Runtime: RuntimeOptions{L2CacheSize: &l2, RefcountCacheSize: &rc}})
	if err != nil {
		t.Fatal(err)
	}
	if d.l2c.Max() != 2 || d.rbc.Max() != 4 {
		t.Fatalf("cache sizes %d/%d tables, want 2/4", d.l2c.Max(), d.rbc.Max())
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestCacheBoundedWithinRequest: one zero write, discard and check over
// many L2 tables keep the caches within their sizes (issue 16 item 3),
// and what they wrote back on the way reads back.
func TestCacheBoundedWithinRequest(t *testing.T) {
	t.Parallel()
	const span = 512 << 20 // one L2 table of 64 KiB clusters
	d := openSmallCache(t, 64*span)
	// data in every table, so that the zero write frees clusters too
	for i := int64(0); i < 64; i++ {
		if _, err := d.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 4096), i*span+i*65536); err != nil {
			t.Fatal(err)
		}
	}
	bounded := func(what string) {
		t.Helper()
		if n := d.l2c.Len(); n > d.l2c.Max() {
			t.Errorf("%s: %d L2 tables cached, max %d", what, n, d.l2c.Max())
		}
		if n := d.rbc.Len(); n > d.rbc.Max() {
			t.Errorf("%s: %d refcount blocks cached, max %d", what, n, d.rbc.Max())
		}
		if n := d.l2c.FreeBuffers() + d.rbc.FreeBuffers(); n > 4 {
			t.Errorf("%s: %d free buffers kept", what, n)
		}
	}
	bounded("writes")
	if err := d.WriteZeroes(0, 32*span, image.ZeroMayUnmap); err != nil {
		t.Fatal(err)
	}
	bounded("zero write")
	if err := d.Discard(32*span, 16*span); err != nil {
		t.Fatal(err)
	}
	bounded("discard")
	var out bytes.Buffer
	res, err := d.Check(&out, 0)
	if err != nil || res.Corruptions != 0 || res.Leaks != 0 || res.CheckErrors != 0 {
		t.Fatalf("check: %+v %v\n%s", res, err, out.String())
	}
	bounded("check")
	buf := make([]byte, 4096)
	for i := int64(0); i < 64; i++ {
		if _, err := d.ReadAt(buf, i*span+i*65536); err != nil {
			t.Fatal(err)
		}
		want := byte(0)
		if i >= 48 {
			want = byte(i + 1)
		}
		if buf[0] != want || buf[4095] != want {
			t.Fatalf("table %d reads %d, want %d", i, buf[0], want)
		}
	}
	bounded("reads")
}

// TestCachePins: a table handed out by get is not evicted before the next
// safe point however many others are loaded (the cache grows past its
// size instead, as QEMU's cannot); one handed out by peek may be; the
// next safe point trims the cache back, writing dirty tables first.
func TestCachePins(t *testing.T) {
	t.Parallel()
	const span = 512 << 20
	d := openSmallCache(t, 8*span)
	for i := int64(0); i < 8; i++ {
		if _, err := d.WriteAt([]byte{byte(i + 1)}, i*span); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	l2 := func(i int) int64 { return layout.L1Entry(d.l1[i]).Offset() }
	d.evict()
	for i := 0; i < 4; i++ {
		b, err := d.l2c.Get(l2(i))
		if err != nil {
			t.Fatal(err)
		}
		d.setEntry(b, 1, layout.L2Zero)
		d.l2c.MarkDirty(l2(i))
	}
	if n := d.l2c.Len(); n != 4 {
		t.Fatalf("%d tables cached with 4 pinned, want 4", n)
	}
	for i := 4; i < 8; i++ {
		if _, err := d.l2c.Peek(l2(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		if !d.l2c.Has(l2(i)) {
			t.Fatalf("pinned table %d evicted", i)
		}
	}
	if n := d.l2c.Len(); n != 5 {
		t.Fatalf("%d tables cached, want the 4 pinned and the last peeked", n)
	}
	if err := d.evict(); err != nil {
		t.Fatal(err)
	}
	if n := d.l2c.Len(); n != d.l2c.Max() {
		t.Fatalf("%d tables cached after the safe point, want %d", n, d.l2c.Max())
	}
	// the least recently used went, dirty ones written back first; the
	// most recently used dirty one is still cached, and dirty
	b := make([]byte, d.clusterSize)
	for i := 0; i < 3; i++ {
		if d.l2c.Has(l2(i)) {
			t.Fatalf("table %d still cached after the safe point", i)
		}
		if err := d.file.ReadAt(b, l2(i)); err != nil {
			t.Fatal(err)
		}
		if e := d.getEntry(b, 1); e != layout.L2Zero {
			t.Fatalf("table %d entry 1 is %#x on disk after eviction, want the zero flag", i, e)
		}
	}
	if !d.l2c.IsDirty(l2(3)) {
		t.Fatalf("table 3 not cached dirty after the safe point")
	}
}
