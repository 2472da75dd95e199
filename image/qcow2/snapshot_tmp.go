package qcow2

import (
	"errors"
	"syscall"
)

// ErrSnapshotNotReadOnly is LoadSnapshotTmp's refusal on a writable image.
var ErrSnapshotNotReadOnly = errors.New("Device is not readonly")

// LoadSnapshotTmp is QEMU's qcow2_snapshot_load_tmp (qemu-img convert
// -l, measure -l): the read-only image reads the internal snapshot
// matching id and name (nil matches any; QEMU's find_snapshot_by_id_and_name)
// instead of its active state, until it is closed. The image keeps its size.
func (d *Driver) LoadSnapshotTmp(id, name *string) error {
	if !d.opts.ReadOnly {
		return ErrSnapshotNotReadOnly
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	i := -1
	for j, sn := range d.snaps {
		if (id != nil || name != nil) && (id == nil || cstr(sn.ID) == *id) && (name == nil || cstr(sn.Name) == *name) {
			i = j
			break
		}
	}
	if i < 0 {
		return &snapTableError{msg: "Can't find snapshot", errno: syscall.ENOENT}
	}
	sn := d.snaps[i]
	if err := d.validateTable(sn.L1Offset, uint64(sn.L1Size), 8, maxL1Size, "Snapshot L1 table"); err != nil {
		return err
	}
	b := make([]byte, int64(sn.L1Size)*8)
	if err := d.file.ReadAt(b, int64(sn.L1Offset)); err != nil {
		return err
	}
	d.l1 = decodeU64s(b)
	d.l1Offset = int64(sn.L1Offset)
	return nil
}
