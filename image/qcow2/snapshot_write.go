package qcow2

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// Internal snapshots: create, delete and apply as qemu-img snapshot -c, -d
// and -a do them (QEMU's qcow2_snapshot_create, qcow2_snapshot_delete and
// qcow2_snapshot_goto, with qcow2_update_snapshot_refcount doing the
// reference counting and the COPIED flags).

// ErrSnapshotNotFound is QEMU's "Can't find the snapshot" (ENOENT).
var ErrSnapshotNotFound = errors.New("Can't find the snapshot")

// updateSnapshotRefcount is QEMU's qcow2_update_snapshot_refcount: add
// addend (-1, 0 or 1) to the refcount of every cluster the L1 table at
// l1Off references, set each entry's COPIED flag from the new refcount,
// and write the L1 table back when that changed it (unless it is being
// deleted).
func (d *Driver) updateSnapshotRefcount(l1Off int64, l1Size int64, addend int) error {
	var l1 []uint64
	if l1Off != d.l1Offset {
		b := make([]byte, l1Size*8)
		if err := d.file.ReadAt(b, l1Off); err != nil {
			return err
		}
		l1 = decodeU64s(b)
	} else {
		l1 = d.l1 // the active table, from memory
	}
	restore := d.cachingDiscards()
	modified := false
	err := func() error {
		for i, e := range l1 {
			d.safePoint() // one L2 table a step, none held between
			if e == 0 {
				continue
			}
			l2off := layout.L1Entry(e).Offset()
			if l2off&(d.clusterSize-1) != 0 {
				return d.corruption(fmt.Sprintf("L2 table offset %s unaligned (L1 index: %s)", hx(l2off), hx(i)))
			}
			for j := int64(0); j < d.l2Size; j++ {
				b, err := d.l2c.Get(l2off)
				if err != nil {
					return err
				}
				old := d.getEntry(b, j)
				entry := old.WithCopied(false)
				var rc uint64
				switch d.ctype(entry) {
				case clusterCompressed:
					if addend != 0 {
						off, size := d.compressedRange(entry)
						if err := d.updateRefcount(off, size, 1, addend < 0, discardSnapshot); err != nil {
							return againErrno(err)
						}
					}
					rc = 2 // compressed clusters are never modified in place
				case clusterNormal, clusterZeroAlloc:
					off := entry.Offset()
					if off&(d.clusterSize-1) != 0 {
						return d.corruption(fmt.Sprintf("Cluster allocation offset %s unaligned (L2 offset: %s, L2 index: %s)", hx(off), hx(l2off), hx(j)))
					}
					if addend != 0 {
						if err := d.updateRefcount(off, 1, 1, addend < 0, discardSnapshot); err != nil {
							return againErrno(err)
						}
					}
					if rc, err = d.getRefcount(off >> d.clusterBits); err != nil {
						return err
					}
				}
				entry = entry.WithCopied(rc == 1)
				if entry != old {
					if addend > 0 {
						// as qcow2_cache_set_dependency's callers: a failed flush of the
						// dependency leaves none set and is not an error here
						_ = d.l2c.SetDependency(d.rbc)
					}
					// the table may have left the cache during the updates
					if b, err = d.l2c.Get(l2off); err != nil {
						return err
					}
					d.setEntry(b, j, entry)
					d.l2c.MarkDirty(l2off)
				}
			}
			if addend != 0 {
				if err := d.updateRefcount(l2off, 1, 1, addend < 0, discardSnapshot); err != nil {
					return err
				}
			}
			rc, err := d.getRefcount(l2off >> d.clusterBits)
			if err != nil {
				return err
			}
			ne := layout.L1Entry(l2off).WithCopied(rc == 1)
			if uint64(ne) != e {
				l1[i] = uint64(ne)
				modified = true
			}
		}
		return d.flushLocked()
	}()
	restore()
	if err == nil && addend >= 0 && modified {
		err = d.writeSync(encodeU64s(l1), l1Off)
	}
	return err
}

// nextSnapshotID is QEMU's find_new_snapshot_id: one more than the largest
// numeric ID.
func (d *Driver) nextSnapshotID() string {
	var max uint64
	for _, sn := range d.snaps {
		id, _ := strconv.ParseUint(leadingDigits(cstr(sn.ID)), 10, 64)
		if id > max {
			max = id
		}
	}
	return strconv.FormatUint(max+1, 10)
}

// leadingDigits is what strtoul reads of s.
func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// CreateSnapshot is qcow2_snapshot_create as qemu-img snapshot -c calls it:
// the active L1 table copied, every cluster's refcount increased, the
// snapshot appended to the table.
func (d *Driver) CreateSnapshot(name string, now time.Time) error {
	if err := d.lockWrite(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if len(d.snaps) >= maxSnapshots {
		return syscall.EFBIG
	}
	if d.hasDataFile() {
		return image.ErrNotSupported // no internal snapshots with a data file
	}
	id := d.nextSnapshotID()
	for _, sn := range d.snaps {
		if cstr(sn.ID) == id {
			return syscall.EEXIST
		}
	}
	l1Size := int64(len(d.l1))
	sn := snapEntry{
		ID: id, Name: name, DiskSize: uint64(d.size), ExtraSize: layout.SnapshotKnownExtra,
		DateSec: uint32(now.Unix()), DateNsec: uint32(now.Nanosecond() / 1000 * 1000),
		L1Size: uint32(l1Size),
	}
	l1Off, err := d.allocClusters(l1Size * 8)
	if err != nil {
		return err
	}
	sn.L1Offset = uint64(l1Off)
	buf := encodeU64s(d.l1)
	if err := d.preWriteCheck(0, l1Off, l1Size*8); err != nil {
		return err
	}
	if err := d.file.WriteAt(buf, l1Off, false); err != nil {
		return err
	}
	if err := d.updateSnapshotRefcount(d.l1Offset, l1Size, 1); err != nil {
		return err
	}
	d.snaps = append(d.snaps, sn)
	if err := d.writeSnapshots(); err != nil {
		d.snaps = d.snaps[:len(d.snaps)-1]
		return err
	}
	return nil
}

// findSnapshot is QEMU's find_snapshot_by_id_and_name (an empty id or
// name matches any).
func (d *Driver) findSnapshot(id, name string) int {
	for i, sn := range d.snaps {
		if (id == "" || cstr(sn.ID) == id) && (name == "" || cstr(sn.Name) == name) {
			return i
		}
	}
	return -1
}

// SnapshotByName is QEMU's bdrv_snapshot_find: the ID of the first
// snapshot with that name.
func (d *Driver) SnapshotByName(name string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hasDataFile() {
		return "", false // the snapshot list is refused
	}
	for _, sn := range d.snaps {
		if cstr(sn.Name) == name {
			return cstr(sn.ID), true
		}
	}
	return "", false
}

// DeleteSnapshot is qcow2_snapshot_delete: the snapshot removed from the
// table, the refcounts it held dropped, its L1 table freed, the active
// COPIED flags updated.
func (d *Driver) DeleteSnapshot(id, name string) error {
	if err := d.lockWrite(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if d.hasDataFile() {
		return image.ErrNotSupported
	}
	i := d.findSnapshot(id, name)
	if i < 0 {
		return ErrSnapshotNotFound
	}
	sn := d.snaps[i]
	if err := d.validateTable(sn.L1Offset, uint64(sn.L1Size), 8, maxL1Size, "Snapshot L1 table"); err != nil {
		return err
	}
	d.snaps = append(d.snaps[:i:i], d.snaps[i+1:]...)
	if err := d.writeSnapshots(); err != nil {
		return &errnoError{"Failed to remove snapshot from snapshot list", err}
	}
	if err := d.updateSnapshotRefcount(int64(sn.L1Offset), int64(sn.L1Size), -1); err != nil {
		return &errnoError{"Failed to free the cluster and L1 table", err}
	}
	d.freeClusters(int64(sn.L1Offset), int64(sn.L1Size)*8, discardSnapshot)
	if err := d.updateSnapshotRefcount(d.l1Offset, int64(len(d.l1)), 0); err != nil {
		return &errnoError{"Failed to update snapshot status in disk", err}
	}
	return nil
}

// ApplySnapshot is qcow2_snapshot_goto: the image resized to the
// snapshot's size, the snapshot's L1 table copied over the active one
// (the new references counted before, the old ones dropped after), the
// COPIED flags updated. id may also be a name.
func (d *Driver) ApplySnapshot(idOrName string) error {
	if d.opts.ReadOnly {
		return image.ErrReadOnly
	}
	d.mu.Lock()
	if d.hasDataFile() {
		d.mu.Unlock()
		return image.ErrNotSupported
	}
	i := d.findSnapshot(idOrName, "")
	if i < 0 {
		i = d.findSnapshot("", idOrName)
	}
	if i < 0 {
		d.mu.Unlock()
		return ErrSnapshotNotFound
	}
	sn := d.snaps[i]
	if err := d.validateTableReported(sn.L1Offset, uint64(sn.L1Size), 8, maxL1Size, "Snapshot L1 table"); err != nil {
		d.mu.Unlock()
		return err
	}
	size := int64(sn.DiskSize)
	d.mu.Unlock()
	if size != d.Size() {
		if err := d.Truncate(size, image.PreallocOff); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return errNoMedium
	}
	if err := d.growL1(int64(sn.L1Size), true); err != nil {
		return err
	}
	cur := int64(len(d.l1)) * 8
	snL1 := make([]byte, cur)
	if err := d.file.ReadAt(snL1[:int64(sn.L1Size)*8], int64(sn.L1Offset)); err != nil {
		return err
	}
	if err := d.updateSnapshotRefcount(int64(sn.L1Offset), int64(sn.L1Size), 1); err != nil {
		return err
	}
	if err := d.preWriteCheck(olActiveL1, d.l1Offset, cur); err != nil {
		return err
	}
	if err := d.writeSync(snL1, d.l1Offset); err != nil {
		return err
	}
	// the old references, from the in-memory (old) active table
	err := d.updateSnapshotRefcount(d.l1Offset, int64(len(d.l1)), -1)
	copy(d.l1, decodeU64s(snL1))
	if err != nil {
		return err
	}
	return d.updateSnapshotRefcount(d.l1Offset, int64(len(d.l1)), 0)
}

// errnoError is QEMU's error_setg_errno: a message, then strerror of the
// cause (which errors.Is and errors.As still see).
type errnoError struct {
	msg string
	err error
}

func (e *errnoError) Error() string { return e.msg + ": " + image.StrerrorOf(e.err) }

func (e *errnoError) Unwrap() error { return e.err }

// againErrno is update_refcount's -EAGAIN as the errno QEMU's callers
// pass up (qcow2_update_snapshot_refcount).
func againErrno(err error) error {
	if err == errAgain {
		return syscall.EAGAIN
	}
	return err
}
