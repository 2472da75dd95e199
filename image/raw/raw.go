// Package raw is goqio's raw image driver: QEMU's raw format over its
// file-posix protocol in one. Reads and writes are pread/pwrite, optionally
// with O_DIRECT (the logical block size is probed as the request alignment
// and unaligned buffers go through aligned bounce buffers); zero writes use
// fallocate (ZERO_RANGE, or PUNCH_HOLE when unmapping is allowed), discard
// punches holes, and block status comes from SEEK_DATA/SEEK_HOLE.
//
// The size of a raw image is the file size rounded up to 512 bytes, as QEMU
// reports it; the bytes between the end of the file and that size read as
// zeroes and a write there extends the file.
package raw

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/goqio/goqio/image"
)

// Options control how a raw image is opened.
type Options struct {
	ReadOnly bool
	Direct   bool // O_DIRECT: bypass the host page cache
	NoFlush  bool // cache=unsafe: Flush does nothing
	// Probed marks an image whose format was guessed: writes are 512-byte
	// aligned and a write to block 0 that would make the image probe as
	// another format is refused with image.ErrPermission, as QEMU does.
	Probed bool
	// Lock, when set, takes QEMU's image locks for these permissions.
	Lock *Lock
	// ProbeHeader reports whether the first 512 bytes of an image look like
	// a format other than raw. Used when Probed is set.
	ProbeHeader func(block0 []byte) bool
}

// Driver is an open raw image. It is safe for concurrent use.
type Driver struct {
	f     *os.File
	name  string
	opts  Options
	align int64 // request alignment
	// fileAlign is the file's own request alignment (align before a
	// probed image raised it to 512): block status answers in its units,
	// as QEMU's file node under a probed raw node does
	fileAlign int64
	// memAlign is the buffer alignment O_DIRECT needs.
	memAlign int

	mu      sync.Mutex
	size    int64 // guest-visible size: file size rounded up to 512
	noZero  bool  // fallocate ZERO_RANGE said ENOTSUP
	noPunch bool  // fallocate PUNCH_HOLE said ENOTSUP
	noAlloc bool  // plain fallocate said ENOTSUP

	// writeGen counts completed writes (of any kind, failed ones too) and
	// flushedGen is writeGen when the last flush began: QEMU's write_gen
	// and flushed_gen, so a flush with nothing written since the last one
	// is no fdatasync, as bdrv_co_flush skips it. flushMu orders flushes.
	writeGen, flushedGen atomic.Uint64
	flushMu              sync.Mutex
	// bsc is QEMU's block-status cache (BdrvBlockStatusCache): the last
	// data extent SEEK_DATA/SEEK_HOLE found, [start, end); zero writes,
	// discards and truncation drop it
	bscMu    sync.Mutex
	bscStart int64
	bscEnd   int64
}

// bscInvalidate drops the block-status cache.
func (d *Driver) bscInvalidate() {
	d.bscMu.Lock()
	d.bscStart, d.bscEnd = 0, 0
	d.bscMu.Unlock()
}

// Open opens the raw image at path.
func Open(path string, opts Options) (*Driver, error) {
	flags := os.O_RDWR
	if opts.ReadOnly {
		flags = os.O_RDONLY
	}
	if opts.Direct {
		flags |= syscall.O_DIRECT
	}
	f, err := os.OpenFile(path, flags|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: path, Err: syscall.EISDIR}
	}
	if opts.Lock != nil {
		if err := applyLock(int(f.Fd()), *opts.Lock, path); err != nil {
			f.Close()
			return nil, err
		}
	}
	d := &Driver{f: f, name: path, opts: opts, align: 1, memAlign: 1}
	d.size = roundUp512(st.Size())
	if opts.Direct {
		d.align, d.memAlign = probeAlignment(f)
	}
	d.fileAlign = d.align
	if opts.Probed && d.align < 512 {
		d.align = 512
	}
	return d, nil
}

func roundUp512(n int64) int64 { return (n + 511) &^ 511 }

// probeAlignment finds the request alignment of an O_DIRECT file the way
// QEMU does when the device does not tell: the smallest of 1, 512, ... 4096
// bytes that a read accepts (a file system that accepts 1 gets 4096, as a
// safe value). The buffer alignment is the page size.
func probeAlignment(f *os.File) (int64, int) {
	page := os.Getpagesize()
	maxAlign := max(4096, page)
	buf := alignedBuf(maxAlign, maxAlign)
	for _, a := range []int{1, 512, 1024, 2048, 4096} {
		_, err := unix.Pread(int(f.Fd()), buf[:a], 0)
		if err == nil || err != unix.EINVAL {
			if a == 1 {
				return int64(maxAlign), page
			}
			return int64(a), page
		}
	}
	return int64(maxAlign), page
}

// alignedBuf returns a zeroed slice of n bytes whose first byte is aligned to align.
func alignedBuf(n, align int) []byte {
	b := make([]byte, n+align)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % uintptr(align)); r != 0 {
		off = align - r
	}
	return b[off : off+n : off+n]
}

func (d *Driver) aligned(p []byte) bool {
	return len(p) == 0 || uintptr(unsafe.Pointer(&p[0]))%uintptr(d.memAlign) == 0
}

// Size returns the file size rounded up to 512 bytes, as of open.
func (d *Driver) Size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.size
}

// Limits: buffered files take any request; O_DIRECT files need the probed
// alignment; a probed (format-guessed) image needs 512.
func (d *Driver) Limits() image.Limits {
	return image.Limits{RequestAlignment: d.align, ZeroAlignment: d.align, DiscardAlignment: d.align}
}

// chunk is the largest bounce buffer used for unaligned O_DIRECT buffers.
const chunk = 1 << 20

// ReadAt reads len(p) bytes; bytes past the end of the file read as zeroes,
// so a short count comes only with an error.
func (d *Driver) ReadAt(p []byte, off int64) (int, error) {
	if d.opts.Direct && !d.aligned(p) {
		return d.bounce(p, off, false)
	}
	return d.pread(p, off)
}

func (d *Driver) pread(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(int(d.f.Fd()), p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("raw: read %s at %d: %w", d.name, off+int64(done), err)
		}
		if n == 0 {
			clear(p[done:])
			return len(p), nil
		}
		done += n
	}
	return done, nil
}

// WriteAt writes p; a write past the end of the file extends it.
func (d *Driver) WriteAt(p []byte, off int64) (int, error) {
	defer d.writeGen.Add(1)
	if _, err := d.checkProbed(p, off); err != nil {
		return 0, err
	}
	if d.opts.Direct && !d.aligned(p) {
		return d.bounce(p, off, true)
	}
	return d.pwrite(p, off)
}

// checkProbed refuses a write to block 0 of a probed image that would make
// the image probe as another format.
func (d *Driver) checkProbed(p []byte, off int64) (int, error) {
	if !d.opts.Probed || off >= 512 || len(p) == 0 || d.opts.ProbeHeader == nil {
		return 0, nil
	}
	if len(p) < 512 || off != 0 || d.opts.ProbeHeader(p[:512]) {
		return 0, image.ErrPermission
	}
	return 0, nil
}

// grown records that the file now extends to end.
func (d *Driver) grown(end int64) {
	d.mu.Lock()
	if end > d.size {
		d.size = roundUp512(end)
	}
	d.mu.Unlock()
}

func (d *Driver) pwrite(p []byte, off int64) (int, error) {
	defer d.grown(off + int64(len(p)))
	done := 0
	for done < len(p) {
		n, err := unix.Pwrite(int(d.f.Fd()), p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("raw: write %s at %d: %w", d.name, off+int64(done), err)
		}
		if n == 0 {
			return done, io.ErrShortWrite
		}
		done += n
	}
	return done, nil
}

// bounce does O_DIRECT I/O from or to an unaligned buffer through an aligned one.
func (d *Driver) bounce(p []byte, off int64, write bool) (int, error) {
	buf := alignedBuf(min(len(p), chunk), d.memAlign)
	done := 0
	for done < len(p) {
		b := buf[:min(len(buf), len(p)-done)]
		var err error
		if write {
			copy(b, p[done:])
			_, err = d.pwrite(b, off+int64(done))
		} else {
			_, err = d.pread(b, off+int64(done))
			copy(p[done:], b)
		}
		if err != nil {
			return done, err
		}
		done += len(b)
	}
	return done, nil
}

// SupportedZeroFlags: both unmapping and refusing the slow fallback.
func (d *Driver) SupportedZeroFlags() image.ZeroFlags {
	return image.ZeroMayUnmap | image.ZeroNoFallback
}

func (d *Driver) fallocate(mode uint32, off, n int64) error {
	for {
		err := unix.Fallocate(int(d.f.Fd()), mode, off, n)
		if err != unix.EINTR {
			return err
		}
	}
}

func isNotSup(err error) bool { return err == unix.EOPNOTSUPP || err == unix.ENOSYS }

// WriteZeroes zeroes [off, off+n) with fallocate, as QEMU's file-posix does:
// with ZeroMayUnmap it first punches a hole; otherwise ZERO_RANGE, then
// PUNCH_HOLE followed by a plain fallocate, then (past the end of the file) a
// plain fallocate. When the file system supports none of these it returns
// image.ErrNotSupported so that Disk writes zeroes.
func (d *Driver) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	defer d.writeGen.Add(1)
	d.bscInvalidate()
	if d.opts.ReadOnly {
		return image.ErrReadOnly
	}
	if flags&image.ZeroMayUnmap != 0 {
		err := d.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		switch {
		case err == nil:
			return nil
		case isNotSup(err) || err == unix.EINVAL || err == unix.EBADF:
		default:
			return fmt.Errorf("raw: punch hole: %w", err)
		}
	}
	d.mu.Lock()
	noZero, noPunch, noAlloc := d.noZero, d.noPunch, d.noAlloc
	d.mu.Unlock()
	if !noZero {
		err := d.fallocate(unix.FALLOC_FL_ZERO_RANGE, off, n)
		switch {
		case err == nil:
			d.grown(off + n)
			return nil
		case isNotSup(err):
			d.setFlag(&d.noZero)
		case err == unix.EINVAL:
		default:
			return fmt.Errorf("raw: zero range: %w", err)
		}
	}
	if !noPunch && !noAlloc {
		err := d.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		switch {
		case err == nil:
			err = d.fallocate(0, off, n)
			if err == nil {
				d.grown(off + n)
				return nil
			}
			if !isNotSup(err) {
				return fmt.Errorf("raw: fallocate: %w", err)
			}
			d.setFlag(&d.noAlloc)
		case err == unix.EINVAL:
		case isNotSup(err):
			d.setFlag(&d.noPunch)
		default:
			return fmt.Errorf("raw: punch hole: %w", err)
		}
	}
	if !noAlloc {
		if st, err := d.f.Stat(); err == nil && off >= st.Size() {
			err := d.fallocate(0, off, n)
			if err == nil {
				d.grown(off + n)
				return nil
			}
			if !isNotSup(err) {
				return fmt.Errorf("raw: fallocate: %w", err)
			}
			d.setFlag(&d.noAlloc)
		}
	}
	return image.ErrNotSupported
}

func (d *Driver) setFlag(f *bool) {
	d.mu.Lock()
	*f = true
	d.mu.Unlock()
}

// Discard punches a hole; a file system that cannot gives image.ErrNotSupported.
func (d *Driver) Discard(off, n int64) error {
	defer d.writeGen.Add(1)
	d.bscInvalidate()
	if d.opts.ReadOnly {
		return image.ErrReadOnly
	}
	err := d.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err == nil {
		return nil
	}
	if isNotSup(err) {
		return image.ErrNotSupported
	}
	return fmt.Errorf("raw: discard: %w", err)
}

// BlockStatus: without wantZero everything is data at its own offset; with
// it, SEEK_DATA/SEEK_HOLE tell holes (zero) from data, and the part past the
// end of the file is a hole.
func (d *Driver) BlockStatus(off, n int64, wantZero bool) (image.Extent, error) {
	e := image.Extent{Status: image.StatusData | image.StatusOffsetValid, Len: n, Offset: off, File: d.name}
	if !wantZero {
		return e, nil
	}
	d.bscMu.Lock()
	if off >= d.bscStart && off < d.bscEnd {
		l := d.bscEnd - off
		d.bscMu.Unlock()
		if l%d.fileAlign != 0 {
			l = (l + d.fileAlign - 1) / d.fileAlign * d.fileAlign
		}
		e.Len = l
		return e, nil
	}
	d.bscMu.Unlock()
	data, hole, err := d.findAllocation(off)
	if err == nil && data == off {
		d.bscMu.Lock()
		d.bscStart, d.bscEnd = off, hole
		d.bscMu.Unlock()
	}
	switch {
	case err == unix.ENXIO:
		e.Status = image.StatusZero | image.StatusOffsetValid
	case err != nil:
		// no information: pretend there are no holes
	case data == off:
		l := hole - off
		if l%d.fileAlign != 0 {
			l = (l + d.fileAlign - 1) / d.fileAlign * d.fileAlign
		}
		e.Len = l
	default:
		e.Status = image.StatusZero | image.StatusOffsetValid
		e.Len = data - off
	}
	return e, nil
}

// findAllocation is QEMU's find_allocation: the data extent or hole at start.
func (d *Driver) findAllocation(start int64) (data, hole int64, err error) {
	fd := int(d.f.Fd())
	offs, err := unix.Seek(fd, start, unix.SEEK_DATA)
	if err != nil {
		return 0, 0, err
	}
	if offs < start {
		return 0, 0, unix.EIO
	}
	if offs > start {
		return offs, start, nil
	}
	offs, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, err
	}
	if offs < start {
		return 0, 0, unix.EIO
	}
	if offs > start {
		return start, offs, nil
	}
	return 0, 0, unix.EBUSY
}

// Flush is fdatasync, unless opened with NoFlush or nothing was written
// since the last flush.
func (d *Driver) Flush() error {
	if d.opts.NoFlush || d.opts.ReadOnly {
		return nil
	}
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	gen := d.writeGen.Load()
	if gen == d.flushedGen.Load() {
		return nil
	}
	for {
		err := unix.Fdatasync(int(d.f.Fd()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("raw: flush: %w", err)
		}
		d.flushedGen.Store(gen)
		return nil
	}
}

// Info: raw has no clusters and no VM state.
func (d *Driver) Info() (image.Info, error) {
	return image.Info{FormatName: "raw"}, nil
}

// Close closes the file.
func (d *Driver) Close() error { return d.f.Close() }

// Create makes a raw image of size bytes (rounded up to 512) at path, as
// qemu-img create does: the file is created or truncated, sized, and its
// first block is written with zeroes so that the file system allocates it.
func Create(path string, size int64, prealloc image.Prealloc) error {
	return CreateWith(path, size, prealloc, FileAttrs{})
}

// CreateWith is Create with the file attributes of file-posix's create
// options, set once the file is empty (nocow, extent_size_hint).
func CreateWith(path string, size int64, prealloc image.Prealloc, attrs FileAttrs) error {
	if prealloc == image.PreallocMetadata {
		return fmt.Errorf("Unsupported preallocation mode: metadata")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return &createError{path, err}
	}
	defer f.Close()
	attrs.Apply(f)
	size = roundUp512(size)
	switch prealloc {
	case image.PreallocFalloc:
		if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil && size > 0 {
			return fmt.Errorf("Could not preallocate data for the new file: %w", err)
		}
	case image.PreallocFull:
		buf := make([]byte, 1<<20)
		for off := int64(0); off < size; off += int64(len(buf)) {
			n := min(int64(len(buf)), size-off)
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return err
			}
		}
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	if (prealloc == image.PreallocOff || prealloc == image.PreallocFalloc) && size > 0 {
		// allocate the first block, so that probing the alignment later
		// works (QEMU does it after a falloc preallocation too)
		n := min(size, int64(max(os.Getpagesize(), 4096)))
		if _, err := f.WriteAt(make([]byte, n), 0); err != nil {
			return err
		}
	}
	return f.Sync()
}

var _ image.Driver = (*Driver)(nil)
var _ image.Zeroer = (*Driver)(nil)
var _ image.Discarder = (*Driver)(nil)
var _ image.BlockStatuser = (*Driver)(nil)

// ReadvAt reads into bufs from off as one preadv (a gather through an
// aligned bounce buffer with O_DIRECT). Past the end of the file it reads zeroes.
func (d *Driver) ReadvAt(bufs [][]byte, off int64) error {
	if d.opts.Direct {
		return d.bounceV(bufs, off, false)
	}
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	done := 0
	for done < total {
		n, err := unix.Preadv(int(d.f.Fd()), skip(bufs, done), off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("raw: read %s at %d: %w", d.name, off+int64(done), err)
		}
		if n == 0 {
			for _, b := range skip(bufs, done) {
				clear(b)
			}
			return nil
		}
		done += n
	}
	return nil
}

// WritevAt writes bufs at off as one pwritev.
func (d *Driver) WritevAt(bufs [][]byte, off int64) error {
	defer d.writeGen.Add(1)
	if d.opts.Probed && off < 512 {
		var head []byte
		for _, b := range bufs {
			head = append(head, b...)
			if len(head) >= 512 {
				break
			}
		}
		if _, err := d.checkProbed(head, off); err != nil {
			return err
		}
	}
	if d.opts.Direct {
		return d.bounceV(bufs, off, true)
	}
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	defer d.grown(off + int64(total))
	total = 0
	for _, b := range bufs {
		total += len(b)
	}
	done := 0
	for done < total {
		n, err := unix.Pwritev(int(d.f.Fd()), skip(bufs, done), off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("raw: write %s at %d: %w", d.name, off+int64(done), err)
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		done += n
	}
	return nil
}

// skip returns bufs without their first n bytes.
func skip(bufs [][]byte, n int) [][]byte {
	out := make([][]byte, 0, len(bufs))
	for _, b := range bufs {
		if n >= len(b) {
			n -= len(b)
			continue
		}
		out = append(out, b[n:])
		n = 0
	}
	return out
}

// bounceV does vectored O_DIRECT I/O through one aligned buffer.
func (d *Driver) bounceV(bufs [][]byte, off int64, write bool) error {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	buf := alignedBuf(total, d.memAlign)
	if write {
		n := 0
		for _, b := range bufs {
			n += copy(buf[n:], b)
		}
		_, err := d.pwrite(buf, off)
		return err
	}
	if _, err := d.pread(buf, off); err != nil {
		return err
	}
	n := 0
	for _, b := range bufs {
		n += copy(b, buf[n:])
	}
	return nil
}

var _ image.VectorIO = (*Driver)(nil)

// Truncate resizes the file as QEMU's file-posix does: ftruncate (and
// allocate the first block of a file that was empty), fallocate for falloc,
// explicit zeroes for full; preallocation cannot shrink.
func (d *Driver) Truncate(size int64, p image.Prealloc) error {
	defer d.writeGen.Add(1)
	d.bscInvalidate()
	if d.opts.ReadOnly {
		return image.ErrReadOnly
	}
	st, err := d.f.Stat()
	if err != nil {
		return fmt.Errorf("Could not stat file: %s", image.StrerrorOf(err))
	}
	cur := st.Size()
	if cur > size && p != image.PreallocOff {
		return fmt.Errorf("Cannot use preallocation for shrinking files")
	}
	fd := int(d.f.Fd())
	switch p {
	case image.PreallocOff:
		if err := unix.Ftruncate(fd, size); err != nil {
			return fmt.Errorf("Could not resize file: %s", image.StrerrorOf(err))
		}
		if cur == 0 && size > 0 {
			n := min(size, int64(max(os.Getpagesize(), 4096)))
			d.pwrite(make([]byte, n), 0)
		}
	case image.PreallocFalloc:
		if size != cur {
			if err := d.fallocate(0, cur, size-cur); err != nil {
				return fmt.Errorf("Could not preallocate new data: %s", image.StrerrorOf(err))
			}
		}
	case image.PreallocFull:
		if err := unix.Ftruncate(fd, size); err != nil {
			return fmt.Errorf("Could not resize file: %s", image.StrerrorOf(err))
		}
		buf := make([]byte, 65536)
		for off := cur; off < size; off += int64(len(buf)) {
			if _, err := d.pwrite(buf[:min(int64(len(buf)), size-off)], off); err != nil {
				return fmt.Errorf("Could not write zeros for preallocation: %s", image.StrerrorOf(err))
			}
		}
		if err := unix.Fsync(fd); err != nil {
			return fmt.Errorf("Could not flush file to disk: %s", image.StrerrorOf(err))
		}
	default:
		return fmt.Errorf("Unsupported preallocation mode: %s", p)
	}
	d.mu.Lock()
	d.size = roundUp512(size)
	d.mu.Unlock()
	return nil
}

// SetLock takes QEMU's image locks for l on the open file, as QEMU does
// when a parent node attaches the file with its permissions. It replaces
// the locks taken before (the lock bytes not in l are released).
func (d *Driver) SetLock(l Lock) error {
	fd := int(d.f.Fd())
	for i := 0; i < len(permNames); i++ {
		if l.Perm&(1<<i) == 0 {
			ofd(fd, unix.F_OFD_SETLK, unix.F_UNLCK, int64(lockPermBase+i))
		}
		if l.Unshared&(1<<i) == 0 {
			ofd(fd, unix.F_OFD_SETLK, unix.F_UNLCK, int64(lockSharedBase+i))
		}
	}
	if err := applyLock(fd, l, d.name); err != nil {
		return err
	}
	d.opts.Lock = &l
	return nil
}

// SetProbed marks the image as one whose format was guessed (see
// Options.Probed); probeHeader says whether a block 0 looks like another
// format.
// StatusAlignment is the alignment of block status requests: the file's
// own, also when the image was probed (the raw format node over it passes
// block status through unaligned, BDRV_BLOCK_RAW).
func (d *Driver) StatusAlignment() int64 { return d.fileAlign }

func (d *Driver) SetProbed(probeHeader func(block0 []byte) bool) {
	d.opts.Probed, d.opts.ProbeHeader = true, probeHeader
	if d.align < 512 {
		d.align = 512
	}
}

// createError is file-posix's "Could not create '%s'" with the errno.
type createError struct {
	path string
	err  error
}

func (e *createError) Error() string {
	return fmt.Sprintf("Could not create '%s': %s", e.path, image.StrerrorOf(e.err))
}

func (e *createError) Unwrap() error { return e.err }

// OSFile is the open file, for reads straight from it (image.HostFile);
// nil with O_DIRECT.
func (d *Driver) OSFile() *os.File {
	if d.opts.Direct {
		return nil
	}
	return d.f
}
