package image

// BlockStatusAbove is QEMU's bdrv_co_common_block_status_above with no
// base: the status of the run at off through the whole backing chain of d,
// and the depth (1 = d itself) of the layer that answered. An unallocated
// range of a layer defers to its backing file; zeroes synthesised past the
// end of a shorter backing file count as allocated at that layer.
func BlockStatusAbove(d *Disk, off, n int64, wantZero bool) (Extent, int, error) {
	e, err := d.BlockStatus(off, n, wantZero)
	depth := 1
	if err != nil || e.Len == 0 || e.Status&StatusAllocated != 0 {
		return e, depth, err
	}
	eof := int64(-1)
	if e.Status&StatusEOF != 0 {
		eof = off + e.Len
	}
	n = e.Len
	for p := d.Backing(); p != nil; p = p.Backing() {
		pe, err := p.BlockStatus(off, n, wantZero)
		depth++
		if err != nil {
			return pe, depth, err
		}
		if pe.Len == 0 {
			e = Extent{Status: StatusZero | StatusAllocated, Len: n, File: pe.File}
			break
		}
		e = pe
		if pe.Status&StatusAllocated != 0 {
			e.Status &^= StatusEOF
			break
		}
		n = pe.Len
	}
	if off+e.Len == eof {
		e.Status |= StatusEOF
	}
	return e, depth, nil
}
