package image

// Filter is implemented by the drivers of filter nodes (QEMU's is_filter
// drivers: compress, copy-on-read, preallocate, throttle, blkverify):
// Filtered returns the child that every request goes to, QEMU's
// bdrv_filter_bs. A filter without BlockStatuser answers block status with
// its child's, as QEMU's default code for filters does (BDRV_BLOCK_RAW).
type Filter interface {
	Filtered() *Disk
}

// StatusForwarder is implemented by drivers whose block status is the
// status of a range of another Disk, QEMU's BDRV_BLOCK_RAW answer (the raw
// format with an offset): ForwardStatus maps off to that Disk and offset.
// The other Disk's answer is taken as it is, its allocation included.
type StatusForwarder interface {
	ForwardStatus(off int64) (*Disk, int64)
}

// Filtered returns the child d filters (bdrv_filter_bs), or nil when d is
// not a filter.
func (d *Disk) Filtered() *Disk {
	if f, ok := d.drv.(Filter); ok {
		return f.Filtered()
	}
	return nil
}

// SkipFilters is QEMU's bdrv_skip_filters: the first Disk below d (d
// itself included) that is not a filter.
func SkipFilters(d *Disk) *Disk {
	for {
		f := d.Filtered()
		if f == nil {
			return d
		}
		d = f
	}
}

// FilterOrBacking is QEMU's bdrv_filter_or_cow_bs: the backing file of d,
// or the child it filters, or nil.
func (d *Disk) FilterOrBacking() *Disk {
	if b := d.Backing(); b != nil {
		return b
	}
	return d.Filtered()
}

// BackingChainNext is QEMU's bdrv_backing_chain_next: the first non-filter
// below the backing file of the first non-filter at d, or nil.
func BackingChainNext(d *Disk) *Disk {
	b := SkipFilters(d).Backing()
	if b == nil {
		return nil
	}
	return SkipFilters(b)
}

// forwardStatus reports where the block status of d at off comes from when
// the driver forwards it (StatusForwarder, or a Filter without a status
// of its own).
func (d *Disk) forwardStatus(off int64) (*Disk, int64, bool) {
	if f, ok := d.drv.(StatusForwarder); ok {
		t, toff := f.ForwardStatus(off)
		return t, toff, true
	}
	if _, ok := d.drv.(BlockStatuser); ok {
		return nil, 0, false
	}
	if f, ok := d.drv.(Filter); ok {
		return f.Filtered(), off, true
	}
	return nil, 0, false
}

// ReadCopyOnRead reads len(p) bytes at off copying what this layer does not
// store into it, as a read with QEMU's BDRV_REQ_COPY_ON_READ flag (what the
// copy-on-read filter sends to its child), whether or not d was opened with
// CopyOnRead. d must be writable.
func (d *Disk) ReadCopyOnRead(p []byte, off int64) error {
	if err := d.checkRange(off, int64(len(p))); err != nil {
		return err
	}
	return d.readCopyOnRead(p, off)
}
