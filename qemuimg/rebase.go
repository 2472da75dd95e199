package qemuimg

import (
	"context"
	"fmt"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/img"
)

func imgRebase(e *env, argv []string) int {
	var fmtName string
	cache, srcCache := "writeback", "writeback"
	var o img.RebaseOptions
	var backingGiven, progress, quiet, imageOpts bool
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "object", HasArg: true, Val: optObject},
		{Name: "image-opts", Val: optImageOpts}, {Name: "force-share", Val: 'U'}}
	ops, ok, code := e.getopt(argv, ":hf:F:b:upt:T:qU", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'f':
			fmtName = arg
		case 'F':
			o.BackingFormat = arg
		case 'b':
			o.Backing, backingGiven = arg, true
		case 'u':
			o.Unsafe = true
		case 'p':
			progress = true
		case 't':
			cache = arg
		case 'T':
			srcCache = arg
		case 'q':
			quiet = true
		case optObject:
			return e.object(arg)
		case optImageOpts:
			imageOpts = true
		case 'U':
			o.ForceShare = true
		}
		return true, 0
	})
	if !ok {
		return code
	}
	if quiet {
		progress = false
	}
	if len(ops) != 1 {
		return e.errorExit("Expecting one image file name")
	}
	if !o.Unsafe && !backingGiven {
		return e.errorExit("Must specify backing file (-b) or use unsafe mode (-u)")
	}
	p := &img.QemuProgress{W: e.stdout, Off: !progress, MinSkip: 2.0}
	p.Print(0, 100)
	defer p.End()
	var f commands.OpenFlags
	if !commands.ParseCacheMode(cache, &f) {
		e.report("Invalid cache option: %s", cache)
		return 1
	}
	if !commands.ParseCacheMode(srcCache, &f) {
		e.report("Invalid source cache option: %s", srcCache)
		return 1
	}
	node := e.open(openReq{name: ops[0], format: fmtName, imageOpts: imageOpts, noBacking: o.Unsafe})
	if node == nil {
		return 1
	}
	defer node.Close()
	o.Graph = e.graph
	o.Progress = p.Print
	o.Warn = func(m string) { fmt.Fprintln(e.stderr, m) }
	o.WarnReport = e.warn
	if err := img.Rebase(context.Background(), img.FromNode(node), o); err != nil {
		e.chainErr(err)
		return 1
	}
	return 0
}
