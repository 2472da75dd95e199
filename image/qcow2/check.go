package qcow2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
	"io"
	"syscall"
)

// CheckResult is what a refcount check found (QEMU's BdrvCheckResult).
type CheckResult struct {
	Corruptions, Leaks, CheckErrors        int64
	CorruptionsFixed, LeaksFixed           int64
	ImageEndOffset                         int64
	TotalClusters, AllocatedClusters       int64
	FragmentedClusters, CompressedClusters int64
	// Rebuild is set when the refcount structure itself is broken.
	Rebuild bool
}

// ErrNeedRebuild is returned by Check when the refcount structure itself
// must be rebuilt (a refcount of zero for a used cluster, a broken refcount
// block). It stands for EIO.
var ErrNeedRebuild = fmt.Errorf("refcount structures need rebuilding: %w", syscall.EIO)

// CheckMode says what Check may repair.
type CheckMode int

const (
	FixLeaks CheckMode = 1 << iota
	FixErrors
)

// refs is the in-memory refcount table a check builds.
type refs struct {
	d      *Driver
	counts refArray
	// fileLen is the image file's length when the count began
	fileLen int64
	// fix is what the count may repair on the way (unaligned preallocated
	// clusters, as QEMU's check_refcounts_l2 does)
	fix CheckMode
	res *CheckResult
	w   io.Writer
	// l2buf is the buffer checkL2 reads each table into (one for the
	// whole walk, as QEMU's check_refcounts_l2 allocates one a table)
	l2buf []byte
}

// inc is QEMU's qcow2_inc_refcounts_imrt: one more reference to every
// cluster [off, off+n) touches (the table grows past the file if needed).
func (r *refs) inc(off, n int64) {
	if n <= 0 {
		return
	}
	// The last cluster may be partly past the end of the file; anything
	// further is a corruption and is not counted (this also bounds the
	// table by the file size, whatever a crafted image says).
	if off < 0 || off+n < 0 || off+n-r.fileLen >= r.d.clusterSize {
		fmt.Fprintf(r.w, "ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset %#x size %#x\n", uint64(off), uint64(n))
		r.res.Corruptions++
		return
	}
	cs := r.d.clusterSize
	for c := off &^ (cs - 1); c < off+n; c += cs {
		k := c >> r.d.clusterBits
		r.counts.grow(k + 1)
		if r.counts.get(k) == r.d.refMax {
			fmt.Fprintf(r.w, "ERROR: overflow cluster offset=%#x\n", c)
			fmt.Fprintf(r.w, "Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing\n")
			r.res.Corruptions++
			continue
		}
		r.counts.set(k, r.counts.get(k)+1)
	}
}

// checkL2 is QEMU's check_refcounts_l2.
func (r *refs) checkL2(l2off int64, frag bool, next *int64) error {
	if int64(len(r.l2buf)) != r.d.clusterSize {
		r.l2buf = make([]byte, r.d.clusterSize)
	}
	b := r.l2buf
	if err := r.d.file.ReadAt(b, l2off); err != nil {
		fmt.Fprintf(r.w, "ERROR: I/O error in check_refcounts_l2\n")
		r.res.CheckErrors++
		return nil
	}
	if allZero(b) {
		return nil // every entry unallocated, with no subcluster bits: nothing to count or report
	}
	for i := int64(0); i < r.d.l2Size; i++ {
		e, bm := r.d.getEntry(b, i), r.d.getBitmap(b, i)
		ct := r.d.ctype(e)
		if ct != clusterCompressed && e.Reserved() != 0 {
			fmt.Fprintf(r.w, "ERROR found l2 entry with reserved bits set: %x\n", e)
			r.res.Corruptions++
		}
		switch ct {
		case clusterCompressed:
			if e.Copied() {
				fmt.Fprintf(r.w, "ERROR: coffset=0x%x: copied flag must never be set for compressed clusters\n", e.CompressedOffset(r.d.clusterBits))
				e = e.WithCopied(false)
				r.res.Corruptions++
			}
			if r.d.hasDataFile() {
				fmt.Fprintf(r.w, "ERROR compressed cluster %d with data file, entry=0x%x\n", i, e)
				r.res.Corruptions++
				continue
			}
			if bm != 0 {
				fmt.Fprintf(r.w, "ERROR compressed cluster %d with non-zero subcluster allocation bitmap, entry=0x%x\n", i, e)
				r.res.Corruptions++
				continue
			}
			off, n := r.d.compressedRange(e)
			r.inc(off, n)
			if frag {
				r.res.AllocatedClusters++
				r.res.CompressedClusters++
				r.res.FragmentedClusters++
			}
		case clusterUnallocated:
			if bm.Alloc() != 0 {
				r.res.Corruptions++
				fmt.Fprintf(r.w, "ERROR: Unallocated cluster has non-zero subcluster allocation map\n")
			}
		case clusterZeroAlloc, clusterNormal:
			off := e.Offset()
			if bm.Conflicting() {
				r.res.Corruptions++
				fmt.Fprintf(r.w, "ERROR offset=%x: Allocated cluster has corrupted subcluster allocation bitmap\n", off)
			}
			if off&(r.d.clusterSize-1) != 0 {
				r.res.Corruptions++
				containsData := !e.Zero()
				if r.d.extL2 {
					// with subclusters: whether any of them is allocated
					containsData = bm.Alloc() != 0
				}
				if containsData {
					fmt.Fprintf(r.w, "ERROR offset=%x: Data cluster is not properly aligned; L2 entry corrupted.\n", off)
				} else {
					what := "ERROR"
					if r.fix&FixErrors != 0 {
						what = "Repairing"
					}
					fmt.Fprintf(r.w, "%s offset=%x: Preallocated cluster is not properly aligned; L2 entry corrupted.\n", what, off)
					if r.fix&FixErrors != 0 {
						// the entry becomes a plain zero cluster (unallocated
						// with subclusters)
						eoff := l2off + r.d.l2EntrySize*i
						ign := olInactiveL2
						if frag {
							ign = olActiveL2
						}
						if err := r.d.preWriteCheck(ign, eoff, 8); err != nil {
							fmt.Fprintf(r.w, "ERROR: Overlap check failed\n")
							r.res.CheckErrors++
							return err
						}
						var nb [8]byte
						if !r.d.extL2 { // with subclusters the entry becomes 0, its bitmap stays
							binary.BigEndian.PutUint64(nb[:], uint64(layout.L2Zero))
						}
						r.d.l2c.Drop(l2off)
						if err := r.d.writeSync(nb[:], eoff); err != nil {
							fmt.Fprintf(r.w, "ERROR: Failed to overwrite L2 table entry: %s\n", image.StrerrorOf(err))
							r.res.CheckErrors++
						} else {
							r.res.Corruptions--
							r.res.CorruptionsFixed++
							continue
						}
					}
				}
			}
			if frag {
				r.res.AllocatedClusters++
				if *next != 0 && off != *next {
					r.res.FragmentedClusters++
				}
				*next = off + r.d.clusterSize
			}
			if !r.d.hasDataFile() { // data file clusters have no refcount
				r.inc(off, r.d.clusterSize)
			}
		}
	}
	return nil
}

// checkL1 is QEMU's check_refcounts_l1.
func (r *refs) checkL1(l1off int64, l1 []uint64, frag bool) error {
	r.inc(l1off, int64(len(l1))*8)
	for _, e := range l1 {
		var next int64 // contiguity is judged within one L2 table
		if e == 0 {
			continue
		}
		if layout.L1Entry(e).Reserved() != 0 {
			fmt.Fprintf(r.w, "ERROR found L1 entry with reserved bits set: %x\n", e)
			r.res.Corruptions++
		}
		l2off := layout.L1Entry(e).Offset()
		r.inc(l2off, r.d.clusterSize)
		if l2off&(r.d.clusterSize-1) != 0 {
			// reported, and the table is still read where the entry says
			fmt.Fprintf(r.w, "ERROR l2_offset=%x: Table is not cluster aligned; L1 entry corrupted\n", l2off)
			r.res.Corruptions++
		}
		if err := r.checkL2(l2off, frag, &next); err != nil {
			return err
		}
	}
	return nil
}

// Check is QEMU's qcow2_check_refcounts (and check_oflag_copied): every
// reference is counted from the metadata and compared with the stored
// refcounts. Messages about what is found go to w, as qemu-img prints them
// on stderr. With fix, leaks (and, with FixErrors, refcounts that are too
// low but not zero) are repaired.
func (d *Driver) Check(w io.Writer, fix CheckMode) (CheckResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.checkLocked(w, fix)
}

// calculate is QEMU's calculate_refcounts: the references of every
// cluster, from the metadata.
func (d *Driver) calculate(res *CheckResult, w io.Writer, fix CheckMode) (*refs, error) {
	fileClusters := d.sizeToClusters(d.file.Size())
	r := &refs{d: d, counts: newRefArray(d.refOrder, fileClusters), fileLen: d.file.Size(), fix: fix, res: res, w: w}
	r.inc(0, d.clusterSize)
	if err := r.checkL1(d.l1Offset, d.l1, true); err != nil {
		return r, err
	}
	if d.hasDataFile() && len(d.snaps) > 0 {
		fmt.Fprintf(w, "ERROR %d snapshots in image with data file\n", len(d.snaps))
		res.Corruptions++
	}
	for _, sn := range d.snaps {
		if sn.L1Offset&uint64(d.clusterSize-1) != 0 {
			fmt.Fprintf(w, "ERROR snapshot %s (%s) l1_offset=%s: L1 table is not cluster aligned; snapshot table entry corrupted\n", cstr(sn.ID), cstr(sn.Name), hx(sn.L1Offset))
			res.Corruptions++
			continue
		}
		if uint64(sn.L1Size) > maxL1Size/8 {
			fmt.Fprintf(w, "ERROR snapshot %s (%s) l1_size=%s: L1 table is too large; snapshot table entry corrupted\n", cstr(sn.ID), cstr(sn.Name), hx(sn.L1Size))
			res.Corruptions++
			continue
		}
		b := make([]byte, int64(sn.L1Size)*8)
		if err := d.file.ReadAt(b, int64(sn.L1Offset)); err != nil {
			fmt.Fprintf(w, "ERROR: I/O error in check_refcounts_l1\n")
			res.CheckErrors++
			return r, err
		}
		if err := r.checkL1(int64(sn.L1Offset), decodeU64s(b), false); err != nil {
			return r, err
		}
	}
	r.inc(int64(d.hdr.SnapshotsOffset), d.snapshotsSize)
	r.inc(d.refTableOffset, int64(len(d.refTable))*8)
	if d.cs.hdrLen != 0 {
		// encryption: the LUKS header's clusters
		r.inc(int64(d.cs.hdrOff), int64(d.cs.hdrLen))
	}
	if err := r.checkBitmaps(); err != nil {
		return r, err
	}
	// check_refblocks
	for i, e := range d.refTable {
		off := int64(e & reftOffsetMask)
		if off == 0 {
			continue
		}
		if off&(d.clusterSize-1) != 0 {
			fmt.Fprintf(w, "ERROR refcount block %d is not cluster aligned; refcount table entry corrupted\n", i)
			res.Corruptions++
			res.Rebuild = true
			continue
		}
		if off < 0 || off>>d.clusterBits >= fileClusters {
			fmt.Fprintf(w, "ERROR refcount block %d is outside image\n", i)
			res.Corruptions++
			res.Rebuild = true
			continue
		}
		r.inc(off, d.clusterSize)
		if k := off >> d.clusterBits; k < r.counts.len() && r.counts.get(k) != 1 {
			fmt.Fprintf(w, "ERROR refcount block %d refcount=%d\n", i, r.counts.get(k))
			res.Corruptions++
			res.Rebuild = true
		}
	}
	return r, nil
}

// checkLocked is QEMU's qcow2_co_check_locked: the snapshot table, the
// refcounts, the snapshot table repaired (rewritten) after them, and a
// clean dirty bit when nothing is left.
func (d *Driver) checkLocked(w io.Writer, fix CheckMode) (CheckResult, error) {
	if err := d.flushMeta(); err != nil {
		return CheckResult{TotalClusters: d.sizeToClusters(d.size)}, err
	}
	var snap CheckResult
	if err := d.checkSnapshotTable(&snap, fix, w); err != nil {
		res := CheckResult{TotalClusters: d.sizeToClusters(d.size)}
		addCheckResult(&res, snap)
		return res, err
	}
	res, err := d.checkRefcountsLocked(w, fix)
	if err != nil {
		addCheckResult(&res, snap)
		return res, err
	}
	if snap.Corruptions != 0 && fix&FixErrors != 0 {
		if err := d.writeSnapshots(); err != nil {
			snap.CheckErrors++
			fmt.Fprintf(w, "ERROR failed to update snapshot table: %s\n", image.StrerrorOf(err))
			addCheckResult(&res, snap)
			return res, err
		}
		snap.CorruptionsFixed += snap.Corruptions
		snap.Corruptions = 0
	}
	addCheckResult(&res, snap)
	if fix != 0 {
		if res.CheckErrors == 0 && res.Corruptions == 0 && d.hdr.IncompatibleFeatures&incompatDirty != 0 {
			// qcow2_mark_clean
			d.hdr.IncompatibleFeatures &^= incompatDirty
			if err := d.updateHeader(); err != nil {
				return res, err
			}
		}
		if err := d.flushLocked(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// addCheckResult is QEMU's qcow2_add_check_result without the allocation
// figures.
func addCheckResult(res *CheckResult, o CheckResult) {
	res.Corruptions += o.Corruptions
	res.Leaks += o.Leaks
	res.CheckErrors += o.CheckErrors
	res.CorruptionsFixed += o.CorruptionsFixed
	res.LeaksFixed += o.LeaksFixed
}

// checkRefcountsLocked is QEMU's qcow2_check_refcounts.
func (d *Driver) checkRefcountsLocked(w io.Writer, fix CheckMode) (CheckResult, error) {
	res := CheckResult{TotalClusters: d.sizeToClusters(d.size)}
	r, err := d.calculate(&res, w, fix)
	if err != nil {
		return res, err
	}
	pre := res
	highest := d.compareRefcounts(&res, 0, &r.counts, w)
	switch {
	case res.Rebuild && fix&FixErrors != 0:
		old := res
		fmt.Fprintf(w, "Rebuilding refcount structure\n")
		if err := d.rebuildRefcounts(r); err != nil {
			res.CheckErrors++
			return res, err
		}
		res.Corruptions, res.Leaks, res.Rebuild = 0, 0, false
		if r, err = d.calculate(&res, w, 0); err != nil {
			return res, err
		}
		fresh := int64(0)
		if fix&FixLeaks != 0 {
			saved := res
			res = CheckResult{}
			highest = d.compareRefcounts(&res, FixLeaks, &r.counts, w)
			if res.Rebuild {
				fmt.Fprintf(w, "ERROR rebuilt refcount structure is still broken\n")
			}
			fresh = res.Leaks
			res = saved
		}
		if res.Corruptions < old.Corruptions {
			res.CorruptionsFixed += old.Corruptions - res.Corruptions
		}
		if res.Leaks < old.Leaks {
			res.LeaksFixed += old.Leaks - res.Leaks
		}
		res.Leaks += fresh
	case fix != 0:
		if res.Rebuild {
			fmt.Fprintf(w, "ERROR need to rebuild refcount structures\n")
			res.CheckErrors++
			return res, ErrNeedRebuild
		}
		if res.Leaks != 0 || res.Corruptions != 0 {
			res = pre
			highest = d.compareRefcounts(&res, fix, &r.counts, w)
		}
	}
	res.ImageEndOffset = (highest + 1) * d.clusterSize
	if err := d.checkCopied(&res, fix, w); err != nil {
		return res, err
	}
	return res, nil
}

// RebuildError is a failed rebuild of the refcount structure; qemu-img
// reports it (prefixed with the program's name) before "Check failed".
type RebuildError struct {
	What string
	Err  error
}

func (e *RebuildError) Error() string { return e.What + ": " + image.StrerrorOf(e.Err) }
func (e *RebuildError) Unwrap() error { return image.Errno(e.Err) }

func rebuildErr(what string, err error) error { return &RebuildError{what, err} }

// allocIMRT is QEMU's alloc_clusters_imrt: n contiguous clusters that are
// free in the in-memory refcounts, first fit from *first, the table grown
// past its end when needed; they are marked used.
func (r *refs) allocIMRT(n int64, first *int64) int64 {
	c := *first
	contiguous := int64(0)
	firstGap := true
	for ; c < r.counts.len() && contiguous < n; c++ {
		if r.counts.get(c) == 0 {
			contiguous++
			if firstGap {
				*first = c
				firstGap = false
			}
		} else if contiguous != 0 {
			contiguous = 0
		}
	}
	if contiguous < n {
		r.counts.grow(c + n - contiguous)
	}
	c -= contiguous
	for i := int64(0); i < n; i++ {
		r.counts.set(c+i, 1)
	}
	return c << r.d.clusterBits
}

// writeRefblocks is QEMU's rebuild_refcounts_write_refblocks: for every
// refcount block range in [first, end) with a used cluster, a refcount
// block is allocated (if it has none yet) and written from the in-memory
// counts. It reports whether the refcount table grew.
func (d *Driver) writeRefblocks(r *refs, first, end int64, table *[]uint64) (bool, error) {
	grown := false
	freeCluster := int64(0)
	for c := first; c < end; c++ {
		if c >= r.counts.len() || r.counts.get(c) == 0 {
			continue
		}
		idx := c >> d.refBlockBits
		start := idx << d.refBlockBits
		var off int64
		if int64(len(*table)) > idx && (*table)[idx] != 0 {
			off = int64((*table)[idx])
		} else {
			freeCluster = max(freeCluster, start)
			off = r.allocIMRT(1, &freeCluster)
			if ci := off >> d.clusterBits; ci >= end {
				end = ci + 1
			}
			if int64(len(*table)) <= idx {
				n := ((idx+1)*reftableEntrySize + d.clusterSize - 1) / d.clusterSize * d.clusterSize / reftableEntrySize
				*table = append(*table, make([]uint64, n-int64(len(*table)))...)
				grown = true
			}
			(*table)[idx] = uint64(off)
		}
		if err := d.preWriteCheck(0, off, d.clusterSize); err != nil {
			return false, rebuildErr("ERROR writing refblock", err)
		}
		b := make([]byte, d.clusterSize)
		for i := int64(0); i < d.refBlockSize && start+i < r.counts.len(); i++ {
			d.refSet(b, i, r.counts.get(start+i))
		}
		if err := d.file.WriteAt(b, off, false); err != nil {
			return false, rebuildErr("ERROR writing refblock", err)
		}
		c = start + d.refBlockSize - 1
	}
	return grown, nil
}

// rebuildRefcounts is QEMU's rebuild_refcount_structure: a new refcount
// structure made from the in-memory counts alone; the old one is leaked
// (and repaired by the leak fix that follows).
func (d *Driver) rebuildRefcounts(r *refs) error {
	d.rbc.Reset()
	var table []uint64
	grown, err := d.writeRefblocks(r, 0, r.counts.len(), &table)
	if err != nil {
		return err
	}
	var tableOff, tableClusters int64
	for grown {
		length := int64(len(table)) * reftableEntrySize
		tableClusters = d.sizeToClusters(length)
		freeCluster := int64(0)
		tableOff = r.allocIMRT(tableClusters, &freeCluster)
		start := tableOff >> d.clusterBits
		if grown, err = d.writeRefblocks(r, start, start+tableClusters, &table); err != nil {
			return err
		}
	}
	buf := encodeU64s(table)
	if err := d.preWriteCheck(0, tableOff, int64(len(buf))); err != nil {
		return rebuildErr("ERROR writing reftable", err)
	}
	if err := d.file.WriteAt(buf, tableOff, false); err != nil {
		return rebuildErr("ERROR writing reftable", err)
	}
	nh := d.hdr
	nh.RefcountTableOffset, nh.RefcountTableClusters = uint64(tableOff), uint32(tableClusters)
	if err := d.writeHeaderFields(&nh, layout.FieldRefcountTableOffset, layout.FieldRefcountTableClusters); err != nil {
		return rebuildErr("ERROR setting reftable", err)
	}
	d.refTable = table
	d.refTableOffset = tableOff
	d.hdr.RefcountTableOffset = uint64(tableOff)
	d.hdr.RefcountTableClusters = uint32(tableClusters)
	d.updateMaxRefTableIndex()
	return nil
}

// compareRefcounts is QEMU's compare_refcounts; it returns the highest
// cluster in use.
func (d *Driver) compareRefcounts(res *CheckResult, fix CheckMode, counts *refArray, w io.Writer) int64 {
	var highest int64
	for i := int64(0); i < counts.len(); i++ {
		rc1, err := d.getRefcount(i)
		if err != nil {
			fmt.Fprintf(w, "Can't get refcount for cluster %d: %s\n", i, image.StrerrorOf(err))
			res.CheckErrors++
			continue
		}
		rc2 := counts.get(i)
		if rc1 > 0 || rc2 > 0 {
			highest = i
		}
		if rc1 == rc2 {
			continue
		}
		var fixed *int64
		switch {
		case rc1 == 0:
			res.Rebuild = true
		case rc1 > rc2 && fix&FixLeaks != 0:
			fixed = &res.LeaksFixed
		case rc1 < rc2 && fix&FixErrors != 0:
			fixed = &res.CorruptionsFixed
		}
		what := "Leaked"
		switch {
		case fixed != nil:
			what = "Repairing"
		case rc1 < rc2:
			what = "ERROR"
		}
		fmt.Fprintf(w, "%s cluster %d refcount=%d reference=%d\n", what, i, rc1, rc2)
		if fixed != nil {
			diff, dec := rc2-rc1, false
			if rc1 > rc2 {
				diff, dec = rc1-rc2, true
			}
			if d.updateRefcount(i<<d.clusterBits, 1, diff, dec, discardAlways) == nil {
				*fixed++
				continue
			}
		}
		if rc1 < rc2 {
			res.Corruptions++
		} else {
			res.Leaks++
		}
	}
	return highest
}

// checkCopied is QEMU's check_oflag_copied: the COPIED flag must be set
// exactly on tables and clusters whose refcount is 1.
func (d *Driver) checkCopied(res *CheckResult, fix CheckMode, w io.Writer) error {
	repair := fix&FixErrors != 0 || (fix&FixLeaks != 0 && res.CheckErrors == 0 && res.Corruptions == 0 && res.Leaks == 0)
	what := "ERROR"
	if repair {
		what = "Repairing"
	}
	var own []byte
	for i, e := range d.l1 {
		l2off := layout.L1Entry(e).Offset()
		if l2off == 0 {
			continue
		}
		rc, err := d.getRefcount(l2off >> d.clusterBits)
		if err != nil {
			continue
		}
		if (rc == 1) != layout.L1Entry(e).Copied() {
			res.Corruptions++
			fmt.Fprintf(w, "%s OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%x refcount=%d\n", what, i, e, rc)
			if repair {
				d.l1[i] = uint64(layout.L1Entry(e).WithCopied(rc == 1))
				if err := d.writeL1Entry(int64(i)); err != nil {
					res.CheckErrors++
					return err
				}
				res.Corruptions--
				res.CorruptionsFixed++
			}
		}
		// QEMU's check_oflag_copied reads each table into a buffer of its
		// own, not through the cache (no l2_load, and the cache stays as
		// it was); a cached copy is the newer one, and is used
		b := d.l2c.Cached(l2off)
		if b == nil {
			if int64(len(own)) != d.clusterSize {
				own = make([]byte, d.clusterSize)
			}
			b = own
			if err := d.file.ReadAt(b, l2off); err != nil {
				fmt.Fprintf(w, "ERROR: Could not read L2 table: %s\n", image.StrerrorOf(err))
				res.CheckErrors++
				return err
			}
		}
		if allZero(b) {
			continue // no entry has a cluster to check
		}
		l2dirty := false
		for j := int64(0); j < d.l2Size; j++ {
			le := d.getEntry(b, j)
			t := d.ctype(le)
			if t != clusterNormal && t != clusterZeroAlloc {
				continue
			}
			rc := uint64(1) // clusters of a data file are never shared
			if !d.hasDataFile() {
				var err error
				if rc, err = d.getRefcount(le.Offset() >> d.clusterBits); err != nil {
					continue
				}
			}
			if (rc == 1) != le.Copied() {
				res.Corruptions++
				fmt.Fprintf(w, "%s OFLAG_COPIED data cluster: l2_entry=%x refcount=%d\n", what, le, rc)
				if repair {
					d.setEntry(b, j, le.WithCopied(rc == 1))
					l2dirty = true
					res.Corruptions--
					res.CorruptionsFixed++
				}
			}
		}
		if l2dirty {
			// written at once, as QEMU does, with its overlap check
			if err := d.preWriteCheck(olActiveL2, l2off, d.clusterSize); err != nil {
				fmt.Fprintf(w, "ERROR: Could not write L2 table; metadata overlap check failed: %s\n", image.StrerrorOf(err))
				res.CheckErrors++
				return err
			}
			if err := d.file.WriteAt(b, l2off, false); err != nil {
				fmt.Fprintf(w, "ERROR: Could not write L2 table: %s\n", image.StrerrorOf(err))
				res.CheckErrors++
				return err
			}
		}
	}
	return nil
}

// OpenForCheck opens an image for checking (and repairing): a corrupt or
// dirty image opens, as QEMU's BDRV_O_CHECK allows.
func OpenForCheck(path string, repair bool) (*Driver, error) {
	return Open(path, Options{ReadOnly: !repair, Check: true})
}

// allZero reports whether b is all zero bytes (an L2 table with nothing
// allocated), with the vectorised byte count: a crafted image whose L1
// points many times at empty tables is checked in time proportional to
// its size, not to its entries.
func allZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

// refArray is check's in-memory refcount array, one entry per host
// cluster, as wide as the image's refcounts (rounded up to a byte): QEMU's
// calculate_refcounts allocates refcount_bits per cluster too, so a check
// of a large file takes the memory QEMU's does (a []uint64 took 8 bytes a
// cluster whatever the width: 4 times QEMU's for 16-bit refcounts).
type refArray struct {
	w int // bytes an entry: 1, 2, 4 or 8
	b []byte
}

func newRefArray(order uint, n int64) refArray {
	w := 1
	if order > 3 {
		w = 1 << (order - 3)
	}
	return refArray{w: w, b: make([]byte, n*int64(w))}
}

func (a *refArray) len() int64 { return int64(len(a.b) / a.w) }

// grow makes the array at least n entries long (the new ones 0).
func (a *refArray) grow(n int64) {
	if need := n*int64(a.w) - int64(len(a.b)); need > 0 {
		a.b = append(a.b, make([]byte, need)...)
	}
}

func (a *refArray) get(i int64) uint64 {
	switch a.w {
	case 1:
		return uint64(a.b[i])
	case 2:
		return uint64(binary.LittleEndian.Uint16(a.b[2*i:]))
	case 4:
		return uint64(binary.LittleEndian.Uint32(a.b[4*i:]))
	}
	return binary.LittleEndian.Uint64(a.b[8*i:])
}

func (a *refArray) set(i int64, v uint64) {
	switch a.w {
	case 1:
		a.b[i] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(a.b[2*i:], uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(a.b[4*i:], uint32(v))
	default:
		binary.LittleEndian.PutUint64(a.b[8*i:], v)
	}
}
