package qcow2

import "github.com/goqio/goqio/image"

// vmStateOffset is where the VM state area starts: past the guest data, at
// the first L1 entry the disk does not use (QEMU's qcow2_vm_state_offset).
func (d *Driver) vmStateOffset() int64 {
	return d.sizeToL1(d.size) << (d.clusterBits + d.l2Bits)
}

// vmStateRequest is QEMU's qcow2_check_vmstate_request: the guest offset
// of pos in the VM state area, which must still be a valid request.
func (d *Driver) vmStateRequest(pos, n int64) (int64, error) {
	vo := d.vmStateOffset()
	if pos > 1<<63-1-vo {
		return 0, image.ErrOutOfRange
	}
	pos += vo
	if pos < 0 || n > image.MaxLength-pos {
		return 0, image.ErrOutOfRange
	}
	return pos, nil
}

// ReadVMState reads the VM state area (qemu-io read -b).
func (d *Driver) ReadVMState(p []byte, pos int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return errNoMedium
	}
	off, err := d.vmStateRequest(pos, int64(len(p)))
	if err != nil {
		return err
	}
	if err := d.evict(); err != nil {
		return err
	}
	d.file.DebugEvent("vmstate_load")
	return d.readGuest(p, off, holdKeep)
}

// WriteVMState writes the VM state area (qemu-io write -b), allocating
// clusters there as guest writes do.
func (d *Driver) WriteVMState(p []byte, pos int64) error {
	if err := d.lockWrite(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	off, err := d.vmStateRequest(pos, int64(len(p)))
	if err != nil {
		return err
	}
	if err := d.evict(); err != nil {
		return err
	}
	d.file.DebugEvent("vmstate_save")
	return d.writeGuest(p, off, holdKeep)
}
