// Package formats opens images: it probes the registered formats in order
// (qcow2 by its magic, raw last) or takes the one the user named, and wraps
// the driver in an image.Disk. It lives outside package image so that image
// and the format drivers never import each other.
package formats

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/raw"
)

// MaxChainDepth bounds a backing chain. QEMU has no such bound and hangs
// on a backing loop; goqio refuses both a loop and an absurdly deep chain.
const MaxChainDepth = 256

// Options are the open flags qemu-io passes to the block layer.
type Options struct {
	Format       string // "" probes; "raw", "file", "qcow2"
	ReadOnly     bool
	Direct       bool // cache=none|directsync: O_DIRECT
	NoFlush      bool // cache=unsafe
	WriteThrough bool // cache=writethrough|directsync
	Unmap        bool // discard=unmap
	NativeAIO    bool // aio=native: needs Direct
	// Options are extra driver options (open -o key=value), applied after
	// the ones above; unknown keys are refused as QEMU refuses them.
	Options map[string]string
	// ForceShare shares every permission with other processes (qemu-io -U).
	ForceShare bool
	// Snapshot opens the image read-only under a temporary qcow2 overlay
	// that takes the writes and is deleted at close (qemu-io -s).
	Snapshot bool
	// Check opens the top image for checking (qemu-img check's
	// BDRV_O_CHECK): a corrupt or dirty image opens, unrepaired.
	Check bool
	// Trace receives goqio's request trace (goqio -T zero), or is nil.
	Trace func(string)
	// Warn receives warnings QEMU prints on stderr while opening, without
	// a trailing newline (e.g. the probed-raw warning).
	Warn func(string)
	// Stderr and Prog go to the qcow2 driver (qcow2.Options), which prints
	// what QEMU's prints on stderr byte for byte, some of it without a
	// newline; Prog is the program name its messages begin with.
	Stderr io.Writer
	Prog   string
}

// Error is an open failure; its text is what QEMU prints after
// "can't open device NAME: ".
type Error struct {
	Msg string
	Err error // the underlying error, if any
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

func errorf(err error, format string, a ...any) *Error {
	return &Error{Msg: fmt.Sprintf(format, a...), Err: err}
}

// Strerror is glibc's strerror text for errno e (image.Strerror).
func Strerror(e syscall.Errno) string { return image.Strerror(e) }

// probeSize is how much of the file probing looks at (QEMU's BLOCK_PROBE_BUF_SIZE).
const probeSize = 512

// Probe names the format of the first bytes of an image: "qcow2" for a
// qcow2 header (magic and version >= 2), "qcow" for version 1, another
// format's name for the other magics QEMU knows, or "raw".
func Probe(head []byte) string {
	switch {
	case len(head) >= 8 && bytes.Equal(head[:4], []byte("QFI\xfb")):
		v := binary.BigEndian.Uint32(head[4:8])
		if v >= 2 {
			return "qcow2"
		}
		if v == 1 {
			return "qcow"
		}
	case len(head) >= 4 && bytes.Equal(head[:4], []byte("QED\x00")):
		return "qed"
	case len(head) >= 4 && (bytes.Equal(head[:4], []byte("KDMV")) || bytes.Equal(head[:4], []byte("COWD"))):
		return "vmdk"
	case len(head) >= 8 && bytes.Equal(head[:8], []byte("conectix")):
		return "vpc"
	case len(head) >= 8 && bytes.Equal(head[:8], []byte("vhdxfile")):
		return "vhdx"
	case len(head) >= 6 && bytes.Equal(head[:6], []byte("LUKS\xba\xbe")):
		return "luks"
	case len(head) >= 68 && binary.LittleEndian.Uint32(head[64:68]) == 0xbeda107f:
		return "vdi"
	case len(head) >= 16 && (bytes.Equal(head[:16], []byte("WithoutFreeSpace")) || bytes.Equal(head[:16], []byte("WithouFreSpacExt"))):
		return "parallels"
	}
	return "raw"
}

// Open opens an image. path is the file name given as an operand ("" when
// the options name the file: file.filename=, or filename= for the file
// driver). Errors are *Error with QEMU's texts, checked in QEMU's order:
// the file first, then the format's options.
func Open(path string, o Options) (*image.Disk, error) {
	if o.Snapshot {
		return openSnapshot(path, o)
	}
	return open(path, o, nil)
}

// openSnapshot is QEMU's bdrv_append_temp_snapshot: the image opened
// read-only as the in-memory backing file of a fresh qcow2 overlay in
// $TMPDIR (default /var/tmp), which is removed when closed.
func openSnapshot(path string, o Options) (*image.Disk, error) {
	bo := o
	bo.Snapshot = false
	bo.ReadOnly = true
	base, err := open(path, bo, nil)
	if err != nil {
		return nil, err
	}
	dir := os.Getenv("TMPDIR")
	if dir == "" {
		dir = "/var/tmp"
	}
	f, err := os.CreateTemp(dir, "vl.")
	if err != nil {
		base.Close()
		return nil, errorf(err, "Could not get temporary filename: %v", err)
	}
	tmp := f.Name()
	f.Close()
	co := qcow2.CreateOptions{Size: base.Size(), ClusterSize: 65536, Version: 3, RefcountBits: 16}
	if err := qcow2.Create(tmp, co); err != nil {
		os.Remove(tmp)
		base.Close()
		return nil, errorf(err, "Could not create temporary overlay '%s': %v", tmp, err)
	}
	qo := qcow2.Options{Direct: o.Direct, NoFlush: o.NoFlush, Unmap: o.Unmap, Trace: o.Trace,
		Backing: base, RemoveOnClose: true, Stderr: o.Stderr, Prog: o.Prog}
	drv, err := qcow2.Open(tmp, qo)
	if err != nil {
		os.Remove(tmp)
		base.Close()
		return nil, &Error{Msg: err.Error(), Err: err}
	}
	return image.New(drv, tmp, image.Options{Unmap: o.Unmap, WriteThrough: o.WriteThrough, Trace: o.Trace}), nil
}

// chainFile identifies a file of a backing chain.
type chainFile struct{ dev, ino uint64 }

func open(path string, o Options, chain []chainFile) (*image.Disk, error) {
	opts := map[string]string{}
	for k, v := range o.Options {
		opts[k] = v
	}
	format := o.Format
	if v, ok := opts["driver"]; ok {
		format = v
		delete(opts, "driver")
	}
	if format != "" && !knownDrivers[format] {
		return nil, errorf(nil, "Unknown driver '%s'", format)
	}
	if v, ok := opts["file"]; ok {
		return nil, errorf(nil, "Cannot find device='%s' nor node-name='%s'", v, v)
	}
	if v, ok := opts["file.filename"]; ok && path == "" {
		path = v
	}
	delete(opts, "file.filename")
	if v, ok := opts["file.driver"]; ok && v != "file" {
		return nil, errorf(nil, "Unknown protocol driver '%s'", v)
	}
	delete(opts, "file.driver")
	if format == "file" {
		if v, ok := opts["filename"]; ok && path == "" {
			path = v
		}
		delete(opts, "filename")
	}
	if path == "" {
		if format == "" {
			return nil, errorf(nil, "Must specify either driver or file")
		}
		return nil, errorf(nil, "A block device must be specified for \"file\"")
	}
	if o.NativeAIO && !o.Direct {
		return nil, errorf(nil, "aio=native was specified, but it requires cache.direct=on, which was not specified.")
	}
	probed := false
	if format == "" {
		head, err := readHead(path)
		if err != nil {
			return nil, openErr(path, err)
		}
		format = Probe(head)
		if format == "raw" {
			probed = true
			if o.Warn != nil && !o.ReadOnly { // QEMU warns only when it may write
				o.Warn(fmt.Sprintf("WARNING: Image format was not specified for '%s' and probing guessed raw.\n"+
					"         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n"+
					"         Specify the 'raw' format explicitly to remove the restrictions.", path))
			}
		}
	}
	switch format {
	case "raw", "file":
		lock := &raw.Lock{Perm: raw.PermConsistentRead}
		if !o.ReadOnly {
			lock.Perm |= raw.PermWrite
		}
		ro := raw.Options{ReadOnly: o.ReadOnly, Direct: o.Direct, NoFlush: o.NoFlush, Probed: probed, Lock: lock,
			ProbeHeader: func(b []byte) bool { return Probe(b) != "raw" }}
		drv, err := raw.Open(path, ro)
		if err != nil {
			return nil, openErr(path, err)
		}
		for k := range opts {
			drv.Close()
			return nil, errorf(nil, "Block format '%s' does not support the option '%s'", format, k)
		}
		var d image.Driver = drv
		if format == "file" {
			d = fileDriver{drv}
		}
		return image.New(d, path, image.Options{ReadOnly: o.ReadOnly, Unmap: o.Unmap, WriteThrough: o.WriteThrough, Trace: o.Trace}), nil
	case "qcow2":
		for k := range opts {
			return nil, errorf(nil, "Block format 'qcow2' does not support the option '%s'", k)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			return nil, openErr(path, err)
		}
		me := chainFile{uint64(st.Dev), st.Ino}
		if len(chain) > 0 && !o.ForceShare {
			// a backing file takes its locks before anything else, so that
			// an image that is its own backing file, opened read-write,
			// meets its own write lock as it does under QEMU
			probe := &raw.Lock{Perm: raw.PermConsistentRead, Unshared: raw.PermWrite | raw.PermResize}
			if rd, err := raw.Open(path, raw.Options{ReadOnly: true, Lock: probe}); err != nil {
				return nil, openErr(path, err)
			} else {
				rd.Close()
			}
		}
		for _, c := range chain {
			if c == me {
				return nil, errorf(nil, "Backing file loop: '%s' is its own backing file (directly or through others)", path)
			}
		}
		if len(chain) >= MaxChainDepth {
			return nil, errorf(nil, "Backing chain deeper than %d images", MaxChainDepth)
		}
		chain = append(chain, me)
		qo := qcow2.Options{ReadOnly: o.ReadOnly, Direct: o.Direct, NoFlush: o.NoFlush, Unmap: o.Unmap, Trace: o.Trace,
			ForceShare: o.ForceShare, Check: o.Check, Stderr: o.Stderr, Prog: o.Prog,
			OpenBacking: func(name, format string) (*image.Disk, error) {
				bo := Options{Format: format, ReadOnly: true, Direct: o.Direct, NoFlush: o.NoFlush, ForceShare: o.ForceShare,
					Stderr: o.Stderr, Prog: o.Prog}
				return open(name, bo, chain)
			}}
		drv, err := qcow2.Open(path, qo)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				return nil, openErr(path, err)
			}
			return nil, &Error{Msg: err.Error(), Err: err}
		}
		return image.New(drv, path, image.Options{ReadOnly: o.ReadOnly, Unmap: o.Unmap, WriteThrough: o.WriteThrough, Trace: o.Trace}), nil
	}
	return nil, errorf(nil, "Unsupported image format '%s': goqio does not implement it yet", format)
}

// knownDrivers are the driver names QEMU 7.2 knows for images in files.
var knownDrivers = map[string]bool{
	"raw": true, "file": true, "qcow2": true, "qcow": true, "qed": true, "vmdk": true,
	"vpc": true, "vhdx": true, "luks": true, "vdi": true, "parallels": true,
	"bochs": true, "cloop": true, "dmg": true,
}

// fileDriver is the raw driver opened as QEMU's "file" protocol driver: the
// same I/O, another format name.
type fileDriver struct{ *raw.Driver }

func (f fileDriver) Info() (image.Info, error) {
	return image.Info{FormatName: "file", ProtocolName: "file"}, nil
}

func readHead(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, probeSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	return buf[:n], nil
}

// openErr is QEMU's message for a file that cannot be opened.
func openErr(path string, err error) *Error {
	var le interface{ Error() string }
	if errors.As(err, &le) && strings.HasPrefix(err.Error(), "Failed to ") {
		return &Error{Msg: err.Error(), Err: err}
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return errorf(err, "Could not open '%s': %s", path, Strerror(en))
	}
	return errorf(err, "Could not open '%s': %v", path, err)
}
