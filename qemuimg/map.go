package qemuimg

import (
	"fmt"
	"math"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image"
)

// cvtnum is qemu-img's cvtnum: a size in [0, INT64_MAX] with suffixes,
// or -1 after printing why not.
func (e *env) cvtnum(name, value string) int64 {
	v, err := commands.ParseSize(value)
	if err != nil {
		if err.Error() == "argument too large" {
			e.report("Invalid %s specified. Must be between 0 and %d.", name, int64(math.MaxInt64))
			return -1
		}
		e.report("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", name)
		e.report("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.")
		return -1
	}
	return v
}

func imgMap(e *env, argv []string) int {
	var fmtName, output string
	var imageOpts, forceShare bool
	start, maxLen := int64(0), int64(-1)
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "format", HasArg: true, Val: 'f'},
		{Name: "output", HasArg: true, Val: optOutput}, {Name: "object", HasArg: true, Val: optObject},
		{Name: "image-opts", Val: optImageOpts}, {Name: "force-share", Val: 'U'},
		{Name: "start-offset", HasArg: true, Val: 's'}, {Name: "max-length", HasArg: true, Val: 'l'}}
	ops, ok, code := e.getopt(argv, ":f:s:l:hU", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'f':
			fmtName = arg
		case 'U':
			forceShare = true
		case optOutput:
			output = arg
		case 's':
			if start = e.cvtnum("start offset", arg); start < 0 {
				return false, 1
			}
		case 'l':
			if maxLen = e.cvtnum("max length", arg); maxLen < 0 {
				return false, 1
			}
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
	if len(ops) != 1 {
		return e.errorExit("Expecting one image file name")
	}
	json, ok := e.outputJSON(output)
	if !ok {
		return 1
	}
	human := !json
	n := e.open(openReq{name: ops[0], format: fmtName, imageOpts: imageOpts, forceShare: forceShare, readOnly: true})
	if n == nil {
		return 1
	}
	defer n.Close()
	if human {
		fmt.Fprintf(e.stdout, "%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File")
	} else {
		fmt.Fprint(e.stdout, "[")
	}
	end := n.Disk.Size()
	if maxLen != -1 && (start > math.MaxInt64-maxLen || start+maxLen < end) {
		if start <= math.MaxInt64-maxLen {
			end = start + maxLen
		}
	}
	if err := image.WriteMap(e.stdout, n.Disk, human, start, end); err != nil {
		if err == image.ErrMapHuman {
			e.report("%v", err)
		} else {
			e.report("Could not read file metadata: %s", image.StrerrorOf(err))
		}
		return 1
	}
	if !human {
		fmt.Fprintln(e.stdout, "]")
	}
	return 0
}
