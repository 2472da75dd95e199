package qemuimg

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/img"
)

// Long options of convert, as qemu-img.c numbers them.
const (
	optTargetImageOpts = 263
	optSalvage         = 264
	optTargetIsZero    = 265
	optBitmaps         = 266
	optSkipBroken      = 267
)

// libEnv is the library's view of this run.
func (e *env) libEnv() img.Env {
	return img.Env{Graph: e.graph, Stderr: e.stderr, Prog: e.prog, Stdout: e.stdout}
}

// progress is -p: qemu-img's lines as qemu-img, goqio's bar on a terminal.
func (e *env) progress(total int64) img.Progress {
	if e.prog != "qemu-img" {
		if _, ok := e.stdout.(*commands.Output); ok && commands.IsTerminal(os.Stdout) {
			return &img.BarProgress{W: flushWriter{e.stdout}, Total: total}
		}
	}
	return &img.QemuProgress{W: e.stdout}
}

// libError prints a library error as qemu-img does and returns 1.
func (e *env) libError(err error) int {
	img.Report(e.stderr, e.prog, err)
	var le *img.Error
	if errors.As(err, &le) && le.Exit0 {
		return 0
	}
	return 1
}

// qemuStrtol is qemu_strtol with base 0 over the whole string.
func qemuStrtol(s string) (int64, bool) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	v, err := strconv.ParseInt(t, 0, 64)
	if err != nil {
		// a leading 0 is octal in C, and strconv wants 0o for it
		if len(t) > 1 && t[0] == '0' && t[1] != 'x' && t[1] != 'X' {
			v, err = strconv.ParseInt(t[1:], 8, 64)
		}
		if err != nil {
			return 0, false
		}
	}
	return v, true
}

func imgConvert(e *env, argv []string) int {
	var o img.ConvertOptions
	var progress bool
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "object", HasArg: true, Val: optObject},
		{Name: "image-opts", Val: optImageOpts}, {Name: "force-share", Val: 'U'},
		{Name: "target-image-opts", Val: optTargetImageOpts}, {Name: "salvage", Val: optSalvage},
		{Name: "target-is-zero", Val: optTargetIsZero}, {Name: "bitmaps", Val: optBitmaps},
		{Name: "skip-broken-bitmaps", Val: optSkipBroken}}
	ops, ok, code := e.getopt(argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'f':
			o.SourceFormat = arg
		case 'O':
			o.TargetFormat = arg
		case 'B':
			o.BackingFile = arg
		case 'C':
			o.CopyRange = true
		case 'c':
			o.Compress = true
		case 'F':
			o.BackingFormat = arg
		case 'o':
			s, err := img.AccumulateOptions(o.CreateOptions, arg)
			if err != nil {
				return false, e.libError(err)
			}
			o.CreateOptions = s
		case 'l':
			o.Snapshot = arg
		case 'S':
			v := e.cvtnum("buffer size for sparse output", arg)
			if v < 0 {
				return false, 1
			}
			if v%512 != 0 || v/512 > 32768 {
				e.report("Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 16777216. Select 0 to disable sparse detection (fully allocates output).")
				return false, 1
			}
			o.SparseSize = v
			if v == 0 {
				o.SparseSize = -1
			}
		case 'p':
			progress = true
		case 't':
			o.Cache = arg
		case 'T':
			o.SourceCache = arg
		case 'q':
			o.Quiet = true
		case 'n':
			o.NoCreate = true
		case 'm':
			v, ok := qemuStrtol(arg)
			if !ok || v < 1 || v > 16 {
				e.report("Invalid number of coroutines. Allowed number of coroutines is between 1 and 16")
				return false, 1
			}
			o.Parallel = int(v)
		case 'W':
			o.OutOfOrder = true
		case 'U':
			o.ForceShare = true
		case 'r':
			v := e.cvtnum("rate limit", arg)
			if v < 0 {
				return false, 1
			}
			o.RateLimit = v
		case optObject:
			return e.object(arg)
		case optImageOpts:
			o.SourceImageOpts = true
		case optSalvage:
			o.Salvage = true
		case optTargetImageOpts:
			o.TargetImageOpts = true
		case optTargetIsZero:
			o.TargetIsZero = true
		case optBitmaps:
			o.Bitmaps = true
		case optSkipBroken:
			o.SkipBroken = true
		}
		return true, 0
	})
	if !ok {
		return code
	}
	if len(ops) >= 1 {
		o.Sources, o.Target = ops[:len(ops)-1], ops[len(ops)-1]
	}
	o.Env = e.libEnv()
	if progress {
		o.Progress = e.progress(0)
	}
	if err := img.Convert(context.Background(), o); err != nil {
		return e.libError(err)
	}
	return 0
}
