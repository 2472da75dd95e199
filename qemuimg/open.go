package qemuimg

import (
	"errors"
	"fmt"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image/formats"
)

// openReq is img_open's arguments.
type openReq struct {
	name       string
	format     string
	imageOpts  bool
	forceShare bool
	readOnly   bool
	noBacking  bool
	noIO       bool
}

// open is qemu-img's img_open: the image named by r.name (or, with
// --image-opts, described by it), or nil after printing why not.
func (e *env) open(r openReq) *formats.Node {
	o := formats.Options{Format: r.format, ReadOnly: r.readOnly, ForceShare: r.forceShare,
		NoBacking: r.noBacking, NoIO: r.noIO, Graph: e.graph, Stderr: e.stderr, Prog: e.prog,
		Warn: func(m string) { fmt.Fprintln(e.stderr, m) }, WarnReport: e.warn}
	path := r.name
	if r.imageOpts {
		if r.format != "" {
			e.report("--image-opts and --format are mutually exclusive")
			return nil
		}
		opts, err := commands.ParseOptions(r.name, "file", func(m string) { e.warn(m) })
		if err != nil {
			e.report("%v", err)
			return nil
		}
		if v, ok := opts["force-share"]; ok && r.forceShare && v != "on" {
			e.report("--force-share/-U conflicts with image options")
			return nil
		}
		o.Options = opts
		path = ""
	}
	n, err := formats.OpenNode(path, o)
	if err != nil {
		e.report("Could not open '%s': %v", r.name, err)
		var fe *formats.Error
		if errors.As(err, &fe) && fe.Hint != "" {
			fmt.Fprint(e.stderr, fe.Hint)
		}
		return nil
	}
	return n
}
