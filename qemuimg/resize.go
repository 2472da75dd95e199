package qemuimg

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/img"
)

// Long options of resize, amend and bitmap (qemu-img.c's OPTION_*).
const (
	optPreallocation = 265
	optShrink        = 266
	optForce         = 276
)

// resizePrealloc is qapi_enum_parse on PreallocMode.
func resizePrealloc(s string) (image.Prealloc, bool) {
	for p := image.PreallocOff; p <= image.PreallocFull; p++ {
		if p.String() == s {
			return p, true
		}
	}
	return 0, false
}

// chainErr prints err as error_report_err does (its hint after it).
func (e *env) chainErr(err error) {
	e.report("%v", err)
	var fe *formats.Error
	var ie *img.Error
	switch {
	case errors.As(err, &ie) && ie.Hint != "":
		fmt.Fprint(e.stderr, ie.Hint)
	case errors.As(err, &fe) && fe.Hint != "":
		fmt.Fprint(e.stderr, fe.Hint)
	}
}

func imgResize(e *env, argv []string) int {
	if len(argv) < 3 {
		return e.errorExit("Not enough arguments")
	}
	// the size is taken off argv before getopt, so that a negative size
	// is not an option
	sizeArg := argv[len(argv)-1]
	argv = argv[:len(argv)-1]
	var fmtName string
	var quiet, imageOpts bool
	var o img.ResizeOptions
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "object", HasArg: true, Val: optObject},
		{Name: "image-opts", Val: optImageOpts}, {Name: "preallocation", HasArg: true, Val: optPreallocation},
		{Name: "shrink", Val: optShrink}}
	ops, ok, code := e.getopt(argv, ":f:hq", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'f':
			fmtName = arg
		case 'q':
			quiet = true
		case optObject:
			return e.object(arg)
		case optImageOpts:
			imageOpts = true
		case optPreallocation:
			p, ok := resizePrealloc(arg)
			if !ok {
				e.report("Invalid preallocation mode '%s'", arg)
				return false, 1
			}
			o.Prealloc = p
		case optShrink:
			o.Shrink = true
		}
		return true, 0
	})
	if !ok {
		return code
	}
	if len(ops) != 1 {
		return e.errorExit("Expecting image file name and size")
	}
	switch sizeArg[:min(1, len(sizeArg))] {
	case "+":
		o.Relative, sizeArg = 1, sizeArg[1:]
	case "-":
		o.Relative, sizeArg = -1, sizeArg[1:]
	}
	n, err := formats.ParseSizeQemu(sizeArg)
	if err == strconv.ErrRange {
		e.report("Value '%s' is out of range for parameter 'size'", sizeArg)
		return 1
	} else if err != nil {
		e.report("Parameter 'size' expects a non-negative number below 2^64")
		fmt.Fprint(e.stderr, "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n")
		return 1
	}
	o.Size = int64(n)
	node := e.open(openReq{name: ops[0], format: fmtName, imageOpts: imageOpts})
	if node == nil {
		return 1
	}
	defer node.Close()
	_, err = img.Resize(context.Background(), img.FromNode(node), o)
	if err != nil {
		e.chainErr(err)
		if errors.Is(err, img.ErrShrinkNotAllowed) {
			e.warn(img.ShrinkWarning)
		}
		return 1
	}
	if !quiet {
		fmt.Fprint(e.stdout, "Image resized.\n")
	}
	return 0
}
