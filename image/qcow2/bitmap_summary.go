package qcow2

// BitmapSummary describes one persistent dirty bitmap of an open image.
type BitmapSummary struct {
	Name         string
	Granularity  int64
	Enabled      bool
	Inconsistent bool // marked in use on disk when the image was opened
}

// PersistentBitmaps lists the image's persistent dirty bitmaps, in the
// order of the bitmap directory (the list is fixed at open).
func (d *Driver) PersistentBitmaps() []BitmapSummary {
	out := make([]BitmapSummary, 0, len(d.bitmaps))
	for _, bm := range d.bitmaps {
		out = append(out, BitmapSummary{Name: bm.info.name, Granularity: 1 << bm.info.gbits,
			Enabled: bm.enabled, Inconsistent: bm.inconsistent})
	}
	return out
}
