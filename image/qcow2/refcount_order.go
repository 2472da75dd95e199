package qcow2

import (
	"encoding/binary"
	"fmt"
	"syscall"
)

// This file is qemu-img amend -o refcount_bits=N: QEMU's
// qcow2_change_refcount_order (block/qcow2-refcount.c). The new refcount
// structures are allocated through the old ones (walking the old reftable
// until a walk allocates nothing more), then filled and written, and the
// header switched to them; the old structures are freed last, through the
// new ones. The host offsets of everything allocated are QEMU's.

// refblockOp is RefblockFinishOp: what the walk does with each completed
// new refblock (index ti of the new reftable).
type refblockOp func(rt *[]uint64, ti int64, block []byte, empty bool, allocated *bool) error

// reorder is the state of one change of the refcount order.
type reorder struct {
	d         *Driver
	order     uint
	bits      int
	blockSize int64 // entries per new refblock
	p         *amendProgress
}

// allocRefblock is alloc_refblock: a cluster for each non-empty new
// refblock, the new reftable grown (in whole clusters) as needed.
func (r *reorder) allocRefblock(rt *[]uint64, ti int64, _ []byte, empty bool, allocated *bool) error {
	d := r.d
	if empty {
		return nil
	}
	if ti >= int64(len(*rt)) {
		per := d.clusterSize / reftableEntrySize
		n := (ti + 1 + per - 1) / per * per
		if n > maxReftableSize {
			return amendErr(syscall.ENOTSUP, "This operation would make the refcount table grow beyond the maximum size supported by QEMU, aborting")
		}
		*rt = append(*rt, make([]uint64, n-int64(len(*rt)))...)
	}
	if (*rt)[ti] == 0 {
		off, err := d.allocClusters(d.clusterSize)
		if err != nil {
			return amendErrno(err, "Failed to allocate refblock")
		}
		(*rt)[ti] = uint64(off)
		*allocated = true
	}
	return nil
}

// flushRefblock is flush_refblock: the new refblock written where the new
// reftable places it.
func (r *reorder) flushRefblock(rt *[]uint64, ti int64, block []byte, empty bool, _ *bool) error {
	d := r.d
	if ti < int64(len(*rt)) && (*rt)[ti] != 0 {
		off := int64((*rt)[ti])
		if err := d.preWriteCheck(0, off, d.clusterSize); err != nil {
			return amendErrno(err, "Overlap check failed")
		}
		if err := d.file.WriteAt(block, off, false); err != nil {
			return amendErrno(err, "Failed to write refblock")
		}
	}
	return nil
}

// walk is walk_over_reftable: every refcount of the old structures, in
// order, copied into new refblocks (when block is not nil) and each
// completed new refblock handed to op. index and total are this walk's
// place among the operation's walks, for the progress.
func (r *reorder) walk(rt *[]uint64, block []byte, op refblockOp, allocated *bool, index, total int64) error {
	d := r.d
	var nti int64 // new reftable index
	ni := int64(0)
	empty := true
	finish := func() error {
		if err := op(rt, nti, block, empty, allocated); err != nil {
			return err
		}
		nti++
		ni = 0
		empty = true
		return nil
	}
	for ti := int64(0); ti < int64(len(d.refTable)); ti++ {
		r.p.cb(index*int64(len(d.refTable))+ti, total*int64(len(d.refTable)))
		off := int64(d.refTable[ti] & reftOffsetMask)
		if off == 0 {
			// no refblock: every refcount is 0
			for i := int64(0); i < d.refBlockSize; i++ {
				if ni >= r.blockSize {
					if err := finish(); err != nil {
						return err
					}
				}
				if block != nil {
					refSetOrder(r.order, block, ni, 0)
				}
				ni++
			}
			continue
		}
		if off&(d.clusterSize-1) != 0 {
			_ = d.corruption(fmt.Sprintf("Refblock offset %s unaligned (reftable index: %s)", hx(off), hx(ti)))
			return amendErr(syscall.EIO, "Image is corrupt (unaligned refblock offset)")
		}
		old, err := d.rbc.Get(off)
		if err != nil {
			return amendErrno(err, "Failed to retrieve refblock")
		}
		for i := int64(0); i < d.refBlockSize; i++ {
			if ni >= r.blockSize {
				if err := finish(); err != nil {
					return err
				}
				// an allocation may have loaded other refblocks; the
				// cache keeps this one (no eviction inside a request)
			}
			rc := d.refGet(old, i)
			if r.bits < 64 && rc>>uint(r.bits) != 0 {
				at := ((ti << d.refBlockBits) + i) << d.clusterBits
				return amendErr(syscall.EINVAL, "Cannot decrease refcount entry width to %d bits: Cluster at offset %s has a refcount of %d", r.bits, hx(at), rc)
			}
			if block != nil {
				refSetOrder(r.order, block, ni, rc)
			}
			ni++
			empty = empty && rc == 0
		}
	}
	if ni > 0 {
		// the last, partly filled new refblock
		if block != nil {
			for ; ni < r.blockSize; ni++ {
				refSetOrder(r.order, block, ni, 0)
			}
		}
		if err := finish(); err != nil {
			return err
		}
	}
	r.p.cb((index+1)*int64(len(d.refTable)), total*int64(len(d.refTable)))
	return nil
}

// changeRefcountOrder is qcow2_change_refcount_order (the image is version
// 3; order is 0..6).
func (d *Driver) changeRefcountOrder(order uint, p *amendProgress) (err error) {
	r := &reorder{d: d, order: order, bits: 1 << order, blockSize: 1 << (d.clusterBits + 3 - order), p: p}
	var newTable []uint64
	var newOffset, allocatedSize int64
	walkIndex := int64(0)
	defer func() {
		// on success these are the old structures; on failure the new
		// ones: either way they are freed
		for _, e := range newTable {
			if off := int64(e & reftOffsetMask); off != 0 {
				d.freeClusters(off, d.clusterSize, discardOther)
			}
		}
		if newOffset > 0 {
			d.freeClusters(newOffset, int64(len(newTable))*reftableEntrySize, discardOther)
		}
	}()
	for {
		allocated := false
		total := max(walkIndex+2, 3)
		if err := r.walk(&newTable, nil, r.allocRefblock, &allocated, walkIndex, total); err != nil {
			return err
		}
		walkIndex++
		if !allocated {
			break
		}
		if newOffset != 0 {
			d.freeClusters(newOffset, allocatedSize*reftableEntrySize, discardNever)
		}
		off, err := d.allocClusters(int64(len(newTable)) * reftableEntrySize)
		if err != nil {
			newOffset = 0
			return amendErrno(err, "Failed to allocate the new reftable")
		}
		newOffset, allocatedSize = off, int64(len(newTable))
	}
	block := make([]byte, d.clusterSize)
	allocated := false
	if err := r.walk(&newTable, block, r.flushRefblock, &allocated, walkIndex, walkIndex+1); err != nil {
		return err
	}
	size := int64(len(newTable)) * reftableEntrySize
	if err := d.preWriteCheck(0, newOffset, size); err != nil {
		return amendErrno(err, "Overlap check failed")
	}
	buf := make([]byte, size)
	for i, e := range newTable {
		binary.BigEndian.PutUint64(buf[8*i:], e)
	}
	if err := d.file.WriteAt(buf, newOffset, false); err != nil {
		return amendErrno(err, "Failed to write the new reftable")
	}
	if err := d.cacheFlush(d.rbc); err != nil {
		return amendErrno(err, "Failed to flush the refblock cache")
	}
	oldOrder, oldTable, oldOffset := d.hdr.RefcountOrder, d.refTable, d.refTableOffset
	d.hdr.RefcountOrder = uint32(order)
	d.refTable, d.refTableOffset = newTable, newOffset
	if err := d.updateHeader(); err != nil {
		d.hdr.RefcountOrder, d.refTable, d.refTableOffset = oldOrder, oldTable, oldOffset
		return amendErrno(err, "Failed to update the qcow2 header")
	}
	d.hdr.RefcountTableOffset = uint64(newOffset)
	d.hdr.RefcountTableClusters = uint32(size >> d.clusterBits)
	d.updateMaxRefTableIndex()
	d.geometry = d.geometry.withRefOrder(order)
	// the cached refblocks are of the old order (all clean now)
	d.rbc.Reset()
	newTable, newOffset = oldTable, oldOffset
	return nil
}
