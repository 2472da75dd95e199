package qcow2

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// readCompressed fills p with guest data from the compressed cluster
// described by entry, starting inOff bytes into the cluster.
func (d *Driver) readCompressed(p []byte, entry layout.L2Entry, inOff int64) error {
	coff, csize := d.compressedRange(entry)
	src := make([]byte, csize)
	d.file.DebugEvent("read_compressed")
	if err := d.file.ReadAt(src, coff); err != nil {
		return err
	}
	out := p
	if inOff != 0 || int64(len(p)) != d.clusterSize {
		out = make([]byte, d.clusterSize)
	}
	if err := decompress(d.hdr.CompressionType, out, src); err != nil {
		return fmt.Errorf("%w: compressed cluster at %#x: %w", image.ErrCorrupt, coff, err)
	}
	if &out[0] != &p[0] {
		copy(p, out[inOff:])
	}
	return nil
}

// compressedJob is one compressed cluster to read into p.
type compressedJob struct {
	p     []byte
	entry layout.L2Entry
	inOff int64
}

// readCompressedBatch decompresses the jobs on all CPUs.
func (d *Driver) readCompressedBatch(jobs []compressedJob) error {
	switch len(jobs) {
	case 0:
		return nil
	case 1:
		return d.readCompressed(jobs[0].p, jobs[0].entry, jobs[0].inOff)
	}
	workers := min(runtime.GOMAXPROCS(0), len(jobs))
	errs := make([]error, len(jobs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return
				}
				j := jobs[i]
				errs[i] = d.readCompressed(j.p, j.entry, j.inOff)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// WriteCompressed is QEMU's qcow2_co_pwritev_compressed_part (write -c):
// whole clusters only (the last may end at the image end), each into a
// cluster that holds nothing yet; a cluster that does not compress is
// written normally.
func (d *Driver) WriteCompressed(p []byte, off int64) error {
	h, err := d.lockWriteReq()
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	// the clusters must be unallocated: nothing in flight touches them,
	// and the whole write happens under the lock
	d.waitClusters(off, int64(len(p)), h, false)
	if d.hasDataFile() {
		// QEMU refuses compressed clusters in an external data file
		d.markDirtyLocked(off, int64(len(p)))
		return image.ErrNotSupported
	}
	if err := d.evict(); err != nil {
		return err
	}
	if len(p) == 0 {
		// QEMU aligns the end of the file to a sector boundary here
		if t, ok := d.file.Driver().(image.Truncater); ok {
			return t.Truncate((d.file.Size()+511)&^511, image.PreallocOff)
		}
		return nil
	}
	n := int64(len(p))
	if off&(d.clusterSize-1) != 0 {
		return image.ErrInvalid
	}
	d.markDirtyLocked(off, n)
	if n&(d.clusterSize-1) != 0 && off+n != d.size {
		return image.ErrInvalid
	}
	for len(p) > 0 {
		chunk := min(int64(len(p)), d.clusterSize)
		if err := d.writeCompressedCluster(p[:chunk], off); err != nil {
			return err
		}
		p = p[chunk:]
		off += chunk
	}
	return nil
}

func (d *Driver) writeCompressedCluster(p []byte, off int64) error {
	c, err := d.prepareCompressed(p)
	if err != nil {
		return err
	}
	return d.writePreparedLocked(c, off)
}

// preparedCluster is one cluster compressed ahead of its write.
type preparedCluster struct {
	raw []byte // the data as given
	out []byte // compressed, or nil when it does not compress
}

func (d *Driver) prepareCompressed(p []byte) (*preparedCluster, error) {
	buf := make([]byte, d.clusterSize)
	copy(buf, p)
	out, ok, err := compress(d.hdr.CompressionType, buf, int(d.clusterSize-1))
	if err != nil {
		return nil, image.ErrInvalid
	}
	if !ok {
		out = nil
	}
	return &preparedCluster{raw: p, out: out}, nil
}

// PrepareCompressed compresses p (one cluster, or the last part of the
// image) as WriteCompressed would, without writing anything: it is safe
// for concurrent use and holds no lock, so that a caller (qemu-img convert
// -c) compresses clusters in parallel and writes them in order with
// WritePrepared. p must not change until then.
func (d *Driver) PrepareCompressed(p []byte) (any, error) {
	if int64(len(p)) > d.clusterSize {
		return nil, image.ErrInvalid
	}
	return d.prepareCompressed(p)
}

// WritePrepared writes a cluster PrepareCompressed made at off, as
// WriteCompressed(p, off) writes it.
func (d *Driver) WritePrepared(c any, off int64) error {
	pc, ok := c.(*preparedCluster)
	if !ok {
		return image.ErrInvalid
	}
	n := int64(len(pc.raw))
	if off < 0 || off > d.Size() || n > d.Size()-off {
		return image.ErrOutOfRange
	}
	h, err := d.lockWriteReq()
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	d.waitClusters(off, n, h, false)
	if d.hasDataFile() {
		d.markDirtyLocked(off, n)
		return image.ErrNotSupported
	}
	if err := d.evict(); err != nil {
		return err
	}
	if off&(d.clusterSize-1) != 0 || (n != d.clusterSize && off+n != d.size) {
		return image.ErrInvalid
	}
	d.markDirtyLocked(off, n)
	return d.writePreparedLocked(pc, off)
}

func (d *Driver) writePreparedLocked(c *preparedCluster, off int64) error {
	p, out := c.raw, c.out
	if out == nil {
		return d.writeGuest(p, off, holdKeep)
	}
	l2off, b, err := d.clusterTable(off)
	if err != nil {
		return err
	}
	i := d.l2Index(off)
	if d.getEntry(b, i).Offset() != 0 {
		return syscall.EIO
	}
	coff, err := d.allocBytes(int64(len(out)))
	if err != nil {
		return err
	}
	if b, err = d.l2c.Get(l2off); err != nil {
		return err
	}
	d.file.DebugEvent("l2_update_compressed")
	if err := d.preWriteCheck(0, coff, int64(len(out))); err != nil {
		return err
	}
	d.setEntry(b, i, layout.Compressed(d.clusterBits, coff, int64(len(out))))
	d.setBitmap(b, i, 0)
	d.l2c.MarkDirty(l2off)
	d.dataDisk().DebugEvent("write_compressed")
	return d.file.WriteAt(out, coff, false)
}

// allocBytes is QEMU's qcow2_alloc_bytes: size bytes for compressed data,
// packed after the previous compressed cluster when they fit in its host
// cluster (or the one right after it), else in a newly found cluster.
func (d *Driver) allocBytes(size int64) (int64, error) {
	d.file.DebugEvent("cluster_alloc_bytes")
	off := d.freeByteOffset
	if off != 0 {
		rc, err := d.getRefcount(off >> d.clusterBits)
		if err != nil {
			return 0, err
		}
		if rc == d.refMax {
			off = 0
		}
	}
	free := d.clusterSize - off&(d.clusterSize-1)
	maxOff := layout.MaxCompressedOffset(d.clusterBits)
	for {
		if off == 0 || free < size {
			nc, err := d.allocClustersNoref(d.clusterSize, maxOff)
			if err != nil {
				return 0, err
			}
			if nc == 0 {
				return 0, d.corruption("Preventing invalid allocation of compressed cluster at offset 0")
			}
			if off == 0 || (off+d.clusterSize-1)&^(d.clusterSize-1) != nc {
				off = nc
				free = d.clusterSize
			} else {
				free += d.clusterSize
			}
		}
		err := d.updateRefcount(off, size, 1, false, discardNever)
		if err == errAgain {
			off = 0
			continue
		}
		if err != nil {
			return 0, err
		}
		break
	}
	d.freeByteOffset = off + size
	if d.freeByteOffset&(d.clusterSize-1) == 0 {
		d.freeByteOffset = 0
	}
	// the refcount reaches the file before the L2 entry the caller writes
	// as qcow2_cache_set_dependency's callers: a failed flush of the
	// dependency leaves none set and is not an error here
	_ = d.l2c.SetDependency(d.rbc)
	return off, nil
}
