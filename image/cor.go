package image

import (
	"syscall"

	"github.com/goqio/goqio/blkalign"
)

// errCopyOnReadSplit refuses a copy-on-read that QEMU 7.2 aborts on: with
// subclusters (extended L2) the allocation can change inside a cluster, and
// when a run ends before the request's offset, or the request ends inside a
// cluster whose remaining runs still need copying, bdrv_co_do_copy_on_readv
// fails an assertion or asks for a read of negative length. goqio refuses the
// read before copying anything.
var errCopyOnReadSplit = &Error{"image: copy-on-read of a cluster whose allocation changes outside the request (QEMU 7.2 aborts)", syscall.EINVAL}

// readCopyOnRead is a read of a Disk with CopyOnRead: QEMU's
// bdrv_co_preadv_part with BDRV_REQ_COPY_ON_READ and the copy-on-read part
// of bdrv_aligned_preadv. The request is padded to the request alignment
// first; when this layer does not store all of the padded range, it goes
// through copyOnRead, otherwise it is an ordinary read. Even a read of
// length 0 copies the cluster around off when off is not cluster-aligned,
// as QEMU's does.
func (d *Disk) readCopyOnRead(p []byte, off int64) error {
	n := int64(len(p))
	lim := d.Limits()
	if n == 0 && off%lim.RequestAlignment != 0 {
		return nil
	}
	// QEMU makes a copy-on-read request serialising: no other request
	// overlapping its clusters runs between its read and its write back.
	d.serial.RLock()
	defer d.serial.RUnlock()
	req := d.trackAll()
	defer d.untrack(req)
	pad := blkalign.Pad(off, n, lim.RequestAlignment)
	start, length := pad.Start(), pad.Length()
	alloc, pnum, err := d.IsAllocated(start, length)
	if err != nil {
		return err
	}
	if alloc && pnum == length {
		switch {
		case n == 0:
			return nil
		case !pad.Needed():
			return d.readAligned(p, off, lim)
		}
		return d.readPadded(p, pad, lim)
	}
	buf := p
	if pad.Needed() {
		buf = make([]byte, length)
	}
	if err := d.copyOnRead(buf, start, lim); err != nil {
		return err
	}
	if pad.Needed() {
		copy(p, buf[pad.Head:])
	}
	return nil
}

// corPiece is one run of a copy-on-read: allocated in this layer (read
// directly) or not (read, written back into this layer).
type corPiece struct {
	off, n int64
	alloc  bool
}

// copyOnRead is QEMU's bdrv_co_do_copy_on_readv for the aligned request
// [off, off+len(buf)): the request is widened to whole clusters and walked
// in runs of one allocation status (at most the max transfer, an unallocated
// run at most MAX_BOUNCE_BUFFER). An allocated run is read straight into buf;
// an unallocated run is read into a bounce buffer and written back into this
// layer, as a zero write (no unmap, no FUA) when it is all zeroes and the
// driver can zero, else as data; the part inside the request is copied to
// buf. The write-backs change no data: they are not marked in dirty bitmaps
// and not flushed, even on a write-through Disk.
//
// The runs are found first, so that a request QEMU would abort on (see
// errCopyOnReadSplit) is refused before anything is written; no run's
// status depends on the copies of the runs before it.
func (d *Disk) copyOnRead(buf []byte, off int64, lim Limits) error {
	bytes := int64(len(buf))
	maxTransfer := blkalign.MinNonZero(lim.MaxTransfer, MaxRequest)
	cOff, cBytes := off, bytes
	if c := d.corClusterSize(); c > 0 {
		cOff = blkalign.AlignDown(off, c)
		cBytes = blkalign.AlignUp(off-cOff+bytes, c)
	}
	d.trace("copy-on-read: read off=%#x size=%#x -> clusters [%#x,+%#x)", off, bytes, cOff, cBytes)
	var plan []corPiece
	skip, progress := off-cOff, int64(0)
	for o, left := cOff, cBytes; left > 0; {
		alloc, pnum, err := d.IsAllocated(o, min(left, maxTransfer))
		if err != nil {
			// as QEMU: treated as unallocated; the read will fail soon with
			// a better errno
			alloc, pnum = false, min(left, maxTransfer)
		} else if !alloc && pnum == 0 {
			break // the image ends inside the cluster
		}
		if skip >= pnum || progress > bytes {
			d.trace("  run off=%#x size=%#x ends outside the request: refused (QEMU 7.2 aborts)", o, pnum)
			return errCopyOnReadSplit
		}
		if !alloc {
			pnum = min(pnum, maxBounce)
		}
		plan = append(plan, corPiece{o, pnum, alloc})
		o += pnum
		left -= pnum
		progress += pnum - skip
		skip = 0
	}
	var bounce []byte
	skip, progress = off-cOff, 0
	left := cBytes
	for _, pc := range plan {
		if pc.alloc {
			l := min(pc.n-skip, bytes-progress)
			d.trace("  run off=%#x size=%#x: allocated, read directly", pc.off, pc.n)
			if err := d.readAligned(buf[progress:progress+l], off+progress, lim); err != nil {
				return err
			}
		} else {
			if bounce == nil {
				bounce = make([]byte, min(max(pc.n, left-pc.n), min(maxTransfer, maxBounce)))
			}
			b := bounce[:pc.n]
			if err := d.readAligned(b, pc.off, lim); err != nil {
				return err
			}
			var err error
			d.DebugEvent("cor_write")
			if _, ok := d.drv.(Zeroer); ok && isZero(b) {
				d.trace("  run off=%#x size=%#x: not allocated, zeroes: copied as a zero write", pc.off, pc.n)
				err = d.zeroAligned(pc.off, pc.n, 0, false, lim)
			} else {
				d.trace("  run off=%#x size=%#x: not allocated: copied as data", pc.off, pc.n)
				err = d.writeAligned(b, pc.off, lim)
			}
			if err != nil {
				return err
			}
			copy(buf[progress:], b[skip:skip+min(pc.n-skip, bytes-progress)])
		}
		left -= pc.n
		progress += pc.n - skip
		skip = 0
	}
	return nil
}

// Prefetch is a read of [off, off+n) with BDRV_REQ_COPY_ON_READ |
// BDRV_REQ_PREFETCH (NBD_CMD_CACHE): when this layer does not store the
// whole (padded) range, the clusters it lacks are copied into it from the
// backing chain as a copy-on-read read copies them; nothing is returned.
// On a read-only Disk nothing is copied.
func (d *Disk) Prefetch(off, n int64) error {
	if d.unordered() {
		return d.prefetch(off, n)
	}
	t := d.draw()
	return t.Prefetch(off, n)
}

func (d *Disk) prefetch(off, n int64) error {
	if err := d.checkRange(off, n); err != nil {
		return err
	}
	if d.opts.ReadOnly || n == 0 {
		return nil
	}
	lim := d.Limits()
	pad := blkalign.Pad(off, n, lim.RequestAlignment)
	alloc, pnum, err := d.IsAllocated(pad.Start(), pad.Length())
	if err != nil {
		return err
	}
	if alloc && pnum == pad.Length() {
		return nil
	}
	return d.readCopyOnRead(make([]byte, n), off)
}
