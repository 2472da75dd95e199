// Package img is the library under goqio's qemu-img: its subcommands as Go
// functions that a program calls without parsing text. Each takes a
// context.Context (cancelling it stops the work at the next request and
// leaves the images consistent: what was written stays valid, the image
// is closed cleanly) and an options struct whose zero value means
// qemu-img 7.2's defaults, and returns typed results and errors.
//
// Errors are *Error values whose Msg is the text qemu-img prints after
// "qemu-img: " (errors.As), wrapping the underlying cause, so that
// errors.Is finds the image package's sentinels (image.ErrNotSupported,
// image.ErrReadOnly, ...) and syscall errnos (syscall.ENOSPC).
//
// Images are opened through the block graph (image/formats), as qemu-img
// opens them: backing chains, json: filenames, --image-opts strings and
// the objects of a Graph.
package img

import (
	"errors"
	"fmt"
	"io"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image/formats"
)

// Error is a failure of a library call. Msg is qemu-img's message (without
// the program name); Hint, when not empty, is the text qemu-img prints on
// the following lines (with its newlines). Err is the cause, or nil.
type Error struct {
	Msg  string
	Hint string
	Err  error
	// Exit0: qemu-img 7.2 exits with status 0 after this error (a bug
	// the drop-in keeps).
	Exit0 bool
	// more is a second message line qemu-img reports after Msg.
	more string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Sentinels for errors.Is, each wrapped by the *Error that says more.
var (
	// ErrInvalidOptions: the options conflict or a value is out of range.
	ErrInvalidOptions = errors.New("img: invalid options")
	// ErrOpen: an image could not be opened.
	ErrOpen = errors.New("img: could not open image")
	// ErrCreate: the target image could not be created.
	ErrCreate = errors.New("img: could not create image")
	// ErrTargetTooSmall: an existing target (-n) is smaller than the source.
	ErrTargetTooSmall = errors.New("img: target smaller than source")
)

func errorf(cause error, format string, a ...any) *Error {
	return &Error{Msg: fmt.Sprintf(format, a...), Err: cause}
}

// wrapErr joins two causes so that errors.Is finds both.
type wrapErr struct{ a, b error }

func (w wrapErr) Error() string   { return w.a.Error() }
func (w wrapErr) Unwrap() []error { return []error{w.a, w.b} }

// OpenSpec names an image to open, as qemu-img's img_open takes it.
type OpenSpec struct {
	// Name is the file name (or json: filename), or, with ImageOpts, an
	// --image-opts string.
	Name      string
	Format    string // -f; "" probes
	ImageOpts bool
	// ForceShare is -U: share every permission with other users.
	ForceShare bool
	ReadOnly   bool
	// Cache is the cache mode ("" for qemu-img's default of the caller).
	Cache string
	// Unmap opens with discard=unmap (BDRV_O_UNMAP).
	Unmap bool
	// Options are options of the node opened by Name (not with
	// ImageOpts), such as convert's encrypt.key-secret of its target.
	Options map[string]string
}

// Env is what every call shares: the graph (its --object objects and node
// names), where open warnings go, and the program name they begin with.
type Env struct {
	// Graph is the block graph images join; nil makes a new one.
	Graph *formats.Graph
	// Stderr receives what opening an image prints (warnings, the probed
	// raw notice), as qemu-img prints it; nil drops it.
	Stderr io.Writer
	// Prog begins those messages ("qemu-img" when empty).
	Prog string
	// Stdout receives the help texts qemu-img prints on stdout (-o
	// help); nil drops them.
	Stdout io.Writer
}

func (e Env) prog() string {
	if e.Prog == "" {
		return "qemu-img"
	}
	return e.Prog
}

func (e Env) stderr() io.Writer {
	if e.Stderr == nil {
		return io.Discard
	}
	return e.Stderr
}

// Open opens an image as qemu-img's img_open does; the error's Msg is
// "Could not open 'NAME': ...".
func (e Env) Open(s OpenSpec) (*formats.Node, error) {
	o := formats.Options{Format: s.Format, ReadOnly: s.ReadOnly, ForceShare: s.ForceShare,
		Unmap: s.Unmap, Graph: e.Graph, Stderr: e.stderr(), Prog: e.prog(),
		Warn:       func(m string) { fmt.Fprintln(e.stderr(), m) },
		WarnReport: func(m string) { fmt.Fprintf(e.stderr(), "%s: warning: %s\n", e.prog(), m) }}
	if s.Cache != "" {
		var f commands.OpenFlags
		if !commands.ParseCacheMode(s.Cache, &f) {
			return nil, errorf(ErrInvalidOptions, "Invalid cache option: %s", s.Cache)
		}
		o.Direct, o.NoFlush, o.WriteThrough = f.NoCache, f.NoFlush, f.WriteThrough
	}
	path := s.Name
	if !s.ImageOpts && len(s.Options) > 0 {
		o.Options = s.Options
	}
	if s.ImageOpts {
		if s.Format != "" {
			return nil, errorf(ErrInvalidOptions, "--image-opts and --format are mutually exclusive")
		}
		opts, err := commands.ParseOptions(s.Name, "file", func(m string) {
			fmt.Fprintf(e.stderr(), "%s: warning: %s\n", e.prog(), m)
		})
		if err != nil {
			return nil, errorf(wrapErr{ErrInvalidOptions, err}, "%v", err)
		}
		if v, ok := opts["force-share"]; ok && s.ForceShare && v != "on" {
			return nil, errorf(ErrInvalidOptions, "--force-share/-U conflicts with image options")
		}
		o.Options = opts
		path = ""
	}
	n, err := formats.OpenNode(path, o)
	if err != nil {
		r := errorf(wrapErr{ErrOpen, err}, "Could not open '%s': %v", s.Name, err)
		var fe *formats.Error
		if errors.As(err, &fe) {
			r.Hint = fe.Hint
		}
		return nil, r
	}
	return n, nil
}

// Report prints err as qemu-img reports it: "PROG: MSG\n" and the hint.
func Report(w io.Writer, prog string, err error) {
	var e *Error
	if errors.As(err, &e) {
		fmt.Fprintf(w, "%s: %s\n", prog, e.Msg)
		io.WriteString(w, e.Hint)
		if e.more != "" {
			fmt.Fprintf(w, "%s: %s\n", prog, e.more)
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", prog, err)
}
