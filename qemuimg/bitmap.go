package qemuimg

import (
	"context"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/img"
)

// Long options of bitmap (qemu-img.c's OPTION_ADD...OPTION_MERGE).
const (
	optAdd = 269 + iota
	optRemove
	optClear
	optEnable
	optDisable
	optMerge
)

func imgBitmap(e *env, argv []string) int {
	var fmtName, srcFmt, srcFile string
	var imageOpts, add, merge, haveGran bool
	var actions []img.BitmapAction
	var o img.BitmapOptions
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "object", HasArg: true, Val: optObject},
		{Name: "image-opts", Val: optImageOpts}, {Name: "add", Val: optAdd}, {Name: "remove", Val: optRemove},
		{Name: "clear", Val: optClear}, {Name: "enable", Val: optEnable}, {Name: "disable", Val: optDisable},
		{Name: "merge", HasArg: true, Val: optMerge}, {Name: "granularity", HasArg: true, Val: 'g'},
		{Name: "source-file", HasArg: true, Val: 'b'}, {Name: "source-format", HasArg: true, Val: 'F'}}
	ops, ok, code := e.getopt(argv, ":b:f:F:g:h", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'b':
			srcFile = arg
		case 'f':
			fmtName = arg
		case 'F':
			srcFmt = arg
		case 'g':
			n := e.cvtnum("granularity", arg)
			if n < 0 {
				return false, 1
			}
			o.Granularity, haveGran = n, n != 0
		case optAdd:
			actions = append(actions, img.BitmapAction{Op: img.BitmapAdd})
			add = true
		case optRemove:
			actions = append(actions, img.BitmapAction{Op: img.BitmapRemove})
		case optClear:
			actions = append(actions, img.BitmapAction{Op: img.BitmapClear})
		case optEnable:
			actions = append(actions, img.BitmapAction{Op: img.BitmapEnable})
		case optDisable:
			actions = append(actions, img.BitmapAction{Op: img.BitmapDisable})
		case optMerge:
			actions = append(actions, img.BitmapAction{Op: img.BitmapMerge, Source: arg})
			merge = true
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
	switch {
	case len(actions) == 0:
		e.report("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge")
		return 1
	case haveGran && !add:
		e.report("granularity only supported with --add")
		return 1
	case srcFmt != "" && srcFile == "":
		e.report("-F only supported with -b")
		return 1
	case srcFile != "" && !merge:
		e.report("Merge bitmap source file only supported with --merge")
		return 1
	case len(ops) != 2:
		e.report("Expecting filename and bitmap name")
		return 1
	}
	node := e.open(openReq{name: ops[0], format: fmtName, imageOpts: imageOpts, noBacking: true})
	if node == nil {
		return 1
	}
	defer node.Close()
	if srcFile != "" {
		src := e.open(openReq{name: srcFile, format: srcFmt, readOnly: true, noBacking: true})
		if src == nil {
			return 1
		}
		defer src.Close()
		o.Source = img.FromNode(src)
	}
	if err := img.Bitmaps(context.Background(), img.FromNode(node), ops[1], actions, o); err != nil {
		e.chainErr(err)
		return 1
	}
	return 0
}
