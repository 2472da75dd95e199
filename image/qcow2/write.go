package qcow2

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// l2Meta describes a new allocation to link into the L2 table after the
// data is written (QEMU's QCowL2Meta).
type l2Meta struct {
	allocOffset int64 // host offset of the first allocated cluster
	guest       int64 // guest offset of the first cluster
	nbClusters  int64
	keepOld     bool     // the clusters were already ours (zero-alloc + COPIED)
	cowStart    [2]int64 // offset in the first cluster, bytes
	cowEnd      [2]int64 // offset from the first cluster, bytes
	skipCow     bool     // the COW areas were zeroed in the file instead
	data        []byte   // the guest data, to write with the COW areas (merge_cow)
	prealloc    bool     // metadata preallocation: subclusters stay unallocated
	// zeroSrc: every cluster read as zero when it was allocated (it was
	// unallocated without a backing file, or a zero cluster), so its COW
	// areas are zeroes (see waitClusters)
	zeroSrc bool
}

func (d *Driver) l2Index(off int64) int64 { return (off >> d.clusterBits) & (d.l2Size - 1) }
func (d *Driver) l1Index(off int64) int64 { return off >> (d.clusterBits + d.l2Bits) }

// getEntry is entry i of the L2 table b (the first word with extended L2).
func (d *Driver) getEntry(b []byte, i int64) layout.L2Entry {
	return layout.L2Entry(binary.BigEndian.Uint64(b[d.l2EntrySize*i:]))
}
func (d *Driver) setEntry(b []byte, i int64, v layout.L2Entry) {
	binary.BigEndian.PutUint64(b[d.l2EntrySize*i:], uint64(v))
}

// getBitmap returns the subcluster bitmap of entry i (0 without extended L2).
func (d *Driver) getBitmap(b []byte, i int64) layout.L2Bitmap {
	if !d.extL2 {
		return 0
	}
	return layout.L2Bitmap(binary.BigEndian.Uint64(b[16*i+8:]))
}

func (d *Driver) setBitmap(b []byte, i int64, v layout.L2Bitmap) {
	if d.extL2 {
		binary.BigEndian.PutUint64(b[16*i+8:], uint64(v))
	}
}

// ctype is QEMU's qcow2_get_cluster_type: with extended L2 the zero flag of
// the entry means nothing (the bitmap holds the zero bits).
//
// With an external data file, offset 0 is a valid host offset: an entry
// with offset 0 and COPIED is a normal cluster (data clusters there always
// have refcount 1).
func (d *Driver) ctype(entry layout.L2Entry) clusterType {
	t := entry.Type()
	if d.extL2 && (t == clusterZeroPlain || t == clusterZeroAlloc) {
		if entry.Offset() != 0 {
			return clusterNormal
		}
		t = clusterUnallocated
	}
	if t == clusterUnallocated && d.hasDataFile() && entry.Copied() {
		return clusterNormal
	}
	return t
}

// sctype is QEMU's qcow2_get_subcluster_type for subcluster sc.
func (d *Driver) sctype(entry layout.L2Entry, bitmap layout.L2Bitmap, sc int64) clusterType {
	t := d.ctype(entry)
	if !d.extL2 {
		return t
	}
	switch t {
	case clusterCompressed:
		return clusterCompressed
	case clusterNormal:
		switch {
		case bitmap.Conflicting():
			return clusterInvalid
		case bitmap.IsZero(sc):
			return clusterZeroAlloc
		case bitmap.Allocated(sc):
			return clusterNormal
		}
		return clusterUnallocAlloc
	}
	// unallocated
	switch {
	case bitmap.Alloc() != 0:
		return clusterInvalid
	case bitmap.IsZero(sc):
		return clusterZeroPlain
	}
	return clusterUnallocated
}

// scRangeType is QEMU's qcow2_get_subcluster_range_type: the type of
// subcluster from and how many subclusters from there have it (-1 for an
// invalid entry).
func (d *Driver) scRangeType(entry layout.L2Entry, bitmap layout.L2Bitmap, from int64) (clusterType, int64) {
	t := d.sctype(entry, bitmap, from)
	if t == clusterInvalid {
		return t, -1
	}
	if !d.extL2 || t == clusterCompressed {
		return t, d.scPerCluster - from
	}
	switch t {
	case clusterNormal:
		v := (bitmap | layout.SubAllocRange(0, from)).Alloc()
		return t, int64(bits.TrailingZeros32(^v)) - from
	case clusterZeroPlain, clusterZeroAlloc:
		v := (bitmap | layout.SubZeroRange(0, from)).Zeroes()
		return t, int64(bits.TrailingZeros32(^v)) - from
	}
	v := (bitmap.Zeroes() | bitmap.Alloc()) &^ layout.SubAllocRange(0, from).Alloc()
	return t, int64(bits.TrailingZeros32(v)) - from
}

// needsNewAlloc is QEMU's cluster_needs_new_alloc: a write to this cluster
// must allocate a new one (everything but COPIED normal or zero-alloc
// clusters).
func (d *Driver) needsNewAlloc(entry layout.L2Entry) bool {
	switch d.ctype(entry) {
	case clusterNormal, clusterZeroAlloc:
		return !entry.Copied()
	}
	return true
}

// WriteAt writes guest data, allocating clusters and copying on write as
// QEMU's qcow2_co_pwritev_part does.
func (d *Driver) WriteAt(p []byte, off int64) (int, error) {
	h, err := d.lockWriteReq()
	if err != nil {
		return 0, err
	}
	defer d.mu.Unlock()
	if err := d.evict(); err != nil {
		return 0, err
	}
	if err := d.writeGuest(p, off, h); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeGuest writes guest data with d.mu held on entry and on return; the
// data and the copy-on-write areas are written without it (unless keep,
// for a caller that must stay atomic: it has no conflict in flight).
func (d *Driver) writeGuest(p []byte, off int64, keep hold) error {
	done := 0
	for done < len(p) {
		cur := int64(min(len(p)-done, intMax))
		if d.encrypted() {
			cur = min(cur, maxCryptClusters*d.clusterSize-(off+int64(done))&(d.clusterSize-1))
		}
		host, n, metas, err := d.allocHostOffset(off+int64(done), cur, keep)
		if err != nil {
			d.abortMetas(metas)
			return err
		}
		if err := d.preWriteCheckData(host, n); err != nil {
			d.abortMetas(metas)
			return err
		}
		var f *flight
		if keep != holdKeep {
			f = &flight{write: true, start: off + int64(done), end: off + int64(done) + n, metas: metas}
			d.begin(f)
		}
		err = d.writeTask(p[done:done+int(n)], off+int64(done), host, metas, keep)
		d.end(f)
		if err != nil {
			return err
		}
		done += int(n)
	}
	return nil
}

// writeTask writes the data of one allocation round and links it, as
// QEMU's qcow2_co_pwritev_task: entered with d.mu held, it drops it around
// the data I/O.
//
// When a step fails, the allocations not yet linked are given back (QEMU's
// qcow2_handle_l2meta with link_l2 false), so a failed write leaks no
// cluster.
func (d *Driver) writeTask(p []byte, off, host int64, metas []*l2Meta, keep hold) error {
	if d.encrypted() {
		var enc []byte
		err := d.unlocked(keep, func() (err error) {
			enc, err = d.encryptData(p, host, off)
			return err
		})
		if err != nil {
			d.abortMetas(metas)
			return err
		}
		p = enc
	}
	if err := d.handleAllocSpace(metas, keep); err != nil {
		d.abortMetas(metas)
		return err
	}
	if !d.mergeCow(p, off, metas) {
		err := d.unlocked(keep, func() error {
			d.file.DebugEvent("write_aio")
			return d.dataDisk().WriteAt(p, host, false)
		})
		if err != nil {
			d.abortMetas(metas)
			return err
		}
	}
	if keep != holdKeep {
		for _, m := range metas {
			if !m.keepOld {
				d.waitReads(m, keep)
			}
		}
	}
	for i, m := range metas {
		if err := d.linkL2(m, keep); err != nil {
			d.abortMetas(metas[i:])
			return err
		}
	}
	return nil
}

// abortMetas is QEMU's qcow2_alloc_cluster_abort for each allocation: the
// clusters allocated for it are freed, unless they were the image's own
// already or live in an external data file.
func (d *Driver) abortMetas(metas []*l2Meta) {
	if d.hasDataFile() {
		return
	}
	for _, m := range metas {
		if !m.keepOld {
			d.freeClusters(m.allocOffset, m.nbClusters<<d.clusterBits, discardNever)
		}
	}
}

// handleAllocSpace: when the COW areas of an allocation read as zero
// (QEMU's is_zero_cow), zero the new clusters in the file (fallocate)
// instead of writing zero buffers.
func (d *Driver) handleAllocSpace(metas []*l2Meta, keep hold) error {
	if d.encrypted() {
		return nil // zeroes in the file would not read as zeroes
	}
	for _, m := range metas {
		if m.cowStart[1] == 0 && m.cowEnd[1] == 0 {
			continue
		}
		if !d.isZeroFast(m.guest+m.cowStart[0], m.cowStart[1]) ||
			!d.isZeroFast(m.guest+m.cowEnd[0], m.cowEnd[1]) {
			continue
		}
		start := m.allocOffset + m.cowStart[0]
		n := m.cowEnd[0] + m.cowEnd[1] - m.cowStart[0]
		if err := d.preWriteCheckData(start, n); err != nil {
			return err
		}
		err := d.unlocked(keep, func() error {
			d.file.DebugEvent("cluster_alloc_space")
			return d.dataDisk().WriteZeroes(start, n, image.ZeroNoFallback, false)
		})
		if err != nil {
			if image.Errno(err) == syscall.EOPNOTSUPP {
				continue
			}
			return err
		}
		m.skipCow = true
	}
	return nil
}

// isZeroFast is QEMU's bdrv_co_is_zero_fast (what is_zero_cow asks): one
// block status query through the chain, without probing the file for
// zeroes, says [off, off+n) reads as zero.
func (d *Driver) isZeroFast(off, n int64) bool {
	if n == 0 {
		return true
	}
	if off+n > d.size {
		return false // the block status stops at the image end
	}
	st, run, err := d.statusAboveWant(off, n, false)
	return err == nil && run == n && st&image.StatusZero != 0
}

// mergeCow is QEMU's merge_cow: when one allocation's COW areas border
// the data, the data is handed to it, to be written with them in one
// request when the allocation is linked; it reports whether it was.
func (d *Driver) mergeCow(p []byte, off int64, metas []*l2Meta) bool {
	for _, m := range metas {
		if m.skipCow || (m.cowStart[1] == 0 && m.cowEnd[1] == 0) {
			continue
		}
		if m.guest+m.cowStart[0]+m.cowStart[1] != off || m.guest+m.cowEnd[0] != off+int64(len(p)) {
			continue
		}
		m.data = p
		return true
	}
	return false
}

// performCow is QEMU's perform_cow: it copies the COW areas of m (read
// through this image, so from the backing file, zeroes or the old
// cluster) into the new clusters, without d.mu (unless keep); with the
// data mergeCow gave it, it writes start area, data and end area as one
// request. Both areas are read at once when the data between them is at
// most 16 KiB.
func (d *Driver) performCow(m *l2Meta, keep hold) error {
	if (m.cowStart[1] == 0 && m.cowEnd[1] == 0) || m.skipCow {
		return nil
	}
	data := m.data
	start := make([]byte, m.cowStart[1])
	end := make([]byte, m.cowEnd[1])
	cowRead := func(p []byte, off int64) error {
		if len(p) == 0 {
			return nil
		}
		d.event(keep, "cow_read")
		return d.readGuest(p, off, keep)
	}
	middle := m.cowEnd[0] - (m.cowStart[0] + m.cowStart[1])
	if len(start) > 0 && len(end) > 0 && middle <= 16384 {
		buf := make([]byte, m.cowEnd[0]+m.cowEnd[1]-m.cowStart[0])
		if err := cowRead(buf, m.guest+m.cowStart[0]); err != nil {
			return err
		}
		copy(start, buf)
		copy(end, buf[int64(len(buf))-m.cowEnd[1]:])
	} else {
		if err := cowRead(start, m.guest+m.cowStart[0]); err != nil {
			return err
		}
		if err := cowRead(end, m.guest+m.cowEnd[0]); err != nil {
			return err
		}
	}
	if d.encrypted() {
		var err error
		if start, err = d.encryptData(start, m.allocOffset+m.cowStart[0], m.guest+m.cowStart[0]); err != nil {
			return err
		}
		if end, err = d.encryptData(end, m.allocOffset+m.cowEnd[0], m.guest+m.cowEnd[0]); err != nil {
			return err
		}
	}
	dst := d.dataDisk()
	cowWrite := func(p []byte, off int64) error {
		if len(p) == 0 {
			return nil
		}
		if err := d.preWriteCheckData(off, int64(len(p))); err != nil {
			return err
		}
		return d.unlocked(keep, func() error {
			d.file.DebugEvent("cow_write")
			return dst.WriteAt(p, off, false)
		})
	}
	if data != nil {
		buf := make([]byte, 0, len(start)+len(data)+len(end))
		buf = append(append(append(buf, start...), data...), end...)
		// (QEMU's write_aio, then cow_write, for one write)
		d.event(keep, "write_aio")
		return cowWrite(buf, m.allocOffset+m.cowStart[0])
	}
	if err := cowWrite(start, m.allocOffset+m.cowStart[0]); err != nil {
		return err
	}
	return cowWrite(end, m.allocOffset+m.cowEnd[0])
}

// linkL2 is QEMU's qcow2_alloc_cluster_link_l2: copy on write (unless done
// with the data), point the L2 entries at the new clusters, free the old.
func (d *Driver) linkL2(m *l2Meta, keep hold) error {
	if err := d.performCow(m, keep); err != nil {
		return err
	}
	if d.lazyRefcounts() {
		// the refcounts of what is linked now may lag until a clean close
		d.markDirty()
	}
	if d.needAccurateRefcounts() {
		// as qcow2_cache_set_dependency's callers: a failed flush of the
		// dependency leaves none set and is not an error here
		_ = d.l2c.SetDependency(d.rbc)
	}
	l2off, b, err := d.clusterTable(m.guest)
	if err != nil {
		return err
	}
	i0 := d.l2Index(m.guest)
	var old []layout.L2Entry
	for i := int64(0); i < m.nbClusters; i++ {
		if e := d.getEntry(b, i0+i); e != 0 {
			old = append(old, e)
		}
		d.setEntry(b, i0+i, layout.L2At(m.allocOffset+i<<d.clusterBits))
		if d.extL2 && !m.prealloc {
			// the subclusters just written (data and COW) are allocated
			from := max(m.cowStart[0], i<<d.clusterBits)
			to := min(m.cowEnd[0]+m.cowEnd[1], (i+1)<<d.clusterBits)
			first, last := d.scIndex(from), d.scIndex(to-1)
			bm := d.getBitmap(b, i0+i)
			bm |= layout.SubAllocRange(first, last+1)
			bm &^= layout.SubZeroRange(first, last+1)
			d.setBitmap(b, i0+i, bm)
		}
	}
	d.l2c.MarkDirty(l2off)
	if !m.keepOld {
		for _, e := range old {
			d.freeAnyCluster(e, discardNever)
		}
	}
	return nil
}

// freeAnyCluster is QEMU's qcow2_free_any_cluster. Data clusters in an
// external data file have no refcount: they are only discarded there (when
// discards of this kind pass through).
func (d *Driver) freeAnyCluster(entry layout.L2Entry, typ discardType) {
	if d.hasDataFile() {
		if ct := d.ctype(entry); d.discardPassthrough(typ) && (ct == clusterNormal || ct == clusterZeroAlloc) {
			d.data.Discard(entry.Offset(), d.clusterSize)
		}
		return
	}
	switch d.ctype(entry) {
	case clusterCompressed:
		off, size := d.compressedRange(entry)
		d.freeClusters(off, size, typ)
	case clusterNormal, clusterZeroAlloc:
		off := entry.Offset()
		if off&(d.clusterSize-1) != 0 {
			d.corruption(fmt.Sprintf("Cannot free unaligned cluster %s", hx(off)))
			return
		}
		d.freeClusters(off, d.clusterSize, typ)
	}
}

// compressedRange is the host byte range of a compressed cluster.
func (d *Driver) compressedRange(entry layout.L2Entry) (int64, int64) {
	return entry.CompressedRange(d.clusterBits)
}

// allocHostOffset is QEMU's qcow2_alloc_host_offset: the host offset for a
// write at off and how many of the n bytes it covers, using clusters that
// are already ours (COPIED) and allocating new ones contiguously after them.
func (d *Driver) allocHostOffset(off, n int64, keep hold) (int64, int64, []*l2Meta, error) {
again:
	start, remaining := off, n
	clusterOff := int64(-1)
	host := int64(-1)
	cur := int64(0)
	var metas []*l2Meta
	for {
		if host == -1 && clusterOff != -1 {
			host = clusterOff
		}
		start += cur
		remaining -= cur
		if clusterOff != -1 {
			clusterOff += cur
		}
		if remaining == 0 {
			break
		}
		cur = remaining
		if keep != holdKeep && d.handleDependencies(start, &cur, len(metas) > 0, keep) {
			goto again // it waited: everything may have changed
		}
		if cur == 0 {
			break
		}
		ok, err := d.handleCopied(start, &clusterOff, &cur, &metas)
		if err != nil {
			return 0, 0, metas, err
		}
		if ok {
			continue
		}
		if cur == 0 {
			break
		}
		ok, err = d.handleAlloc(start, &clusterOff, &cur, &metas)
		if err != nil {
			return 0, 0, metas, err
		}
		if ok {
			continue
		}
		break
	}
	return host, n - remaining, metas, nil
}

func (d *Driver) clustersInRequest(off, n int64) int64 {
	nb := d.sizeToClusters(off&(d.clusterSize-1) + n)
	nb = min(nb, d.l2Size-d.l2Index(off))
	return min(nb, image.MaxRequest>>d.clusterBits)
}

// countSingleWriteClusters is QEMU's count_single_write_clusters.
func (d *Driver) countSingleWriteClusters(nb int64, b []byte, i0 int64, newAlloc bool) int64 {
	expected := d.getEntry(b, i0).Offset()
	var i int64
	for i = 0; i < nb; i++ {
		e := d.getEntry(b, i0+i)
		if d.needsNewAlloc(e) != newAlloc {
			break
		}
		if !newAlloc {
			if e.Offset() != expected {
				break
			}
			expected += d.clusterSize
		}
	}
	return i
}

// handleCopied is QEMU's handle_copied: use clusters already ours.
func (d *Driver) handleCopied(off int64, host *int64, n *int64, metas *[]*l2Meta) (bool, error) {
	nb := d.clustersInRequest(off, *n)
	_, b, err := d.clusterTable(off)
	if err != nil {
		return false, err
	}
	i0 := d.l2Index(off)
	entry := d.getEntry(b, i0)
	co := entry.Offset()
	if d.needsNewAlloc(entry) {
		return false, nil
	}
	if co&(d.clusterSize-1) != 0 {
		what := "Data"
		if entry.Zero() && !d.extL2 {
			what = "Preallocated zero"
		}
		return false, d.corruption(fmt.Sprintf("%s cluster offset %s unaligned (guest offset: %s)", what, hx(co), hx(off)))
	}
	if *host != -1 && co != *host&^(d.clusterSize-1) {
		*n = 0
		return false, nil
	}
	keep := d.countSingleWriteClusters(nb, b, i0, false)
	*n = min(*n, keep*d.clusterSize-off&(d.clusterSize-1))
	if err := d.calculateL2Meta(co, off, *n, b, metas, true); err != nil {
		return false, err
	}
	*host = co + off&(d.clusterSize-1)
	return true, nil
}

// handleAlloc is QEMU's handle_alloc: allocate new clusters (at *host when
// set, to extend a contiguous run).
func (d *Driver) handleAlloc(off int64, host *int64, n *int64, metas *[]*l2Meta) (bool, error) {
	nb := d.clustersInRequest(off, *n)
	l2off, b, err := d.clusterTable(off)
	if err != nil {
		return false, err
	}
	i0 := d.l2Index(off)
	nb = d.countSingleWriteClusters(nb, b, i0, true)
	var alloc int64
	if d.hasDataFile() {
		// QEMU's do_alloc_cluster_offset: the guest offset, nothing allocated
		alloc = off &^ (d.clusterSize - 1)
	} else if *host == -1 {
		alloc, err = d.allocClusters(nb * d.clusterSize)
		if err != nil {
			return false, err
		}
	} else {
		alloc = *host &^ (d.clusterSize - 1)
		nb, err = d.allocClustersAt(alloc, nb)
		if err != nil {
			return false, err
		}
		if nb == 0 {
			*n = 0
			return false, nil
		}
	}
	// the L2 table may have left the cache while refcount blocks were allocated
	if b, err = d.l2c.Get(l2off); err != nil {
		return false, err
	}
	inCluster := off & (d.clusterSize - 1)
	requested := *n + inCluster
	avail := nb << d.clusterBits
	nbBytes := min(requested, avail)
	*host = alloc + inCluster
	*n = min(*n, nbBytes-inCluster)
	if err := d.calculateL2Meta(alloc, off, *n, b, metas, false); err != nil {
		return false, err
	}
	return true, nil
}

// calculateL2Meta is QEMU's calculate_l2_meta: the copy-on-write areas
// around a write of n bytes at off into the clusters at hostCluster
// (keepOld: clusters already ours, written in place, where only
// subclusters that are not yet normal need COW).
func (d *Driver) calculateL2Meta(hostCluster, off, n int64, b []byte, metas *[]*l2Meta, keepOld bool) error {
	i0 := d.l2Index(off)
	cowStartTo := off & (d.clusterSize - 1)
	cowEndFrom := cowStartTo + n
	nb := d.sizeToClusters(cowEndFrom)
	skip := keepOld
	zeroSrc := !keepOld && !d.hasDataFile() && !d.encrypted()
	for i := int64(0); i < nb; i++ {
		e, bm := d.getEntry(b, i0+i), d.getBitmap(b, i0+i)
		if zeroSrc && !((e == 0 && bm == 0 && d.backing == nil) || (!d.extL2 && d.ctype(e) == clusterZeroPlain)) {
			zeroSrc = false
		}
		var typ clusterType
		if skip {
			from := max(cowStartTo, i<<d.clusterBits)
			to := min(cowEndFrom, (i+1)<<d.clusterBits)
			first, last := d.scIndex(from), d.scIndex(to-1)
			var cnt int64
			typ, cnt = d.scRangeType(e, bm, first)
			if typ != clusterNormal || first+cnt <= last {
				skip = false
			}
		} else {
			typ = d.sctype(e, bm, 0)
		}
		if typ == clusterInvalid {
			l2off := layout.L1Entry(d.l1[d.l1Index(off)]).Offset()
			return d.corruption(fmt.Sprintf("Invalid cluster entry found (L2 offset: %s, L2 index: %s)", hx(l2off), hx(i0+i)))
		}
	}
	if skip {
		return nil
	}
	var cowStartFrom, cowEndTo int64
	e, bm := d.getEntry(b, i0), d.getBitmap(b, i0)
	sc := d.scIndex(off)
	first := d.sctype(e, bm, sc)
	if !keepOld {
		switch first {
		case clusterCompressed:
			cowStartFrom = 0
		case clusterNormal, clusterZeroAlloc, clusterUnallocAlloc:
			if d.extL2 {
				// skip the leading zero and unallocated subclusters
				cowStartFrom = min(sc, int64(bm.FirstAlloc())) << d.scBits
			}
		default: // zero-plain, unallocated
			cowStartFrom = sc << d.scBits
		}
	} else {
		switch first {
		case clusterNormal:
			cowStartFrom = cowStartTo
		default: // zero-alloc, unallocated-alloc
			cowStartFrom = sc << d.scBits
		}
	}
	e, bm = d.getEntry(b, i0+nb-1), d.getBitmap(b, i0+nb-1)
	sc = d.scIndex(off + n - 1)
	last := d.sctype(e, bm, sc)
	roundUp := func(x, to int64) int64 { return (x + to - 1) &^ (to - 1) }
	if !keepOld {
		switch last {
		case clusterCompressed:
			cowEndTo = roundUp(cowEndFrom, d.clusterSize)
		case clusterNormal, clusterZeroAlloc, clusterUnallocAlloc:
			cowEndTo = roundUp(cowEndFrom, d.clusterSize)
			if d.extL2 {
				// skip the trailing zero and unallocated subclusters
				cowEndTo -= min(d.scPerCluster-sc-1, int64(bm.LastAllocFromEnd())) << d.scBits
			}
		default:
			cowEndTo = roundUp(cowEndFrom, d.scSize)
		}
	} else {
		switch last {
		case clusterNormal:
			cowEndTo = cowEndFrom
		default:
			cowEndTo = roundUp(cowEndFrom, d.scSize)
		}
	}
	*metas = append(*metas, &l2Meta{
		allocOffset: hostCluster,
		guest:       off &^ (d.clusterSize - 1),
		nbClusters:  nb,
		keepOld:     keepOld,
		cowStart:    [2]int64{cowStartFrom, cowStartTo - cowStartFrom},
		cowEnd:      [2]int64{cowEndFrom, cowEndTo - cowEndFrom},
		zeroSrc:     zeroSrc,
	})
	return nil
}

// clusterTable is getClusterTable with the table itself, as QEMU's
// get_cluster_table hands it out.
func (d *Driver) clusterTable(off int64) (int64, []byte, error) {
	l2off, err := d.getClusterTable(off)
	if err != nil {
		return 0, nil, err
	}
	b, err := d.l2c.Get(l2off)
	return l2off, b, err
}

// getClusterTable is QEMU's get_cluster_table: the offset of the L2 table
// for guest offset off, growing the L1 table and allocating (or copying)
// the L2 table as needed.
func (d *Driver) getClusterTable(off int64) (int64, error) {
	l1i := d.l1Index(off)
	if l1i >= int64(len(d.l1)) {
		if err := d.growL1(l1i+1, false); err != nil {
			return 0, err
		}
	}
	l2off := layout.L1Entry(d.l1[l1i]).Offset()
	if l2off&(d.clusterSize-1) != 0 {
		return 0, d.corruption(fmt.Sprintf("L2 table offset %s unaligned (L1 index: %s)", hx(l2off), hx(l1i)))
	}
	if !layout.L1Entry(d.l1[l1i]).Copied() {
		if err := d.l2Allocate(l1i); err != nil {
			return 0, err
		}
		if l2off != 0 {
			d.freeClusters(l2off, d.clusterSize, discardOther)
		}
		l2off = layout.L1Entry(d.l1[l1i]).Offset()
	}
	return l2off, nil
}

// l2Allocate is QEMU's l2_allocate. Whatever fails after the table's
// cluster is allocated, the L1 entry keeps its old value and the cluster is
// given back (discarded always), as QEMU's fail path does.
func (d *Driver) l2Allocate(l1i int64) error {
	old := d.l1[l1i]
	l2off, err := d.allocClusters(d.clusterSize)
	if err != nil {
		return err
	}
	if l2off == 0 {
		return d.corruption("Preventing invalid allocation of L2 table at offset 0")
	}
	fail := func(err error) error {
		d.l1[l1i] = old
		d.freeClusters(l2off, d.clusterSize, discardAlways)
		return err
	}
	if err := d.cacheFlush(d.rbc); err != nil {
		return fail(err)
	}
	var src []byte
	if o := layout.L1Entry(old).Offset(); o != 0 {
		d.file.DebugEvent("l2_alloc_cow_read")
		if src, err = d.l2c.Get(o); err != nil {
			return fail(err)
		}
		src = append([]byte(nil), src...)
	}
	b, err := d.l2c.GetEmpty(l2off)
	if err != nil {
		return fail(err)
	}
	copy(b, src)
	d.file.DebugEvent("l2_alloc_write")
	d.l2c.MarkDirty(l2off)
	if err := d.cacheFlush(d.l2c); err != nil {
		return fail(err)
	}
	d.l1[l1i] = uint64(layout.L1At(l2off))
	if err := d.writeL1Entry(l1i); err != nil {
		return fail(err)
	}
	return nil
}

// writeL1Entry is QEMU's qcow2_write_l1_entry: the entry, padded to the
// file's request alignment with its neighbours, written and synced.
func (d *Driver) writeL1Entry(l1i int64) error {
	bufsize := max(8, min(d.file.Limits().RequestAlignment, d.clusterSize))
	n := bufsize / 8
	start := l1i &^ (n - 1)
	buf := make([]byte, bufsize)
	for i := int64(0); i < min(n, int64(len(d.l1))-start); i++ {
		binary.BigEndian.PutUint64(buf[8*i:], d.l1[start+i])
	}
	if err := d.preWriteCheck(olActiveL1, d.l1Offset+8*start, bufsize); err != nil {
		return err
	}
	d.file.DebugEvent("l1_update")
	return d.writeSync(buf, d.l1Offset+8*start)
}

// growL1 is QEMU's qcow2_grow_l1_table.
func (d *Driver) growL1(minSize int64, exact bool) error {
	if minSize <= int64(len(d.l1)) {
		return nil
	}
	if minSize > intMax/8 {
		return syscall.EFBIG
	}
	newSize := minSize
	if !exact {
		newSize = max(int64(len(d.l1)), 1)
		for minSize > newSize {
			newSize = divRoundUp(newSize*3, 2)
		}
	}
	if newSize > maxL1Size/8 {
		return syscall.EFBIG
	}
	size2 := 8 * newSize
	newL1 := make([]uint64, newSize)
	copy(newL1, d.l1)
	d.file.DebugEvent("l1_grow_alloc_table")
	newOff, err := d.allocClusters(size2)
	if err != nil {
		return err
	}
	// as QEMU's qcow2_grow_l1_table: on any failure past the allocation
	// the new table's clusters are given back
	fail := func(err error) error {
		d.freeClusters(newOff, size2, discardOther)
		return err
	}
	if err := d.cacheFlush(d.rbc); err != nil {
		return fail(err)
	}
	buf := encodeU64s(newL1)
	if err := d.preWriteCheck(0, newOff, size2); err != nil {
		return fail(err)
	}
	d.file.DebugEvent("l1_grow_write_table")
	if err := d.writeSync(buf, newOff); err != nil {
		return fail(err)
	}
	d.file.DebugEvent("l1_grow_activate_table")
	nh := d.hdr
	nh.L1Size, nh.L1TableOffset = uint32(newSize), uint64(newOff)
	if err := d.writeHeaderFields(&nh, layout.FieldL1Size, layout.FieldL1TableOffset); err != nil {
		return fail(err)
	}
	oldOff, oldSize := d.l1Offset, int64(len(d.l1))
	d.l1, d.l1Offset = newL1, newOff
	d.hdr.L1Size, d.hdr.L1TableOffset = uint32(newSize), uint64(newOff)
	d.freeClusters(oldOff, oldSize*8, discardOther)
	return nil
}
