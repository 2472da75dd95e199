// Package formats opens images: it probes the registered formats in order
// (qcow2 by its magic, raw last) or takes the one the user named, and wraps
// the driver in an image.Disk. It lives outside package image so that image
// and the format drivers never import each other.
package formats

import (
	"errors"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
)

// Options are the open flags qemu-io passes to the block layer.
type Options struct {
	Format       string // "" probes; "raw", "file", "qcow2"
	ReadOnly     bool
	Direct       bool // cache=none|directsync: O_DIRECT
	NoFlush      bool // cache=unsafe
	WriteThrough bool // cache=writethrough|directsync
	Unmap        bool // discard=unmap
	NativeAIO    bool // aio=native: needs Direct
	CopyOnRead   bool // qemu-io -C
	// Options are extra driver options (open -o key=value), applied after
	// the ones above; unknown keys are refused as QEMU refuses them.
	Options map[string]string
	// Dict, when set, is the options tree itself (it takes the place of
	// Options): dotted keys, typed values, QEMU's order.
	Dict *qdict.Dict
	// ForceShare shares every permission with other processes (qemu-io -U).
	ForceShare bool
	// Snapshot opens the image read-only under a temporary qcow2 overlay
	// that takes the writes and is deleted at close (qemu-io -s).
	Snapshot bool
	// Check opens the top image for checking (qemu-img check's
	// BDRV_O_CHECK): a corrupt or dirty image opens, unrepaired.
	Check bool
	// NoBacking opens no backing file (BDRV_O_NO_BACKING; qemu-img info).
	NoBacking bool
	// NoIO is BDRV_O_NO_IO: the image is only looked at, never read.
	NoIO bool
	// Trace receives goqio's request trace (goqio -T zero), or is nil.
	Trace func(string)
	// Warn receives messages QEMU prints on stderr while opening, without
	// a trailing newline (e.g. the probed-raw warning).
	Warn func(string)
	// WarnReport receives QEMU's warn_report texts (without the
	// "prog: warning: " prefix), or is nil.
	WarnReport func(string)
	// Fatal, when set, receives the message of an error QEMU ends the
	// process on (blkverify's mismatch reports): it prints it and exits
	// with status 1. Without it such an error fails the request (EIO).
	Fatal func(string)
	// Graph, when set, is the graph the nodes join (node-names stay
	// known across opens, as in a QEMU process); nil makes a new one.
	Graph *Graph
	// Stderr and Prog go to the qcow2 driver (qcow2.Options), which prints
	// what QEMU's prints on stderr byte for byte, some of it without a
	// newline; Prog is the program name its messages begin with.
	Stderr io.Writer
	Prog   string
}

// Flags returns the BDRV_O_* flags o stands for.
func (o Options) Flags() Flags {
	var f Flags
	if !o.ReadOnly {
		f |= FlagRDWR
	}
	if o.Direct {
		f |= FlagNoCache
	}
	if o.NoFlush {
		f |= FlagNoFlush
	}
	if o.Unmap {
		f |= FlagUnmap
	}
	if o.NativeAIO {
		f |= FlagNativeAIO
	}
	if o.CopyOnRead {
		f |= FlagCopyOnRead
	}
	if o.Snapshot {
		f |= FlagSnapshot
	}
	if o.Check {
		f |= FlagCheck
	}
	if o.NoBacking {
		f |= FlagNoBacking
	}
	if o.NoIO {
		f |= FlagNoIO
	}
	return f
}

// Open opens an image. path is the file name given as an operand ("" when
// the options name the file: file.filename=, or filename= for the file
// driver). Errors are *Error with QEMU's texts, in QEMU's order.
func Open(path string, o Options) (*image.Disk, error) {
	n, err := OpenNode(path, o)
	if err != nil {
		return nil, err
	}
	return n.Disk, nil
}

// OpenNode is Open returning the top node of the graph.
func OpenNode(path string, o Options) (*Node, error) {
	g := o.Graph
	if g == nil {
		g = NewGraph(Env{})
	}
	g.Env.Trace, g.Env.Print, g.Env.Warn = o.Trace, o.Warn, o.WarnReport
	g.Env.Stderr = o.Stderr
	g.Env.Fatal = o.Fatal
	if o.Prog != "" {
		g.Env.Prog = o.Prog
	}
	d := o.Dict
	if d == nil {
		d = qdict.New()
		keys := make([]string, 0, len(o.Options))
		for k := range o.Options {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.Put(k, o.Options[k])
		}
	}
	if o.Format != "" && !d.Has("driver") {
		d.Put("driver", o.Format)
	}
	if o.ForceShare && !d.Has("force-share") {
		d.Put("force-share", "on")
	}
	n, err := g.Open(path, path != "", d, o.Flags())
	if err != nil {
		return nil, err
	}
	if !o.ReadOnly {
		if err := needWrite(n, map[*Node]bool{}); err != nil {
			n.Close()
			return nil, err
		}
	}
	n.Disk.SetWriteThrough(o.WriteThrough)
	return n, nil
}

// needWrite is the check of QEMU's permission update when a user opens n
// for writing: the write permission goes down to n and, through every
// child that is not a backing file (file, data-file, filtered and data
// children), to the nodes under it, and a read-only node that gets it
// fails the open ("Block node is read-only"), as a node opened with
// read-only=on under a writable image does.
func needWrite(n *Node, seen map[*Node]bool) error {
	if seen[n] {
		return nil
	}
	seen[n] = true
	if n.ReadOnly() {
		return errorf(syscall.EPERM, "Block node is read-only")
	}
	for _, c := range n.Children {
		if c.Role&RoleCOW != 0 || c.Role&(RoleData|RoleMetadata|RoleFiltered) == 0 {
			continue
		}
		if err := needWrite(c.Node, seen); err != nil {
			return err
		}
	}
	return nil
}

// Error is an open failure; its text is what QEMU prints after
// "can't open device NAME: ".
type Error struct {
	Msg string
	Err error // the underlying error, if any
	// Hint is QEMU's error hint, printed after the message line as it is.
	Hint string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// Strerror is glibc's strerror text for errno e (image.Strerror).
func Strerror(e syscall.Errno) string { return image.Strerror(e) }

func asPathError(err error, pe **os.PathError) bool { return errors.As(err, pe) }

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
