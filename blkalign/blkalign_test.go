package blkalign

import (
	"fmt"
	"reflect"
	"testing"
)

func TestPad(t *testing.T) {
	tests := []struct {
		off, n, align    int64
		head, tail       int64
		start, length    int64
		needed, oneBlock bool
	}{
		{0, 512, 512, 0, 0, 0, 512, false, true},
		{0, 0, 512, 0, 0, 0, 0, false, true},
		{1, 0, 512, 0, 0, 1, 0, false, true}, // zero length needs nothing
		{1, 1, 512, 1, 510, 0, 512, true, true},
		{100, 300, 512, 100, 112, 0, 512, true, true}, // head and tail in one block
		{511, 2, 512, 511, 511, 0, 1024, true, false},
		{512, 1, 512, 0, 511, 512, 512, true, true},
		{1000, 5000, 4096, 1000, 2192, 0, 8192, true, false},
		{7, 9, 1, 0, 0, 7, 9, false, false},
	}
	for _, tc := range tests {
		p := Pad(tc.off, tc.n, tc.align)
		if p.Head != tc.head || p.Tail != tc.tail || p.Start() != tc.start || p.Length() != tc.length ||
			p.Needed() != tc.needed || p.OneBlock(tc.align) != tc.oneBlock {
			t.Errorf("Pad(%d,%d,%d) = %+v start %d len %d needed %v one %v; want head %d tail %d start %d len %d needed %v one %v",
				tc.off, tc.n, tc.align, p, p.Start(), p.Length(), p.Needed(), p.OneBlock(tc.align),
				tc.head, tc.tail, tc.start, tc.length, tc.needed, tc.oneBlock)
		}
	}
}

const k = 1024

func TestZeroPieces(t *testing.T) {
	tests := []struct {
		off, n, align, maxZero, maxTransfer int64
		want                                []Piece
	}{
		// the examples of QEMU's bdrv_co_do_pwrite_zeroes with 64 KiB clusters
		{1 * k, 127 * k, 64 * k, 0, 0, []Piece{{1 * k, 63 * k}, {64 * k, 64 * k}}},
		{512, 131072, 64 * k, 0, 0, []Piece{{512, 64*k - 512}, {64 * k, 64 * k}, {128 * k, 512}}},
		{1 * k, 1 * k, 64 * k, 0, 0, []Piece{{1 * k, 1 * k}}}, // head and tail in one cluster
		{0, 64 * k, 64 * k, 0, 0, []Piece{{0, 64 * k}}},
		{0, 64*k + 1, 64 * k, 0, 0, []Piece{{0, 64 * k}, {64 * k, 1}}},
		{64*k - 1, 2, 64 * k, 0, 0, []Piece{{64*k - 1, 1}, {64 * k, 1}}},
		{0, 10 * 64 * k, 64 * k, 3 * 64 * k, 0, []Piece{{0, 192 * k}, {192 * k, 192 * k}, {384 * k, 192 * k}, {576 * k, 64 * k}}},
		{0, 1000, 1, 0, 0, []Piece{{0, 1000}}}, // raw: one piece
		// the head piece is also limited by the max transfer
		{100, 10000, 8192, 0, 4096, []Piece{{100, 4096}, {4196, 3996}, {8192, 1908}}},
		// the kernel's 1023-sector piece on 64 KiB clusters
		{0, 1023 * 512, 64 * k, 0, 0, []Piece{{0, 7 * 64 * k}, {7 * 64 * k, 63*k + 512}}},
		{1023 * 512, 8 * 512, 64 * k, 0, 0, []Piece{{1023 * 512, 512}, {512 * k, 3584}}},
	}
	for _, tc := range tests {
		got := ZeroPieces(tc.off, tc.n, tc.align, tc.maxZero, tc.maxTransfer)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ZeroPieces(%d,%d,%d,%d,%d) = %v, want %v", tc.off, tc.n, tc.align, tc.maxZero, tc.maxTransfer, got, tc.want)
		}
	}
}

// TestZeroSplitFallback: after a refused aligned piece the fallback writes at
// most MaxTransfer and the walk resumes from there.
func TestZeroSplitFallback(t *testing.T) {
	z := NewZeroSplit(0, 40*k, 4*k, 0, 16*k)
	var got []Piece
	for !z.Done() {
		o, n := z.Next()
		n = min(n, 16*k) // the caller's fallback
		got = append(got, Piece{o, n})
		z.Advance(n)
	}
	want := []Piece{{0, 16 * k}, {16 * k, 16 * k}, {32 * k, 8 * k}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestZeroPiecesProperties checks, over many requests, that the pieces
// cover the request exactly, that only the first piece may start unaligned,
// that no unaligned piece crosses a boundary, and that at most one piece
// ends unaligned (the last).
func TestZeroPiecesProperties(t *testing.T) {
	for _, align := range []int64{1, 512, 4096, 65536} {
		for off := int64(0); off < 3*align+3; off += max(align/7, 1) {
			for n := int64(0); n < 5*align; n += max(align/5, 1) {
				ps := ZeroPieces(off, n, align, 0, 0)
				pos := off
				for i, p := range ps {
					if p.Off != pos || p.Len <= 0 {
						t.Fatalf("%d+%d/%d: piece %d %v does not continue at %d", off, n, align, i, p, pos)
					}
					if i > 0 && p.Off%align != 0 {
						t.Fatalf("%d+%d/%d: piece %d %v starts unaligned", off, n, align, i, p)
					}
					if (p.Off%align != 0 || p.Len%align != 0) && p.Off/align != (p.Off+p.Len-1)/align {
						t.Fatalf("%d+%d/%d: unaligned piece %v crosses a boundary", off, n, align, p)
					}
					if i < len(ps)-1 && (p.Off+p.Len)%align != 0 {
						t.Fatalf("%d+%d/%d: piece %d %v ends unaligned but is not last", off, n, align, i, p)
					}
					pos += p.Len
				}
				if pos != off+n {
					t.Fatalf("%d+%d/%d: pieces end at %d", off, n, align, pos)
				}
			}
		}
	}
}

func TestDiscardPieces(t *testing.T) {
	tests := []struct {
		off, n, align, req, max int64
		want                    []Piece
	}{
		{0, 4 * k, 64 * k, 1, 0, []Piece{{0, 4 * k}}},
		{4 * k, 128 * k, 64 * k, 1, 0, []Piece{{4 * k, 60 * k}, {64 * k, 64 * k}, {128 * k, 4 * k}}},
		{0, 256 * k, 64 * k, 1, 128 * k, []Piece{{0, 128 * k}, {128 * k, 128 * k}}},
		{0, 1000, 1, 1, 0, []Piece{{0, 1000}}},
		{512, 4096, 4096, 512, 0, []Piece{{512, 3584}, {4096, 512}}},
	}
	for _, tc := range tests {
		got := DiscardPieces(tc.off, tc.n, tc.align, tc.req, tc.max)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DiscardPieces(%d,%d,%d,%d,%d) = %v, want %v", tc.off, tc.n, tc.align, tc.req, tc.max, got, tc.want)
		}
	}
}

func TestFragments(t *testing.T) {
	for _, tc := range []struct {
		off, n, max int64
		want        string
	}{
		{0, 0, 10, "[]"},
		{5, 25, 10, "[{5 10} {15 10} {25 5}]"},
		{5, 25, 0, "[{5 25}]"},
	} {
		if got := fmt.Sprint(Fragments(tc.off, tc.n, tc.max)); got != tc.want {
			t.Errorf("Fragments(%d,%d,%d) = %s, want %s", tc.off, tc.n, tc.max, got, tc.want)
		}
	}
}

func TestAlign(t *testing.T) {
	if AlignDown(1023, 512) != 512 || AlignUp(1023, 512) != 1024 || AlignUp(1024, 512) != 1024 || !IsAligned(0, 7) {
		t.Fatal("alignment helpers are wrong")
	}
	if MinNonZero(0, 5) != 5 || MinNonZero(5, 0) != 5 || MinNonZero(3, 5) != 3 || MinNonZero(0, 0) != 0 {
		t.Fatal("MinNonZero is wrong")
	}
}
