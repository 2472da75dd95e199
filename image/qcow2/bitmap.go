package qcow2

import (
	"fmt"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// Persistent dirty bitmaps (the bitmaps header extension), kept as QEMU
// 7.2 keeps them: loaded on open; on a read-write open marked in use in
// the image; every write, zero write and discard marks the granules it
// touches in the enabled bitmaps; on close every bitmap is stored again
// (new bitmap tables and data clusters, a new directory, the old ones
// freed) and the in-use flags cleared. A bitmap found in use is
// inconsistent and left as it is.

const (
	bmeFlagInUse       = layout.BitmapFlagInUse
	bmeFlagAuto        = layout.BitmapFlagAuto
	bmeFlagExtraCompat = layout.BitmapFlagExtraCompat
	bmeReservedFlags   = layout.BitmapReservedFlags

	bmeMaxTableSize   = 0x8000000
	bmeMaxPhysSize    = 0x20000000
	bmeMaxGranBits    = 31
	bmeMinGranBits    = 9
	bmeMaxNameSize    = 1023
	maxBitmaps        = 65535
	maxBitmapDirSize  = 1024 * maxBitmaps
	bmeTableReserved  = layout.BitmapTableReserved
	bmeTableOffMask   = layout.BitmapTableOffMask
	bmeTableAllOnes   = layout.BitmapTableAllOnes
	btDirtyTracking   = layout.BitmapTypeDirtyTracking
	bitmapDirEntryLen = layout.BitmapDirEntryLen
)

// bitmapInfo is one entry of the bitmap directory.
type bitmapInfo struct {
	tableOff  uint64
	tableSize uint32
	flags     uint32
	typ       uint8
	gbits     uint8
	name      string
}

// dirtyBitmap is a loaded bitmap: its bits kept per bitmap cluster (a
// missing chunk is all zeroes), so memory follows what is set.
type dirtyBitmap struct {
	info         *bitmapInfo
	chunks       map[int64]*bmChunk
	enabled      bool
	inconsistent bool
	readOnly     bool
	oldTable     *bitmapInfo // the table to free once the new one is stored
}

type bmChunk struct {
	ones bool   // every bit set (b is nil)
	b    []byte // cluster-sized, bit i of the chunk is b[i/8]>>(i%8)&1
}

// readBitmapsExt is QEMU's handling of the bitmaps header extension.
func (d *Driver) readBitmapsExt(data []byte) error {
	ext, ok := layout.DecodeBitmapsExt(data)
	if !ok {
		return openErr("bitmaps_ext: Invalid extension length")
	}
	if d.hdr.AutoclearFeatures&autoclearBitmaps == 0 {
		// a program without bitmap support changed the image
		if d.hdr.Version < 3 {
			d.warn("This qcow2 v2 image contains bitmaps, but they may have been modified by a program without persistent bitmap support; so now they must all be considered inconsistent")
		} else {
			d.warn("a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent")
		}
		// error_printf: no newline
		fmt.Fprint(d.stderr(), "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix.")
		// a read-write open rewrites the header without the extension
		d.staleBitmapsExt = true
		return nil
	}
	if ext.Reserved != 0 {
		return openErr("bitmaps_ext: Reserved field is not zero: Success")
	}
	nb, size, off := ext.NbBitmaps, ext.DirSize, ext.DirOffset
	if nb > maxBitmaps {
		return openErr("bitmaps_ext: Image has %d bitmaps, exceeding the QEMU supported maximum of %d", nb, maxBitmaps)
	}
	if nb == 0 {
		return openErr("found bitmaps extension with zero bitmaps")
	}
	if off&uint64(d.clusterSize-1) != 0 {
		return openErr("bitmaps_ext: invalid bitmap directory offset")
	}
	if size > maxBitmapDirSize {
		return openErr("bitmaps_ext: bitmap directory size (%d) exceeds the maximum supported size (%d)", size, maxBitmapDirSize)
	}
	d.nbBitmaps, d.bitmapDirSize, d.bitmapDirOff = nb, size, off
	return nil
}

// bitmapList is QEMU's bitmap_list_load: the directory, every entry checked.
func (d *Driver) bitmapList() ([]*bitmapInfo, error) {
	size := int64(d.bitmapDirSize)
	if size == 0 {
		return nil, fmt.Errorf("Requested bitmap directory size is zero")
	}
	if size > maxBitmapDirSize {
		return nil, fmt.Errorf("Requested bitmap directory size is too big")
	}
	if int64(d.bitmapDirOff) < 0 {
		return nil, fmt.Errorf("Failed to read bitmap directory: %s", image.StrerrorOf(syscall.EINVAL))
	}
	dir := make([]byte, size) // (past the end of the file it reads zeroes)
	if err := d.file.ReadAt(dir, int64(d.bitmapDirOff)); err != nil {
		return nil, fmt.Errorf("Failed to read bitmap directory: %s", image.StrerrorOf(err))
	}
	var list []*bitmapInfo
	pos := int64(0)
	for pos < size {
		if pos+bitmapDirEntryLen > size {
			return nil, fmt.Errorf("Broken bitmap directory")
		}
		if len(list)+1 > int(d.nbBitmaps) {
			return nil, fmt.Errorf("More bitmaps found than specified in header extension")
		}
		e, n, ok := layout.DecodeBitmapDirEntry(dir[pos:])
		if !ok {
			return nil, fmt.Errorf("Broken bitmap directory")
		}
		next := pos + n
		if len(e.ExtraData) != 0 {
			return nil, fmt.Errorf("Bitmap extra data is not supported")
		}
		nameSize := int64(len(e.Name))
		bm := &bitmapInfo{
			tableOff:  e.TableOffset,
			tableSize: e.TableSize,
			flags:     e.Flags,
			typ:       e.Type,
			gbits:     e.GranularityBits,
			name:      e.Name,
		}
		if !d.bitmapEntryOK(bm, nameSize) {
			return nil, fmt.Errorf("Bitmap '%s' doesn't satisfy the constraints", bm.name)
		}
		list = append(list, bm)
		pos = next
	}
	if len(list) != int(d.nbBitmaps) {
		return nil, fmt.Errorf("Less bitmaps found than specified in header extension")
	}
	return list, nil
}

// bitmapEntryOK is QEMU's check_dir_entry.
func (d *Driver) bitmapEntryOK(e *bitmapInfo, nameSize int64) bool {
	if e.tableSize == 0 || e.tableOff == 0 || e.tableOff%uint64(d.clusterSize) != 0 ||
		e.tableSize > bmeMaxTableSize || e.gbits > bmeMaxGranBits || e.gbits < bmeMinGranBits ||
		e.flags&bmeReservedFlags != 0 || nameSize > bmeMaxNameSize || e.typ != btDirtyTracking {
		return false
	}
	phys := uint64(e.tableSize) * uint64(d.clusterSize)
	if phys > bmeMaxPhysSize {
		return false
	}
	if e.flags&bmeFlagInUse == 0 && uint64(d.size) > (phys*8)<<e.gbits {
		return false
	}
	return true
}

// bitmapTable is QEMU's bitmap_table_load: the table, every entry checked.
func (d *Driver) bitmapTable(e *bitmapInfo) ([]uint64, error) {
	n := int64(e.tableSize) * 8
	b := make([]byte, n) // (past the end of the file: zeroes)
	if err := d.file.ReadAt(b, int64(e.tableOff)); err != nil {
		return nil, err
	}
	t := decodeU64s(b)
	for _, x := range t {
		if !d.bitmapTableEntryOK(x) {
			return nil, syscall.EINVAL
		}
	}
	return t, nil
}

// bitmapTableEntryOK is QEMU's check_table_entry.
func (d *Driver) bitmapTableEntryOK(e uint64) bool {
	if e&bmeTableReserved != 0 {
		return false
	}
	if off := e & bmeTableOffMask; off != 0 {
		if e&bmeTableAllOnes != 0 || off%uint64(d.clusterSize) != 0 {
			return false
		}
	}
	return true
}

// loadBitmaps is QEMU's qcow2_load_dirty_bitmaps, run at open; it reports
// whether it rewrote the header.
func (d *Driver) loadBitmaps() (bool, error) {
	if d.nbBitmaps == 0 {
		return false, nil
	}
	list, err := d.bitmapList()
	if err != nil {
		return false, openErr("%s", err.Error())
	}
	canWrite := !d.opts.ReadOnly
	update := false
	for _, e := range list {
		bm := &dirtyBitmap{info: e, chunks: map[int64]*bmChunk{}, readOnly: !canWrite}
		t, err := d.bitmapTable(e)
		if err != nil {
			return false, openErr("Could not read bitmap_table table from image for bitmap '%s': %s", e.name, image.StrerrorOf(err))
		}
		if e.flags&bmeFlagInUse != 0 {
			bm.inconsistent = true // its data is unusable
		} else {
			if err := d.loadBitmapData(bm, t); err != nil {
				return false, openErr("Could not read bitmap '%s' from image: %s", e.name, image.StrerrorOf(err))
			}
			e.flags |= bmeFlagInUse
			update = true
		}
		bm.enabled = e.flags&bmeFlagAuto != 0
		d.bitmaps = append(d.bitmaps, bm)
	}
	if update && canWrite {
		if err := d.updateBitmapDirInPlace(list); err != nil {
			return false, openErr("Can't update bitmap directory: %s", image.StrerrorOf(err))
		}
		return true, nil
	}
	return false, nil
}

// chunkBits is how many granules one bitmap cluster holds.
func (d *Driver) chunkBits() int64 { return d.clusterSize * 8 }

// loadBitmapData is QEMU's load_bitmap_data.
func (d *Driver) loadBitmapData(bm *dirtyBitmap, t []uint64) error {
	for i, e := range t {
		off := int64(e & bmeTableOffMask)
		switch {
		case off == 0 && e&bmeTableAllOnes != 0:
			bm.chunks[int64(i)] = &bmChunk{ones: true}
		case off != 0:
			b := make([]byte, d.clusterSize) // (past the end of the file: zeroes)
			if err := d.file.ReadAt(b, off); err != nil {
				return err
			}
			bm.chunks[int64(i)] = &bmChunk{b: b}
		}
	}
	// bits past the end of the image are not part of the bitmap
	d.trimBitmap(bm)
	return nil
}

// nbGranules is the number of bits of a bitmap with granularity 2^g.
func (d *Driver) nbGranules(g uint8) int64 { return (d.size + 1<<g - 1) >> g }

// trimBitmap clears the bits past the image end and drops empty chunks.
func (d *Driver) trimBitmap(bm *dirtyBitmap) {
	n := d.nbGranules(bm.info.gbits)
	cb := d.chunkBits()
	for ci, c := range bm.chunks {
		first := ci * cb
		if first >= n {
			delete(bm.chunks, ci)
			continue
		}
		if first+cb > n {
			d.materialize(c)
			for i := n - first; i < cb; i++ {
				c.b[i/8] &^= 1 << (i % 8)
			}
		}
		if c.b != nil && isZeroBytes(c.b) {
			delete(bm.chunks, ci)
		}
	}
}

func (d *Driver) materialize(c *bmChunk) {
	if c.b == nil {
		c.b = make([]byte, d.clusterSize)
		if c.ones {
			for i := range c.b {
				c.b[i] = 0xff
			}
		}
		c.ones = false
	}
}

func isZeroBytes(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// MarkDirty is QEMU's bdrv_set_dirty: the granules of [off, off+n) are set
// in every enabled bitmap.
func (d *Driver) MarkDirty(off, n int64) {
	if len(d.bitmaps) == 0 { // (set at open only): no lock for images without bitmaps
		return
	}
	d.mu.lockRaw() // metadata only: no need to wait for requests in flight
	defer d.mu.Unlock()
	d.markDirtyLocked(off, n)
}

func (d *Driver) markDirtyLocked(off, n int64) {
	if n <= 0 {
		return
	}
	for _, bm := range d.bitmaps {
		if !bm.enabled || bm.readOnly {
			continue
		}
		d.setBitmapRange(bm, off, n)
	}
}

// setBitmapRange sets the granules of [off, off+n) in bm.
func (d *Driver) setBitmapRange(bm *dirtyBitmap, off, n int64) {
	{
		g := bm.info.gbits
		last := min((off+n-1)>>g, d.nbGranules(g)-1)
		cb := d.chunkBits()
		for i := off >> g; i <= last; {
			ci := i / cb
			c := bm.chunks[ci]
			if c == nil {
				c = &bmChunk{}
				bm.chunks[ci] = c
			}
			end := min(last, (ci+1)*cb-1)
			if c.ones {
				i = end + 1
				continue
			}
			if i == ci*cb && end == (ci+1)*cb-1 {
				// the whole chunk: no buffer needed
				c.ones, c.b = true, nil
				i = end + 1
				continue
			}
			d.materialize(c)
			for j := i - ci*cb; j <= end-ci*cb; j++ {
				if j%8 == 0 && end-ci*cb-j >= 7 {
					c.b[j/8] = 0xff
					j += 7
					continue
				}
				c.b[j/8] |= 1 << (j % 8)
			}
			i = end + 1
		}
	}
}

// writeBitmapDir is QEMU's bitmap_list_store: the directory of list written
// at off (a new place unless inPlace), returning where and its size.
func (d *Driver) writeBitmapDir(list []*bitmapInfo, inPlace bool) (int64, int64, error) {
	var size int64
	for _, e := range list {
		size += layout.BitmapDirEntrySize(0, int64(len(e.name)))
	}
	if size > maxBitmapDirSize {
		return 0, 0, syscall.EINVAL
	}
	off := int64(d.bitmapDirOff)
	if !inPlace {
		var err error
		if off, err = d.allocClusters(size); err != nil {
			return 0, 0, err
		}
	}
	buf := make([]byte, size)
	pos := int64(0)
	for _, e := range list {
		de := layout.BitmapDirEntry{TableOffset: e.tableOff, TableSize: e.tableSize, Flags: e.flags,
			Type: btDirtyTracking, GranularityBits: e.gbits, Name: e.name}
		pos += de.Encode(buf[pos:])
	}
	if err := d.preWriteCheck(0, off, size); err != nil {
		return 0, 0, err
	}
	if err := d.file.WriteAt(buf, off, false); err != nil {
		return 0, 0, err
	}
	return off, size, nil
}

// updateHeaderSync is QEMU's update_header_sync.
func (d *Driver) updateHeaderSync() error {
	if err := d.updateHeader(); err != nil {
		return err
	}
	return d.file.Flush()
}

// updateBitmapDirInPlace is QEMU's update_ext_header_and_dir_in_place: the
// directory rewritten where it is (with the in-use flags), the autoclear
// bit cleared around the change.
func (d *Driver) updateBitmapDirInPlace(list []*bitmapInfo) error {
	d.hdr.AutoclearFeatures &^= autoclearBitmaps
	if err := d.updateHeaderSync(); err != nil {
		return err
	}
	if _, _, err := d.writeBitmapDir(list, true); err != nil {
		return err
	}
	if err := d.updateHeaderSync(); err != nil {
		return err
	}
	d.hdr.AutoclearFeatures |= autoclearBitmaps
	return d.updateHeaderSync()
}

// storeBitmaps is QEMU's qcow2_store_persistent_dirty_bitmaps, run at
// close: every consistent bitmap gets a new table (and data clusters for
// its parts that have bits set), then a new directory; the old ones are
// freed.
func (d *Driver) storeBitmaps() error {
	need := false
	var list []*bitmapInfo
	for _, bm := range d.bitmaps {
		list = append(list, bm.info)
		if bm.inconsistent || bm.readOnly {
			continue
		}
		need = true
	}
	if !need {
		return nil
	}
	for _, bm := range d.bitmaps {
		if bm.inconsistent || bm.readOnly {
			continue
		}
		old := *bm.info
		bm.oldTable = &old
		if err := d.storeBitmap(bm); err != nil {
			return err
		}
		bm.info.flags = 0
		if bm.enabled {
			bm.info.flags = bmeFlagAuto
		}
	}
	oldOff, oldSize := int64(d.bitmapDirOff), int64(d.bitmapDirSize)
	off, size, err := d.writeBitmapDir(list, false)
	if err != nil {
		return err
	}
	if err := d.flushMeta(); err != nil {
		return err
	}
	d.hdr.AutoclearFeatures |= autoclearBitmaps
	d.bitmapDirOff, d.bitmapDirSize, d.nbBitmaps = uint64(off), uint64(size), uint32(len(list))
	if err := d.updateHeaderSync(); err != nil {
		return err
	}
	if oldSize > 0 {
		d.freeClusters(oldOff, oldSize, discardOther)
	}
	for _, bm := range d.bitmaps {
		if bm.oldTable != nil {
			d.freeBitmapClusters(bm.oldTable)
			bm.oldTable = nil
		}
	}
	return nil
}

// storeBitmap is QEMU's store_bitmap with store_bitmap_data.
func (d *Driver) storeBitmap(bm *dirtyBitmap) error {
	n := d.nbGranules(bm.info.gbits)
	cb := d.chunkBits()
	tbSize := (n + cb - 1) / cb
	tb := make([]uint64, tbSize)
	for ci := int64(0); ci < tbSize; ci++ {
		c := bm.chunks[ci]
		if c == nil || (c.b != nil && isZeroBytes(c.b)) {
			continue
		}
		off, err := d.allocClusters(d.clusterSize)
		if err != nil {
			return err
		}
		tb[ci] = uint64(off)
		buf := make([]byte, d.clusterSize)
		if c.ones {
			// the bits of this chunk that lie inside the bitmap
			m := min(cb, n-ci*cb)
			for i := int64(0); i < m; i++ {
				buf[i/8] |= 1 << (i % 8)
			}
		} else {
			copy(buf, c.b)
		}
		if err := d.preWriteCheck(0, off, d.clusterSize); err != nil {
			return err
		}
		if err := d.file.WriteAt(buf, off, false); err != nil {
			return err
		}
	}
	tbOff, err := d.allocClusters(tbSize * 8)
	if err != nil {
		return err
	}
	if err := d.preWriteCheck(0, tbOff, tbSize*8); err != nil {
		return err
	}
	if err := d.file.WriteAt(encodeU64s(tb), tbOff, false); err != nil {
		return err
	}
	bm.info.tableOff, bm.info.tableSize = uint64(tbOff), uint32(tbSize)
	return nil
}

// freeBitmapClusters is QEMU's free_bitmap_clusters.
func (d *Driver) freeBitmapClusters(e *bitmapInfo) {
	if e.tableOff == 0 {
		return
	}
	t, err := d.bitmapTable(e)
	if err != nil {
		return
	}
	for _, x := range t {
		if off := int64(x & bmeTableOffMask); off != 0 {
			d.freeClusters(off, d.clusterSize, discardAlways)
		}
	}
	d.freeClusters(int64(e.tableOff), int64(e.tableSize)*8, discardOther)
}

// checkBitmapRefs is QEMU's qcow2_check_bitmaps_refcounts.
func (r *refs) checkBitmaps() error {
	d := r.d
	if d.nbBitmaps == 0 {
		return nil
	}
	r.inc(int64(d.bitmapDirOff), int64(d.bitmapDirSize))
	list, err := d.bitmapList()
	if err != nil {
		r.res.Corruptions++
		return syscall.EINVAL
	}
	for _, e := range list {
		r.inc(int64(e.tableOff), int64(e.tableSize)*8)
		t, err := d.bitmapTable(e)
		if err != nil {
			r.res.Corruptions++
			break
		}
		for _, x := range t {
			if off := int64(x & bmeTableOffMask); off != 0 {
				r.inc(off, d.clusterSize)
			}
		}
	}
	return nil
}

// bitmapInfoLines describes the bitmaps for info, as qemu-io and qemu-img
// info print them (from the directory in the image).
func (d *Driver) bitmapInfoLines() []string {
	if d.nbBitmaps == 0 {
		return nil
	}
	list, err := d.bitmapList()
	if err != nil {
		return nil
	}
	var out []string
	for i, e := range list {
		out = append(out, fmt.Sprintf("[%d]:", i), "    flags:")
		k := 0
		for _, f := range []struct {
			bit  uint32
			name string
		}{{bmeFlagInUse, "in-use"}, {bmeFlagAuto, "auto"}} {
			if e.flags&f.bit != 0 {
				out = append(out, fmt.Sprintf("        [%d]: %s", k, f.name))
				k++
			}
		}
		out = append(out, "    name: "+e.name, fmt.Sprintf("    granularity: %d", uint64(1)<<e.gbits))
	}
	return out
}

// BitmapView is a loaded persistent dirty bitmap as the NBD server reads
// it (qemu:dirty-bitmap:NAME): QEMU's bdrv_dirty_bitmap_next_dirty_area.
type BitmapView struct {
	d  *Driver
	bm *dirtyBitmap
}

// DirtyBitmap returns the loaded bitmap called name, or nil.
func (d *Driver) DirtyBitmap(name string) *BitmapView {
	for _, bm := range d.bitmaps {
		if bm.info.name == name {
			return &BitmapView{d, bm}
		}
	}
	return nil
}

// Name is the bitmap's name.
func (v *BitmapView) Name() string { return v.bm.info.name }

// Enabled reports whether writes still mark the bitmap.
func (v *BitmapView) Enabled() bool { return v.bm.enabled && !v.bm.readOnly }

// Inconsistent reports whether the bitmap was found in use (not usable).
func (v *BitmapView) Inconsistent() bool { return v.bm.inconsistent }

// NextDirty finds the first dirty area in [off, end): its start and its
// length (at most maxLen, clipped to end), or ok false.
func (v *BitmapView) NextDirty(off, end, maxLen int64) (int64, int64, bool) {
	d, bm := v.d, v.bm
	d.mu.lockRaw()
	defer d.mu.Unlock()
	g := bm.info.gbits
	cb := d.chunkBits()
	bit := func(i int64) bool {
		c := bm.chunks[i/cb]
		if c == nil {
			return false
		}
		if c.ones {
			return true
		}
		j := i % cb
		return c.b[j/8]>>(j%8)&1 != 0
	}
	if off >= end {
		return 0, 0, false
	}
	last := min((end-1)>>g, d.nbGranules(g)-1)
	i := off >> g
	for i <= last && !bit(i) {
		if bm.chunks[i/cb] == nil {
			i = (i/cb + 1) * cb
			continue
		}
		i++
	}
	if i > last {
		return 0, 0, false
	}
	start := max(off, i<<g)
	j := i
	for j <= last && bit(j) && (j<<g)-start < maxLen {
		j++
	}
	stop := min(end, j<<g, start+maxLen)
	return start, stop - start, true
}
