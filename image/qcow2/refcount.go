package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// errAgain is QEMU's -EAGAIN from alloc_refcount_block: a new refcount
// block was placed where the caller may have meant to allocate; search again.
var errAgain = errors.New("qcow2: refcount block allocated, search again")

// discardType says whether freeing a cluster may discard it in the file
// (QEMU's qcow2_discard_type with its default passthrough settings).
type discardType int

const (
	discardNever discardType = iota
	discardAlways
	discardRequest
	discardSnapshot
	discardOther
)

// refGet reads entry i of a refcount block.
func (d *geometry) refGet(b []byte, i int64) uint64 { return layout.RefcountGet(b, d.refOrder, i) }

// refSet writes entry i of a refcount block.
func (d *geometry) refSet(b []byte, i int64, v uint64) { refSetOrder(d.refOrder, b, i, v) }

// refSetOrder writes entry i of a refcount block of refcount order order
// (entries of 1 << order bits), whether the image's or, while amend
// changes it, the new one's.
func refSetOrder(order uint, b []byte, i int64, v uint64) { layout.RefcountSet(b, order, i, v) }

// refblockOffset returns the refcount block covering cluster index ci, or 0.
func (d *allocator) refblockOffset(ci int64) (int64, error) {
	ti := ci >> d.refBlockBits
	if ti >= int64(len(d.refTable)) {
		return 0, nil
	}
	off := int64(d.refTable[ti] & reftOffsetMask)
	if off != 0 && off&(d.clusterSize-1) != 0 {
		return 0, d.corruption(fmt.Sprintf("Refblock offset %s unaligned (reftable index: %s)", hx(off), hx(ti)))
	}
	return off, nil
}

// getRefcount is QEMU's qcow2_get_refcount.
func (d *allocator) getRefcount(ci int64) (uint64, error) {
	off, err := d.refblockOffset(ci)
	if err != nil || off == 0 {
		return 0, err
	}
	// no refblock_load here: QEMU's qcow2_get_refcount reads through the
	// cache without load_refcount_block's event (and puts the block back at
	// once: it is not held)
	b, err := d.rbc.Peek(off)
	if err != nil {
		return 0, err
	}
	return d.refGet(b, ci&(d.refBlockSize-1)), nil
}

// allocClustersNoref is QEMU's alloc_clusters_noref: the first run of free
// clusters at or after the free cluster index, without taking it.
func (d *allocator) allocClustersNoref(size int64, maxOff uint64) (int64, error) {
	nb := d.sizeToClusters(size)
retry:
	for i := int64(0); i < nb; i++ {
		idx := d.freeClusterIndex
		d.freeClusterIndex++
		rc, err := d.getRefcount(idx)
		if err != nil {
			return 0, err
		}
		if rc != 0 {
			goto retry
		}
	}
	if d.freeClusterIndex > 0 && uint64(d.freeClusterIndex-1) > maxOff>>d.clusterBits {
		return 0, syscall.EFBIG
	}
	off := (d.freeClusterIndex - nb) << d.clusterBits
	d.claimed(off, nb)
	return off, nil
}

// claimed forgets the free byte offset of compressed clusters when its
// cluster, freed since, is taken by a new allocation. QEMU 7.2 keeps it
// and packs the next compressed cluster into what is then a data cluster
// or a table (a corruption: "qemu-io -c 'write -c 0 64k' -c 'discard 0
// 64k' -c 'write 64k 64k' -c 'write -c 128k 64k'" overwrites the data at
// 64k); wherever QEMU does not corrupt the image, nothing changes.
func (d *allocator) claimed(off, nb int64) {
	if d.freeByteOffset != 0 && d.freeByteOffset >= off && d.freeByteOffset < off+nb<<d.clusterBits {
		d.freeByteOffset = 0
	}
}

// allocClusters is QEMU's qcow2_alloc_clusters: find and take size bytes of
// contiguous clusters.
func (d *allocator) allocClusters(size int64) (int64, error) {
	d.file.DebugEvent("cluster_alloc")
	for {
		off, err := d.allocClustersNoref(size, maxClusterOffset)
		if err != nil {
			return 0, err
		}
		err = d.updateRefcount(off, size, 1, false, discardNever)
		if err == errAgain {
			continue
		}
		if err != nil {
			return 0, err
		}
		return off, nil
	}
}

// allocClustersAt is QEMU's qcow2_alloc_clusters_at: take as many of the nb
// clusters at off as are free (stopping at the first used one).
func (d *allocator) allocClustersAt(off int64, nb int64) (int64, error) {
	if nb == 0 {
		return 0, nil
	}
	for {
		ci := off >> d.clusterBits
		var i int64
		for i = 0; i < nb; i++ {
			rc, err := d.getRefcount(ci + i)
			if err != nil {
				return 0, err
			}
			if rc != 0 {
				break
			}
		}
		err := d.updateRefcount(off, i<<d.clusterBits, 1, false, discardNever)
		if err == errAgain {
			continue
		}
		if err != nil {
			return 0, err
		}
		d.claimed(off, i)
		return i, nil
	}
}

// freeClusters is QEMU's qcow2_free_clusters.
func (d *allocator) freeClusters(off, size int64, typ discardType) {
	d.file.DebugEvent("cluster_free")
	// QEMU reports the failure and leaks the clusters; so do we.
	if err := d.updateRefcount(off, size, 1, true, typ); err != nil {
		if err == errAgain {
			err = syscall.EAGAIN
		}
		fmt.Fprintf(d.stderr(), "qcow2_free_clusters failed: %s\n", image.StrerrorOf(err))
	}
}

// updateRefcount is QEMU's update_refcount: add (or subtract) addend to the
// refcount of every cluster in [off, off+length), allocating refcount blocks
// as needed. errAgain asks the caller to search for free clusters again.
func (d *allocator) updateRefcount(off, length int64, addend uint64, decrease bool, typ discardType) error {
	if length < 0 {
		return syscall.EINVAL
	}
	if length == 0 {
		return nil
	}
	// a refcount decrease waits for the L2 tables that dropped the
	// reference (the other way round is set where references are made:
	// linkL2, allocBytes)
	if decrease {
		// as qcow2_cache_set_dependency's callers: a failed flush of the
		// dependency leaves none set and is not an error here
		_ = d.rbc.SetDependency(d.l2c)
	}
	start := off &^ (d.clusterSize - 1)
	last := (off + length - 1) &^ (d.clusterSize - 1)
	var block []byte
	blockOff := int64(0)
	oldTI := int64(-1)
	var err error
	co := start
	for ; co <= last; co += d.clusterSize {
		ci := co >> d.clusterBits
		ti := ci >> d.refBlockBits
		if ti != oldTI {
			blockOff, err = d.allocRefcountBlock(ci)
			if err == errAgain && d.freeClusterIndex > start>>d.clusterBits {
				d.freeClusterIndex = start >> d.clusterBits
			}
			if err != nil {
				break
			}
			d.file.DebugEvent("refblock_load")
			// not pinned: nothing else is loaded into the refcount cache
			// before the next block is (so a discard that frees clusters
			// counted in many blocks holds one at a time, as QEMU's)
			if block, err = d.rbc.Peek(blockOff); err != nil {
				break
			}
		}
		oldTI = ti
		d.rbc.MarkDirty(blockOff)
		bi := ci & (d.refBlockSize - 1)
		rc := d.refGet(block, bi)
		if decrease {
			if rc < addend {
				err = syscall.EINVAL
				break
			}
			rc -= addend
		} else {
			if rc+addend < rc || rc+addend > d.refMax {
				err = syscall.EINVAL
				break
			}
			rc += addend
		}
		if rc == 0 && ci < d.freeClusterIndex {
			d.freeClusterIndex = ci
		}
		d.refSet(block, bi, rc)
		if rc == 0 {
			// the cluster may have held metadata: forget its cached copy
			if d.rbc.Has(co) {
				d.rbc.Drop(co)
				oldTI = -1
			}
			d.l2c.Drop(co)
			if d.discardPassthrough(typ) {
				d.queueDiscard(co, d.clusterSize)
			}
		}
	}
	if !d.cacheDiscards {
		// freed clusters are discarded now, before anything can reuse them
		d.processDiscards()
	}
	if err != nil {
		// undo what was done, as QEMU tries to
		if co > off {
			d.updateRefcount(off, co-off, addend, !decrease, discardNever)
		}
		return err
	}
	return nil
}

func (d *allocator) discardPassthrough(typ discardType) bool {
	return typ >= 0 && int(typ) < len(d.pass) && d.pass[typ]
}

// queueDiscard remembers a freed host range to punch out of the file.
func (d *allocator) queueDiscard(off, n int64) {
	if k := len(d.discards); k > 0 {
		last := &d.discards[k-1]
		if last[0]+last[1] == off {
			last[1] += n
			return
		}
		if off+n == last[0] {
			last[0] = off
			last[1] += n
			return
		}
	}
	d.discards = append(d.discards, [2]int64{off, n})
}

// processDiscards discards the queued ranges in the file.
func (d *allocator) processDiscards() {
	for _, r := range d.discards {
		d.file.Discard(r[0], r[1])
	}
	d.discards = nil
}

// allocRefcountBlock is QEMU's alloc_refcount_block: the offset of the
// refcount block for cluster ci, allocating it (and growing the refcount
// table) when there is none; after an allocation it returns errAgain.
func (d *allocator) allocRefcountBlock(ci int64) (int64, error) {
	d.file.DebugEvent("refblock_alloc")
	ti := ci >> d.refBlockBits
	if ti < int64(len(d.refTable)) {
		off := int64(d.refTable[ti] & reftOffsetMask)
		if off != 0 {
			if off&(d.clusterSize-1) != 0 {
				return 0, d.corruption(fmt.Sprintf("Refblock offset %s unaligned (reftable index: %s)", hx(off), hx(ti)))
			}
			return off, nil
		}
	}
	if err := d.cacheFlush(d.l2c); err != nil {
		return 0, err
	}
	newBlock, err := d.allocClustersNoref(d.clusterSize, 1<<63-1)
	if err != nil {
		return 0, err
	}
	if newBlock == 0 {
		return 0, d.corruption("Preventing invalid allocation of refcount block at offset 0")
	}
	if d.inSameRefblock(newBlock, ci<<d.clusterBits) {
		b, err := d.rbc.GetEmpty(newBlock)
		if err != nil {
			return 0, err
		}
		d.refSet(b, (newBlock>>d.clusterBits)&(d.refBlockSize-1), 1)
	} else {
		if err := d.updateRefcount(newBlock, d.clusterSize, 1, false, discardNever); err != nil {
			return 0, err
		}
		if err := d.cacheFlush(d.rbc); err != nil {
			return 0, err
		}
		if _, err := d.rbc.GetEmpty(newBlock); err != nil {
			return 0, err
		}
	}
	d.file.DebugEvent("refblock_alloc_write")
	d.rbc.MarkDirty(newBlock)
	if err := d.cacheFlush(d.rbc); err != nil {
		return 0, err
	}
	if ti < int64(len(d.refTable)) {
		d.file.DebugEvent("refblock_alloc_hookup")
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(newBlock))
		if err := d.writeSync(b[:], d.refTableOffset+ti*reftableEntrySize); err != nil {
			return 0, err
		}
		d.refTable[ti] = uint64(newBlock)
		d.maxRefTableIndex = max(d.maxRefTableIndex, ti)
		return 0, errAgain
	}
	// The refcount table is full: grow it, with new refcount blocks placed
	// past everything covered so far, describing themselves and the table.
	d.file.DebugEvent("reftable_grow")
	blocksUsed := divRoundUp(max(ci+1, (newBlock>>d.clusterBits)+1), d.refBlockSize)
	metaOffset := blocksUsed * d.refBlockSize * d.clusterSize
	if _, err := d.refcountArea(metaOffset, 0, false, ti, newBlock); err != nil {
		return 0, err
	}
	return 0, errAgain
}

func divRoundUp(a, b int64) int64 { return (a + b - 1) / b }

// refcountMetadataSize is QEMU's qcow2_refcount_metadata_size: the refcount
// blocks needed to describe clusters clusters and themselves (with a
// generous margin on request).
func refcountMetadataSize(clusters, clusterSize int64, order uint, generous bool) (blocks int64) {
	perTable := clusterSize / reftableEntrySize
	perBlock := clusterSize * 8 / (1 << order)
	var table, n, last int64
	for {
		last = n
		blocks = divRoundUp(clusters+table+blocks, perBlock)
		table = divRoundUp(blocks, perTable)
		n = clusters + blocks + table
		if n == last && generous {
			clusters += divRoundUp(table, 2)
			n = 0
			generous = false
		}
		if n == last {
			return blocks
		}
	}
}

// refcountArea is QEMU's qcow2_refcount_area: make a new refcount table at
// startOffset (after any new refcount blocks it needs), covering the image
// up to there, and switch to it.
func (d *allocator) refcountArea(startOffset, additional int64, exact bool, newIndex int64, newOffset int64) (int64, error) {
	total := refcountMetadataSize(startOffset/d.clusterSize+additional, d.clusterSize, d.refOrder, !exact)
	if total > maxReftableSize {
		return 0, syscall.EFBIG
	}
	areaIndex := (startOffset / d.clusterSize) / d.refBlockSize
	tableSize := total
	if !exact {
		tableSize = total + divRoundUp(total, 2)
	}
	perCluster := d.clusterSize / reftableEntrySize
	tableSize = divRoundUp(tableSize, perCluster) * perCluster
	tableClusters := tableSize * reftableEntrySize / d.clusterSize
	if tableSize > maxReftableSize {
		return 0, syscall.EFBIG
	}
	newTable := make([]uint64, tableSize)
	if tableSize > d.maxRefTableIndex {
		copy(newTable, d.refTable[:min(d.maxRefTableIndex+1, int64(len(d.refTable)))])
	} else {
		copy(newTable, d.refTable[:tableSize])
	}
	if newOffset != 0 {
		newTable[newIndex] = uint64(newOffset)
	}
	var additionalBlocks int64
	for i := areaIndex; i < total; i++ {
		if newTable[i] == 0 {
			additionalBlocks++
		}
	}
	tableOffset := startOffset + additionalBlocks*d.clusterSize
	endOffset := tableOffset + tableClusters*d.clusterSize
	blockOffset := startOffset
	for i := areaIndex; i < total; i++ {
		var b []byte
		var off int64
		var err error
		if newTable[i] != 0 {
			off = int64(newTable[i])
			if b, err = d.rbc.Get(off); err != nil {
				return 0, err
			}
		} else {
			off = blockOffset
			if b, err = d.rbc.GetEmpty(off); err != nil {
				return 0, err
			}
			d.rbc.MarkDirty(off)
			newTable[i] = uint64(blockOffset)
			blockOffset += d.clusterSize
		}
		first := i * d.refBlockSize * d.clusterSize
		if first < endOffset {
			j := int64(0)
			if first < startOffset {
				j = (startOffset - first) / d.clusterSize
			}
			end := min((endOffset-first)/d.clusterSize, d.refBlockSize)
			for ; j < end; j++ {
				d.refSet(b, j, 1)
			}
			d.rbc.MarkDirty(off)
		}
	}
	d.file.DebugEvent("refblock_alloc_write_blocks")
	if err := d.cacheFlush(d.rbc); err != nil {
		return 0, err
	}
	buf := make([]byte, tableSize*reftableEntrySize)
	for i := int64(0); i < total; i++ {
		binary.BigEndian.PutUint64(buf[8*i:], newTable[i])
	}
	d.file.DebugEvent("refblock_alloc_write_table")
	if err := d.writeSync(buf, tableOffset); err != nil {
		return 0, err
	}
	// the two header fields, written together (the rest of the header
	// is the driver's: reftableMoved updates its copy)
	nh := Header{RefcountTableOffset: uint64(tableOffset), RefcountTableClusters: uint32(tableClusters)}
	hoff, hb := nh.EncodeFields(layout.FieldRefcountTableOffset, layout.FieldRefcountTableClusters)
	d.file.DebugEvent("refblock_alloc_switch_table")
	if err := d.writeSync(hb, hoff); err != nil {
		return 0, err
	}
	oldOffset, oldSize := d.refTableOffset, int64(len(d.refTable))
	for i := total; i < tableSize; i++ {
		newTable[i] = 0
	}
	d.refTable = newTable
	d.refTableOffset = tableOffset
	d.env.reftableMoved(tableOffset, uint32(tableClusters))
	d.updateMaxRefTableIndex()
	d.freeClusters(oldOffset, oldSize*reftableEntrySize, discardOther)
	return endOffset, nil
}

func (d *allocator) updateMaxRefTableIndex() {
	i := int64(len(d.refTable)) - 1
	for i > 0 && d.refTable[i] == 0 {
		i--
	}
	d.maxRefTableIndex = i
}
