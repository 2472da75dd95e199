package qemuimg

import (
	"context"
	"math"
	"strings"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/img"
)

func imgDd(e *env, argv []string) int {
	var o img.DdOptions
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "object", HasArg: true, Val: optObject},
		{Name: "image-opts", Val: optImageOpts}, {Name: "force-share", Val: 'U'}}
	ops, ok, code := e.getopt(argv, ":hf:O:U", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'O':
			o.OutputFormat = arg
		case 'f':
			o.InputFormat = arg
		case 'U':
			o.ForceShare = true
		case optObject:
			return e.object(arg)
		case optImageOpts:
			o.InputImageOpts = true
		}
		return true, 0
	})
	if !ok {
		return code
	}
	var hasIf, hasOf bool
	for _, a := range ops {
		k, v, found := strings.Cut(a, "=")
		if !found {
			e.report("unrecognized operand %s", a)
			return 1
		}
		switch k {
		case "bs":
			n, err := commands.ParseSize(v)
			if err != nil && err.Error() != "argument too large" {
				e.report("Invalid bs specified. You may use k, M, G, T, P or E suffixes for")
				e.report("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.")
				return 1
			}
			if err != nil || n < 1 || n > math.MaxInt32 {
				e.report("Invalid bs specified. Must be between 1 and %d.", math.MaxInt32)
				return 1
			}
			o.BlockSize = n
		case "count":
			if o.Count = e.cvtnum("count", v); o.Count < 0 {
				return 1
			}
			o.CountSet = true
		case "if":
			o.Input, hasIf = v, true
		case "of":
			o.Output, hasOf = v, true
		case "skip":
			if o.Skip = e.cvtnum("skip", v); o.Skip < 0 {
				return 1
			}
			o.SkipSet = true
		default:
			e.report("unrecognized operand %s", k)
			return 1
		}
	}
	if !hasIf || !hasOf {
		e.report("Must specify both input and output files")
		return 1
	}
	o.Env = e.libEnv()
	if err := img.Dd(context.Background(), o); err != nil {
		return e.libError(err)
	}
	return 0
}
