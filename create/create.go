// Package create makes new images as qemu-img create does, printing the
// same "Formatting ..." line and writing the same bytes.
package create

import (
	"fmt"
	"io"
	"os"
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
	BackingSet bool              // -b was given, maybe as ""
	BackingFmt string            // -F
	// NoBackingOpen is -u: the backing file is recorded without being
	// opened, so that it may be missing (the size must then be given).
	NoBackingOpen bool
	Quiet         bool
	// Stderr and Prog are for what opening the backing file prints on
	// stderr (formats.Options); nil drops it.
	Stderr io.Writer
	Prog   string
	// Secrets looks up --object secrets by id (encrypt.key-secret,
	// key-secret); nil: none defined.
	Secrets func(id string) ([]byte, error)
}

// Error is a creation failure with qemu-img's text (without "qemu-img: ").
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func fail(file, format string, a ...any) error {
	if file == "" {
		// no file: qemu-img measure's messages
		return &Error{fmt.Sprintf(format, a...)}
	}
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
	case "luks":
		return createLUKS(r, out, parseSize)
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
	var fo fileOpts
	optSize := int64(-1)
	for _, k := range sortedKeys(r.Options) {
		v := r.Options[k]
		switch k {
		case "size":
			n, err := parseSize(v)
			if err != nil {
				return fail(r.File, sizeErr, "size")
			}
			optSize = n
		case "preallocation":
			// a bad value is refused by file-posix's raw_co_create_opts,
			// after the Formatting line
			prealloc, preallocGiven = parsePreallocOr(v), v
		case "nocow", "extent_size_hint":
			if err := fo.parse(r.File, k, v, parseSize); err != nil {
				return err
			}
		default:
			return fail(r.File, "Invalid parameter '%s'", k)
		}
	}
	if err := sizedNoBacking(&r, optSize); err != nil {
		return err
	}
	if !r.Quiet {
		line := fmt.Sprintf("Formatting '%s', fmt=%s size=%d", r.File, r.Format, r.Size)
		if fo.nocow != "" {
			line += " nocow=" + fo.nocow
		}
		if preallocGiven != "" {
			line += " preallocation=" + escapeOpt(preallocGiven)
		}
		if fo.hasHint {
			line += fmt.Sprintf(" extent_size_hint=%d", fo.hint)
		}
		fmt.Fprintln(out, line)
	}
	if err := fo.check(r.File); err != nil {
		return err
	}
	if preallocGiven != "" && prealloc < 0 {
		return fail(r.File, "invalid parameter value: %s", preallocGiven)
	}
	if err := raw.CreateWith(hostPath(r.File), r.Size, prealloc, fo.attrs(r)); err != nil {
		return fail(r.File, "%v", err)
	}
	return nil
}

// fileOpts are the file protocol's create options that act on the new
// file: nocow (chattr +C, for btrfs) and extent_size_hint (an XFS extent
// size hint).
type fileOpts struct {
	nocow   string
	hint    int64
	hasHint bool
}

func (fo *fileOpts) parse(file, k, v string, parseSize func(string) (int64, error)) error {
	if k == "nocow" {
		if _, err := onOff(file, k, v); err != nil {
			return err
		}
		fo.nocow = v
		return nil
	}
	n, err := parseSize(v)
	if err != nil {
		return fail(file, sizeErr, k)
	}
	fo.hint, fo.hasHint = n, true
	return nil
}

// attrs are the options as the file driver sets them, its warning going
// to r.Stderr.
func (fo *fileOpts) attrs(r Request) raw.FileAttrs {
	a := raw.FileAttrs{NoCOW: fo.nocow == "on", ExtentSizeHint: fo.hint, HintGiven: fo.hasHint}
	if r.Stderr != nil {
		a.Warn = func(msg string) { fmt.Fprintf(r.Stderr, "%s: warning: %s\n", r.Prog, msg) }
	}
	return a
}

// check is what file-posix's raw_co_create refuses before it creates the
// file.
func (fo *fileOpts) check(file string) error {
	if fo.hasHint && uint64(fo.hint) > 0xffffffff {
		return fail(file, "Extent size hint is too large")
	}
	return nil
}

// hostPath is the file a name creates: without a "file:" protocol
// prefix (file-posix's raw_co_create_opts strips it).
func hostPath(name string) string { return strings.TrimPrefix(name, "file:") }

// parsePreallocOr is parsePrealloc with -1 for a bad value.
func parsePreallocOr(v string) image.Prealloc {
	if p, ok := parsePrealloc(v); ok {
		return p
	}
	return -1
}

// escapeOpt is qemu_opts_print's escaped_print: a value's commas doubled,
// as an option list would need them.
func escapeOpt(v string) string { return strings.ReplaceAll(v, ",", ",,") }

// sizeOnce takes the size given with -o size (optSize, -1 if none),
// refusing it when the size operand was given too.
// sizedNoBacking is what a format without backing files (raw, luks)
// checks of a request once its options are read: the size given once and
// given, no backing file or backing format.
func sizedNoBacking(r *Request, optSize int64) error {
	if err := sizeOnce(r, optSize); err != nil {
		return err
	}
	if r.Backing != "" || r.BackingSet {
		return fail(r.File, "Backing file not supported for file format '%s'", r.Format)
	}
	if r.BackingFmt != "" {
		return fail(r.File, "Backing file format not supported for file format '%s'", r.Format)
	}
	if r.Size < 0 {
		return fail(r.File, "Image creation needs a size parameter")
	}
	return nil
}

func sizeOnce(r *Request, optSize int64) error {
	if optSize < 0 {
		return nil
	}
	if r.Size >= 0 {
		return fail(r.File, "The image size must be specified only once")
	}
	r.Size = optSize
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
	var fo fileOpts
	optSize := int64(-1)
	for _, k := range sortedKeys(r.Options) {
		v := r.Options[k]
		switch k {
		case "size", "cluster_size":
			n, err := parseSize(v)
			if err != nil {
				return fail(r.File, sizeErr, k)
			}
			if k == "size" {
				optSize = n
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
		case "encrypt.iter-time":
			if _, err := parseNumber(v); err != nil {
				return fail(r.File, "Parameter '%s' expects a number", k)
			}
		case "encryption":
			if _, err := onOff(r.File, k, v); err != nil {
				return err
			}
		case "nocow", "extent_size_hint":
			if err := fo.parse(r.File, k, v, parseSize); err != nil {
				return err
			}
			continue
		case "compat", "compression_type", "preallocation", "backing_file", "backing_fmt", "encrypt.format",
			"encrypt.key-secret", "encrypt.cipher-alg", "encrypt.cipher-mode", "encrypt.ivgen-alg",
			"encrypt.ivgen-hash-alg", "encrypt.hash-alg":
		default:
			return fail(r.File, "Invalid parameter '%s'", k)
		}
		given[k] = v
	}
	if err := sizeOnce(&r, optSize); err != nil {
		return err
	}
	// -b and -F override -o backing_file and backing_fmt, as qemu-img sets
	// them after parsing -o
	backing, hasBacking := r.Options["backing_file"]
	if r.Backing != "" || r.BackingSet {
		backing, hasBacking = r.Backing, true
	}
	backingFmt, hasFmt := r.Options["backing_fmt"]
	if r.BackingFmt != "" {
		backingFmt, hasFmt = r.BackingFmt, true
	}
	given["backing_file"], given["backing_fmt"] = backing, backingFmt
	if !hasBacking {
		delete(given, "backing_file")
	}
	if !hasFmt {
		delete(given, "backing_fmt")
	}
	r.Backing, r.BackingFmt = backing, backingFmt
	if err := checkBacking(&r, hasBacking, hasFmt); err != nil {
		return err
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
		fmt.Fprintf(&b, "Formatting '%s', fmt=qcow2", r.File)
		for _, k := range qcow2EncryptOpts {
			if v, ok := given[k]; ok {
				fmt.Fprintf(&b, " %s=%s", k, escapeOpt(v))
			}
		}
		fmt.Fprintf(&b, " cluster_size=%d", o.ClusterSize)
		fmt.Fprintf(&b, " extended_l2=%s", orDefault(given["extended_l2"], "off"))
		if v, ok := given["preallocation"]; ok {
			fmt.Fprintf(&b, " preallocation=%s", escapeOpt(v))
		}
		fmt.Fprintf(&b, " compression_type=%s size=%d", ct, r.Size)
		for _, k := range []string{"compat", "backing_file", "backing_fmt", "data_file", "data_file_raw"} {
			if v, ok := given[k]; ok {
				fmt.Fprintf(&b, " %s=%s", k, escapeOpt(v))
			}
		}
		fmt.Fprintf(&b, " lazy_refcounts=%s refcount_bits=%s", orDefault(given["lazy_refcounts"], "off"), orDefault(given["refcount_bits"], "16"))
		if fo.nocow != "" {
			fmt.Fprintf(&b, " nocow=%s", fo.nocow)
		}
		if fo.hasHint {
			fmt.Fprintf(&b, " extent_size_hint=%d", fo.hint)
		}
		fmt.Fprintln(out, b.String())
	}
	if err := fo.check(r.File); err != nil {
		return err
	}
	if v, ok := given["data_file"]; ok && v == "" {
		// QEMU creates the image file, then fails to create a data file
		// named "", and removes the image file again
		f, err := os.OpenFile(hostPath(r.File), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fail(r.File, "Could not create '%s': %s", hostPath(r.File), formats.Strerror(image.Errno(err)))
		}
		f.Close()
		os.Remove(hostPath(r.File))
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
	enc, err := qcow2Encryption(r, given)
	if err != nil {
		return err
	}
	o.Encrypt = enc
	o.Size = (r.Size + 511) &^ 511
	o.BackingFile, o.BackingFmt = r.Backing, r.BackingFmt
	// an explicit 0 is refused (qcow2.Create takes 0 for its default)
	if o.ClusterSize == 0 {
		o.ClusterSize = -1
	}
	if o.RefcountBits == 0 {
		o.RefcountBits = -1
	}
	o.FileAttrs = fo.attrs(r)
	if err := qcow2.Create(hostPath(r.File), o); err != nil {
		return fail(r.File, "%v", err)
	}
	return nil
}

// checkBacking is bdrv_img_create's handling of the backing file: its
// name is checked, then, unless -u was given, the file is opened (with the
// format given, read-only, sharing everything) to refuse a missing or
// unreadable backing file, or one not of the given format, and to take its
// size when none was given. Nothing has been created yet when it fails.
func checkBacking(r *Request, hasBacking, hasFmt bool) error {
	if !hasBacking {
		return nil
	}
	if r.Backing == r.File {
		return fail(r.File, "Error: Trying to create an image with the same filename as the backing file")
	}
	if r.Backing == "" {
		return fail(r.File, "Expected backing file name, got empty string")
	}
	if r.NoBackingOpen {
		if !hasFmt {
			return fail(r.File, "Backing file specified without backing format")
		}
		return nil
	}
	// BDRV_O_NO_IO: an encrypted backing file opens without its secret
	d, err := formats.Open(fullBackingName(r.File, r.Backing), formats.Options{Format: r.BackingFmt, ReadOnly: true,
		ForceShare: true, NoIO: true, Stderr: r.Stderr, Prog: r.Prog})
	if err != nil {
		return fail(r.File, "%v\nCould not open backing image.", err)
	}
	defer d.Close()
	info, _ := d.Info()
	if !hasFmt {
		name := info.FormatName
		if name == "" {
			name = "raw"
		}
		return fail(r.File, "Backing file specified without backing format\nDetected format of %s.", name)
	}
	if r.Size < 0 {
		// bdrv_getlength: whole sectors, rounded up for a raw file and
		// down for a qcow2 image (its total_sectors)
		size := d.Size()
		if info.FormatName == "qcow2" {
			size &^= 511
		} else {
			size = (size + 511) &^ 511
		}
		r.Size = size
	}
	return nil
}

// fullBackingName is QEMU's bdrv_get_full_backing_filename_from_filename:
// a relative backing file name is relative to the directory of the new
// image, by plain concatenation (path_combine); absolute names and names
// with a protocol prefix are taken as they are.
func fullBackingName(file, backing string) string {
	if strings.HasPrefix(backing, "/") {
		return backing
	}
	if i := strings.IndexAny(backing, ":/"); i >= 0 && backing[i] == ':' {
		return backing
	}
	return file[:strings.LastIndex(file, "/")+1] + backing
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}
