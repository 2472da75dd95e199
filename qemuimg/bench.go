package qemuimg

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/img"
)

// Long options of bench, as qemu-img.c numbers them.
const (
	optPattern       = 260
	optFlushInterval = 261
	optNoDrain       = 268
)

// qemuStrtoul is qemu_strtoul with base 0: a negative number wraps as C's
// strtoul makes it (so it is above any limit here).
func qemuStrtoul(s string) (uint64, bool) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	neg := strings.HasPrefix(t, "-")
	t = strings.TrimPrefix(strings.TrimPrefix(t, "-"), "+")
	base := 10
	switch {
	case strings.HasPrefix(t, "0x") || strings.HasPrefix(t, "0X"):
		base, t = 16, t[2:]
	case len(t) > 1 && t[0] == '0':
		base, t = 8, t[1:]
	}
	v, err := strconv.ParseUint(t, base, 64)
	if err != nil {
		return 0, false
	}
	if neg && v != 0 {
		return math.MaxUint64, true
	}
	return v, true
}

func (e *env) cvtnumRange(name, value string, lo, hi int64) int64 {
	v, err := commands.ParseSize(value)
	if err != nil && err.Error() != "argument too large" {
		e.report("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", name)
		e.report("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.")
		return -1
	}
	if err != nil || v < lo || v > hi {
		e.report("Invalid %s specified. Must be between %d and %d.", name, lo, hi)
		return -1
	}
	return v
}

func imgBench(e *env, argv []string) int {
	var o img.BenchOptions
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "flush-interval", HasArg: true, Val: optFlushInterval},
		{Name: "image-opts", Val: optImageOpts}, {Name: "pattern", HasArg: true, Val: optPattern},
		{Name: "no-drain", Val: optNoDrain}, {Name: "force-share", Val: 'U'}}
	ulong := func(arg string, limit uint64, msg string) (uint64, bool) {
		v, ok := qemuStrtoul(arg)
		if !ok || v > limit {
			e.report("%s", msg)
			return 0, false
		}
		return v, true
	}
	ops, ok, code := e.getopt(argv, ":hc:d:f:ni:o:qs:S:t:wU", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'c':
			v, ok := ulong(arg, math.MaxInt32, "Invalid request count specified")
			if !ok {
				return false, 1
			}
			o.Count, o.CountSet = int(v), true
		case 'd':
			v, ok := ulong(arg, math.MaxInt32, "Invalid queue depth specified")
			if !ok {
				return false, 1
			}
			o.Depth, o.DepthSet = int(v), true
		case 'f':
			o.Format = arg
		case 'n':
			o.NativeAIO = true
		case 'i':
			var f commands.OpenFlags
			if !commands.ParseAIO(arg, &f) {
				e.report("Invalid aio option: %s", arg)
				return false, 1
			}
			o.NativeAIO = f.NativeAIO
		case 'o':
			if o.Offset = e.cvtnum("offset", arg); o.Offset < 0 {
				return false, 1
			}
		case 'q':
		case 's':
			v := e.cvtnumRange("buffer size", arg, 0, math.MaxInt32)
			if v < 0 {
				return false, 1
			}
			o.BufSize, o.BufSizeSet = v, true
		case 'S':
			v := e.cvtnumRange("step_size", arg, 0, math.MaxInt32)
			if v < 0 {
				return false, 1
			}
			o.Step = v
		case 't':
			var f commands.OpenFlags
			if !commands.ParseCacheMode(arg, &f) {
				e.report("Invalid cache mode")
				return false, 1
			}
			o.Cache = arg
		case 'w':
			o.Write = true
		case 'U':
			o.ForceShare = true
		case optPattern:
			v, ok := ulong(arg, 0xff, "Invalid pattern byte specified")
			if !ok {
				return false, 1
			}
			o.Pattern = byte(v)
		case optFlushInterval:
			v, ok := ulong(arg, math.MaxInt32, "Invalid flush interval specified")
			if !ok {
				return false, 1
			}
			o.FlushInterval = int(v)
		case optNoDrain:
			o.NoDrain = true
		case optImageOpts:
			o.ImageOpts = true
		}
		return true, 0
	})
	if !ok {
		return code
	}
	if len(ops) != 1 {
		return e.errorExit("Expecting one image file name")
	}
	o.Image = ops[0]
	o.Env = e.libEnv()
	o.Started = func(p img.BenchParams) {
		kind := "read"
		if p.Write {
			kind = "write"
		}
		fmt.Fprintf(e.stdout, "Sending %d %s requests, %d bytes each, %d in parallel (starting at offset %d, step size %d)\n",
			p.Count, kind, p.BufSize, p.Depth, p.Offset, p.Step)
		if p.FlushInterval != 0 {
			fmt.Fprintf(e.stdout, "Sending flush every %d requests\n", p.FlushInterval)
		}
	}
	el, err := img.Bench(context.Background(), o)
	if err != nil {
		if f, ok := e.stdout.(interface{ Flush() error }); ok {
			f.Flush()
		}
		return e.libError(err)
	}
	fmt.Fprintf(e.stdout, "Run completed in %3.3f seconds.\n", el.Seconds())
	return 0
}
