package commands

import (
	"fmt"
	"io"

	"github.com/goqio/goqio/image"
)

// PrintImgMap writes what qemu-img map --output=FORMAT (json or human)
// prints for d. The human format fails, as qemu-img's does, on data
// without a host offset (compressed clusters).
func PrintImgMap(w io.Writer, d *image.Disk, format string) error {
	if format == "human" {
		fmt.Fprintf(w, "%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File")
	} else {
		fmt.Fprint(w, "[")
	}
	err := image.WriteMap(w, d, format == "human", 0, d.Size())
	if err != nil {
		return err
	}
	if format != "human" {
		fmt.Fprintln(w, "]")
	}
	return nil
}
