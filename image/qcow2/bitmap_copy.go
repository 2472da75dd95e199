package qcow2

import "errors"

// CopyBitmap adds to dst a persistent dirty bitmap with the name,
// granularity, enabled state and bits of src's bitmap name, as qemu-img
// convert --bitmaps does (block-dirty-bitmap-add, then a merge). It is
// stored when dst is closed. dst must have no request in flight: the
// bitmap list is otherwise fixed at open.
func CopyBitmap(dst, src *Driver, name string) error {
	src.mu.Lock()
	var sbm *dirtyBitmap
	for _, bm := range src.bitmaps {
		if bm.info.name == name {
			sbm = bm
		}
	}
	if sbm == nil {
		src.mu.Unlock()
		return errors.New("Dirty bitmap '" + name + "' not found")
	}
	defer src.mu.Unlock()
	if err := dst.lockWrite(); err != nil {
		return err
	}
	defer dst.mu.Unlock()
	if dst.hdr.Version < 3 {
		return errors.New("Cannot store dirty bitmaps in qcow2 v2 files")
	}
	for _, bm := range dst.bitmaps {
		if bm.info.name == name {
			return errors.New("Bitmap already exists: " + name)
		}
	}
	if len(dst.bitmaps) >= maxBitmaps {
		return errors.New("Maximum number of persistent bitmaps is already reached")
	}
	gbits := sbm.info.gbits
	bm := &dirtyBitmap{info: &bitmapInfo{typ: btDirtyTracking, gbits: gbits, name: name},
		chunks: map[int64]*bmChunk{}, enabled: sbm.enabled}
	n := dst.nbGranules(gbits)
	dcb, scb := dst.chunkBits(), src.chunkBits()
	set := func(first, last int64) {
		last = min(last, n-1)
		for i := first; i <= last; i++ {
			ci := i / dcb
			c := bm.chunks[ci]
			if c == nil {
				c = &bmChunk{}
				bm.chunks[ci] = c
			}
			if c.ones {
				i = (ci+1)*dcb - 1
				continue
			}
			if i == ci*dcb && last >= (ci+1)*dcb-1 {
				c.ones, c.b = true, nil
				i = (ci+1)*dcb - 1
				continue
			}
			dst.materialize(c)
			j := i - ci*dcb
			c.b[j/8] |= 1 << (j % 8)
		}
	}
	for ci, c := range sbm.chunks {
		base := ci * scb
		if c.ones {
			set(base, base+scb-1)
			continue
		}
		for j := int64(0); j < scb; j++ {
			if c.b[j/8] == 0 {
				j += 7 - j%8
				continue
			}
			if c.b[j/8]>>(j%8)&1 != 0 {
				set(base+j, base+j)
			}
		}
	}
	dst.bitmaps = append(dst.bitmaps, bm)
	return nil
}
