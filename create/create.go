// Package create makes new images as qemu-img create does, printing the
// same "Formatting ..." line and writing the same bytes.
package create

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/raw"
)

// Request describes an image to create.
type Request struct {
	Format     string            // "raw" or "qcow2"
	File       string            // path of the new image
	Size       int64             // -1: not given (qcow2 takes the backing file's)
	Options    map[string]string // -o key=value
	Backing    string            // -b
	BackingFmt string            // -F
	Quiet      bool
}

// Error is a creation failure with qemu-img's text (without "qemu-img: ").
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func fail(file, format string, a ...any) error {
	return &Error{file + ": " + fmt.Sprintf(format, a...)}
}

func parsePrealloc(v string) (image.Prealloc, bool) {
	for p := image.PreallocOff; p <= image.PreallocFull; p++ {
		if p.String() == v {
			return p, true
		}
	}
	return 0, false
}

const sizeErr = "Parameter '%s' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively."

// Create makes the image and prints the Formatting line to out. parseSize
// parses sizes as qemu-img does.
func Create(r Request, out io.Writer, parseSize func(string) (int64, error)) error {
	switch r.Format {
	case "raw", "file":
		return createRaw(r, out, parseSize)
	case "qcow2":
		return createQcow2(r, out, parseSize)
	}
	return fail(r.File, "Unknown file format '%s'", r.Format)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func createRaw(r Request, out io.Writer, parseSize func(string) (int64, error)) error {
	prealloc, preallocGiven := image.PreallocOff, ""
	for _, k := range sortedKeys(r.Options) {
		v := r.Options[k]
		switch k {
		case "size":
			n, err := parseSize(v)
			if err != nil {
				return fail(r.File, sizeErr, "size")
			}
			if r.Size < 0 {
				r.Size = n
			}
		case "preallocation":
			p, ok := parsePrealloc(v)
			if !ok {
				return fail(r.File, "Parameter 'preallocation' does not accept value '%s'", v)
			}
			prealloc, preallocGiven = p, v
		default:
			return fail(r.File, "Invalid parameter '%s'", k)
		}
	}
	if r.Size < 0 {
		return fail(r.File, "Image creation needs a size parameter")
	}
	if !r.Quiet {
		line := fmt.Sprintf("Formatting '%s', fmt=%s size=%d", r.File, r.Format, r.Size)
		if preallocGiven != "" {
			line += " preallocation=" + preallocGiven
		}
		fmt.Fprintln(out, line)
	}
	if err := raw.Create(r.File, r.Size, prealloc); err != nil {
		return fail(r.File, "%v", err)
	}
	return nil
}

func onOff(file, key, v string) (bool, error) {
	switch v {
	case "on", "true", "yes":
		return true, nil
	case "off", "false", "no":
		return false, nil
	}
	return false, fail(file, "Parameter '%s' expects 'on' or 'off'", key)
}

func createQcow2(r Request, out io.Writer, parseSize func(string) (int64, error)) error {
	o := qcow2.CreateOptions{ClusterSize: 65536, Version: 3, RefcountBits: 16}
	given := map[string]string{}
	if r.Backing != "" {
		given["backing_file"] = r.Backing
	}
	if r.BackingFmt != "" {
		given["backing_fmt"] = r.BackingFmt
	}
	for _, k := range sortedKeys(r.Options) {
		v := r.Options[k]
		switch k {
		case "size", "cluster_size":
			n, err := parseSize(v)
			if err != nil {
				return fail(r.File, sizeErr, k)
			}
			if k == "size" {
				if r.Size < 0 {
					r.Size = n
				}
			} else {
				o.ClusterSize = n
			}
		case "refcount_bits":
			var n int
			if _, err := fmt.Sscanf(v, "%d", &n); err != nil || fmt.Sprint(n) != v {
				return fail(r.File, "Parameter 'refcount_bits' expects a number")
			}
			o.RefcountBits = n
		case "lazy_refcounts", "extended_l2", "data_file_raw":
			b, err := onOff(r.File, k, v)
			if err != nil {
				return err
			}
			switch k {
			case "lazy_refcounts":
				o.LazyRefcounts = b
			case "extended_l2":
				o.ExtendedL2 = b
			default:
				o.DataFileRaw = b
			}
		case "data_file":
			// named as given: QEMU 7.2 creates and later opens it
			// relative to the current directory, not the image's
			o.DataFile = v
		case "compat", "compression_type", "preallocation", "backing_file", "backing_fmt":
		default:
			return fail(r.File, "Invalid parameter '%s'", k)
		}
		given[k] = v
	}
	if r.Backing == "" {
		r.Backing = r.Options["backing_file"]
	}
	if r.BackingFmt == "" {
		r.BackingFmt = r.Options["backing_fmt"]
	}
	if r.Backing != "" {
		bpath := r.Backing
		if !filepath.IsAbs(bpath) {
			bpath = filepath.Join(filepath.Dir(r.File), bpath)
		}
		if r.BackingFmt == "" {
			fmtName := "raw"
			if d, err := formats.Open(bpath, formats.Options{ReadOnly: true}); err == nil {
				if info, _ := d.Info(); info.FormatName != "" {
					fmtName = info.FormatName
				}
				d.Close()
			}
			return fail(r.File, "Backing file specified without backing format\nDetected format of %s.", fmtName)
		}
		if r.Size < 0 {
			d, err := formats.Open(bpath, formats.Options{Format: r.BackingFmt, ReadOnly: true})
			if err != nil {
				return fail(r.File, "%v\nCould not open backing image.", err)
			}
			r.Size = d.Size()
			d.Close()
		}
	}
	if r.Size < 0 {
		return fail(r.File, "Image creation needs a size parameter")
	}
	ct := given["compression_type"]
	if ct == "" {
		ct = "zlib"
	}
	if !r.Quiet {
		var b strings.Builder
		fmt.Fprintf(&b, "Formatting '%s', fmt=qcow2 cluster_size=%d", r.File, o.ClusterSize)
		fmt.Fprintf(&b, " extended_l2=%s", orDefault(given["extended_l2"], "off"))
		if v, ok := given["preallocation"]; ok {
			fmt.Fprintf(&b, " preallocation=%s", v)
		}
		fmt.Fprintf(&b, " compression_type=%s size=%d", ct, r.Size)
		for _, k := range []string{"compat", "backing_file", "backing_fmt", "data_file", "data_file_raw"} {
			if v, ok := given[k]; ok {
				fmt.Fprintf(&b, " %s=%s", k, v)
			}
		}
		fmt.Fprintf(&b, " lazy_refcounts=%s refcount_bits=%s", orDefault(given["lazy_refcounts"], "off"), orDefault(given["refcount_bits"], "16"))
		fmt.Fprintln(out, b.String())
	}
	if v, ok := given["data_file"]; ok && v == "" {
		// QEMU creates the image file, then fails to create a data file
		// named "", and removes the image file again
		f, err := os.OpenFile(r.File, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fail(r.File, "Could not create '%s': %s", r.File, formats.Strerror(image.Errno(err)))
		}
		f.Close()
		os.Remove(r.File)
		return fail(r.File, "Could not create '': %s", formats.Strerror(syscall.ENOENT))
	}
	switch v := given["compat"]; v {
	case "", "1.1", "v3":
		o.Version = 3
	case "0.10", "v2":
		o.Version = 2
	default:
		return fail(r.File, "Parameter 'version' does not accept value '%s'", v)
	}
	switch ct {
	case "zlib":
	case "zstd":
		o.CompressionType = 1
	default:
		return fail(r.File, "Parameter 'compression-type' does not accept value '%s'", ct)
	}
	if v, ok := given["preallocation"]; ok {
		p, ok := parsePrealloc(v)
		if !ok {
			return fail(r.File, "Parameter 'preallocation' does not accept value '%s'", v)
		}
		o.Prealloc = p
	}
	o.Size = (r.Size + 511) &^ 511
	o.BackingFile, o.BackingFmt = r.Backing, r.BackingFmt
	if err := qcow2.Create(r.File, o); err != nil {
		return fail(r.File, "%v", err)
	}
	return nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}
