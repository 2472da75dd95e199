// Package qemuimg is goqio standing in for qemu-img 7.2: qemu-img's own
// command line (global options, then COMMAND [options] operands, parsed by
// GNU getopt as qemu-img parses it), its usage and help texts, and its
// subcommands with their messages and exit codes. Run it through Main.
package qemuimg

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image/formats"
)

// Commands are qemu-img 7.2's subcommands, in the order of
// qemu-img-cmds.hx; those without a handler are refused.
var Commands = []string{"amend", "bench", "bitmap", "check", "commit", "compare", "convert",
	"create", "dd", "info", "map", "measure", "snapshot", "rebase", "resize"}

var handlers map[string]func(*env, []string) int

func init() {
	handlers = map[string]func(*env, []string) int{
		"info": imgInfo, "map": imgMap, "compare": imgCompare,
		"create": imgCreate, "check": imgCheck, "snapshot": imgSnapshot,
		"convert": imgConvert, "measure": imgMeasure, "dd": imgDd, "bench": imgBench,
		"resize": imgResize,
		"rebase": imgRebase,
		"commit": imgCommit,
		"amend":  imgAmend,
		"bitmap": imgBitmap,
	}
}

// Implemented reports whether goqio has the subcommand name.
func Implemented(name string) bool { return handlers[name] != nil }

// env is one run: the program name messages begin with and the streams.
type env struct {
	prog           string
	stdout, stderr io.Writer
	graph          *formats.Graph
}

func (e *env) report(format string, a ...any) {
	fmt.Fprintf(e.stderr, "%s: %s\n", e.prog, fmt.Sprintf(format, a...))
}

// errorExit is qemu-img's error_exit; it returns the exit code, 1.
func (e *env) errorExit(format string, a ...any) int {
	e.report(format, a...)
	fmt.Fprint(e.stderr, "Try 'qemu-img --help' for more information\n")
	return 1
}

func (e *env) help() int {
	fmt.Fprint(e.stdout, versionText+helpText)
	return 0
}

// warn is warn_report.
func (e *env) warn(m string) { fmt.Fprintf(e.stderr, "%s: warning: %s\n", e.prog, m) }

// trace is -T/--trace: goqio has none of QEMU's trace events, so a plain
// event name gets QEMU's warning and patterns match nothing.
func (e *env) trace(arg string) {
	for _, part := range strings.Split(arg, ",") {
		k, v, ok := strings.Cut(part, "=")
		if ok && k != "enable" {
			continue
		}
		if !ok {
			v = part
		}
		name := strings.TrimPrefix(v, "-")
		if name == "" || strings.ContainsAny(name, "*?[") {
			continue
		}
		e.warn(fmt.Sprintf("trace event '%s' does not exist", name))
	}
}

// object is --object: user_creatable_process_cmdline. It returns false
// when the run ends here (help printed, or an error), with the code.
func (e *env) object(def string) (bool, int) {
	if e.graph == nil {
		e.graph = formats.NewGraph(formats.Env{Prog: e.prog})
	}
	if err := e.graph.Objects.Add(def, func(t string) { io.WriteString(e.stdout, t) }); err != nil {
		if err == formats.ErrHelp {
			return false, 0
		}
		e.report("%v", err)
		var fe *formats.Error
		if errors.As(err, &fe) && fe.Hint != "" {
			fmt.Fprint(e.stderr, fe.Hint)
		}
		return false, 1
	}
	return true, 0
}

// Main runs qemu-img's main() on argv and returns the exit status. stdout
// should buffer as glibc's stdout does (commands.StdoutOutput); stderr is
// written unbuffered.
func Main(argv []string, stdout, stderr io.Writer) int {
	e := &env{prog: commands.ProgName(argv[0]), stdout: stdout, stderr: stderr}
	if len(argv) < 2 {
		return e.errorExit("Not enough arguments")
	}
	g := commands.NewGetopt(argv, "+:hVT:", []commands.LongOption{
		{Name: "help", Val: 'h'}, {Name: "version", Val: 'V'}, {Name: "trace", HasArg: true, Val: 'T'}}, stderr)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case ':':
			return e.errorExit("missing argument for option '%s'", g.Word())
		case '?':
			return e.errorExit("unrecognized option '%s'", g.Word())
		case 'h':
			return e.help()
		case 'V':
			fmt.Fprint(stdout, versionText)
			return 0
		case 'T':
			e.trace(arg)
		}
	}
	rest := g.Operands()
	if len(rest) < 1 {
		return 0
	}
	return e.dispatch(rest)
}

// Sub runs one subcommand (argv[0] is its name) as qemu-img would after
// its global options; prog begins the messages.
func Sub(prog string, argv []string, stdout, stderr io.Writer) int {
	e := &env{prog: prog, stdout: stdout, stderr: stderr}
	return e.dispatch(argv)
}

func (e *env) dispatch(argv []string) int {
	name := argv[0]
	if h := handlers[name]; h != nil {
		return h(e, argv)
	}
	for _, c := range Commands {
		if c == name {
			e.report("'%s' is not implemented in goqio yet", name)
			return 1
		}
	}
	return e.errorExit("Command not found: %s", name)
}

// getopt parses a subcommand's options as qemu-img does (a ':' optstring:
// a missing argument and an unknown option end the run with error_exit).
// each is called for every option; it returns false to stop with code.
func (e *env) getopt(argv []string, optstring string, long []commands.LongOption,
	each func(c rune, arg string) (bool, int)) ([]string, bool, int) {
	g := commands.NewGetopt(argv, optstring, long, e.stderr)
	for {
		c, arg := g.Next()
		if c == -1 {
			return g.Operands(), true, 0
		}
		switch c {
		case ':':
			return nil, false, e.errorExit("missing argument for option '%s'", g.Word())
		case '?':
			return nil, false, e.errorExit("unrecognized option '%s'", g.Word())
		case 'h':
			return nil, false, e.help()
		}
		if ok, code := each(c, arg); !ok {
			return nil, false, code
		}
	}
}

// Long option values above any short option, as qemu-img.c numbers them.
const (
	optOutput       = 256
	optBackingChain = 257
	optObject       = 258
	optImageOpts    = 259
	optRepair       = 'r'
)
