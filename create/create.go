// Package create makes new images as qemu-img create does, printing the
// same "Formatting ..." line.
package create

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/raw"
)

// Request describes an image to create.
type Request struct {
	Format  string            // "raw" (qcow2 comes with the qcow2 driver)
	File    string            // path of the new image
	Size    int64             // -1: not given
	Options map[string]string // -o key=value
	Quiet   bool
}

// Error is a creation failure with qemu-img's text (without "qemu-img: ").
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func parsePrealloc(v string) (image.Prealloc, bool) {
	for p := image.PreallocOff; p <= image.PreallocFull; p++ {
		if p.String() == v {
			return p, true
		}
	}
	return 0, false
}

// Create makes the image and prints the Formatting line to out.
func Create(r Request, out io.Writer, parseSize func(string) (int64, error)) error {
	switch r.Format {
	case "raw", "file":
	default:
		return &Error{fmt.Sprintf("%s: Unknown file format '%s'", r.File, r.Format)}
	}
	keys := make([]string, 0, len(r.Options))
	for k := range r.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	prealloc, preallocGiven := image.PreallocOff, false
	for _, k := range keys {
		v := r.Options[k]
		switch k {
		case "size":
			n, err := parseSize(v)
			if err != nil {
				return &Error{fmt.Sprintf("%s: Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.", r.File)}
			}
			if r.Size < 0 {
				r.Size = n
			}
		case "preallocation":
			p, ok := parsePrealloc(v)
			if !ok {
				return &Error{fmt.Sprintf("%s: Parameter 'preallocation' does not accept value '%s'", r.File, v)}
			}
			prealloc, preallocGiven = p, true
		default:
			return &Error{fmt.Sprintf("%s: Invalid parameter '%s'", r.File, k)}
		}
	}
	if r.Size < 0 {
		return &Error{fmt.Sprintf("%s: Image creation needs a size parameter", r.File)}
	}
	if !r.Quiet {
		var b strings.Builder
		fmt.Fprintf(&b, "Formatting '%s', fmt=%s size=%d", r.File, r.Format, r.Size)
		if preallocGiven {
			fmt.Fprintf(&b, " preallocation=%s", prealloc)
		}
		fmt.Fprintln(out, b.String())
	}
	if err := raw.Create(r.File, r.Size, prealloc); err != nil {
		return &Error{fmt.Sprintf("%s: %v", r.File, err)}
	}
	return nil
}
