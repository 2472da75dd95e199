// Package blkalign is the pure arithmetic of block request alignment, as QEMU's
// generic block layer (block/io.c) does it: padding a data request out to the
// request alignment for read-modify-write, splitting zero writes and discards
// into an unaligned head piece, an aligned middle and an unaligned tail piece,
// and fragmenting requests at a maximum transfer size.
//
// Nothing here does I/O. Every function is total over its documented domain:
// offsets and lengths are non-negative, alignments are >= 1.
package blkalign

// AlignDown rounds n down to a multiple of align (align >= 1).
func AlignDown(n, align int64) int64 { return n - n%align }

// AlignUp rounds n up to a multiple of align (align >= 1).
func AlignUp(n, align int64) int64 {
	if r := n % align; r != 0 {
		return n + align - r
	}
	return n
}

// IsAligned reports whether n is a multiple of align.
func IsAligned(n, align int64) bool { return n%align == 0 }

// MinNonZero returns the smaller of a and b, ignoring zero (which means "no limit").
func MinNonZero(a, b int64) int64 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	case a < b:
		return a
	}
	return b
}

// Padding describes how a request [Off, Off+Len) is widened to the alignment.
// Head is the number of bytes before Off in the first aligned block, Tail the
// number of bytes after Off+Len in the last one. The padded request is
// [Off-Head, Off+Len+Tail). A request that needs no padding has Head == Tail == 0.
type Padding struct {
	Off, Len   int64 // the original request
	Head, Tail int64 // bytes added in front and behind
}

// Pad computes the padding of [off, off+n) to align. A zero-length request
// needs no padding (QEMU treats it as a no-op).
func Pad(off, n, align int64) Padding {
	p := Padding{Off: off, Len: n}
	if n == 0 || align <= 1 {
		return p
	}
	p.Head = off % align
	if r := (off + n) % align; r != 0 {
		p.Tail = align - r
	}
	return p
}

// Needed reports whether the request needs any padding.
func (p Padding) Needed() bool { return p.Head != 0 || p.Tail != 0 }

// Start is the offset of the padded request.
func (p Padding) Start() int64 { return p.Off - p.Head }

// Length is the length of the padded request.
func (p Padding) Length() int64 { return p.Head + p.Len + p.Tail }

// OneBlock reports whether the padded request is a single aligned block, so
// that head and tail padding come from the same block and one read serves both.
func (p Padding) OneBlock(align int64) bool { return p.Length() <= align }

// ZeroSplit walks a zero-write request the way QEMU's bdrv_co_do_pwrite_zeroes
// does: the first piece runs from an unaligned start up to the next boundary
// (never crossing it, and at most MaxTransfer long), the aligned middle is cut
// at MaxZero (aligned down), and an unaligned tail is left for a piece of its
// own starting on a boundary. The caller asks Next for the proposed piece and
// tells Advance how much of it was done: a driver that refuses a piece makes
// the caller fall back to writing at most MaxTransfer bytes of it, after which
// the walk goes on from there, exactly as QEMU's loop does.
type ZeroSplit struct {
	off, bytes  int64
	head, tail  int64
	align       int64
	maxZero     int64
	maxTransfer int64
}

// NewZeroSplit starts a walk over [off, off+n). align is the zero alignment
// (max of the driver's zero alignment and request alignment, >= 1); maxZero
// and maxTransfer are limits, 0 meaning unlimited.
func NewZeroSplit(off, n, align, maxZero, maxTransfer int64) *ZeroSplit {
	if align < 1 {
		align = 1
	}
	const maxInt64 = 1<<63 - 1
	mz := AlignDown(MinNonZero(maxZero, maxInt64), align)
	if mz == 0 {
		mz = align
	}
	return &ZeroSplit{
		off: off, bytes: n,
		head:        off % align,
		tail:        (off + n) % align,
		align:       align,
		maxZero:     mz,
		maxTransfer: MinNonZero(maxTransfer, maxInt64),
	}
}

// Done reports whether the whole request has been walked.
func (z *ZeroSplit) Done() bool { return z.bytes <= 0 }

// Next returns the next piece to hand to the driver. It does not advance.
func (z *ZeroSplit) Next() (off, n int64) {
	num := z.bytes
	if z.head != 0 {
		num = min(num, z.maxTransfer, z.align-z.head)
	} else if z.tail != 0 && num > z.align {
		num -= z.tail
	}
	num = min(num, z.maxZero)
	return z.off, num
}

// Advance records that n bytes from the current offset were done (n may be
// smaller than the piece Next proposed, when a fallback wrote less).
func (z *ZeroSplit) Advance(n int64) {
	if z.head != 0 {
		z.head = (z.head + n) % z.align
	}
	z.off += n
	z.bytes -= n
}

// Piece is one part of a split request.
type Piece struct{ Off, Len int64 }

// ZeroPieces is the list of pieces a zero write becomes when the driver takes
// every piece (no fallback).
func ZeroPieces(off, n, align, maxZero, maxTransfer int64) []Piece {
	var ps []Piece
	z := NewZeroSplit(off, n, align, maxZero, maxTransfer)
	for !z.Done() {
		o, l := z.Next()
		ps = append(ps, Piece{o, l})
		z.Advance(l)
	}
	return ps
}

// DiscardPieces splits a discard the way QEMU's bdrv_co_pdiscard does: small
// pieces up to the first boundary of align (each a multiple of reqAlign when
// possible), the aligned middle cut at maxDiscard (aligned down, 0 meaning
// unlimited), and the tail. align must be a multiple of reqAlign.
func DiscardPieces(off, n, align, reqAlign, maxDiscard int64) []Piece {
	if reqAlign < 1 {
		reqAlign = 1
	}
	if align < reqAlign {
		align = reqAlign
	}
	const maxInt64 = 1<<63 - 1
	md := AlignDown(MinNonZero(maxDiscard, maxInt64), align)
	if md == 0 {
		md = align
	}
	head := off % align
	tail := (off + n) % align
	var ps []Piece
	for n > 0 {
		num := n
		if head != 0 {
			num = min(n, align-head)
			if num%reqAlign != 0 {
				num %= reqAlign
			}
			head = (head + num) % align
		} else if tail != 0 {
			if num > align {
				num -= tail
			} else if tail%reqAlign != 0 && tail > reqAlign {
				tail %= reqAlign
				num -= tail
			}
		}
		num = min(num, md)
		ps = append(ps, Piece{off, num})
		off += num
		n -= num
	}
	return ps
}

// Fragments cuts [off, off+n) into pieces of at most max bytes (0: one piece).
// A zero-length request gives no pieces.
func Fragments(off, n, max int64) []Piece {
	var ps []Piece
	for n > 0 {
		l := n
		if max > 0 && l > max {
			l = max
		}
		ps = append(ps, Piece{off, l})
		off += l
		n -= l
	}
	return ps
}
