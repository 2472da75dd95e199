// Package snapshot lists, creates, applies and deletes a qcow2 image's
// internal snapshots as qemu-img snapshot -l, -c, -a and -d do.
package snapshot

import (
	"errors"
	"fmt"
	"io"
	"math"
	"syscall"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
)

// Size is QEMU's size_to_str: the value in the largest binary unit that
// keeps it at or above 1, with three significant digits.
func Size(v uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	// the unit changes at 1000 of the smaller one: 1000 B is 0.977 KiB
	_, e := math.Frexp(float64(v) / (1000.0 / 1024.0))
	i := (e - 1) / 10
	return fmt.Sprintf("%0.3g %s", float64(v)/float64(uint64(1)<<(10*i)), units[i])
}

// List prints the snapshot table of the image at path; it returns
// qemu-img's exit code.
func List(prog, path, format string, out, errw io.Writer) int {
	disk := open(prog, path, format, true, errw)
	if disk == nil {
		return 1
	}
	defer disk.Close()
	d, ok := disk.Driver().(*qcow2.Driver)
	if !ok {
		return 0 // raw images have no snapshots
	}
	snaps, err := d.Snapshots()
	if err != nil {
		fmt.Fprintf(errw, "%s: %v\n", prog, err)
		return 1
	}
	if len(snaps) == 0 {
		return 0
	}
	fmt.Fprintf(out, "Snapshot list:\n")
	fmt.Fprintf(out, "%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT")
	for _, s := range snaps {
		date := time.Unix(int64(s.DateSec), 0).Format("2006-01-02 15:04:05")
		secs := s.VMClockNsec / 1e9
		clock := fmt.Sprintf("%02d:%02d:%02d.%03d", secs/3600, (secs/60)%60, secs%60, (s.VMClockNsec/1e6)%1000)
		icount := ""
		if s.ICount != -1 {
			icount = fmt.Sprint(s.ICount)
		}
		fmt.Fprintf(out, "%-9s %-16s %8s%20s%13s%11s\n", s.ID, s.Name, Size(s.VMStateSize), date, clock, icount)
	}
	return 0
}

// Modify creates (op "c"), applies ("a") or deletes ("d") the snapshot
// name of the image at path, as qemu-img snapshot -c/-a/-d do; it returns
// qemu-img's exit code.
func Modify(prog, op, name, path, format string, errw io.Writer) int {
	disk := open(prog, path, format, false, errw)
	if disk == nil {
		return 1
	}
	defer disk.Close()
	d, ok := disk.Driver().(*qcow2.Driver)
	if !ok {
		// raw images have no snapshots
		what := map[string]string{"c": "create", "a": "apply", "d": "delete"}[op]
		fmt.Fprintf(errw, "%s: Could not %s snapshot '%s': %s\n", prog, what, name, formats.Strerror(syscall.ENOTSUP))
		return 1
	}
	switch op {
	case "c":
		if err := d.CreateSnapshot(name, time.Now()); err != nil {
			errno := image.Errno(err)
			fmt.Fprintf(errw, "%s: Could not create snapshot '%s': %d (%s)\n", prog, name, -int(errno), formats.Strerror(errno))
			return 1
		}
	case "a":
		if err := d.ApplySnapshot(name); err != nil {
			errno := image.Errno(err)
			if errors.Is(err, qcow2.ErrSnapshotNotFound) {
				errno = syscall.ENOENT
			}
			fmt.Fprintf(errw, "%s: Could not apply snapshot '%s': Failed to load snapshot: %s\n", prog, name, formats.Strerror(errno))
			return 1
		}
	case "d":
		id, ok := d.SnapshotByName(name)
		if !ok {
			fmt.Fprintf(errw, "%s: Could not delete snapshot '%s': snapshot not found\n", prog, name)
			return 1
		}
		if err := d.DeleteSnapshot(id, name); err != nil {
			fmt.Fprintf(errw, "%s: Could not delete snapshot '%s': %v\n", prog, name, err)
			return 1
		}
	}
	return 0
}

// open opens the image at path (as qcow2 when no format is given), or
// says why not as qemu-img does and returns nil.
func open(prog, path, format string, readOnly bool, errw io.Writer) *image.Disk {
	if format == "" {
		format = "qcow2"
	}
	disk, err := formats.Open(path, formats.Options{Format: format, ReadOnly: readOnly, Stderr: errw, Prog: prog})
	if err != nil {
		fmt.Fprintf(errw, "%s: Could not open '%s': %v\n", prog, path, err)
		return nil
	}
	return disk
}
