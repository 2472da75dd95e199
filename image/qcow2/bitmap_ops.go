package qcow2

import (
	"fmt"
	"syscall"

	"github.com/goqio/goqio/image"
)

// Persistent bitmap operations (qemu-img bitmap; QEMU's
// block-dirty-bitmap-* commands on a qcow2 node). A bitmap added, cleared,
// enabled or disabled is written at close, as QEMU stores bitmaps when the
// image is inactivated; a removed one leaves the directory at once.

// BitmapError is a failed bitmap operation with QEMU's message.
type BitmapError struct {
	Msg, Hint string
	Errno     syscall.Errno
}

func (e *BitmapError) Error() string { return e.Msg }
func (e *BitmapError) Unwrap() error { return e.Errno }

func bitmapErr(errno syscall.Errno, format string, a ...any) *BitmapError {
	return &BitmapError{Msg: fmt.Sprintf(format, a...), Errno: errno}
}

// DefaultBitmapGranularity is bdrv_get_default_bitmap_granularity.
func (d *Driver) DefaultBitmapGranularity() int64 { return min(65536, max(4096, d.clusterSize)) }

func (d *Driver) findBitmap(name string) *dirtyBitmap {
	for _, bm := range d.bitmaps {
		if bm.info.name == name {
			return bm
		}
	}
	return nil
}

func (d *Driver) lookupBitmap(name string) (*dirtyBitmap, error) {
	if bm := d.findBitmap(name); bm != nil {
		return bm, nil
	}
	return nil, bitmapErr(syscall.ENOENT, "Dirty bitmap '%s' not found", name)
}

// bitmapCheck is bdrv_dirty_bitmap_check; ro: refuse a read-only bitmap.
func bitmapCheck(bm *dirtyBitmap, ro, inconsistent bool) error {
	if ro && bm.readOnly {
		return bitmapErr(syscall.EPERM, "Bitmap '%s' is readonly and cannot be modified", bm.info.name)
	}
	if inconsistent && bm.inconsistent {
		return &BitmapError{Msg: fmt.Sprintf("Bitmap '%s' is inconsistent and cannot be used", bm.info.name),
			Hint: "Try block-dirty-bitmap-remove to delete this bitmap from disk\n", Errno: syscall.EINVAL}
	}
	return nil
}

// AddBitmap is block-dirty-bitmap-add with persistent=on: a new enabled
// bitmap of the given granularity (0: the default). node names the node
// in messages.
func (d *Driver) AddBitmap(name string, granularity int64, hasGranularity bool, node string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if name == "" {
		return bitmapErr(syscall.EINVAL, "Bitmap name cannot be empty")
	}
	g := uint32(granularity)
	if hasGranularity {
		if g < 512 || g&(g-1) != 0 {
			return bitmapErr(syscall.EINVAL, "Granularity must be power of 2 and at least 512")
		}
	} else {
		g = uint32(d.DefaultBitmapGranularity())
	}
	if d.findBitmap(name) != nil {
		return bitmapErr(syscall.EEXIST, "Bitmap already exists: %s", name)
	}
	fail := func(format string, a ...any) error {
		return bitmapErr(syscall.EINVAL, "Can't make bitmap '%s' persistent in '%s': %s", name, node, fmt.Sprintf(format, a...))
	}
	if d.hdr.Version < 3 {
		return fail("Cannot store dirty bitmaps in qcow2 v2 files")
	}
	gbits := 0
	for 1<<gbits < g {
		gbits++
	}
	if gbits > bmeMaxGranBits {
		return fail("Granularity exceeds maximum (%d bytes)", uint64(1)<<bmeMaxGranBits)
	}
	if gbits < bmeMinGranBits {
		return fail("Granularity is under minimum (%d bytes)", uint64(1)<<bmeMinGranBits)
	}
	bytes := ((d.size+int64(g)-1)/int64(g) + 7) / 8
	if bytes > bmeMaxPhysSize || bytes > bmeMaxTableSize*d.clusterSize {
		return fail("Too much space will be occupied by the bitmap. Use larger granularity")
	}
	if len(name) > bmeMaxNameSize {
		return fail("Name length exceeds maximum (%d characters)", bmeMaxNameSize)
	}
	nb, dir := 1, (bitmapDirEntryLen+int64(len(name))+7)&^7
	for _, bm := range d.bitmaps {
		nb++
		dir += (bitmapDirEntryLen + int64(len(bm.info.name)) + 7) &^ 7
	}
	if nb > maxBitmaps {
		return fail("Maximum number of persistent bitmaps is already reached")
	}
	if dir > maxBitmapDirSize {
		return fail("Not enough space in the bitmap directory")
	}
	if d.opts.ReadOnly {
		return image.ErrReadOnly
	}
	d.bitmaps = append(d.bitmaps, &dirtyBitmap{info: &bitmapInfo{name: name, gbits: uint8(gbits), typ: btDirtyTracking},
		chunks: map[int64]*bmChunk{}, enabled: true})
	return nil
}

// RemoveBitmap is block-dirty-bitmap-remove: the directory is written
// without the bitmap and its clusters freed.
func (d *Driver) RemoveBitmap(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	bm, err := d.lookupBitmap(name)
	if err != nil {
		return err
	}
	if err := bitmapCheck(bm, true, false); err != nil {
		return err
	}
	var list []*bitmapInfo
	var rest []*dirtyBitmap
	onDisk := false
	for _, b := range d.bitmaps {
		if b == bm {
			onDisk = b.info.tableOff != 0 || b.inconsistent
			continue
		}
		rest = append(rest, b)
		if b.info.tableOff != 0 || b.inconsistent {
			list = append(list, b.info)
		}
	}
	d.bitmaps = rest
	if !onDisk || d.nbBitmaps == 0 {
		return nil
	}
	if err := d.updateBitmapDir(list); err != nil {
		return bitmapErr(image.Errno(err), "Failed to update bitmap extension: %s", image.StrerrorOf(err))
	}
	d.freeBitmapClusters(bm.info)
	return nil
}

// updateBitmapDir is update_ext_header_and_dir.
func (d *Driver) updateBitmapDir(list []*bitmapInfo) error {
	oldOff, oldSize := int64(d.bitmapDirOff), int64(d.bitmapDirSize)
	var off, size int64
	if len(list) > 0 {
		var err error
		if off, size, err = d.writeBitmapDir(list, false); err != nil {
			return err
		}
		if err := d.flushMeta(); err != nil {
			return err
		}
		d.hdr.AutoclearFeatures |= autoclearBitmaps
	} else {
		d.hdr.AutoclearFeatures &^= autoclearBitmaps
	}
	d.bitmapDirOff, d.bitmapDirSize, d.nbBitmaps = uint64(off), uint64(size), uint32(len(list))
	if err := d.updateHeaderSync(); err != nil {
		return err
	}
	if oldSize > 0 {
		d.freeClusters(oldOff, oldSize, discardOther)
	}
	return nil
}

// ClearBitmap is block-dirty-bitmap-clear.
func (d *Driver) ClearBitmap(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	bm, err := d.lookupBitmap(name)
	if err != nil {
		return err
	}
	if err := bitmapCheck(bm, true, true); err != nil {
		return err
	}
	bm.chunks = map[int64]*bmChunk{}
	return nil
}

// EnableBitmap is block-dirty-bitmap-enable (on) or -disable.
func (d *Driver) EnableBitmap(name string, on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	bm, err := d.lookupBitmap(name)
	if err != nil {
		return err
	}
	if err := bitmapCheck(bm, false, true); err != nil {
		return err
	}
	bm.enabled = on
	return nil
}

// MergeBitmap is block-dirty-bitmap-merge of bitmap srcName of src (d
// itself or another image) into bitmap dst of d.
func (d *Driver) MergeBitmap(dst string, src *Driver, srcName string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	to, err := d.lookupBitmap(dst)
	if err != nil {
		return err
	}
	if src != d {
		src.mu.Lock()
		defer src.mu.Unlock()
	}
	from, err := src.lookupBitmap(srcName)
	if err != nil {
		return err
	}
	if err := bitmapCheck(to, true, true); err != nil {
		return err
	}
	if err := bitmapCheck(from, false, true); err != nil {
		return err
	}
	if src.size != d.size {
		return bitmapErr(syscall.EINVAL, "Bitmaps are of different sizes (destination size is %d, source size is %d) and can't be merged", d.size, src.size)
	}
	g := int64(1) << from.info.gbits
	cb := src.chunkBits()
	for ci, c := range from.chunks {
		if c.ones {
			d.setBitmapRange(to, ci*cb*g, cb*g)
			continue
		}
		for j := int64(0); j < cb; j++ {
			if c.b[j/8] == 0 {
				j += 7 - j%8
				continue
			}
			if c.b[j/8]>>(j%8)&1 != 0 {
				d.setBitmapRange(to, (ci*cb+j)*g, g)
			}
		}
	}
	return nil
}
