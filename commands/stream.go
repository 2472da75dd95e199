package commands

import (
	"errors"

	"github.com/goqio/goqio/image"
)

// Large requests are streamed through bounded buffers instead of one buffer
// of the whole length (qemu-io allocates all of it: 1 GiB for read 0 1G).
// Chunk boundaries fall on multiples of streamAlign, so no cluster (at most
// 2 MiB) is split differently than by the single request, and allocation,
// copy-on-write and the final image are those of the one request. Only the
// last chunk of a write carries FUA, so write-through flushes once, as
// QEMU's emulation of FUA for one request does.
const (
	streamMin   = 64 << 20 // requests at least this long are streamed
	streamChunk = 16 << 20
	streamAlign = 2 << 20
)

// interruptedError ends a streamed request stopped between two chunks
// (Ctrl-C in the shell): done bytes from its start were transferred.
type interruptedError struct{ done int64 }

func (e *interruptedError) Error() string { return "interrupted" }

// chunks calls fn for consecutive pieces of [off, off+n). After each piece
// but the last, stop (when not nil) may end the walk with an
// *interruptedError.
func chunks(off, n int64, stop func() bool, fn func(off, n int64, last bool) error) error {
	start, end := off, off+n
	for off < end {
		next := (off + streamChunk) &^ (streamAlign - 1)
		if next <= off {
			next = off + streamChunk
		}
		next = min(next, end)
		if err := fn(off, next-off, next == end); err != nil {
			return err
		}
		off = next
		if off < end && stop != nil && stop() {
			return &interruptedError{done: off - start}
		}
	}
	return nil
}

// patternBuf is a reusable buffer of one byte value.
func patternBuf(pattern byte) []byte { return newBuf(streamChunk+streamAlign, pattern) }

// streamWrite writes count bytes of pattern at offset in chunks. Stopped
// by stop, a FUA write flushes what it wrote, as its last chunk would have.
func streamWrite(d *image.Disk, pattern byte, offset, count int64, fua bool, stop func() bool) error {
	if offset < 0 || offset > d.Size() || d.Size()-offset < count {
		return image.ErrOutOfRange
	}
	buf := patternBuf(pattern)
	err := chunks(offset, count, stop, func(off, n int64, last bool) error {
		return d.WriteAt(buf[:n], off, fua && last)
	})
	var ie *interruptedError
	if fua && errors.As(err, &ie) {
		if ferr := d.Flush(); ferr != nil {
			return ferr
		}
	}
	return err
}

// streamRead reads count bytes at offset in chunks and reports whether
// bytes [patOff, patOff+patCount) of the request all equal pattern; stop
// may end it between chunks (not with copy-on-read: one request).
func streamRead(d *image.Disk, offset, count int64, pattern byte, patOff, patCount int64, stop func() bool) (bool, error) {
	if offset < 0 || offset > d.Size() || d.Size()-offset < count {
		return false, image.ErrOutOfRange
	}
	if d.CopyOnRead() {
		// copy-on-read walks the request in runs of its own (up to 16 MiB
		// from where each starts) and decides per run between a zero write
		// and data: chunks would cut the runs elsewhere, so the request is
		// read whole, into one buffer as qemu-io's
		buf := make([]byte, count)
		if err := d.ReadAt(buf, offset); err != nil {
			return false, err
		}
		return allBytes(buf[patOff:patOff+patCount], pattern), nil
	}
	buf := make([]byte, streamChunk+streamAlign)
	ok := true
	err := chunks(offset, count, stop, func(off, n int64, last bool) error {
		b := buf[:n]
		if err := d.ReadAt(b, off); err != nil {
			return err
		}
		// the part of this chunk inside the pattern range
		lo := max(off, offset+patOff)
		hi := min(off+n, offset+patOff+patCount)
		if ok && lo < hi && !allBytes(b[lo-off:hi-off], pattern) {
			ok = false
		}
		return nil
	})
	return ok, err
}
