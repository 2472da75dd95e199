package image

// BlockStatusAbove is QEMU's bdrv_co_common_block_status_above with no
// base: the status of the run at off through the whole backing chain of d
// (filters included), and the depth (1 = d itself) of the layer that
// answered. An unallocated range of a layer defers to the layer below;
// zeroes synthesised past the end of a shorter backing file count as
// allocated at that layer.
func BlockStatusAbove(d *Disk, off, n int64, wantZero bool) (Extent, int, error) {
	return blockStatusAbove(d, nil, false, off, n, wantZero)
}

// IsAllocatedAbove is QEMU's bdrv_is_allocated_above: whether the run at
// off (at most n bytes, the second value) is allocated in a layer from top
// down to base (base included with includeBase; nil: the whole chain).
func IsAllocatedAbove(top, base *Disk, includeBase bool, off, n int64) (bool, int64, error) {
	e, _, err := blockStatusAbove(top, base, includeBase, off, n, false)
	if err != nil {
		return false, 0, err
	}
	return e.Status&StatusAllocated != 0, e.Len, nil
}

// blockStatusAbove is bdrv_co_common_block_status_above.
func blockStatusAbove(d, base *Disk, includeBase bool, off, n int64, wantZero bool) (Extent, int, error) {
	if !includeBase && d == base {
		return Extent{Len: n}, 0, nil
	}
	e, err := d.BlockStatus(off, n, wantZero)
	depth := 1
	if err != nil || e.Len == 0 || e.Status&StatusAllocated != 0 || d == base {
		return e, depth, err
	}
	eof := int64(-1)
	if e.Status&StatusEOF != 0 {
		eof = off + e.Len
	}
	n = e.Len
	for p := d.FilterOrBacking(); p != nil && (includeBase || p != base); p = p.FilterOrBacking() {
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
		if p == base {
			break
		}
		n = pe.Len
	}
	if off+e.Len == eof {
		e.Status |= StatusEOF
	}
	return e, depth, nil
}

// BlockStatusAboveBase is bdrv_block_status_above with a base: the status
// of the run at off through the layers above base (base excluded; nil:
// the whole chain), and the depth of the layer that answered. qemu-img
// convert -B asks it for the top layer alone.
func BlockStatusAboveBase(d, base *Disk, off, n int64, wantZero bool) (Extent, int, error) {
	return blockStatusAbove(d, base, false, off, n, wantZero)
}
