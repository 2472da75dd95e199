package qemuimg

import (
	"context"
	"fmt"
	"strings"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/img"
)

// hasHelpOption is qemu-img's has_help_option: "help" or "?" among the
// options of a list.
func hasHelpOption(list string) bool {
	for _, p := range formats.SplitOptions(list) {
		k, _, _ := strings.Cut(p, "=")
		if k == "help" || k == "?" {
			return true
		}
	}
	return false
}

// amendHelp is print_amend_option_help.
func (e *env) amendHelp(format string) int {
	if formats.FindFormat(format) == nil {
		e.report("Unknown file format '%s'", format)
		return 1
	}
	switch format {
	case "qcow2":
		fmt.Fprint(e.stdout, img.Qcow2AmendHelp)
	case "luks":
		fmt.Fprint(e.stdout, img.LUKSAmendHelp)
	default:
		e.report("Format driver '%s' does not support option amendment", format)
		return 1
	}
	return 0
}

func imgAmend(e *env, argv []string) int {
	var fmtName, options string
	cache := "writeback"
	var quiet, progress, imageOpts, force, haveOpts bool
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "object", HasArg: true, Val: optObject},
		{Name: "image-opts", Val: optImageOpts}, {Name: "force", Val: optForce}}
	ops, ok, code := e.getopt(argv, ":ho:f:t:pq", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'o':
			// accumulate_options
			if !validOptionList(arg) {
				e.report("Invalid option list: %s", arg)
				return false, 1
			}
			if haveOpts {
				options += "," + arg
			} else {
				options, haveOpts = arg, true
			}
		case 'f':
			fmtName = arg
		case 't':
			cache = arg
		case 'p':
			progress = true
		case 'q':
			quiet = true
		case optObject:
			return e.object(arg)
		case optImageOpts:
			imageOpts = true
		case optForce:
			force = true
		}
		return true, 0
	})
	if !ok {
		return code
	}
	if !haveOpts {
		return e.errorExit("Must specify options (-o)")
	}
	if quiet {
		progress = false
	}
	p := &img.QemuProgress{W: e.stdout, Off: !progress, MinSkip: 1.0}
	defer p.End()
	if fmtName != "" && hasHelpOption(options) {
		return e.amendHelp(fmtName)
	}
	if len(ops) != 1 {
		e.report("Expecting one image file name")
		return 1
	}
	var f commands.OpenFlags
	if !commands.ParseCacheMode(cache, &f) {
		e.report("Invalid cache option: %s", cache)
		return 1
	}
	node := e.open(openReq{name: ops[0], format: fmtName, imageOpts: imageOpts})
	if node == nil {
		return 1
	}
	defer node.Close()
	if hasHelpOption(options) {
		return e.amendHelp(node.Drv.Name)
	}
	if node.Drv.Name == "luks" {
		// block_crypto_amend_options_luks: the key slots
		o, err := img.ParseLUKSAmendOptions(options)
		if err != nil {
			e.chainErr(err)
			return 1
		}
		if e.graph == nil {
			e.graph = formats.NewGraph(formats.Env{Prog: e.prog})
		}
		o.Lookup = e.graph.Objects.Secret
		p.Print(0, 0)
		err = formats.AmendLUKS(e.graph, node, o, force)
		p.Print(100, 0)
		if err != nil {
			e.chainErr(err)
			return 1
		}
		return 0
	}
	if node.Drv.Name != "qcow2" {
		e.report("Format driver '%s' does not support option amendment", node.Drv.Name)
		return 1
	}
	o, err := img.ParseAmendOptions(options)
	if err != nil {
		e.chainErr(err)
		return 1
	}
	o.Force = force
	o.Progress = p.Print
	p.Print(0, 0)
	err = img.Amend(context.Background(), img.FromNode(node), o)
	p.Print(100, 0)
	if err != nil {
		e.chainErr(err)
		return 1
	}
	return 0
}
