package qcow2

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// Metadata kinds, in the order QEMU's qcow2_check_metadata_overlap tests
// them, with QEMU's names.
const (
	olMainHeader = 1 << iota
	olActiveL1
	olActiveL2
	olRefcountTable
	olRefcountBlock
	olSnapshotTable
	olInactiveL1
	olInactiveL2
	olBitmapDirectory
)

var olNames = []string{"qcow2_header", "active L1 table", "active L2 table", "refcount table",
	"refcount block", "snapshot table", "inactive L1 table", "inactive L2 table", "bitmap directory"}

// checkOverlap is QEMU's qcow2_check_metadata_overlap: whether [off,
// off+n) overlaps metadata other than ign, among the kinds overlap-check
// selects. Only the inactive L2 check reads the file (each snapshot's L1
// table); a snapshot L1 table it cannot read, or whose offset or size is
// invalid, fails the check with that error (EINVAL, EFBIG), as QEMU's
// qcow2_validate_table makes the write fail.
func (d *Driver) checkOverlap(ign int, off, n int64) (int, error) {
	if n == 0 {
		return 0, nil
	}
	ign |= ^d.rt.overlap // the checks overlap-check leaves out
	if ign&olMainHeader == 0 && off < d.clusterSize {
		return olMainHeader, nil
	}
	n = (off&(d.clusterSize-1) + n + d.clusterSize - 1) &^ (d.clusterSize - 1)
	off &^= d.clusterSize - 1
	overlaps := func(o, s int64) bool { return o < off+n && off < o+s }
	if ign&olActiveL1 == 0 && len(d.l1) > 0 && overlaps(d.l1Offset, int64(len(d.l1))*8) {
		return olActiveL1, nil
	}
	if ign&olRefcountTable == 0 && len(d.refTable) > 0 && overlaps(d.refTableOffset, int64(len(d.refTable))*8) {
		return olRefcountTable, nil
	}
	if ign&olSnapshotTable == 0 && d.snapshotsSize > 0 && overlaps(int64(d.hdr.SnapshotsOffset), d.snapshotsSize) {
		return olSnapshotTable, nil
	}
	if ign&olInactiveL1 == 0 {
		for _, sn := range d.snaps {
			if sn.L1Size != 0 && overlaps(int64(sn.L1Offset&(1<<63-1)), int64(sn.L1Size)*8) {
				return olInactiveL1, nil
			}
		}
	}
	if ign&olActiveL2 == 0 {
		for _, e := range d.l1 {
			if o := layout.L1Entry(e).Offset(); o != 0 && overlaps(o, d.clusterSize) {
				return olActiveL2, nil
			}
		}
	}
	if ign&olRefcountBlock == 0 {
		for i := int64(0); i <= d.maxRefTableIndex && i < int64(len(d.refTable)); i++ {
			if o := int64(d.refTable[i] & reftOffsetMask); o != 0 && overlaps(o, d.clusterSize) {
				return olRefcountBlock, nil
			}
		}
	}
	if ign&olInactiveL2 == 0 {
		for _, sn := range d.snaps {
			if sn.L1Size > maxL1Size/8 {
				return 0, syscall.EFBIG
			}
			l1off, size := sn.L1Offset, uint64(sn.L1Size)*8
			if (1<<63-1)-size < l1off || l1off&uint64(d.clusterSize-1) != 0 {
				return 0, syscall.EINVAL
			}
			l1 := make([]byte, size)
			if err := d.file.ReadAt(l1, int64(l1off)); err != nil {
				return 0, err
			}
			for j := 0; j < len(l1); j += 8 {
				if o := layout.L1Entry(binary.BigEndian.Uint64(l1[j:])).Offset(); o != 0 && overlaps(o, d.clusterSize) {
					return olInactiveL2, nil
				}
			}
		}
	}
	if ign&olBitmapDirectory == 0 && d.hdr.AutoclearFeatures&autoclearBitmaps != 0 && d.bitmapDirSize > 0 &&
		overlaps(int64(d.bitmapDirOff), int64(d.bitmapDirSize)) {
		return olBitmapDirectory, nil
	}
	return 0, nil
}

// preWriteCheck is QEMU's qcow2_pre_write_overlap_check: a write that
// would overwrite metadata marks the image corrupt and fails.
func (d *Driver) preWriteCheck(ign int, off, n int64) error {
	ol, err := d.checkOverlap(ign, off, n)
	if err != nil || ol == 0 {
		return err
	}
	bit := 0
	for ol&1 == 0 {
		ol >>= 1
		bit++
	}
	return d.corruption(fmt.Sprintf("Preventing invalid write on metadata (overlaps with %s)", olNames[bit]))
}

// hx formats like C's %#x: 0 is "0", not "0x0".
func hx(v any) string {
	s := fmt.Sprintf("%#x", v)
	if s == "0x0" {
		return "0"
	}
	return s
}

// corruption is QEMU's qcow2_signal_corruption. On a writable image it is
// fatal: the corrupt bit is set and the image becomes unusable (every later
// request fails with "No medium found"); on a read-only image only this
// request fails. Either way it is reported once.
func (d *Driver) corruption(msg string) error {
	fatal := !d.opts.ReadOnly
	if d.signaled && (!fatal || d.hdr.IncompatibleFeatures&incompatCorrupt != 0) {
		return &image.CorruptError{What: msg}
	}
	if fatal {
		fmt.Fprintf(d.stderr(), "qcow2: Marking image as corrupt: %s; further corruption events will be suppressed\n", msg)
		// qcow2_mark_corrupt: the header rewritten from memory
		d.hdr.IncompatibleFeatures |= incompatCorrupt
		d.updateHeader()
		d.file.Flush()
		d.dead = true
	} else {
		fmt.Fprintf(d.stderr(), "qcow2: Image is corrupt: %s; further non-fatal corruption events will be suppressed\n", msg)
	}
	d.signaled = true
	return &image.CorruptError{What: msg}
}

// lockWrite takes the image lock for a request that writes, refusing a
// read-only image and one a fatal corruption made unusable. On success the
// caller holds d.mu.
func (d *Driver) lockWrite() error {
	if d.opts.ReadOnly {
		return image.ErrReadOnly
	}
	d.mu.Lock()
	if d.dead {
		d.mu.Unlock()
		return errNoMedium
	}
	return nil
}

// lockWriteReq is lockWrite for a guest request (inflight.go): it takes
// the lock in turn, not exclusively, and returns how the request holds it.
func (d *Driver) lockWriteReq() (hold, error) {
	if d.opts.ReadOnly {
		return holdSync, image.ErrReadOnly
	}
	h := d.mu.lockReq()
	if d.dead {
		d.mu.Unlock()
		return h, errNoMedium
	}
	return h, nil
}

// errNoMedium is what every request gets once a fatal corruption made the
// image unusable (QEMU sets bs->drv to NULL).
var errNoMedium = syscall.ENOMEDIUM

// Dead reports whether a fatal corruption made the image unusable.
func (d *Driver) Dead() bool {
	d.mu.lockRaw()
	defer d.mu.Unlock()
	return d.dead
}

func (d *Driver) trace(format string, a ...any) {
	if d.opts.Trace != nil {
		d.opts.Trace(fmt.Sprintf(format, a...))
	}
}
