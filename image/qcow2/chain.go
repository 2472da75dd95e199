package qcow2

import (
	"encoding/binary"
	"os"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
	"github.com/goqio/goqio/image/raw"
)

// What qemu-img rebase, commit and amend need from the driver.

// ChangeBackingFile is QEMU's qcow2_change_backing_file: the header names
// backing (with format, "" for none) from now on; the backing image in use
// is not changed. It fails with EINVAL for a name longer than 1023 bytes or
// a backing file on an image whose raw data file holds everything, and
// with ENOSPC when the header cluster cannot hold the name.
func (d *Driver) ChangeBackingFile(backing, format string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opts.ReadOnly {
		return image.ErrReadOnly
	}
	if d.dead {
		return errNoMedium
	}
	if backing != "" && d.hasDataFile() && d.dataFileRaw() {
		return syscall.EINVAL
	}
	if len(backing) > maxBackingNameLength {
		return syscall.EINVAL
	}
	oldFile, oldFmt := d.backingFile, d.backingFmt
	d.backingFile, d.backingFmt = backing, format
	if err := d.updateHeader(); err != nil {
		d.backingFile, d.backingFmt = oldFile, oldFmt
		return err
	}
	return nil
}

// MakeEmpty is QEMU's qcow2_make_empty (bdrv_make_empty, which qemu-img
// commit calls on the top image): every guest cluster becomes
// unallocated. A version 3 image without snapshots, bitmaps, LUKS
// encryption or data file is reset to its header, one refcount table, one
// refcount block and the L1 table (make_completely_empty); any other
// image has all its clusters discarded.
func (d *Driver) MakeEmpty() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opts.ReadOnly {
		return image.ErrReadOnly
	}
	if d.dead {
		return errNoMedium
	}
	if err := d.evict(); err != nil {
		return err
	}
	l1c := divRoundUp(int64(len(d.l1))*8, d.clusterSize)
	if d.hdr.Version >= 3 && d.hdr.NbSnapshots == 0 && d.nbBitmaps == 0 &&
		3+l1c <= d.refBlockSize && d.hdr.CryptMethod != 2 && !d.hasDataFile() {
		return d.makeCompletelyEmpty(l1c)
	}
	step := int64(intMax) &^ (d.clusterSize - 1)
	for off := int64(0); off < d.size; off += step {
		if err := d.clusterDiscard(off, min(step, d.size-off), discardSnapshot, true); err != nil {
			return err
		}
	}
	return nil
}

// makeCompletelyEmpty is QEMU's make_completely_empty, with the lock held.
func (d *Driver) makeCompletelyEmpty(l1c int64) error {
	if err := d.l2c.Flush(); err != nil {
		return err
	}
	if err := d.rbc.Flush(); err != nil {
		return err
	}
	d.l2c.Reset()
	d.rbc.Reset()
	if err := d.markDirty(); err != nil {
		return err
	}
	cs := d.clusterSize
	broken := func(err error) error { d.dead = true; return err }
	d.file.DebugEvent("l1_update")
	if err := d.file.WriteZeroes(d.l1Offset, l1c*cs, 0, false); err != nil {
		return broken(err)
	}
	clear(d.l1)
	d.file.DebugEvent("empty_image_prepare")
	if err := d.file.WriteZeroes(cs, (2+l1c)*cs, 0, false); err != nil {
		return broken(err)
	}
	nh := d.hdr
	nh.L1TableOffset = uint64(3 * cs)
	nh.RefcountTableOffset, nh.RefcountTableClusters = uint64(cs), 1
	d.file.DebugEvent("l1_update")
	d.file.DebugEvent("reftable_update")
	if err := d.writeHeaderFields(&nh, layout.FieldL1TableOffset, layout.FieldRefcountTableClusters); err != nil {
		return broken(err)
	}
	d.l1Offset = 3 * cs
	d.hdr.L1TableOffset = uint64(3 * cs)
	d.refTable = make([]uint64, cs/8)
	d.refTableOffset = cs
	d.hdr.RefcountTableOffset, d.hdr.RefcountTableClusters = uint64(cs), 1
	d.file.DebugEvent("refblock_alloc")
	var rt [8]byte
	binary.BigEndian.PutUint64(rt[:], uint64(2*cs))
	if err := d.writeSync(rt[:], cs); err != nil {
		return broken(err)
	}
	d.refTable[0] = uint64(2 * cs)
	d.updateMaxRefTableIndex()
	d.freeClusterIndex = 0
	off, err := d.allocClusters(3*cs + int64(len(d.l1))*8)
	if err != nil {
		return broken(err)
	}
	if off != 0 {
		return broken(d.corruption("First cluster in emptied image is in use"))
	}
	if err := d.markClean(); err != nil {
		return err
	}
	if t, ok := d.file.Driver().(image.Truncater); ok {
		if err := t.Truncate((3+l1c)*cs, image.PreallocOff); err != nil {
			return err
		}
	}
	return nil
}

// defaultOpenBacking opens the backing file an image names when the
// caller gave no OpenBacking: read-only, a qcow2 image (by format, or by
// its magic when the image names no format) or else a raw file, itself
// following its own backing file.
func defaultOpenBacking(depth int) func(name, format string) (*image.Disk, error) {
	return func(name, format string) (*image.Disk, error) {
		if depth > 256 {
			return nil, syscall.ELOOP
		}
		if format == "" {
			f, err := os.Open(name)
			if err != nil {
				return nil, err
			}
			var m [4]byte
			n, _ := f.ReadAt(m[:], 0)
			f.Close()
			format = "raw"
			if n == 4 && binary.BigEndian.Uint32(m[:]) == magic {
				format = "qcow2"
			}
		}
		switch format {
		case "qcow2":
			q, err := Open(name, Options{ReadOnly: true, OpenBacking: defaultOpenBacking(depth + 1)})
			if err != nil {
				return nil, err
			}
			return image.New(q, name, image.Options{ReadOnly: true}), nil
		case "raw":
			rd, err := rawOpen(name)
			if err != nil {
				return nil, err
			}
			return image.New(rd, name, image.Options{ReadOnly: true}), nil
		}
		return nil, syscall.ENOTSUP
	}
}

func rawOpen(name string) (*raw.Driver, error) {
	return raw.Open(name, raw.Options{ReadOnly: true, Lock: &raw.Lock{Perm: raw.PermConsistentRead}})
}
