package qcow2

import "github.com/goqio/goqio/image/qdict"

// SpecificInfo is qcow2_get_specific_info: the "data" of qemu-img info's
// format-specific member, as the QAPI visitor makes it (a QDict, so that
// its keys come in QEMU's order for both the JSON and the human output).
func (d *Driver) SpecificInfo() *qdict.Dict {
	// the members go in in the QAPI schema's order (it decides the order
	// of keys that share a hash bucket)
	s := qdict.New()
	ct := "zlib"
	if d.hdr.CompressionType == 1 {
		ct = "zstd"
	}
	if d.hdr.Version < 3 {
		s.Put("compat", "0.10")
		s.Put("refcount-bits", int64(1)<<d.refOrder)
		if e := d.encryptInfo(); e != nil {
			s.Put("encrypt", e)
		}
		s.Put("compression-type", ct)
		return s
	}
	s.Put("compat", "1.1")
	if d.hasDataName {
		s.Put("data-file", d.dataName)
	}
	if d.hasDataFile() {
		s.Put("data-file-raw", d.dataFileRaw())
	}
	s.Put("extended-l2", d.hdr.IncompatibleFeatures&incompatExtL2 != 0)
	s.Put("lazy-refcounts", d.hdr.CompatibleFeatures&compatLazyRefcounts != 0)
	s.Put("corrupt", d.hdr.IncompatibleFeatures&incompatCorrupt != 0)
	s.Put("refcount-bits", int64(1)<<d.refOrder)
	if e := d.encryptInfo(); e != nil {
		s.Put("encrypt", e)
	}
	if d.nbBitmaps != 0 {
		if list, err := d.bitmapList(); err == nil {
			l := &qdict.List{}
			for _, e := range list {
				b := qdict.New()
				b.Put("name", e.name)
				b.Put("granularity", int64(1)<<e.gbits)
				flags := &qdict.List{}
				if e.flags&bmeFlagInUse != 0 {
					flags.Items = append(flags.Items, "in-use")
				}
				if e.flags&bmeFlagAuto != 0 {
					flags.Items = append(flags.Items, "auto")
				}
				b.Put("flags", flags)
				l.Items = append(l.Items, b)
			}
			s.Put("bitmaps", l)
		}
	}
	s.Put("compression-type", ct)
	return s
}

// Dirty reports the image's dirty bit (BlockDriverInfo.is_dirty).
func (d *Driver) Dirty() bool { return d.hdr.IncompatibleFeatures&incompatDirty != 0 }
