package qcow2

import (
	"errors"
	"syscall"
)

// ErrSnapshotNotReadOnly is LoadSnapshotTmp's refusal on a writable image.
var ErrSnapshotNotReadOnly = errors.New("Device is not readonly")

// LoadSnapshotTmp is QEMU's qcow2_snapshot_load_tmp (qemu-img convert
// -l, measure -l): the read-only image reads the internal snapshot
// matching id and name (an empty one matches any) instead of its active
// state, until it is closed. The image keeps its size.
func (d *Driver) LoadSnapshotTmp(id, name string) error {
	if !d.opts.ReadOnly {
		return ErrSnapshotNotReadOnly
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	i := d.findSnapshot(id, name)
	if i < 0 {
		return &snapTableError{msg: "Can't find snapshot", errno: syscall.ENOENT}
	}
	sn := d.snaps[i]
	if err := d.validateTable(sn.l1Off, uint64(sn.l1Size), 8, maxL1Size, "Snapshot L1 table"); err != nil {
		return err
	}
	b := make([]byte, int64(sn.l1Size)*8)
	if err := d.file.ReadAt(b, int64(sn.l1Off)); err != nil {
		return err
	}
	d.l1 = decodeU64s(b)
	d.l1Offset = int64(sn.l1Off)
	return nil
}
