package image

import (
	"errors"
	"fmt"
	"io"
)

// MapEntry is one run of qemu-img map: where [Start, Start+Length) of the
// guest view comes from.
type MapEntry struct {
	Start, Length int64
	Depth         int  // 0 = the top image, 1 = its backing file, ...
	Present       bool // allocated at that depth
	Zero, Data    bool
	HasOffset     bool
	Offset        int64  // host offset in File when HasOffset
	File          string // the file holding the data ("" when none)
}

// layerStatus is the status of one layer alone (QEMU's bdrv_block_status),
// walking down the chain while a layer neither stores data nor reads zero,
// as qemu-img map's get_block_status does; filters are skipped and count
// as no layer.
func layerStatus(d *Disk, off, n int64) (MapEntry, error) {
	depth := 0
	for {
		d = SkipFilters(d)
		e, err := d.BlockStatus(off, n, true)
		if err != nil {
			return MapEntry{}, err
		}
		n = e.Len
		if e.Status&(StatusZero|StatusData) == 0 && d.Backing() == nil {
			// qemu-img's get_block_status: no layer answered, ret = 0
			e.Status = 0
		}
		if e.Status&(StatusZero|StatusData) != 0 || d.Backing() == nil {
			m := MapEntry{Start: off, Length: n, Depth: depth,
				Present: e.Status&StatusAllocated != 0,
				Zero:    e.Status&StatusZero != 0, Data: e.Status&StatusData != 0,
				HasOffset: e.Status&StatusOffsetValid != 0, Offset: e.Offset}
			if m.HasOffset {
				m.File = e.File
			}
			return m, nil
		}
		d = d.Backing()
		depth++
	}
}

func mergeable(a, b *MapEntry) bool {
	if a.Length == 0 {
		return false
	}
	if a.Zero != b.Zero || a.Data != b.Data || a.Depth != b.Depth || a.Present != b.Present ||
		(a.File == "") != (b.File == "") || a.HasOffset != b.HasOffset || a.File != b.File {
		return false
	}
	return !a.HasOffset || a.Offset+a.Length == b.Offset
}

// Map is qemu-img map's walk over [start, start+length) of d: each merged
// run is passed to emit together with the next one (nil for the last), as
// qemu-img's dump_map_entry receives them; emit may change next (the human
// format coalesces zero runs that way). An error from emit stops the walk.
func Map(d *Disk, start, length int64, emit func(cur, next *MapEntry) error) error {
	end := min(d.Size(), start+length)
	cur := MapEntry{Start: start}
	// next is declared once: emit gets its address, so one declared in the
	// loop would be a heap allocation per step, and a map of a huge image
	// (64 Mi steps of 1 GiB for 64 PiB) would make garbage enough for the
	// collector to let the heap grow to twice what is live (the cache)
	var next MapEntry
	for cur.Start+cur.Length < end {
		off := cur.Start + cur.Length
		n := min(int64(1)<<30, end-off)
		var err error
		next, err = layerStatus(d, off, n)
		if err != nil {
			return err
		}
		if mergeable(&cur, &next) {
			cur.Length += next.Length
			continue
		}
		if cur.Length > 0 {
			if err := emit(&cur, &next); err != nil {
				return err
			}
		}
		cur = next
	}
	return emit(&cur, nil)
}

// ErrMapHuman is qemu-img map's refusal, in the human format, of data
// without a host offset (dump_map_entry).
var ErrMapHuman = errors.New("File contains external, encrypted or compressed clusters.")

// hex16 is C's "%#-16" PRIx64: 0 is printed without the 0x prefix.
func hex16(v int64) string {
	if v == 0 {
		return fmt.Sprintf("%-16s", "0")
	}
	return fmt.Sprintf("%#-16x", v)
}

// WriteMap writes qemu-img map's entries for [start, end) of d in the
// human or the json format (the header or the brackets are the caller's).
// It stops at the first error: ErrMapHuman or a block status failure.
func WriteMap(w io.Writer, d *Disk, human bool, start, end int64) error {
	return Map(d, start, end-start, func(e, next *MapEntry) error {
		if human {
			if e.Data && !e.HasOffset {
				return ErrMapHuman
			}
			if e.Data && !e.Zero {
				off := int64(0)
				if e.HasOffset {
					off = e.Offset
				}
				fmt.Fprintf(w, "%s%s%s%s\n", hex16(e.Start), hex16(e.Length), hex16(off), e.File)
			}
			if next != nil && (!next.Data || next.Zero) {
				next.Data, next.Zero = false, true
			}
			return nil
		}
		fmt.Fprintf(w, `{ "start": %d, "length": %d, "depth": %d, "present": %t, "zero": %t, "data": %t`,
			e.Start, e.Length, e.Depth, e.Present, e.Zero, e.Data)
		if e.HasOffset {
			fmt.Fprintf(w, `, "offset": %d`, e.Offset)
		}
		fmt.Fprint(w, "}")
		if next != nil {
			fmt.Fprintln(w, ",")
		}
		return nil
	})
}
