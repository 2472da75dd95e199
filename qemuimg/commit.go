package qemuimg

import (
	"context"
	"fmt"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/img"
)

func imgCommit(e *env, argv []string) int {
	var fmtName string
	cache := "writeback"
	var o img.CommitOptions
	var progress, quiet, imageOpts bool
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "object", HasArg: true, Val: optObject},
		{Name: "image-opts", Val: optImageOpts}}
	ops, ok, code := e.getopt(argv, ":f:ht:b:dpqr:", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'f':
			fmtName = arg
		case 't':
			cache = arg
		case 'b':
			o.Base, o.Drop = arg, true
		case 'd':
			o.Drop = true
		case 'p':
			progress = true
		case 'q':
			quiet = true
		case 'r':
			n := e.cvtnum("rate limit", arg)
			if n < 0 {
				return false, 1
			}
			o.RateLimit = n
		case optObject:
			return e.object(arg)
		case optImageOpts:
			imageOpts = true
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
	var f commands.OpenFlags
	if !commands.ParseCacheMode(cache, &f) {
		e.report("Invalid cache option: %s", cache)
		return 1
	}
	node := e.open(openReq{name: ops[0], format: fmtName, imageOpts: imageOpts})
	if node == nil {
		return 1
	}
	p := &img.QemuProgress{W: e.stdout, Off: !progress, MinSkip: 1.0}
	p.Print(0, 100)
	o.Progress = p.Print
	err := img.Commit(context.Background(), img.FromNode(node), ops[0], o)
	if err == nil {
		p.Print(100, 0)
	}
	p.End()
	node.Close()
	if err != nil {
		e.chainErr(err)
		return 1
	}
	if !quiet {
		fmt.Fprint(e.stdout, "Image committed.\n")
	}
	return 0
}
