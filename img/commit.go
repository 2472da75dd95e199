package img

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/internal/bufpool"
)

// Sentinels of Commit.
var (
	// ErrNoBackingFile: the image has no backing file to commit into.
	ErrNoBackingFile = errors.New("Image does not have a backing file")
	// ErrBaseNotFound: the base named is not in the image's backing chain.
	ErrBaseNotFound = errors.New("base not found in the backing chain")
)

// CommitOptions are qemu-img commit's options.
type CommitOptions struct {
	// Base is -b: the image of the backing chain to commit into (found as
	// bdrv_find_backing_image finds it); "" is the image's backing file.
	Base string
	// Drop is -d (implied by Base): leave the top image as it is instead of
	// emptying it.
	Drop bool
	// RateLimit is -r, in bytes per second (0: no limit).
	RateLimit int64
	// Progress receives the progress (-p).
	Progress ProgressFunc
}

// Mirror job constants (block/mirror.c).
const (
	mirrorBufSize   = 16 << 20 // DEFAULT_MIRROR_BUF_SIZE
	mirrorMaxIOSize = 1 << 20  // MAX_IO_BYTES
)

// Commit is qemu-img commit on im, opened read-write with its backing
// chain: the data above the base is copied into it as QEMU's active commit
// (mirror) job copies it — in chunks of the base's cluster size (4k..64k),
// zero ranges of the chain written as zero writes, the base grown to the
// top's size — and then, unless Drop, the top image is emptied
// (bdrv_make_empty). Cancelling ctx stops the copy; the guest data the top
// image shows is unchanged then.
func Commit(ctx context.Context, im *Image, filename string, o CommitOptions) error {
	top := im.Node
	var base *formats.Node
	if o.Base != "" {
		base = formats.FindBackingImage(top, o.Base)
		if base == nil {
			return &Error{Msg: fmt.Sprintf("Did not find '%s' in the backing chain of '%s'", o.Base, filename), Err: ErrBaseNotFound}
		}
		o.Drop = true
	} else if base = top.BackingChild(); base == nil {
		return &Error{Msg: ErrNoBackingFile.Error(), Err: ErrNoBackingFile}
	}
	// commit_active_start reopens the base read-write; goqio opens its
	// file a second time for writing, without taking locks again (the
	// chain's node holds them for this process). The chain's node keeps
	// reading the base: what it may have cached is only ever of ranges not
	// yet written, which the copy does not change.
	g := formats.NewGraph(formats.Env{})
	opts := map[string]string{lockingKey(base): "off"}
	if pg := base.Graph(); pg != nil {
		// the --object secrets, and the base's key (as the reopened node
		// keeps its options)
		g.Objects = pg.Objects
	}
	if v, ok := base.Options.Str("encrypt.key-secret"); ok {
		opts["encrypt.key-secret"] = v
	}
	target, err := formats.OpenNode(base.Filename, formats.Options{Format: base.Drv.Name, Graph: g, Unmap: true,
		Options: opts})
	if err != nil {
		return err
	}
	defer target.Close()
	err = mirror(ctx, top.Disk, base.Disk, target, o)
	if err == nil {
		err = target.Disk.Flush()
	}
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		// common_block_job_cb: the job's failure, with its errno
		return &Error{Msg: "Block job failed: " + image.StrerrorOf(err), Err: err}
	}
	if !o.Drop {
		if q, ok := image.SkipFilters(top.Disk).Driver().(*qcow2.Driver); ok {
			if err := q.MakeEmpty(); err != nil {
				top.RefreshFilename()
				return &Error{Msg: fmt.Sprintf("Failed to empty %s: %s", top.Filename, image.StrerrorOf(err)), Err: err}
			}
		}
	}
	return nil
}

// lockingKey is the option that turns locking off in the file node under
// n: "file.locking" for a format over a file, "file.image.locking" with a
// blkdebug between them, and so on down the primary children.
func lockingKey(n *formats.Node) string {
	key := ""
	for n != nil {
		var next *formats.Child
		for _, c := range n.Children {
			if c.Name == "file" || c.Name == "image" {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		key += next.Name + "."
		n = next.Node
	}
	if key == "" {
		key = "file."
	}
	return key + "locking"
}

// granularity is bdrv_get_default_bitmap_granularity.
func granularity(n *formats.Node) int64 {
	if info, err := image.SkipFilters(n.Disk).Info(); err == nil && info.ClusterSize > 0 {
		return min(65536, max(4096, info.ClusterSize))
	}
	return 65536
}

// mirror is mirror_run for an active commit of src's chain into target
// (which is base, opened for writing).
func mirror(ctx context.Context, src, base *image.Disk, target *formats.Node, o CommitOptions) error {
	length := src.Size()
	if tl := target.Disk.Size(); length > tl {
		target.GrantResize()
		if err := target.Disk.Truncate(length, image.PreallocOff); err != nil {
			return err
		}
	}
	if length == 0 {
		return nil
	}
	gran := granularity(target)
	chunks := (length + gran - 1) / gran
	dirty := make([]bool, chunks)
	// mirror_dirty_init: what is allocated above the base
	var ndirty int64
	for off := int64(0); off < length; {
		if err := canceled(ctx); err != nil {
			return err
		}
		alloc, n, err := image.IsAllocatedAbove(src, base, false, off, length-off)
		if err != nil {
			return err
		}
		if n <= 0 {
			break
		}
		if alloc {
			for c := off / gran; c <= (off+n-1)/gran; c++ {
				if !dirty[c] {
					dirty[c] = true
					ndirty++
				}
			}
		}
		off += n
	}
	var targetCluster int64 = 512
	if info, err := image.SkipFilters(target.Disk).Info(); err == nil && info.ClusterSize > 0 {
		targetCluster = info.ClusterSize
	}
	bufSize := int64(mirrorBufSize)
	maxIO := max(bufSize/16, mirrorMaxIOSize)
	w := newMirrorWriter(ctx, target.Disk, ndirty*gran, o)
	for c := int64(0); c < chunks && !w.stopped; {
		if !dirty[c] {
			c++
			continue
		}
		if err := canceled(ctx); err != nil {
			w.fail(err)
			break
		}
		// consecutive dirty chunks, at most the buffer's size
		nb := int64(1)
		for nb*gran < bufSize && c+nb < chunks && dirty[c+nb] {
			nb++
		}
		for i := c; i < c+nb; i++ {
			dirty[i] = false
		}
		off := c * gran
		c += nb
		for nb > 0 && off < length && !w.stopped {
			e, _, err := image.BlockStatusAbove(src, off, nb*gran, true)
			method := mirrorCopy
			var io int64
			switch {
			case err != nil:
				io = min(nb*gran, maxIO)
			case e.Status&image.StatusData != 0:
				io = min(e.Len, maxIO)
			default:
				io = e.Len
			}
			io -= io % gran
			if io < gran {
				io = gran
			} else if err == nil && e.Status&image.StatusData == 0 {
				if off%targetCluster == 0 && io%targetCluster == 0 {
					method = mirrorDiscard
					if e.Status&image.StatusZero != 0 {
						method = mirrorZero
					}
				}
			}
			io = min(io, length-off)
			if !w.submit(src, off, io, method) {
				break
			}
			off += io
			nb -= (io + gran - 1) / gran
		}
	}
	return w.finish()
}

// The mirror job's ways of copying a range.
const (
	mirrorCopy = iota
	mirrorZero
	mirrorDiscard
)

// mirrorInFlight is MAX_IN_FLIGHT, the mirror job's operations in flight
// (each copy with a buffer of up to 1 MiB, from bufpool: the job's 16 MiB).
const mirrorInFlight = 16

// mirrorOp is one range of the mirror job: its data read (a copy) into
// buf while earlier operations are written.
type mirrorOp struct {
	off, n int64
	method int
	buf    []byte // a copy's data
	err    error
	read   chan struct{}
}

// mirrorWriter writes the mirror job's operations in the order they were
// submitted, as QEMU's mirror coroutines (whose reads complete in order
// here) do, so that the target's clusters are allocated at the same host
// offsets; the reads of the next operations run meanwhile, as QEMU's
// operations in flight overlap.
//
// As in QEMU, an operation's failure is seen by the job only when it
// yields (see submit), so the operations issued until then still complete
// (a copy whose read succeeded is written), and none is issued after it.
type mirrorWriter struct {
	ctx         context.Context
	target      *image.Disk
	o           CommitOptions
	queue       chan *mirrorOp
	total, done int64
	start       time.Time
	wg          sync.WaitGroup
	mu          sync.Mutex
	err         error
	stopped     bool // the submitter saw the error, or was cancelled

	// the submitter's count of operations issued, and of those it saw
	// complete
	issued, seen int64
	completed    atomic.Int64 // operations done (the writer's count)
	progress     chan struct{}
}

func newMirrorWriter(ctx context.Context, target *image.Disk, total int64, o CommitOptions) *mirrorWriter {
	w := &mirrorWriter{ctx: ctx, target: target, o: o, total: total, start: time.Now(),
		queue: make(chan *mirrorOp, mirrorInFlight), progress: make(chan struct{}, 1)}
	w.wg.Add(1)
	go w.run()
	return w
}

// fail records err unless an error is already recorded, and stops the
// submitter (its own error, or cancellation).
func (w *mirrorWriter) fail(err error) {
	w.record(err)
	w.stopped = true
}

func (w *mirrorWriter) record(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *mirrorWriter) failed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err != nil
}

// submit issues the operation. When the job counts mirrorInFlight
// operations in flight, it first yields, as QEMU's job does, and sees the
// operations that completed meanwhile and their errors: goqio lets all of
// them complete there (QEMU's job waits for the oldest, and sees those
// that completed with it), so that which operations go on after an
// error does not depend on timing. It reports false (and issues nothing)
// when it saw an error.
func (w *mirrorWriter) submit(src *image.Disk, off, n int64, method int) bool {
	if w.issued-w.seen >= mirrorInFlight {
		for w.completed.Load() < w.issued {
			<-w.progress
		}
		w.seen = w.issued
		if w.failed() {
			w.stopped = true
			return false
		}
	}
	op := &mirrorOp{off: off, n: n, method: method, read: make(chan struct{})}
	if method == mirrorCopy {
		op.buf = bufpool.Get(int(n))
		go func() {
			if op.err = src.ReadAt(op.buf, off); op.err != nil {
				w.record(op.err)
			}
			close(op.read)
		}()
	} else {
		close(op.read)
	}
	w.issued++
	w.queue <- op
	return true
}

func (w *mirrorWriter) run() {
	defer w.wg.Done()
	for op := range w.queue {
		<-op.read
		if err := w.write(op); err != nil {
			w.record(err)
		}
		bufpool.Put(op.buf)
		w.completed.Add(1)
		select {
		case w.progress <- struct{}{}:
		default:
		}
	}
}

func (w *mirrorWriter) write(op *mirrorOp) error {
	var err error
	switch op.method {
	case mirrorCopy:
		if err = op.err; err == nil {
			err = w.target.WriteAt(op.buf, op.off, false)
		}
	case mirrorZero:
		err = w.target.WriteZeroes(op.off, op.n, image.ZeroMayUnmap, false)
	case mirrorDiscard:
		err = w.target.Discard(op.off, op.n)
	}
	if err != nil {
		return err
	}
	w.done += op.n
	if w.o.Progress != nil && w.total > 0 {
		w.o.Progress(float32(min(w.done, w.total))/float32(w.total)*100, 0)
	}
	if w.o.RateLimit > 0 {
		want := time.Duration(float64(w.done) / float64(w.o.RateLimit) * float64(time.Second))
		if d := want - time.Since(w.start); d > 0 {
			select {
			case <-time.After(d):
			case <-w.ctx.Done():
				return w.ctx.Err()
			}
		}
	}
	return nil
}

// finish waits for the operations submitted and returns the first error.
func (w *mirrorWriter) finish() error {
	close(w.queue)
	w.wg.Wait()
	return w.err
}
