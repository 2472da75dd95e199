package qemuimg

import (
	"fmt"
	"io"
	"strings"

	"github.com/goqio/goqio/check"
	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/create"
	"github.com/goqio/goqio/snapshot"
)

// validOptionList is qemu-img's is_valid_option_list: -o values that can
// be joined with ','.
func validOptionList(s string) bool {
	if s == "" || s[0] == ',' {
		return false
	}
	i := len(s)
	for i > 0 && s[i-1] == ',' {
		i--
	}
	return (len(s)-i)%2 == 0
}

func imgCreate(e *env, argv []string) int {
	req := create.Request{Format: "raw", Size: -1, Options: map[string]string{}, Stderr: e.stderr, Prog: e.prog,
		Secrets: e.secret}
	var optErr bool
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "object", HasArg: true, Val: optObject}}
	ops, ok, code := e.getopt(argv, ":F:b:f:ho:qu", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'F':
			req.BackingFmt = arg
		case 'b':
			req.Backing, req.BackingSet = arg, true
		case 'f':
			req.Format = arg
		case 'o':
			if !validOptionList(arg) {
				e.report("Invalid option list: %s", arg)
				return false, 1
			}
			parsed, err := commands.ParseOptions(arg, "", nil)
			if err != nil {
				e.report("%v", err)
				optErr = true
				return false, 1
			}
			for k, v := range parsed {
				req.Options[k] = v
			}
		case 'q':
			req.Quiet = true
		case 'u':
			req.NoBackingOpen = true
		case optObject:
			return e.object(arg)
		}
		return true, 0
	})
	if !ok || optErr {
		return code
	}
	if len(ops) < 1 {
		return e.errorExit("Expecting image file name")
	}
	req.File = ops[0]
	if len(ops) > 1 {
		n := e.cvtnum("image size", ops[1])
		if n < 0 {
			return 1
		}
		req.Size = n
	}
	if len(ops) > 2 {
		return e.errorExit("Unexpected argument: %s", ops[2])
	}
	// bdrv_img_create flushes stdout after the Formatting line, so that
	// it comes before any error on stderr
	if err := create.Create(req, flushWriter{e.stdout}, commands.ParseSize); err != nil {
		if strings.Contains(err.Error(), "\nDetected format of ") {
			// qemu-img prints this one without a final newline
			fmt.Fprintf(e.stderr, "%s: %s", e.prog, err.Error())
			return 1
		}
		e.report("%s", err.Error())
		return 1
	}
	return 0
}

// secret is the --object secret with id, for encrypt.key-secret.
func (e *env) secret(id string) ([]byte, error) {
	if e.graph == nil {
		return nil, fmt.Errorf("No secret with id '%s'", id)
	}
	return e.graph.Objects.Secret(id)
}

func imgCheck(e *env, argv []string) int {
	req := check.Request{Prog: e.prog}
	var output string
	var imageOpts bool
	cache := "writeback"
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "format", HasArg: true, Val: 'f'},
		{Name: "repair", HasArg: true, Val: 'r'}, {Name: "output", HasArg: true, Val: optOutput},
		{Name: "object", HasArg: true, Val: optObject}, {Name: "image-opts", Val: optImageOpts},
		{Name: "force-share", Val: 'U'}}
	ops, ok, code := e.getopt(argv, ":hf:r:T:qU", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'f':
			req.Format = arg
		case 'r':
			if arg != "leaks" && arg != "all" {
				return false, e.errorExit("Unknown option value for -r (expecting 'leaks' or 'all'): %s", arg)
			}
			req.Repair = arg
		case optOutput:
			output = arg
		case 'T':
			cache = arg
		case 'q':
			req.Quiet = true
		case optObject:
			return e.object(arg)
		case optImageOpts:
			imageOpts = true
		case 'U':
			req.ForceShare = true
		}
		return true, 0
	})
	if !ok {
		return code
	}
	if len(ops) != 1 {
		return e.errorExit("Expecting one image file name")
	}
	req.File = ops[0]
	req.Graph = e.graph
	json, ok := e.outputJSON(output)
	if !ok {
		return 1
	}
	req.JSON = json
	var f commands.OpenFlags
	if !commands.ParseCacheMode(cache, &f) {
		e.report("Invalid source cache option: %s", cache)
		return 1
	}
	if imageOpts {
		// img_open: the option string parsed as --image-opts
		if req.Format != "" {
			e.report("--image-opts and --format are mutually exclusive")
			return 1
		}
		opts, err := commands.ParseOptions(req.File, "file", func(m string) { e.warn(m) })
		if err != nil {
			e.report("%v", err)
			return 1
		}
		if v, ok := opts["force-share"]; ok && req.ForceShare && v != "on" {
			e.report("--force-share/-U conflicts with image options")
			return 1
		}
		req.Options = opts
	}
	return check.Run(req, e.stdout, e.stderr)
}

func imgSnapshot(e *env, argv []string) int {
	var op, name string
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "object", HasArg: true, Val: optObject},
		{Name: "image-opts", Val: optImageOpts}, {Name: "force-share", Val: 'U'}}
	ops, ok, code := e.getopt(argv, ":la:c:d:hqU", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'l', 'a', 'c', 'd':
			if op != "" {
				return false, e.errorExit("Cannot mix '-l', '-a', '-c', '-d'")
			}
			op, name = string(c), arg
		case optObject:
			return e.object(arg)
		case optImageOpts:
			e.report("--image-opts: not implemented in goqio's snapshot yet")
			return false, 1
		}
		return true, 0
	})
	if !ok {
		return code
	}
	if len(ops) != 1 {
		return e.errorExit("Expecting one image file name")
	}
	switch op {
	case "l":
		return snapshot.List(e.prog, ops[0], "", e.stdout, e.stderr)
	case "":
		n := e.open(openReq{name: ops[0]})
		if n == nil {
			return 1
		}
		n.Close()
		return 0
	}
	return snapshot.Modify(e.prog, op, name, ops[0], "", e.stderr)
}

// flushWriter flushes w (when it buffers) after every write.
type flushWriter struct{ w io.Writer }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(interface{ Flush() error }); ok && err == nil {
		err = fl.Flush()
	}
	return n, err
}

// outputJSON is qemu-img's --output check: whether the json format was
// asked for; false for ok after the message for anything but human/json.
func (e *env) outputJSON(output string) (json, ok bool) {
	switch output {
	case "", "human":
		return false, true
	case "json":
		return true, true
	}
	e.report("--output must be used with human or json as argument.")
	return false, false
}
