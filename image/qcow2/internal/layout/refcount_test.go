package layout

import "testing"

// TestRefcounts: every width, entries set at every position read back, and
// their neighbours stay as they were.
func TestRefcounts(t *testing.T) {
	for order := uint(0); order <= MaxRefcountOrder; order++ {
		b := make([]byte, 64)
		n := int64(len(b)) * 8 >> order
		max := RefcountMax(order)
		for i := int64(0); i < n; i++ {
			v := (uint64(i)*0x9e3779b97f4a7c15 + 1) & max
			RefcountSet(b, order, i, v)
			if got := RefcountGet(b, order, i); got != v {
				t.Fatalf("order %d entry %d: %#x, want %#x", order, i, got, v)
			}
			if i > 0 {
				if got, want := RefcountGet(b, order, i-1), (uint64(i-1)*0x9e3779b97f4a7c15+1)&max; got != want {
					t.Fatalf("order %d: setting entry %d changed entry %d to %#x", order, i, i-1, got)
				}
			}
		}
		RefcountSet(b, order, 1, max)
		if RefcountGet(b, order, 1) != max {
			t.Fatalf("order %d: max %#x", order, max)
		}
	}
	// the byte layout: narrow entries from the low bits, wide ones big-endian
	b := make([]byte, 8)
	RefcountSet(b, 0, 9, 1)
	RefcountSet(b, 2, 1, 0xa)
	if b[1] != 0x02 || b[0] != 0xa0 {
		t.Fatalf("packed entries: %x", b)
	}
	RefcountSet(b, 4, 2, 0x1234)
	if b[4] != 0x12 || b[5] != 0x34 {
		t.Fatalf("16-bit entry: %x", b)
	}
}
