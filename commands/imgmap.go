package commands

import (
	"errors"
	"fmt"
	"io"

	"github.com/goqio/goqio/image"
)

// hex16 is C's "%#-16" PRIx64: 0 is printed without the 0x prefix.
func hex16(v int64) string {
	if v == 0 {
		return fmt.Sprintf("%-16s", "0")
	}
	return fmt.Sprintf("%#-16x", v)
}

// PrintImgMap writes what qemu-img map --output=FORMAT (json or human)
// prints for d. The human format fails, as qemu-img's does, on data
// without a host offset (compressed clusters).
func PrintImgMap(w io.Writer, d *image.Disk, format string) error {
	if format == "human" {
		fmt.Fprintf(w, "%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File")
	} else {
		fmt.Fprint(w, "[")
	}
	err := image.Map(d, 0, d.Size(), func(e, next *image.MapEntry) error {
		if format == "human" {
			if e.Data && !e.HasOffset {
				return errors.New("File contains external, encrypted or compressed clusters.")
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
	if err != nil {
		return err
	}
	if format != "human" {
		fmt.Fprintln(w, "]")
	}
	return nil
}
