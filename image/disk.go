package image

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/goqio/goqio/blkalign"
)

// maxBounce is QEMU's MAX_BOUNCE_BUFFER: the largest explicit-zero write a
// zero-write fallback issues at once, and the default max transfer.
const maxBounce = 16 << 20

// MaxRequest is QEMU's BDRV_REQUEST_MAX_BYTES, INT_MAX aligned down to
// whole sectors: the largest data request (qemu-io refuses longer ones).
const MaxRequest = (1<<31 - 1) &^ 511

// Options are the open flags of a Disk that the generic layer acts on.
type Options struct {
	ReadOnly     bool // refuse every write (QEMU without BDRV_O_RDWR)
	Unmap        bool // discards reach the driver (QEMU's BDRV_O_UNMAP, -d on|unmap)
	WriteThrough bool // every write is followed by a flush (cache=writethrough|directsync)
	// RawFormat marks the Disk of a raw image: it stands for QEMU's raw
	// format node (request alignment 1), which holds the node's options,
	// over the file node whose alignment the driver declares. detect-zeroes
	// then tests the caller's buffer before any padding, and the zero
	// write it becomes is padded as write -z is, with no test of the
	// padded blocks (the file node has no detect-zeroes).
	RawFormat bool
	// Grow marks the Disk of an image file under a format driver: requests
	// past the end are allowed (writes extend the file, reads return zeroes),
	// as for QEMU's protocol nodes.
	Grow bool
	// DetectZeroes is QEMU's detect-zeroes: a data write whose buffer is all
	// zeroes becomes a zero write (with DetectZeroesUnmap one that may
	// unmap; that mode needs Unmap, see ParseDetectZeroes).
	DetectZeroes DetectZeroes
	// CopyOnRead is QEMU's copy-on-read (qemu-io -C, BDRV_O_COPY_ON_READ):
	// every read copies the clusters it touches that this layer does not
	// store into this layer. It needs a writable Disk.
	CopyOnRead bool
	// Trace, when set, receives a line for every piece a zero write or
	// discard becomes, for every fallback to explicit zeroes, for every data
	// write detect-zeroes turns into a zero write and for every copy-on-read.
	Trace func(string)
	// OnClose, when set, runs after the driver is closed (the block
	// graph closes the node's children there).
	OnClose func() error
}

// Disk is the generic block layer in front of one driver: it checks bounds,
// pads unaligned requests with read-modify-write, splits zero writes and
// discards as QEMU does, fragments at the driver's max transfer, and supplies
// the fallbacks a driver lacks (explicit zeroes, discard as a no-op, "all
// data" block status). Disk is safe for concurrent use; unaligned writes are
// serialised against all other writes, as QEMU serialises padded requests.
type Disk struct {
	drv  Driver
	name string
	opts Options

	// serial is held shared by every write request and exclusively by
	// truncate and close. Requests order among themselves through tracked
	// (tracked.go): a padded write is serialising over its blocks, so that
	// no overlapping request slips between its read and its write.
	serial  sync.RWMutex
	tracked tracker

	// order runs ticketed requests in submission order (order.go); nil
	// when the driver runs requests in parallel. Set once, by gate.
	order     *orderGate
	orderOnce sync.Once
	loop      *Loop       // the client's event loop (SetLoop), nil for none
	ticketed  atomic.Bool // a Ticket was drawn: plain calls take places too

	mu     sync.Mutex
	closed bool

	// clusterSize is the driver's cluster size (QEMU's bdrv_get_info), the
	// granularity of copy-on-read; 0 when unknown. Found at the first
	// copy-on-read (clusterOnce).
	clusterSize int64
	clusterOnce sync.Once
}

// New wraps drv. name is the file name as the user gave it, used in messages.
func New(drv Driver, name string, opts Options) *Disk {
	d := &Disk{drv: drv, name: name, opts: opts}
	if opts.CopyOnRead {
		d.corClusterSize()
	}
	return d
}

// corClusterSize returns the cluster size copy-on-read works in (QEMU's
// bdrv_get_cluster_size from bdrv_get_info), asking the driver once.
func (d *Disk) corClusterSize() int64 {
	d.clusterOnce.Do(func() {
		if inf, ok := d.drv.(Infoer); ok {
			if i, err := inf.Info(); err == nil {
				d.clusterSize = i.ClusterSize
			}
		}
	})
	return d.clusterSize
}

// Driver returns the driver behind d.
func (d *Disk) Driver() Driver { return d.drv }

// Name returns the file name d was opened with.
func (d *Disk) Name() string { return d.name }

// WriteThrough reports whether every write is followed by a flush.
func (d *Disk) WriteThrough() bool { return d.opts.WriteThrough }

// ReadOnly reports whether d refuses writes.
func (d *Disk) ReadOnly() bool { return d.opts.ReadOnly }

// CopyOnRead reports whether reads copy what they read into this layer.
func (d *Disk) CopyOnRead() bool { return d.opts.CopyOnRead }

// Size returns the guest-visible length.
func (d *Disk) Size() int64 { return d.drv.Size() }

// Limits returns the driver's limits with the defaults filled in.
func (d *Disk) Limits() Limits {
	l := d.drv.Limits()
	if l.RequestAlignment < 1 {
		l.RequestAlignment = 1
	}
	if l.ZeroAlignment < 1 {
		l.ZeroAlignment = 1
	}
	if l.DiscardAlignment < 1 {
		l.DiscardAlignment = 1
	}
	return l
}

// Available reports whether the image can still be used: a driver that
// detected fatal corruption makes every request fail with ENOMEDIUM, as
// QEMU does once it has detached the driver.
func (d *Disk) Available() bool {
	if x, ok := d.drv.(interface{ Dead() bool }); ok {
		return !x.Dead()
	}
	return true
}

// checkRange is QEMU's blk_check_byte_request.
func (d *Disk) checkRange(off, n int64) error {
	if !d.Available() {
		return ErrNoMedium
	}
	if off < 0 || n < 0 {
		return ErrOutOfRange
	}
	if d.opts.Grow {
		return nil
	}
	size := d.Size()
	if off > size || size-off < n {
		return ErrOutOfRange
	}
	return nil
}

func (d *Disk) checkWrite(off, n int64) error {
	if d.opts.ReadOnly {
		return ErrReadOnly
	}
	return d.checkRange(off, n)
}

// ReadAt reads len(p) bytes at off. Unlike io.ReaderAt it either fills p
// completely or returns an error; a request beyond the end of the image is
// ErrOutOfRange, a zero-length request at the end succeeds.
func (d *Disk) ReadAt(p []byte, off int64) error {
	if d.unordered() {
		return d.readAt(p, off)
	}
	t := d.draw()
	return t.ReadAt(p, off)
}

func (d *Disk) readAt(p []byte, off int64) error {
	n := int64(len(p))
	if err := d.checkRange(off, n); err != nil {
		return err
	}
	if d.opts.CopyOnRead {
		return d.readCopyOnRead(p, off)
	}
	if n == 0 {
		if _, ok := d.drv.(Filter); ok {
			// QEMU hands even an empty read to a byte-aligned driver; a
			// filter passes it on (a copy-on-read filter's child may copy)
			_, err := d.drv.ReadAt(p, off)
			return err
		}
		return nil
	}
	lim := d.Limits()
	pad := blkalign.Pad(off, n, lim.RequestAlignment)
	// a read waits for the serialising requests it overlaps, as QEMU's
	// bdrv_aligned_preadv does
	req := d.track(pad.Start(), pad.Length())
	defer d.untrack(req)
	if !pad.Needed() {
		return d.readAligned(p, off, lim)
	}
	return d.readPadded(p, pad, lim)
}

// readPadded reads an unaligned request as QEMU does: one request for the
// padded range, whose head and tail land in small bounce buffers and whose
// middle lands in p (a vectored read when the driver has one).
func (d *Disk) readPadded(p []byte, pad blkalign.Padding, lim Limits) error {
	head := make([]byte, pad.Head)
	tail := make([]byte, pad.Tail)
	if v, ok := d.drv.(VectorIO); ok && (lim.MaxTransfer == 0 || pad.Length() <= lim.MaxTransfer) {
		return v.ReadvAt(nonEmpty(head, p, tail), pad.Start())
	}
	buf := make([]byte, pad.Length())
	if err := d.readAligned(buf, pad.Start(), lim); err != nil {
		return err
	}
	copy(p, buf[pad.Head:])
	return nil
}

func nonEmpty(bufs ...[]byte) [][]byte {
	out := bufs[:0]
	for _, b := range bufs {
		if len(b) > 0 {
			out = append(out, b)
		}
	}
	return out
}

// readAligned reads an aligned request, fragmented at the max transfer. The
// part of the last block past the image end reads as zeroes.
func (d *Disk) readAligned(p []byte, off int64, lim Limits) error {
	size := d.Size()
	end := off + int64(len(p))
	if end > size {
		valid := blkalign.AlignUp(max(size-off, 0), lim.RequestAlignment)
		if valid < int64(len(p)) {
			clear(p[valid:])
			p = p[:valid]
		}
	}
	for _, f := range blkalign.Fragments(off, int64(len(p)), lim.MaxTransfer) {
		b := p[f.Off-off : f.Off-off+f.Len]
		if n, err := d.drv.ReadAt(b, f.Off); err == io.EOF {
			// a driver with io.ReaderAt's contract stops at its end:
			// past it, the padding reads as zeroes
			clear(b[n:])
		} else if err != nil {
			return err
		}
	}
	return nil
}

// writeAligned writes an aligned request, fragmented at the max transfer.
func (d *Disk) writeAligned(p []byte, off int64, lim Limits) error {
	return d.writeAlignedFUA(p, off, lim, false)
}

// nativeFUA returns the driver's FUA writes when it has them and fua is
// asked for (bdrv_driver_pwritev: FUA passed down, else a flush after).
func (d *Disk) nativeFUA(fua bool) FUAWriter {
	if fw, ok := d.drv.(FUAWriter); ok && fua && fw.SupportsFUA() {
		return fw
	}
	return nil
}

// SupportsFUA reports whether the driver writes FUA by itself (QEMU's
// BDRV_REQ_FUA in supported_write_flags), for filters and formats that
// pass it on to their child.
func (d *Disk) SupportsFUA() bool {
	fw, ok := d.drv.(FUAWriter)
	return ok && fw.SupportsFUA()
}

// writeAlignedFUA is writeAligned with each fragment written FUA by the
// driver when native is set.
func (d *Disk) writeAlignedFUA(p []byte, off int64, lim Limits, native bool) error {
	fw := d.nativeFUA(native)
	for _, f := range blkalign.Fragments(off, int64(len(p)), lim.MaxTransfer) {
		q := p[f.Off-off : f.Off-off+f.Len]
		if fw != nil {
			if err := fw.WriteAtFUA(q, f.Off); err != nil {
				return err
			}
			continue
		}
		if _, err := d.drv.WriteAt(q, f.Off); err != nil {
			return err
		}
	}
	return nil
}

// WriteAt writes p at off. fua asks for the data to be durable when WriteAt
// returns (qemu-io write -f); a write-through Disk always does so. Unaligned
// requests are padded with read-modify-write of the head and tail blocks.
// With DetectZeroes, a request (padding included) that is all zeroes is
// written as a zero write instead.
func (d *Disk) WriteAt(p []byte, off int64, fua bool) error {
	if d.unordered() {
		return d.writeAt(p, off, fua)
	}
	t := d.draw()
	return t.WriteAt(p, off, fua)
}

func (d *Disk) writeAt(p []byte, off int64, fua bool) error {
	n := int64(len(p))
	if err := d.checkWrite(off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	d.markDirty(off, n)
	fua = fua || d.opts.WriteThrough
	lim := d.Limits()
	if d.opts.RawFormat {
		// detect-zeroes belongs to the raw format node, whose requests are
		// not padded: the file node pads the zero write it becomes
		if zf, ok := d.detectZeroes([][]byte{p}); ok {
			d.trace("detect-zeroes: write off=%#x size=%#x became a zero write flags=%s", off, n, zf)
			return d.zeroWrite(off, n, zf, fua, lim)
		}
	}
	pad := blkalign.Pad(off, n, lim.RequestAlignment)
	d.serial.RLock()
	defer d.serial.RUnlock()
	if !pad.Needed() {
		req := d.track(off, n)
		defer d.untrack(req)
		return d.writeData([][]byte{p}, off, 0, fua, lim)
	}
	req := d.trackSerialising(pad.Start(), pad.Length(), lim.RequestAlignment)
	defer d.untrack(req)
	r, err := d.rmwRead(pad, lim)
	if err != nil {
		return err
	}
	head := r.buf[:pad.Head]
	tail := r.tailBuf[lim.RequestAlignment-pad.Tail:]
	return d.writeData(nonEmpty(head, p, tail), pad.Start(), 0, fua, lim)
}

// markDirty tells a driver with dirty bitmaps about a write request. QEMU
// marks the range when the request ends, whether it succeeded or not; no
// request reads the bitmaps meanwhile, so marking first is the same.
func (d *Disk) markDirty(off, n int64) {
	if m, ok := d.drv.(DirtyMarker); ok {
		m.MarkDirty(off, n)
	}
}

func (d *Disk) trace(format string, a ...any) {
	if d.opts.Trace != nil {
		d.opts.Trace(fmt.Sprintf(format, a...))
	}
}

// rmw holds the padding blocks of an unaligned write, read as QEMU's
// bdrv_padding_rmw_read reads them: the head block (or both blocks in one
// read when the padded request is just those blocks), then the tail block.
type rmw struct {
	buf     []byte // bufLen bytes: the head block, or head and tail blocks
	tailBuf []byte // the last block of buf
	merge   bool   // the padded request is exactly buf
}

func (d *Disk) rmwRead(pad blkalign.Padding, lim Limits) (rmw, error) {
	align := lim.RequestAlignment
	sum := pad.Length()
	bufLen := align
	if sum > align && pad.Head != 0 && pad.Tail != 0 {
		bufLen = 2 * align
	}
	r := rmw{buf: make([]byte, bufLen), merge: sum == bufLen}
	r.tailBuf = r.buf[bufLen-align:]
	if pad.Head != 0 || r.merge {
		rl := align
		if r.merge {
			rl = bufLen
		}
		if pad.Head != 0 {
			d.DebugEvent("pwritev_rmw_head")
		}
		if r.merge && pad.Tail != 0 {
			d.DebugEvent("pwritev_rmw_tail")
		}
		if err := d.readAligned(r.buf[:rl], pad.Start(), lim); err != nil {
			return r, err
		}
		if pad.Head != 0 {
			d.DebugEvent("pwritev_rmw_after_head")
		}
		if r.merge && pad.Tail != 0 {
			d.DebugEvent("pwritev_rmw_after_tail")
		}
		if r.merge {
			return r, nil
		}
	}
	if pad.Tail != 0 {
		d.DebugEvent("pwritev_rmw_tail")
		if err := d.readAligned(r.tailBuf, pad.Off+pad.Len+pad.Tail-align, lim); err != nil {
			return r, err
		}
		d.DebugEvent("pwritev_rmw_after_tail")
	}
	return r, nil
}

// writeData is QEMU's bdrv_aligned_pwritev for a data request already
// aligned to the request alignment, given as consecutive buffers (the head
// padding, the caller's data, the tail padding). With detect-zeroes, when
// the driver can zero and every byte is zero, the request becomes a zero
// write of the same range (flags, plus ZeroMayUnmap for unmap; flags are
// those of the zero write this data write is part of, if any). Otherwise the
// buffers are written as one request (vectored when the driver can and the
// request fits its max transfer) and, with fua, flushed.
func (d *Disk) writeData(bufs [][]byte, off int64, flags ZeroFlags, fua bool, lim Limits) error {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	if zf, ok := d.detectZeroes(bufs); ok && !d.opts.RawFormat {
		d.trace("detect-zeroes: write off=%#x size=%#x became a zero write flags=%s", off, n, flags|zf)
		return d.zeroRequest(off, n, flags|zf, fua, lim)
	}
	d.DebugEvent("pwritev")
	defer d.DebugEvent("pwritev_done")
	native := d.nativeFUA(fua) != nil
	var err error
	if len(bufs) == 1 {
		err = d.writeAlignedFUA(bufs[0], off, lim, native)
	} else if v, ok := d.drv.(VectorIO); ok && !native && (lim.MaxTransfer == 0 || n <= lim.MaxTransfer) {
		err = v.WritevAt(bufs, off)
	} else {
		buf := make([]byte, 0, n)
		for _, b := range bufs {
			buf = append(buf, b...)
		}
		err = d.writeAlignedFUA(buf, off, lim, native)
	}
	if err != nil || native {
		return err
	}
	return d.flushIf(fua)
}

// WriteZeroes makes [off, off+n) read as zeroes, as QEMU's
// blk_co_pwrite_zeroes: parts smaller than the request alignment are written
// as data (read-modify-write), the rest is split into an unaligned head piece,
// the aligned middle and an unaligned tail piece at the zero alignment; each
// piece goes to the driver, and a piece the driver refuses with
// ErrNotSupported is written as explicit zeroes unless ZeroNoFallback is set.
func (d *Disk) WriteZeroes(off, n int64, flags ZeroFlags, fua bool) error {
	if d.unordered() {
		return d.writeZeroes(off, n, flags, fua)
	}
	t := d.draw()
	return t.WriteZeroes(off, n, flags, fua)
}

func (d *Disk) writeZeroes(off, n int64, flags ZeroFlags, fua bool) error {
	if err := d.checkWrite(off, n); err != nil {
		return err
	}
	lim := d.Limits()
	ra := lim.RequestAlignment
	d.trace("zero write off=%#x size=%#x flags=%s", off, n, flags)
	if flags&ZeroNoFallback != 0 && (off%ra != 0 || n%ra != 0) {
		d.trace("  -> not aligned to the request alignment %#x with -n: ENOTSUP", ra)
		return ErrNotSupported
	}
	if n == 0 {
		return nil
	}
	d.markDirty(off, n)
	// Write-through makes every request FUA; QEMU emulates FUA with a flush
	// after each sub-request (the head block, the zeroed middle, the tail
	// block), and the file system's allocation can depend on that order.
	return d.zeroWrite(off, n, flags, fua || d.opts.WriteThrough, lim)
}

// zeroWrite is QEMU's bdrv_co_do_zero_pwritev: a zero write padded to the
// request alignment by zeroPadded when it is not aligned.
func (d *Disk) zeroWrite(off, n int64, flags ZeroFlags, fua bool, lim Limits) error {
	pad := blkalign.Pad(off, n, lim.RequestAlignment)
	d.serial.RLock()
	defer d.serial.RUnlock()
	if !pad.Needed() {
		req := d.track(off, n)
		defer d.untrack(req)
		return d.zeroRequest(off, n, flags, fua, lim)
	}
	req := d.trackSerialising(off, n, lim.RequestAlignment)
	defer d.untrack(req)
	return d.zeroPadded(pad, flags, fua, lim)
}

// flushIf flushes when fua is set.
func (d *Disk) flushIf(fua bool) error {
	if fua {
		return d.drv.Flush()
	}
	return nil
}

// zeroPadded is QEMU's bdrv_co_do_zero_pwritev: the partial head and tail
// blocks are read, zeroed where covered and written as data (which
// detect-zeroes turns into zero writes when the whole block is then zero);
// the aligned middle becomes a zero write.
func (d *Disk) zeroPadded(pad blkalign.Padding, flags ZeroFlags, fua bool, lim Limits) error {
	align := lim.RequestAlignment
	off, n := pad.Off, pad.Len
	r, err := d.rmwRead(pad, lim)
	if err != nil {
		return err
	}
	buf, tailBuf, merge, bufLen := r.buf, r.tailBuf, r.merge, int64(len(r.buf))
	d.trace("  -> read-modify-write of the unaligned blocks [%#x,+%#x) (request alignment %#x)", pad.Start(), pad.Length(), align)
	clear(buf[pad.Head : bufLen-pad.Tail])
	if pad.Head != 0 || merge {
		wl := align
		if merge {
			wl = bufLen
		}
		if err := d.writeData([][]byte{buf[:wl]}, pad.Start(), flags, fua, lim); err != nil {
			return err
		}
		if merge {
			return nil
		}
		off += wl - pad.Head
		n -= wl - pad.Head
	}
	if n >= align {
		mid := blkalign.AlignDown(n, align)
		if err := d.zeroRequest(off, mid, flags, fua, lim); err != nil {
			return err
		}
		off += mid
		n -= mid
	}
	if n > 0 {
		return d.writeData([][]byte{tailBuf}, off, flags, fua, lim)
	}
	return nil
}

// zeroRequest is the zero write of QEMU's bdrv_aligned_pwritev: its
// debug events around zeroAligned.
func (d *Disk) zeroRequest(off, n int64, flags ZeroFlags, fua bool, lim Limits) error {
	d.DebugEvent("pwritev_zero")
	defer d.DebugEvent("pwritev_done")
	return d.zeroAligned(off, n, flags, fua, lim)
}

// DebugEventer is implemented by drivers that react to QEMU's blkdebug
// events (BLKDBG_EVENT): the blkdebug filter. ev is a BlkdebugEvent name.
type DebugEventer interface {
	DebugEvent(ev string)
}

// DebugEvent signals a blkdebug event to d's driver (QEMU's
// bdrv_debug_event): drivers call it on their file at the points where
// QEMU's do, and Disk on itself where QEMU's block/io.c does.
func (d *Disk) DebugEvent(ev string) {
	if x, ok := d.drv.(DebugEventer); ok {
		x.DebugEvent(ev)
	}
}

// zeroes is the source of explicit zero writes; drivers never modify it.
var zeroes = make([]byte, maxBounce)

// zeroAligned is QEMU's bdrv_co_do_pwrite_zeroes for a request aligned to
// the request alignment; with fua, one flush follows the whole request.
func (d *Disk) zeroAligned(off, n int64, flags ZeroFlags, fua bool, lim Limits) error {
	zer, ok := d.drv.(Zeroer)
	var supported ZeroFlags
	if ok {
		supported = zer.SupportedZeroFlags()
	}
	if flags&^supported&ZeroNoFallback != 0 {
		d.trace("  -> the driver cannot zero efficiently and -n forbids the fallback: ENOTSUP")
		return ErrNotSupported
	}
	fw := d.nativeFUA(fua)
	maxTransfer := blkalign.MinNonZero(lim.MaxTransfer, maxBounce)
	align := max(lim.ZeroAlignment, lim.RequestAlignment)
	z := blkalign.NewZeroSplit(off, n, align, lim.MaxZero, maxTransfer)
	for !z.Done() {
		o, num := z.Next()
		d.trace("  piece off=%#x size=%#x", o, num)
		err := error(ErrNotSupported)
		if ok && fw != nil {
			err = fw.WriteZeroesFUA(o, num, flags&supported)
		} else if ok {
			err = zer.WriteZeroes(o, num, flags&supported)
		}
		if errors.Is(err, ErrNotSupported) && flags&ZeroNoFallback == 0 {
			num = min(num, maxTransfer)
			d.trace("  -> explicit zeroes off=%#x size=%#x", o, num)
			if fw != nil {
				err = fw.WriteAtFUA(zeroes[:num], o)
			} else {
				_, err = d.drv.WriteAt(zeroes[:num], o)
			}
		} else if errors.Is(err, ErrNotSupported) {
			d.trace("  -> ENOTSUP with -n: the write fails")
		}
		if err != nil {
			return err
		}
		z.Advance(num)
	}
	if fw != nil {
		return nil
	}
	return d.flushIf(fua)
}

// Discard tells the driver that [off, off+n) is no longer needed. It is
// advisory: on a Disk opened without Unmap, or a driver without Discarder,
// nothing happens; pieces the driver refuses with ErrNotSupported are
// skipped. The range is split as QEMU splits it: small pieces up to the first
// discard-alignment boundary, the aligned middle, the tail.
func (d *Disk) Discard(off, n int64) error {
	if d.unordered() {
		return d.discard(off, n)
	}
	t := d.draw()
	return t.Discard(off, n)
}

func (d *Disk) discard(off, n int64) error {
	if err := d.checkWrite(off, n); err != nil {
		return err
	}
	if !d.opts.Unmap {
		return nil
	}
	dis, ok := d.drv.(Discarder)
	if !ok {
		return nil
	}
	if n > 0 {
		d.markDirty(off, n)
	}
	lim := d.Limits()
	align := max(lim.DiscardAlignment, lim.RequestAlignment)
	d.serial.RLock()
	defer d.serial.RUnlock()
	req := d.track(off, n)
	defer d.untrack(req)
	d.trace("discard off=%#x size=%#x", off, n)
	for _, p := range blkalign.DiscardPieces(off, n, align, lim.RequestAlignment, lim.MaxDiscard) {
		d.trace("  piece off=%#x size=%#x", p.Off, p.Len)
		if err := dis.Discard(p.Off, p.Len); err != nil && !errors.Is(err, ErrNotSupported) {
			return err
		}
	}
	return nil
}

// WriteCompressed writes p at off as compressed clusters, as QEMU's
// blk_pwrite_compressed: the request is checked as a write (read-only,
// usable, inside the image) and serialised against padded writes as an
// aligned write is; a driver without compression refuses it with
// ErrNotSupported. QEMU's compressed path takes no FUA, so a write-through
// Disk does not flush after it.
func (d *Disk) WriteCompressed(p []byte, off int64) error {
	if d.unordered() {
		return d.writeCompressed(p, off)
	}
	t := d.draw()
	return t.WriteCompressed(p, off)
}

func (d *Disk) writeCompressed(p []byte, off int64) error {
	if err := d.checkWrite(off, int64(len(p))); err != nil {
		return err
	}
	c, ok := d.drv.(Compressor)
	if !ok {
		return ErrNotSupported
	}
	d.serial.RLock()
	defer d.serial.RUnlock()
	req := d.track(off, int64(len(p)))
	defer d.untrack(req)
	return c.WriteCompressed(p, off)
}

// MaxLength is QEMU's BDRV_MAX_LENGTH: INT64_MAX aligned down to
// BDRV_MAX_ALIGNMENT (1 GiB), the bound of bdrv_check_qiov_request.
const MaxLength = (1<<63 - 1) &^ (1<<30 - 1)

// checkVMState is the check of QEMU's blk_load_vmstate/blk_save_vmstate and
// bdrv_check_qiov_request: a usable image, a position and length that fit.
func (d *Disk) checkVMState(pos, n int64) error {
	if !d.Available() {
		return ErrNoMedium
	}
	if pos < 0 || pos > MaxLength || n > MaxLength-pos {
		return ErrOutOfRange
	}
	return nil
}

// ReadVMState reads len(p) bytes of the VM state area at pos, as QEMU's
// blk_load_vmstate; a driver without VM state refuses with ErrNotSupported.
func (d *Disk) ReadVMState(p []byte, pos int64) error {
	if err := d.checkVMState(pos, int64(len(p))); err != nil {
		return err
	}
	vs, ok := d.drv.(VMStater)
	if !ok {
		return ErrNotSupported
	}
	return vs.ReadVMState(p, pos)
}

// WriteVMState writes p to the VM state area at pos, as QEMU's
// blk_save_vmstate: a write-through Disk flushes after it. A read-only Disk
// refuses it; a driver without VM state refuses with ErrNotSupported.
func (d *Disk) WriteVMState(p []byte, pos int64) error {
	if d.opts.ReadOnly {
		return ErrReadOnly
	}
	if err := d.checkVMState(pos, int64(len(p))); err != nil {
		return err
	}
	vs, ok := d.drv.(VMStater)
	if !ok {
		return ErrNotSupported
	}
	d.serial.RLock()
	err := vs.WriteVMState(p, pos)
	d.serial.RUnlock()
	if err != nil {
		return err
	}
	if d.opts.WriteThrough {
		return d.drv.Flush()
	}
	return nil
}

// Truncate changes the image size (QEMU's blk_truncate). Drivers that
// cannot resize refuse.
func (d *Disk) Truncate(size int64, p Prealloc) error {
	if d.opts.ReadOnly {
		return ErrReadOnly
	}
	t, ok := d.drv.(Truncater)
	if !ok {
		return fmt.Errorf("Image format driver does not support resize")
	}
	if d.loop != nil {
		d.loop.Yield() // requests in flight hold serial shared
	}
	d.serial.Lock()
	defer d.serial.Unlock()
	return t.Truncate(size, p)
}

// Flush makes every completed write durable.
func (d *Disk) Flush() error {
	if !d.Available() {
		return ErrNoMedium
	}
	return d.drv.Flush()
}

// Backing returns the backing image of d, or nil.
func (d *Disk) Backing() *Disk {
	if b, ok := d.drv.(Backed); ok {
		return b.Backing()
	}
	return nil
}

// StatusAligner is a driver whose block status requests are aligned
// otherwise than its reads and writes (a probed raw file: 512-byte
// requests, block status in the file's own units).
type StatusAligner interface {
	StatusAlignment() int64
}

// BlockStatus is QEMU's bdrv_co_block_status for this layer alone: it
// describes the run starting at off (at most n bytes). Past the end it returns
// an extent of length 0 with StatusEOF. The driver's answer gains Allocated
// when it is data or zero; an unallocated range of a driver that supports
// backing files reads as zero when there is no backing file, or (wantZero)
// when it lies past the backing file's end.
func (d *Disk) BlockStatus(off, n int64, wantZero bool) (Extent, error) {
	if !d.Available() {
		return Extent{}, ErrNoMedium
	}
	size := d.Size()
	if off < 0 || n < 0 {
		return Extent{}, ErrOutOfRange
	}
	if off >= size {
		return Extent{Status: StatusEOF}, nil
	}
	if n == 0 {
		return Extent{}, nil
	}
	n = min(n, size-off)
	if t, toff, ok := d.forwardStatus(off); ok {
		// QEMU's BDRV_BLOCK_RAW: the other node's answer as it is, with
		// this node's end of image
		e, err := t.BlockStatus(toff, n, wantZero)
		if err != nil {
			return Extent{}, err
		}
		if e.Len > 0 && off+e.Len == size {
			e.Status |= StatusEOF
		}
		return e, nil
	}
	bs, ok := d.drv.(BlockStatuser)
	var e Extent
	if !ok {
		e = Extent{Status: StatusData | StatusAllocated, Len: n}
	} else {
		ra := d.Limits().RequestAlignment
		if sa, ok := d.drv.(StatusAligner); ok {
			ra = sa.StatusAlignment()
		}
		aoff := blkalign.AlignDown(off, ra)
		alen := blkalign.AlignUp(off+n, ra) - aoff
		var err error
		e, err = bs.BlockStatus(aoff, alen, wantZero)
		if err != nil {
			return Extent{}, err
		}
		e.Len -= off - aoff
		e.Len = min(e.Len, n)
		if e.Status&StatusOffsetValid != 0 {
			e.Offset += off - aoff
		}
		if wantZero && e.Status&StatusRecurse != 0 && e.Status&StatusData != 0 && e.Status&StatusOffsetValid != 0 {
			// QEMU's BDRV_BLOCK_RECURSE: a preallocated data cluster that is
			// a hole in the file reads as zero
			if f, ok := d.drv.(Filer); ok {
				fe, err := f.File().BlockStatus(e.Offset, e.Len, true)
				if err == nil {
					if fe.Status&StatusEOF != 0 && (fe.Len == 0 || fe.Status&StatusZero != 0) {
						e.Status |= StatusZero
					} else {
						e.Len = fe.Len
						e.Status |= fe.Status & StatusZero
					}
				}
			}
		}
		e.Status &^= StatusRecurse
		if e.Status&(StatusData|StatusZero) != 0 {
			e.Status |= StatusAllocated
		} else if b, ok := d.drv.(Backed); ok {
			back := b.Backing()
			if back == nil {
				e.Status |= StatusZero
			} else if wantZero && off >= back.Size() {
				e.Status |= StatusZero
			}
		}
	}
	if off+e.Len == size {
		e.Status |= StatusEOF
	}
	return e, nil
}

// IsAllocated is QEMU's bdrv_is_allocated: whether the run at off (at most n
// bytes, returned as the second value) is allocated in this layer. Past the
// end it returns false and 0.
func (d *Disk) IsAllocated(off, n int64) (bool, int64, error) {
	e, err := d.BlockStatus(off, n, false)
	if err != nil {
		return false, 0, err
	}
	return e.Status&StatusAllocated != 0, e.Len, nil
}

// Info describes the image for qemu-io's info command.
func (d *Disk) Info() (Info, error) {
	if i, ok := d.drv.(Infoer); ok {
		return i.Info()
	}
	return Info{}, nil
}

// Close closes the driver. Closing twice is an error.
func (d *Disk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.closed = true
	d.serial.Lock()
	defer d.serial.Unlock()
	err := d.drv.Close()
	if d.opts.OnClose != nil {
		if cerr := d.opts.OnClose(); err == nil {
			err = cerr
		}
	}
	return err
}

// SetWriteThrough turns the write cache off (every write followed by a
// flush) or on, as QEMU's blk_set_enable_write_cache.
func (d *Disk) SetWriteThrough(on bool) {
	d.mu.Lock()
	d.opts.WriteThrough = on
	d.mu.Unlock()
}

// SetDetectZeroes sets the Disk's detect-zeroes mode after open, as
// qemu-nbd sets bs->detect_zeroes on the node it exports (its
// --detect-zeroes, default off, wins over the node's option).
func (d *Disk) SetDetectZeroes(z DetectZeroes) {
	d.mu.Lock()
	d.opts.DetectZeroes = z
	d.mu.Unlock()
}
