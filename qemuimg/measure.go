package qemuimg

import (
	"context"
	"fmt"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/img"
)

const optSize = 262

func imgMeasure(e *env, argv []string) int {
	o := img.MeasureOptions{Size: -1}
	var output string
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "image-opts", Val: optImageOpts},
		{Name: "object", HasArg: true, Val: optObject}, {Name: "output", HasArg: true, Val: optOutput},
		{Name: "size", HasArg: true, Val: optSize}, {Name: "force-share", Val: 'U'}}
	// measure's optstring has no ':': getopt prints its own messages and
	// an unknown option shows the help, as qemu-img does
	g := commands.NewGetopt(argv, "hf:O:o:l:U", long, e.stderr)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case '?', 'h':
			return e.help()
		case 'f':
			o.SourceFormat = arg
		case 'O':
			o.TargetFormat = arg
		case 'o':
			s, err := img.AccumulateOptions(o.CreateOptions, arg)
			if err != nil {
				return e.libError(err)
			}
			o.CreateOptions = s
		case 'l':
			o.Snapshot = arg
		case 'U':
			o.ForceShare = true
		case optObject:
			if ok, code := e.object(arg); !ok {
				return code
			}
		case optImageOpts:
			o.SourceImageOpts = true
		case optOutput:
			if output = arg; arg != "json" && arg != "human" {
				e.report("--output must be used with human or json as argument.")
				return 1
			}
		case optSize:
			v := e.cvtnum("image size", arg)
			if v < 0 {
				return 1
			}
			o.Size, o.SizeSet = v, true
		}
	}
	ops := g.Operands()
	if len(ops) > 1 {
		e.report("At most one filename argument is allowed.")
		return 1
	}
	if len(ops) == 1 {
		o.Source = ops[0]
	}
	o.Env = e.libEnv()
	r, err := img.Measure(context.Background(), o)
	if err != nil {
		return e.libError(err)
	}
	if output == "json" {
		d := qdict.New()
		d.Put("required", r.Required)
		d.Put("fully-allocated", r.FullyAllocated)
		if r.HasBitmaps {
			d.Put("bitmaps", r.Bitmaps)
		}
		fmt.Fprintln(e.stdout, formats.ToJSONPretty(d))
		return 0
	}
	fmt.Fprintf(e.stdout, "required size: %d\nfully allocated size: %d\n", r.Required, r.FullyAllocated)
	if r.HasBitmaps {
		fmt.Fprintf(e.stdout, "bitmaps size: %d\n", r.Bitmaps)
	}
	return 0
}
