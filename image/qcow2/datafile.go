package qcow2

import (
	"github.com/goqio/goqio/image"
)

// External data files (incompatible feature bit 2, QEMU's has_data_file):
// the guest data lives in a second file, the qcow2 file keeps only the
// metadata. Every data cluster sits at its guest offset in the data file
// (QEMU's do_alloc_cluster_offset never asks the refcounts for one), so
// data clusters have no refcounts, the COPIED flag tells an allocated
// cluster at offset 0 from an unallocated one, and compressed clusters and
// internal snapshots cannot exist. With data-file-raw (autoclear bit 1) the
// data file is moreover a raw image of the guest on its own: zero writes
// zero it as well, and growing the image preallocates the metadata.

// openDataFile is the data-file part of QEMU's qcow2_do_open: the child
// the caller's options name, else (with the data-file bit set) the file
// the header extension names; then the consistency checks.
func (d *Driver) openDataFile() error {
	if d.opts.NoIO {
		// QEMU 7.2.x's fix of CVE-2024-4467: 'qemu-img info' opens no
		// data file (has_data_file stays true with the data-file bit);
		// the caller drops the data-file options
		d.dataUnopened = d.hdr.IncompatibleFeatures&incompatDataFile != 0
		return nil
	}
	var data *image.Disk
	if d.opts.OpenDataFile != nil {
		var err error
		if data, err = d.opts.OpenDataFile(""); err != nil {
			return err
		}
	}
	if d.hdr.IncompatibleFeatures&incompatDataFile != 0 {
		if data == nil && d.hasDataName && d.opts.OpenDataFile != nil {
			var err error
			if data, err = d.opts.OpenDataFile(d.dataName); err != nil {
				return err
			}
		}
		if data == nil {
			return openErr("'data-file' is required for this image")
		}
		d.data = data
		return nil
	}
	if data != nil {
		return openErr("'data-file' can only be set for images with an external data file")
	}
	if d.dataFileRaw() {
		return openErr("data-file-raw requires a data file")
	}
	return nil
}

// hasDataFile is QEMU's has_data_file.
func (d *Driver) hasDataFile() bool { return d.data != nil || d.dataUnopened }

// dataFileRaw is QEMU's data_file_is_raw.
func (d *Driver) dataFileRaw() bool { return d.hdr.AutoclearFeatures&autoclearDataFileRaw != 0 }

// dataDisk is QEMU's s->data_file: where guest data clusters are read and
// written.
func (d *Driver) dataDisk() *image.Disk {
	if d.data != nil {
		return d.data
	}
	return d.file
}

// dataName is the name of the file holding the guest data, for block
// status answers.
func (d *Driver) dataFileName() string {
	if d.data != nil {
		return d.data.Name()
	}
	return d.name
}

// preWriteCheckData is qcow2_pre_write_overlap_check for a guest data
// write (data_file=true): nothing to check when the data goes to an
// external data file, which holds no metadata.
func (d *Driver) preWriteCheckData(off, n int64) error {
	if d.hasDataFile() {
		return nil
	}
	return d.preWriteCheck(0, off, n)
}

// DataFile returns the external data file, or nil.
func (d *Driver) DataFile() *image.Disk { return d.data }

// cstring is a header extension's bytes as QEMU's C string of them: up to
// the first NUL.
func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
