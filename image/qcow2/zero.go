package qcow2

import (
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// SupportedZeroFlags: v3 can unmap and refuse the slow path; v2 supports
// neither (so write -z -n on v2 is refused, and unmapping is not asked for).
func (d *Driver) SupportedZeroFlags() image.ZeroFlags {
	if d.hdr.Version >= 3 {
		return image.ZeroMayUnmap | image.ZeroNoFallback
	}
	return 0
}

// WriteZeroes is QEMU's qcow2_co_pwrite_zeroes. A piece that does not
// cover whole clusters (the generic layer guarantees it stays inside one)
// is widened to its cluster when the rest of the cluster already reads as
// zero through the whole backing chain and the cluster is unallocated or
// already zero; otherwise it returns image.ErrNotSupported and the caller
// writes real zeroes. The zeroes are recorded in this image (zero flags),
// never inferred from the backing file.
func (d *Driver) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	h, err := d.lockWriteReq()
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	d.waitClusters(off, n, h, true) // it may free clusters: no request in flight on them
	if err := d.evict(); err != nil {
		return err
	}
	scs := d.scSize
	head := off & (scs - 1)
	tail := (off+n+scs-1)&^(scs-1) - (off + n)
	if off+n == d.size {
		tail = 0
	}
	if head != 0 || tail != 0 {
		if !d.isZero(off-head, head) || !d.isZero(off+n, tail) {
			d.trace("qcow2 pwrite_zeroes off=%#x size=%#x -> rest of cluster not zero: ENOTSUP, explicit zeroes", off, n)
			return image.ErrNotSupported
		}
		off -= head
		n = scs
		typ, _, _, err := d.hostRun(off, scs)
		if err != nil {
			return err
		}
		switch typ {
		case clusterUnallocated, clusterUnallocAlloc, clusterZeroPlain, clusterZeroAlloc:
		default:
			d.trace("qcow2 pwrite_zeroes off=%#x size=%#x -> cluster %#x holds data: ENOTSUP, explicit zeroes", off+head, n-head-tail, off)
			return image.ErrNotSupported
		}
		d.trace("qcow2 pwrite_zeroes off=%#x size=%#x -> widened to cluster %#x", off+head, scs-head-tail, off)
	} else {
		d.trace("qcow2 pwrite_zeroes off=%#x size=%#x", off, n)
	}
	return d.zeroize(off, n, flags)
}

// isZero is QEMU's is_zero: [off, off+n), clamped to the image end, reads as
// zero through the whole chain. It loops because zeroes of different kinds
// (unallocated in the chain, past a short backing file) come as separate runs.
func (d *Driver) isZero(off, n int64) bool {
	if off+n > d.size {
		n = d.size - off
	}
	if n <= 0 {
		return true
	}
	for n > 0 {
		st, run, err := d.statusAbove(off, n)
		if err != nil || st&image.StatusZero == 0 || run == 0 {
			return false
		}
		off += run
		n -= run
	}
	return true
}

// statusAbove is the block status through the chain, starting at this
// image (whose lock is held), with the generic layer's rules.
func (d *Driver) statusAbove(off, n int64) (image.Status, int64, error) {
	return d.statusAboveWant(off, n, true)
}

// statusAboveWant is statusAbove with the generic layer's want_zero.
func (d *Driver) statusAboveWant(off, n int64, wantZero bool) (image.Status, int64, error) {
	n = min(n, d.size-off)
	typ, _, run, err := d.hostRun(off, min(n, intMax))
	if err != nil {
		return 0, 0, err
	}
	switch typ {
	case clusterNormal, clusterCompressed:
		return image.StatusData | image.StatusAllocated, run, nil
	case clusterZeroPlain, clusterZeroAlloc:
		return image.StatusZero | image.StatusAllocated, run, nil
	}
	if d.backing == nil {
		return image.StatusZero, run, nil
	}
	e, _, err := image.BlockStatusAbove(d.backing, off, run, wantZero)
	if err != nil {
		return 0, 0, err
	}
	if e.Len == 0 { // past the end of a shorter backing file
		return image.StatusZero | image.StatusAllocated, run, nil
	}
	return e.Status, e.Len, nil
}

// zeroize is QEMU's qcow2_subcluster_zeroize. With data-file-raw the
// data file is zeroed first, as it must stay a raw image of the guest.
func (d *Driver) zeroize(off, n int64, flags image.ZeroFlags) error {
	if d.dataFileRaw() && d.hasDataFile() {
		d.trace("qcow2 zeroize off=%#x size=%#x -> data-file-raw: zeroing the data file first", off, n)
		if err := d.data.WriteZeroes(off, n, flags, false); err != nil {
			return err
		}
	}
	if d.hdr.Version < 3 {
		if d.backing == nil {
			return d.clusterDiscard(off, n, discardRequest, false)
		}
		d.trace("qcow2 zeroize off=%#x size=%#x -> v2 image with a backing file: ENOTSUP, explicit zeroes", off, n)
		return image.ErrNotSupported
	}
	defer d.cachingDiscards()()
	end := off + n
	// partial clusters (only with extended L2) at either end
	head := min(end, (off+d.clusterSize-1)&^(d.clusterSize-1)) - off
	off += head
	var tail int64
	if end < d.size {
		tail = end - max(off, end&^(d.clusterSize-1))
	}
	end -= tail
	if head > 0 {
		if err := d.zeroL2Subclusters(off-head, (head+d.scSize-1)>>d.scBits); err != nil {
			return err
		}
	}
	nb := d.sizeToClusters(end - off)
	for nb > 0 {
		// one L2 table a step, none held between steps: the caches stay
		// within their sizes however many tables the request covers
		d.safePoint()
		done, err := d.zeroInL2(off, nb, flags)
		if err != nil {
			return err
		}
		nb -= done
		off += done << d.clusterBits
	}
	if tail > 0 {
		return d.zeroL2Subclusters(end, (tail+d.scSize-1)>>d.scBits)
	}
	return nil
}

// zeroL2Subclusters is QEMU's zero_l2_subclusters: set the zero bits (and
// clear the allocation bits) of nb subclusters of one cluster, starting at
// off. A compressed cluster cannot be zeroed in part: ENOTSUP.
func (d *Driver) zeroL2Subclusters(off, nb int64) error {
	l2off, b, err := d.clusterTable(off)
	if err != nil {
		return err
	}
	i := d.l2Index(off)
	if d.ctype(d.getEntry(b, i)) == clusterCompressed {
		d.trace("qcow2 zeroize off=%#x: part of a compressed cluster: ENOTSUP, explicit zeroes", off)
		return image.ErrNotSupported
	}
	sc := d.scIndex(off)
	old := d.getBitmap(b, i)
	bm := (old | layout.SubZeroRange(sc, sc+nb)) &^ layout.SubAllocRange(sc, sc+nb)
	if bm != old {
		d.setBitmap(b, i, bm)
		d.l2c.MarkDirty(l2off)
	}
	return nil
}

// zeroInL2 is QEMU's zero_in_l2_slice: set the zero flag on up to nb
// clusters of one L2 table, leaving unchanged entries alone; with
// ZeroMayUnmap (and always for compressed clusters) free the data.
func (d *Driver) zeroInL2(off, nb int64, flags image.ZeroFlags) (int64, error) {
	l2off, b, err := d.clusterTable(off)
	if err != nil {
		return 0, err
	}
	i0 := d.l2Index(off)
	nb = min(nb, d.l2Size-i0)
	for i := int64(0); i < nb; i++ {
		old, oldBm := d.getEntry(b, i0+i), d.getBitmap(b, i0+i)
		typ := d.ctype(old)
		allocated := typ == clusterNormal || typ == clusterCompressed || typ == clusterZeroAlloc
		unmap := typ == clusterCompressed || (flags&image.ZeroMayUnmap != 0 && allocated)
		nw, bm := old, oldBm
		if unmap {
			nw = 0
		}
		if d.extL2 {
			bm = layout.BitmapAllZeroes
		} else {
			nw |= layout.L2Zero
		}
		if nw == old && bm == oldBm {
			continue
		}
		d.l2c.MarkDirty(l2off)
		d.setEntry(b, i0+i, nw)
		d.setBitmap(b, i0+i, bm)
		if unmap {
			d.freeAnyCluster(old, discardRequest)
		}
	}
	return nb, nil
}

// Discard is QEMU's qcow2_co_pdiscard: whole clusters only (and the
// partial last cluster of an image whose size is not cluster aligned).
func (d *Driver) Discard(off, n int64) error {
	h, err := d.lockWriteReq()
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	d.waitClusters(off, n, h, true) // it frees clusters: no request in flight on them
	if d.hdr.Version < 3 && d.backing != nil {
		d.trace("qcow2 pdiscard off=%#x size=%#x -> v2 image with a backing file: ignored", off, n)
		return image.ErrNotSupported
	}
	if (off|n)&(d.clusterSize-1) != 0 {
		if off&(d.clusterSize-1) != 0 || off+n != d.size {
			d.trace("qcow2 pdiscard off=%#x size=%#x -> partial cluster: ignored", off, n)
			return image.ErrNotSupported
		}
	}
	if err := d.evict(); err != nil {
		return err
	}
	d.trace("qcow2 pdiscard off=%#x size=%#x", off, n)
	return d.clusterDiscard(off, n, discardRequest, false)
}

// clusterDiscard is QEMU's qcow2_cluster_discard.
func (d *Driver) clusterDiscard(off, n int64, typ discardType, full bool) error {
	defer d.cachingDiscards()()
	nb := d.sizeToClusters(n)
	for nb > 0 {
		d.safePoint() // one L2 table a step, as zeroize
		done, err := d.discardInL2(off, nb, typ, full)
		if err != nil {
			return err
		}
		nb -= done
		off += done << d.clusterBits
	}
	return nil
}

// discardInL2 is QEMU's discard_in_l2_slice: v3 leaves zero clusters
// (discarded data must read back as zeroes), v2 unallocated ones; clusters
// that already read as zero without a backing file are left alone.
func (d *Driver) discardInL2(off, nb int64, typ discardType, full bool) (int64, error) {
	l2off, b, err := d.clusterTable(off)
	if err != nil {
		return 0, err
	}
	i0 := d.l2Index(off)
	nb = min(nb, d.l2Size-i0)
	for i := int64(0); i < nb; i++ {
		old, oldBm := d.getEntry(b, i0+i), d.getBitmap(b, i0+i)
		ct := d.ctype(old)
		nw, bm := old, oldBm
		allocated := ct == clusterNormal || ct == clusterCompressed || ct == clusterZeroAlloc
		switch {
		case full:
			nw, bm = 0, 0
		case d.backing != nil || allocated:
			if d.extL2 {
				nw, bm = 0, layout.BitmapAllZeroes
			} else {
				nw = 0
				if d.hdr.Version >= 3 {
					nw = layout.L2Zero
				}
			}
		}
		if nw == old && bm == oldBm {
			continue
		}
		d.l2c.MarkDirty(l2off)
		d.setEntry(b, i0+i, nw)
		d.setBitmap(b, i0+i, bm)
		d.freeAnyCluster(old, typ)
	}
	return nb, nil
}

var (
	_ image.Zeroer    = (*Driver)(nil)
	_ image.Discarder = (*Driver)(nil)
)

// cachingDiscards is QEMU's s->cache_discards = true for the length of an
// operation: the discards of clusters it frees are sent together at its
// end (the returned function, to defer).
func (d *Driver) cachingDiscards() func() {
	prev := d.cacheDiscards
	d.cacheDiscards = true
	return func() {
		d.cacheDiscards = prev
		if !prev {
			d.processDiscards()
		}
	}
}
