package qcow2

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// Snapshot is one entry of the internal snapshot table.
type Snapshot struct {
	ID, Name          string
	L1Offset          int64
	L1Size            int64
	DateSec, DateNsec uint32
	VMClockNsec       uint64
	VMStateSize       uint64 // the 64-bit size from the extra data when present
	// ICount is the instruction count, -1 when the entry has none.
	ICount int64
}

// maxSnapshotExtra bounds the extra data of one entry, as QEMU does.
const maxSnapshotExtra = layout.MaxSnapshotExtra

// Snapshots lists the snapshot table read at open; an entry that does not
// lie wholly inside the file is refused.
func (d *Driver) Snapshots() ([]Snapshot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hasDataFile() {
		return nil, nil // QEMU refuses to list them (ENOTSUP): none shown
	}
	var out []Snapshot
	off := int64(d.hdr.SnapshotsOffset)
	fileLen := d.file.Size()
	for i, sn := range d.snaps {
		end := off + layout.SnapshotHeaderLen + int64(sn.ExtraSize) + int64(len(sn.ID)+len(sn.Name))
		if off < 0 || end > fileLen {
			return nil, fmt.Errorf("snapshot table entry %d is outside the file: %w", i, syscall.EFBIG)
		}
		out = append(out, Snapshot{
			ID: pstr(sn.ID, 128), Name: pstr(sn.Name, 256), L1Offset: int64(sn.L1Offset), L1Size: int64(sn.L1Size),
			DateSec: sn.DateSec, DateNsec: sn.DateNsec, VMClockNsec: sn.VMClockNsec,
			VMStateSize: sn.VMStateSize, ICount: sn.ICount,
		})
		off = (end + 7) &^ 7
	}
	return out, nil
}

// snapEntry is one snapshot table entry as QEMU's qcow2_read_snapshots
// keeps it (internal/layout).
type snapEntry = layout.SnapshotEntry

// maxSnapshotsSize is QCOW_MAX_SNAPSHOTS_SIZE.
const maxSnapshotsSize = layout.MaxSnapshotsSize

// snapTableError is a failure to read the snapshot table, with QEMU's hint.
type snapTableError struct {
	msg, hint string
	errno     syscall.Errno
}

func (e *snapTableError) Error() string { return e.msg }
func (e *snapTableError) Unwrap() error { return e.errno }

// readSnapshotTable is QEMU's qcow2_read_snapshots for nb entries at off.
// With repair, too much extra data is truncated and overhanging entries
// are dropped (reported on w) instead of failing. It returns the entries,
// the table's size, and how many extra data fields and entries repair
// dropped.
func (d *Driver) readSnapshotTable(off int64, nb uint32, repair bool, w io.Writer) ([]snapEntry, int64, int, int, error) {
	var out []snapEntry
	start := off
	var tableLen int64
	dropped, reduced := 0, 0
	read := func(n, at int64) []byte {
		b := make([]byte, n)
		d.file.ReadAt(b, at) // past the end of the file reads zeroes
		return b
	}
	for i := uint32(0); i < nb; i++ {
		pre := off
		tableLen = (tableLen + 7) &^ 7
		off = (off + 7) &^ 7
		sn, idLen, nameLen := layout.DecodeSnapshotHeader(read(layout.SnapshotHeaderLen, off), uint64(d.size))
		off += layout.SnapshotHeaderLen
		truncate := false
		if sn.ExtraSize > maxSnapshotExtra {
			if !repair {
				return nil, 0, 0, 0, &snapTableError{fmt.Sprintf("Too much extra metadata in snapshot table entry %d", i),
					"You can force-remove this extra metadata with qemu-img check -r all\n", syscall.EFBIG}
			}
			fmt.Fprintf(w, "Discarding too much extra metadata in snapshot table entry %d (%d > %d)\n", i, sn.ExtraSize, maxSnapshotExtra)
			dropped++
			truncate = true
		}
		known := min(layout.SnapshotKnownExtra, int64(sn.ExtraSize))
		sn.DecodeKnownExtra(read(known, off))
		off += known
		if int64(sn.ExtraSize) > layout.SnapshotKnownExtra {
			end := off + int64(sn.ExtraSize) - layout.SnapshotKnownExtra
			if truncate {
				sn.ExtraSize = maxSnapshotExtra
			}
			sn.UnknownExtra = read(int64(sn.ExtraSize)-layout.SnapshotKnownExtra, off)
			off = end
		}
		sn.ID = string(read(idLen, off))
		off += idLen
		sn.Name = string(read(nameLen, off))
		off += nameLen
		tableLen += 40 + int64(sn.ExtraSize) + idLen + nameLen
		if tableLen > maxSnapshotsSize || off-start > intMax {
			if !repair {
				return nil, 0, 0, 0, &snapTableError{"Snapshot table is too big",
					fmt.Sprintf("You can force-remove all %d overhanging snapshots with qemu-img check -r all\n", nb-i), syscall.EFBIG}
			}
			fmt.Fprintf(w, "Discarding %d overhanging snapshots (snapshot table is too big)\n", nb-i)
			reduced += int(nb - i)
			off = pre
			break
		}
		out = append(out, sn)
	}
	return out, off - start, dropped, reduced, nil
}

// checkSnapshotTable is QEMU's qcow2_check_read_snapshot_table: the table
// is read from the header's pointer (an open for checking skips it), its
// entries without the two known extra data fields are incomplete.
func (d *Driver) checkSnapshotTable(res *CheckResult, fix CheckMode, w io.Writer) error {
	nb, off := d.hdr.NbSnapshots, d.hdr.SnapshotsOffset
	d.snaps, d.snapshotsSize = nil, 0
	reduced := 0
	if nb > maxSnapshots && fix&FixErrors != 0 {
		fmt.Fprintf(w, "Discarding %d overhanging snapshots\n", nb-maxSnapshots)
		reduced = int(nb - maxSnapshots)
		nb = maxSnapshots
	}
	if err := d.validateTable(off, uint64(nb), 40, 40*maxSnapshots, "snapshot table"); err != nil {
		res.CheckErrors++
		fmt.Fprintf(w, "%sERROR %v\n", d.progPrefix(), err)
		if nb > maxSnapshots {
			fmt.Fprintf(w, "You can force-remove all %d overhanging snapshots with qemu-img check -r all\n", nb-maxSnapshots)
		}
		if strings.HasSuffix(err.Error(), "too large") {
			return syscall.EFBIG
		}
		return syscall.EINVAL
	}
	snaps, size, dropped, red, err := d.readSnapshotTable(int64(off), nb, fix&FixErrors != 0, w)
	if err != nil {
		res.CheckErrors++
		fmt.Fprintf(w, "%sERROR failed to read the snapshot table: %v\n", d.progPrefix(), err)
		var se *snapTableError
		if errors.As(err, &se) {
			fmt.Fprint(w, se.hint)
		}
		return err
	}
	d.snaps, d.snapshotsSize = snaps, size
	reduced += red
	res.Corruptions += int64(reduced + dropped)
	if reduced > 0 {
		// the header's count first: the refcount check relies on it
		nh := d.hdr
		nh.NbSnapshots = uint32(len(snaps))
		if err := d.writeHeaderFields(&nh, layout.FieldNbSnapshots, layout.FieldNbSnapshots); err != nil {
			res.CheckErrors++
			fmt.Fprintf(w, "ERROR failed to update the snapshot count in the image header: %s\n", image.StrerrorOf(err))
			return err
		}
		d.hdr.NbSnapshots = uint32(len(snaps))
		res.CorruptionsFixed += int64(reduced)
		res.Corruptions -= int64(reduced)
	}
	for i, sn := range snaps {
		if d.hdr.Version >= 3 && sn.ExtraSize < 16 { // v3 entries carry the VM state and disk sizes
			res.Corruptions++
			what := "ERROR"
			if fix&FixErrors != 0 {
				what = "Repairing"
			}
			fmt.Fprintf(w, "%s snapshot table entry %d is incomplete\n", what, i)
		}
	}
	return nil
}

// writeSnapshots is QEMU's qcow2_write_snapshots: the table written anew
// (every entry with at least the 24 bytes of known extra data), the header
// pointed at it, the old table freed.
func (d *Driver) writeSnapshots() error {
	var size int64
	for _, sn := range d.snaps {
		size = (size+7)&^7 + sn.EncodedLen()
		if size > maxSnapshotsSize {
			return syscall.EFBIG
		}
	}
	off, err := d.allocClusters(size)
	if err != nil {
		return err
	}
	if err := d.flushLocked(); err != nil {
		return err
	}
	if err := d.preWriteCheck(0, off, size); err != nil {
		return err
	}
	buf := make([]byte, size)
	pos := int64(0)
	for i := range d.snaps {
		pos = (pos + 7) &^ 7
		pos += d.snaps[i].Encode(buf[pos:])
	}
	if err := d.file.WriteAt(buf, off, false); err != nil {
		d.freeClusters(off, size, discardAlways)
		return err
	}
	if err := d.flushLocked(); err != nil {
		d.freeClusters(off, size, discardAlways)
		return err
	}
	nh := d.hdr
	nh.NbSnapshots, nh.SnapshotsOffset = uint32(len(d.snaps)), uint64(off)
	if err := d.writeHeaderFields(&nh, layout.FieldNbSnapshots, layout.FieldSnapshotsOffset); err != nil {
		d.freeClusters(off, size, discardAlways)
		return err
	}
	d.freeClusters(int64(d.hdr.SnapshotsOffset), d.snapshotsSize, discardSnapshot)
	d.hdr.NbSnapshots, d.hdr.SnapshotsOffset = uint32(len(d.snaps)), uint64(off)
	d.snapshotsSize = size
	return nil
}

// pstr is pstrcpy of s into a buffer of n bytes (QEMUSnapshotInfo's
// id_str[128] and name[256], as qcow2_snapshot_list fills them): up to the
// first NUL, at most n-1 bytes.
func pstr(s string, n int) string {
	s = cstr(s)
	if len(s) > n-1 {
		s = s[:n-1]
	}
	return s
}

// cstr is s as C sees it: up to the first NUL.
func cstr(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}
