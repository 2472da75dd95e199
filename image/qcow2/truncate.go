package qcow2

import (
	"fmt"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// Truncate is QEMU's qcow2_co_truncate for preallocation off: growing adds
// L1 entries (and, when the backing file is longer than the old size, zero
// clusters so that its data does not show through); shrinking drops the
// clusters past the end, the L2 tables and refcount blocks that became
// unused, and the tail of the file.
func (d *Driver) Truncate(size int64, p image.Prealloc) error {
	if d.opts.ReadOnly {
		return image.ErrReadOnly
	}
	if size%512 != 0 {
		return fmt.Errorf("The new size must be a multiple of 512")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return errNoMedium
	}
	if err := d.evict(); err != nil {
		return err
	}
	// the dirty bitmaps follow the size (bits past a shrunk end are gone)
	defer func() {
		for _, bm := range d.bitmaps {
			d.trimBitmap(bm)
		}
	}()
	if d.hdr.NbSnapshots > 0 && d.hdr.Version < 3 {
		return fmt.Errorf("Can't resize a v2 image which has snapshots")
	}
	old := d.size
	zeroTail := false
	if size > old && d.backing != nil && d.backing.Size() > old {
		if d.hdr.Version < 3 {
			return fmt.Errorf("Block driver does not support requested flags")
		}
		zeroTail = true
	}
	newL1 := d.sizeToL1(size)
	if size < old {
		if p != image.PreallocOff {
			return fmt.Errorf("Preallocation can't be used for shrinking an image")
		}
		start := (size + d.clusterSize - 1) &^ (d.clusterSize - 1)
		if start < old {
			if err := d.clusterDiscard(start, old-start, discardAlways, true); err != nil {
				return fmt.Errorf("Failed to discard cropped clusters: %s", image.StrerrorOf(err))
			}
		}
		if err := d.shrinkL1(newL1); err != nil {
			return fmt.Errorf("Failed to reduce the number of L2 tables: %s", image.StrerrorOf(err))
		}
		if err := d.shrinkReftable(); err != nil {
			return fmt.Errorf("Failed to discard unused refblocks: %s", image.StrerrorOf(err))
		}
		if err := d.flushMeta(); err != nil {
			return err
		}
		fileSize := d.file.Size()
		last := int64(-1)
		for i := d.sizeToClusters(fileSize) - 1; i >= 0; i-- {
			rc, err := d.getRefcount(i)
			if err != nil {
				return err
			}
			if rc > 0 {
				last = i
				break
			}
		}
		if last < 0 {
			return d.corruption("There are no references in the refcount table.")
		}
		if (last+1)*d.clusterSize < fileSize {
			if t, ok := d.file.Driver().(image.Truncater); ok {
				t.Truncate((last+1)*d.clusterSize, image.PreallocOff)
			}
		}
		// preallocation off: the external data file follows the size
		if _, err := d.growArea(old, size, p, zeroTail); err != nil {
			return err
		}
	} else {
		if err := d.growL1(newL1, true); err != nil {
			return fmt.Errorf("Failed to grow the L1 table: %s", image.StrerrorOf(err))
		}
		zeroed, err := d.growArea(old, size, p, zeroTail)
		if err != nil {
			return err
		}
		if zeroed {
			// the file grew with zeroes under the new clusters: nothing
			// of the backing file shows through, no zero flags needed
			zeroTail = false
		}
	}
	if zeroTail {
		// subcluster-aligned, as qcow2_subcluster_zeroize needs
		zeroStart := (old + d.scSize - 1) &^ (d.scSize - 1)
		d.size = size
		if size > zeroStart {
			if err := d.zeroize(zeroStart, size-zeroStart, 0); err != nil {
				return fmt.Errorf("Failed to zero out new clusters: %s", image.StrerrorOf(err))
			}
		}
		if zeroStart > old {
			n := min(zeroStart, size) - old
			if err := d.writeGuest(make([]byte, n), old, holdKeep); err != nil {
				return fmt.Errorf("Failed to zero out the new area: %s", image.StrerrorOf(err))
			}
		}
	}
	d.size = size
	nh := d.hdr
	nh.Size = uint64(size)
	if err := d.writeHeaderFields(&nh, layout.FieldSize, layout.FieldSize); err != nil {
		return fmt.Errorf("Failed to update the image size: %s", image.StrerrorOf(err))
	}
	d.hdr.Size = uint64(size)
	return nil
}

// flushMeta writes the cached metadata without syncing.
func (d *Driver) flushMeta() error {
	if err := d.l2c.Flush(); err != nil {
		return err
	}
	return d.rbc.Flush()
}

// shrinkL1 is QEMU's qcow2_shrink_l1_table: the L1 keeps its size, the
// entries past n are zeroed on disk and their L2 tables freed.
func (d *Driver) shrinkL1(n int64) error {
	if n >= int64(len(d.l1)) {
		return nil
	}
	d.file.DebugEvent("l1_shrink_write_table")
	if err := d.file.WriteAt(make([]byte, (int64(len(d.l1))-n)*8), d.l1Offset+n*8, false); err != nil {
		return err
	}
	if err := d.file.Flush(); err != nil {
		return err
	}
	d.file.DebugEvent("l1_shrink_free_l2_clusters")
	for i := int64(len(d.l1)) - 1; i > n-1; i-- {
		if off := layout.L1Entry(d.l1[i]).Offset(); off != 0 {
			d.freeClusters(off, d.clusterSize, discardAlways)
		}
		d.l1[i] = 0
	}
	return nil
}

// shrinkReftable is QEMU's qcow2_shrink_reftable: refcount blocks that
// count nothing but (possibly) themselves leave the table and are freed.
func (d *Driver) shrinkReftable() error {
	tmp := make([]uint64, len(d.refTable))
	for i, e := range d.refTable {
		off := int64(e & reftOffsetMask)
		if off == 0 {
			continue
		}
		b, err := d.rbc.Peek(off) // read here and let go
		if err != nil {
			return err
		}
		unused := true
		self := int64(-1)
		if int64(i) == (off>>d.clusterBits)>>d.refBlockBits {
			self = (off >> d.clusterBits) & (d.refBlockSize - 1)
		}
		for j := int64(0); j < d.refBlockSize && unused; j++ {
			if j != self && d.refGet(b, j) != 0 {
				unused = false
			}
		}
		if !unused {
			tmp[i] = e
		}
	}
	if err := d.writeSync(encodeU64s(tmp), d.refTableOffset); err != nil {
		return err
	}
	for i, e := range d.refTable {
		if e != 0 && tmp[i] == 0 {
			off := int64(e & reftOffsetMask)
			if err := d.discardRefcountBlock(off); err != nil {
				return err
			}
			d.refTable[i] = 0
		}
	}
	d.updateMaxRefTableIndex()
	d.processDiscards()
	return nil
}

// discardRefcountBlock is QEMU's qcow2_discard_refcount_block.
func (d *Driver) discardRefcountBlock(off int64) error {
	ci := off >> d.clusterBits
	rb, err := d.refblockOffset(ci)
	if err != nil {
		return err
	}
	b, err := d.rbc.Get(rb)
	if err != nil {
		return err
	}
	bi := ci & (d.refBlockSize - 1)
	if rc := d.refGet(b, bi); rc != 1 {
		return d.corruption(fmt.Sprintf("Invalid refcount: refblock offset %#x, reftable index %d, block offset %#x, refcount %#x",
			rb, ci>>d.refBlockBits, off, rc))
	}
	d.refSet(b, bi, 0)
	d.rbc.MarkDirty(rb)
	if ci < d.freeClusterIndex {
		d.freeClusterIndex = ci
	}
	d.rbc.Drop(off)
	d.queueDiscard(off, d.clusterSize)
	return nil
}

// growArea is the preallocation switch of qcow2_co_truncate (once the L1
// table is large enough, or the image shrunk): the preallocation of
// [old, size) and, with an external data file, its resize (with
// preallocation off, shrinking too). data-file-raw preallocates at least
// the metadata of a growing image (the data file must read as the guest
// does); with a data file, falloc and full preallocate the metadata and
// the data file's new area. It reports whether the new clusters were
// allocated over zeroes in the image file (falloc/full without a data
// file).
func (d *Driver) growArea(old, size int64, p image.Prealloc, zeroWrite bool) (bool, error) {
	if d.hasDataFile() && d.dataFileRaw() && p == image.PreallocOff && size >= old {
		p = image.PreallocMetadata
	}
	switch p {
	case image.PreallocOff:
		if d.hasDataFile() {
			if err := d.data.Truncate(size, image.PreallocOff); err != nil {
				return false, err
			}
		}
	case image.PreallocMetadata:
		return false, d.preallocateMetadata(old, size, p)
	case image.PreallocFalloc, image.PreallocFull:
		if d.hasDataFile() {
			return false, d.preallocateMetadata(old, size, p)
		}
		return true, d.preallocateData(old, size, p, zeroWrite)
	}
	return false, nil
}
