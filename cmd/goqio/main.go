// Command goqio is a Go reimplementation of QEMU's qemu-io: it runs
// qemu-io's commands on raw (and, later, qcow2) images, printing what
// qemu-io 7.2 prints. Installed or symlinked as qemu-io it is a drop-in
// replacement. It also has subcommands of its own (goqio create ...).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/goqio/goqio/check"
	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/create"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcrypto"
	"github.com/goqio/goqio/qemuimg"
	"github.com/goqio/goqio/qemunbd"
	"github.com/goqio/goqio/snapshot"
)

// subcommands are goqio's own verbs; a first argument naming one of them
// selects it, unless the program runs under the name qemu-io, where every
// argument means what it means to qemu-io. The last four only exist under
// goqio's own name (not under any qemu-* name).
var subcommands = map[string]bool{"create": true, "check": true, "snapshot": true,
	"help": false, "version": false, "completion": false, "man": false}

func main() {
	// GOQIO_CPUPROFILE=file writes a pprof CPU profile of the run (for
	// performance work: go tool pprof goqio file).
	if f := os.Getenv("GOQIO_CPUPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil {
			pprof.StartCPUProfile(out)
			code := run(os.Args)
			pprof.StopCPUProfile()
			out.Close()
			os.Exit(code)
		}
	}
	os.Exit(run(os.Args))
}

// pbkdf2Bench is GOQIO_PBKDF2_ITERS_PER_SEC, a test knob: the PBKDF2
// iterations per second creation assumes instead of measuring them (QEMU's
// benchmark spends at least half a second of CPU on every key it makes).
func pbkdf2Bench() {
	if v := os.Getenv("GOQIO_PBKDF2_ITERS_PER_SEC"); v != "" {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil && n > 0 {
			qcrypto.IterationsPerSecond = func(string) uint64 { return n }
		}
	}
}

func run(argv []string) int {
	pbkdf2Bench()
	name := commands.ProgName(argv[0])
	if name == "qemu-img" {
		stdout := commands.StdoutOutput(os.Stdout)
		code := qemuimg.Main(argv, stdout, os.Stderr)
		stdout.Flush()
		return code
	}
	if name == "qemu-nbd" {
		return qemunbd.Main(argv, os.Stdout, os.Stderr)
	}
	if !commands.IsQEMUName(name) && len(argv) > 1 && argv[1] == nbdSub.name {
		// goqio nbd ARGS: qemu-nbd's command line, messages named goqio-nbd
		return qemunbd.Main(append([]string{name + " nbd"}, argv[2:]...), os.Stdout, os.Stderr)
	}
	if !commands.IsQEMUName(name) && len(argv) > 1 && imgSubcommand(argv[1]) {
		stdout := commands.StdoutOutput(os.Stdout)
		code := qemuimg.Sub(name, argv[1:], stdout, os.Stderr)
		stdout.Flush()
		return code
	}
	if name != "qemu-io" && len(argv) > 1 {
		if own, ok := subcommands[argv[1]]; ok && (own || !commands.IsQEMUName(name)) {
			return runApp(argv)
		}
	}
	commands.GoqioHelp = func(w io.Writer) { printHelp(w, name) }
	commands.GoqioVersion = func(w io.Writer) { printVersion(w, name) }
	return commands.Main(argv, os.Stdin, os.Stdout, os.Stderr)
}

func runApp(argv []string) int {
	app := newApp(commands.ProgName(argv[0]))
	app.Setup()
	if err := app.Run(argv); err != nil {
		var ex cli.ExitCoder
		if errors.As(err, &ex) {
			fmt.Fprintln(os.Stderr, err)
			return ex.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		return 1
	}
	return 0
}

// newApp is goqio's subcommands: their definitions are also what the help,
// the man page and the completion scripts are made from.
func newApp(name string) *cli.App {
	app := &cli.App{
		Name:            name,
		Usage:           "qemu-io's commands for raw and qcow2 images, in Go",
		HideHelpCommand: true,
		Commands: []*cli.Command{{
			Name: "create", HideHelpCommand: true,
			Usage:     "create a new image, as qemu-img create",
			ArgsUsage: "FILE [SIZE]",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "f", Value: "raw", Usage: "image format (raw, qcow2, luks)"},
				&cli.StringSliceFlag{Name: "object", Usage: "an object such as 'secret,id=ID,data=PASSWORD' for encrypt.key-secret=ID"},
				&cli.StringFlag{Name: "b", Usage: "backing file (qcow2)"},
				&cli.StringFlag{Name: "F", Usage: "backing file format (qcow2)"},
				&cli.BoolFlag{Name: "u", Usage: "unsafe: do not open the backing file (the size must be given)"},
				&cli.StringSliceFlag{Name: "o", Usage: "format options key=value[,key=value...]"},
				&cli.BoolFlag{Name: "q", Usage: "quiet: do not print the Formatting line"},
			},
			Action: createAction,
		}, {
			Name: "check", HideHelpCommand: true,
			Usage:     "check an image's metadata, as qemu-img check",
			ArgsUsage: "FILE",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "f", Usage: "image format (probed when absent)"},
				&cli.StringFlag{Name: "r", Usage: "repair: leaks or all"},
				&cli.StringFlag{Name: "output", Value: "human", Usage: "human or json"},
				&cli.BoolFlag{Name: "q", Usage: "quiet"},
			},
			Action: checkAction,
		}, {
			Name: "snapshot", HideHelpCommand: true,
			Usage:     "list, create, apply or delete a qcow2 image's internal snapshots, as qemu-img snapshot",
			ArgsUsage: "[-l | -a SNAPSHOT | -c SNAPSHOT | -d SNAPSHOT] FILE",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "l", Usage: "list the snapshots"},
				&cli.StringFlag{Name: "f", Usage: "image format (qcow2 when absent)"},
				&cli.StringFlag{Name: "a", Usage: "apply the snapshot (ID or name)"},
				&cli.StringFlag{Name: "c", Usage: "create a snapshot with this name"},
				&cli.StringFlag{Name: "d", Usage: "delete the snapshot with this name"},
			},
			Action: snapshotAction,
		}},
	}
	if !commands.IsQEMUName(name) {
		app.Commands = append(app.Commands, passCommands(name)...)
		app.Commands = append(app.Commands, faceCommands()...)
	}
	return app
}

func snapshotAction(c *cli.Context) error {
	prog := c.App.Name
	var op string
	n := 0
	for _, o := range []string{"l", "a", "c", "d"} {
		if c.IsSet(o) {
			op = o
			n++
		}
	}
	if n > 1 {
		return cli.Exit(fmt.Sprintf("%s: Cannot mix '-l', '-a', '-c', '-d'\nTry '%s --help' for more information", prog, prog), 1)
	}
	if c.NArg() != 1 {
		return cli.Exit(fmt.Sprintf("%s: Expecting one image file name\nTry '%s snapshot --help' for more information", prog, prog), 1)
	}
	file := c.Args().Get(0)
	code := 0
	switch op {
	case "l":
		code = snapshot.List(prog, file, c.String("f"), os.Stdout, os.Stderr)
	case "a", "c", "d":
		code = snapshot.Modify(prog, op, c.String(op), file, c.String("f"), os.Stderr)
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

func checkAction(c *cli.Context) error {
	prog := c.App.Name
	if c.NArg() != 1 {
		return cli.Exit(fmt.Sprintf("%s: Expecting one image file name\nTry '%s check --help' for more information", prog, prog), 1)
	}
	o := c.String("output")
	if o != "human" && o != "json" {
		return cli.Exit(fmt.Sprintf("%s: --output must be used with human or json as argument.", prog), 1)
	}
	// stdout buffered as glibc buffers qemu-img's: with 2>&1 the messages
	// on the unbuffered stderr come first, as they do from qemu-img
	stdout := commands.StdoutOutput(os.Stdout)
	code := check.Run(check.Request{File: c.Args().Get(0), Format: c.String("f"), Repair: c.String("r"),
		JSON: o == "json", Quiet: c.Bool("q"), Prog: prog}, stdout, os.Stderr)
	stdout.Flush()
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

func createAction(c *cli.Context) error {
	prog := c.App.Name
	if c.NArg() < 1 || c.NArg() > 2 {
		if c.NArg() == 0 {
			return cli.Exit(fmt.Sprintf("%s: Expecting image file name\nTry '%s create --help' for more information", prog, prog), 1)
		}
		return cli.Exit(fmt.Sprintf("%s: Expecting image file name\nTry '%s create --help' for more information", prog, prog), 1)
	}
	opts := map[string]string{}
	for _, o := range c.StringSlice("o") {
		parsed, err := commands.ParseOptions(o, "", nil)
		if err != nil {
			return cli.Exit(fmt.Sprintf("%s: %v", prog, err), 1)
		}
		for k, v := range parsed {
			opts[k] = v
		}
	}
	var objs formats.Objects
	for _, def := range c.StringSlice("object") {
		if err := objs.Add(def, func(t string) { fmt.Fprint(os.Stdout, t) }); err != nil {
			if err == formats.ErrHelp {
				return nil
			}
			return cli.Exit(fmt.Sprintf("%s: %v", prog, err), 1)
		}
	}
	req := create.Request{Format: c.String("f"), File: c.Args().Get(0), Size: -1, Options: opts, Quiet: c.Bool("q"),
		Secrets: objs.Secret,
		Backing: c.String("b"), BackingSet: c.IsSet("b"), BackingFmt: c.String("F"), NoBackingOpen: c.Bool("u"),
		Stderr: os.Stderr, Prog: prog}
	if c.NArg() == 2 {
		n, err := commands.ParseSize(c.Args().Get(1))
		if err != nil {
			return cli.Exit(fmt.Sprintf("%s: Invalid image size specified. You may use k, M, G, T, P or E suffixes for\n%s: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.", prog, prog), 1)
		}
		req.Size = n
	}
	if err := create.Create(req, os.Stdout, commands.ParseSize); err != nil {
		if strings.Contains(err.Error(), "\nDetected format of ") {
			// qemu-img prints this one without a final newline
			fmt.Fprintf(os.Stderr, "%s: %s", prog, err.Error())
			return cli.Exit("", 1)
		}
		return cli.Exit(fmt.Sprintf("%s: %s", prog, err.Error()), 1)
	}
	return nil
}
