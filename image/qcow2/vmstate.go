package qcow2

// vmStateOffset is where the VM state area starts: past the guest data, at
// the first L1 entry the disk does not use (QEMU's qcow2_vm_state_offset).
func (d *Driver) vmStateOffset() int64 {
	return d.sizeToL1(d.size) << (d.clusterBits + d.l2Bits)
}

// ReadVMState reads the VM state area (qemu-io read -b).
func (d *Driver) ReadVMState(p []byte, pos int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return errNoMedium
	}
	if err := d.evict(); err != nil {
		return err
	}
	return d.readGuest(p, d.vmStateOffset()+pos)
}

// WriteVMState writes the VM state area (qemu-io write -b), allocating
// clusters there as guest writes do.
func (d *Driver) WriteVMState(p []byte, pos int64) error {
	if err := d.lockWrite(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if err := d.evict(); err != nil {
		return err
	}
	return d.writeLocked(p, d.vmStateOffset()+pos)
}
