// Package commands is goqio's command interpreter: qemu-io's command table,
// its tokenising (single spaces only), GNU getopt option parsing, number
// parsing, and the verbs, each printing exactly what qemu-io 7.2 prints.
//
// A Session holds the open image and the output streams. Verbs write to the
// Session's writers, never to os.Stdout, so tests run them in-process; the
// clock is injected so output can be made deterministic.
package commands

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
)

// ErrFailed is returned by Session.Run for a command that failed after
// printing why; qemu-io then exits with status 1.
var ErrFailed = errors.New("command failed")

// OpenFlags are the open options of qemu-io's command line and open command.
type OpenFlags struct {
	ReadOnly     bool
	Snapshot     bool
	NoCache      bool // O_DIRECT
	NoFlush      bool // cache=unsafe
	WriteThrough bool
	Unmap        bool
	CopyOnRead   bool
	NativeAIO    bool
	ForceShare   bool
}

// DefaultOpenFlags are qemu-io's defaults: discard on, write-through cache.
func DefaultOpenFlags() OpenFlags {
	return OpenFlags{Unmap: true, WriteThrough: true}
}

// Session is one qemu-io run: the open image, the streams, the clock.
type Session struct {
	Prog string    // program name in messages and the prompt ("qemu-io")
	Out  *Output   // stdout, buffered like C's stdio
	Err  io.Writer // stderr, unbuffered
	Now  func() time.Time

	// ImageOpts is set by --image-opts: open's operand is an option string.
	ImageOpts bool
	// JSON is set by --output=json: results print as JSON objects.
	JSON bool
	// TraceZero is set by -T zero: every image opened traces what its zero
	// writes and discards become, on stderr.
	TraceZero bool

	curCmd string // the verb running, for JSON messages on stderr

	// interrupt is closed by Ctrl-C while a shell command runs; intrCur is
	// the channel the shell's signal handler closes (under intrMu)
	interrupt chan struct{}
	intrMu    sync.Mutex
	intrCur   chan struct{}

	disk *image.Disk
	node *formats.Node // the top node of the open image
	quit bool
	aio  aioQueue
	// how the open image was opened, for reopen
	curName  string
	curFlags OpenFlags
	curOpts  map[string]string
	// graph holds the nodes of the session's images: node-names are
	// known across opens, as in QEMU
	graph *formats.Graph
	// dbg holds blkdebug's messages for stdout
	dbg debugMsgs
	// loop is qemu-io's event loop as the open image sees it: the aio
	// requests go on after their I/O only when it runs (image.Loop)
	loop *image.Loop
}

// NewSession makes a session writing to out and errw. prog is argv[0]; its
// base name is used in messages.
func NewSession(prog string, out *Output, errw io.Writer) *Session {
	s := &Session{Prog: filepath.Base(prog), Out: out, Err: errw, Now: time.Now, loop: image.NewLoop()}
	s.loop.OnIdle = s.aio.signal
	return s
}

// setNode makes n the open image, on the session's loop.
func (s *Session) setNode(n *formats.Node) {
	s.disk, s.node = n.Disk, n
	n.Disk.SetLoop(s.loop)
}

// Disk returns the open image, or nil.
func (s *Session) Disk() *image.Disk { return s.disk }

// Quit reports whether the quit command ran.
func (s *Session) Quit() bool { return s.quit }

// printf prints qemu-io's text output. With --output=json, stdout carries
// only JSON objects and this text goes to stderr.
func (s *Session) printf(format string, a ...any) {
	if s.JSON {
		fmt.Fprintf(s.Err, format, a...)
		return
	}
	fmt.Fprintf(s.Out, format, a...)
}

// errorf prints an error_report() message: "prog: text" on stderr.
func (s *Session) errorf(format string, a ...any) {
	fmt.Fprintf(s.Err, "%s: %s\n", s.Prog, fmt.Sprintf(format, a...))
}

// warn prints a warn_report() message.
func (s *Session) warn(msg string) { fmt.Fprintf(s.Err, "%s: warning: %s\n", s.Prog, msg) }

// Strerror is the strerror text qemu-io prints for an error from the block layer.
func Strerror(err error) string { return formats.Strerror(image.Errno(err)) }

// Flags of a command, as qemu-io's CMD_* flags.
const (
	flagGlobal = 1 << iota // runs with or without an image (help, quit)
	flagNoFile             // may run without an image (open, sleep, ...)
)

// Permissions a command needs before it runs.
const (
	permWrite = 1 << iota
	permResize
)

// Command is one row of the command table, as qemu-io's cmdinfo_t.
type Command struct {
	Name    string
	Alias   string
	Opts    string // getopt option string, for documentation and completion
	ArgMin  int
	ArgMax  int     // -1: no maximum
	Args    *string // usage arguments; nil prints none, "" prints an empty field
	OneLine string
	Help    string // long help, printed by "help NAME"
	Flags   int
	Perm    int
	Run     func(s *Session, argv []string) error
}

func str(s string) *string { return &s }

// Usage is qemu-io's qemuio_command_usage line (always the canonical name).
func (c *Command) Usage() string {
	return fmt.Sprintf("%s %s -- %s\n", c.Name, deref(c.Args), c.OneLine)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// helpLine is help_oneline: the name as typed, the arguments if any, the one-line help.
func (c *Command) helpLine(name string) string {
	if c.Args != nil {
		return fmt.Sprintf("%s %s -- %s\n", name, *c.Args, c.OneLine)
	}
	return fmt.Sprintf("%s -- %s\n", name, c.OneLine)
}

// Table is the command table, sorted by name as qemu-io sorts it.
var Table []*Command

func register(c *Command) {
	Table = append(Table, c)
	sort.Slice(Table, func(i, j int) bool { return Table[i].Name < Table[j].Name })
}

// Lookup finds a command by its exact name or alias.
func Lookup(name string) *Command {
	for _, c := range Table {
		if c.Name == name || (c.Alias != "" && c.Alias == name) {
			return c
		}
	}
	return nil
}

// Tokenize splits a command line as qemu-io's breakline: on single spaces
// only (tabs are ordinary characters), with no quoting; empty words from
// runs of spaces are dropped.
func Tokenize(line string) []string {
	out := make([]string, 0, 8)
	for len(line) > 0 {
		i := strings.IndexByte(line, ' ')
		if i < 0 {
			return append(out, line)
		}
		if i > 0 {
			out = append(out, line[:i])
		}
		line = line[i+1:]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Run executes one command line. It returns ErrFailed when the command
// failed (its message is already printed), nil otherwise.
func (s *Session) Run(line string) error {
	argv := Tokenize(line)
	if len(argv) == 0 {
		return nil
	}
	c := Lookup(argv[0])
	if j, ok := s.Err.(*jsonStderr); ok {
		s.curCmd = argv[0]
		if c != nil {
			s.curCmd = c.Name
		}
		defer j.flush()
	}
	if c == nil {
		fmt.Fprintf(s.Err, "command \"%s\" not found\n", argv[0])
		return ErrFailed
	}
	if c.Flags&flagGlobal == 0 && c.Flags&flagNoFile == 0 && s.disk == nil {
		fmt.Fprintf(s.Err, "no file open, try 'help open'\n")
		return ErrFailed
	}
	n := len(argv) - 1
	if n < c.ArgMin || (c.ArgMax != -1 && n > c.ArgMax) {
		switch {
		case c.ArgMax == -1:
			fmt.Fprintf(s.Err, "bad argument count %d to %s, expected at least %d arguments\n", n, argv[0], c.ArgMin)
		case c.ArgMin == c.ArgMax:
			fmt.Fprintf(s.Err, "bad argument count %d to %s, expected %d arguments\n", n, argv[0], c.ArgMin)
		default:
			fmt.Fprintf(s.Err, "bad argument count %d to %s, expected between %d and %d arguments\n", n, argv[0], c.ArgMin, c.ArgMax)
		}
		return ErrFailed
	}
	if c.Perm != 0 && s.disk != nil && s.disk.ReadOnly() {
		s.errorf("Block node is read-only")
		return ErrFailed
	}
	if c.Perm&permResize != 0 && s.node != nil {
		// the permission stays once taken, as qemu-io's blk_set_perm
		s.node.GrantResize()
	}
	// the command polls the loop once its own request yields
	s.loop.BeginCmd(s.aio.running.Load() > 0)
	defer s.loop.EndCmd()
	return c.Run(s, argv)
}

// usage prints c's usage line and fails, as qemu-io does on a bad option.
func (s *Session) usage(c *Command) error {
	s.printf("%s", c.Usage())
	return ErrFailed
}

// getopt starts option parsing for a command's argv.
func (s *Session) getopt(argv []string, optstring string) *Getopt {
	return NewGetopt(argv, optstring, nil, s.Err)
}

// Open opens an image as qemu-io's openfile does: refuses if one is open,
// prints "can't open device NAME: REASON" on failure.
func (s *Session) Open(name string, f OpenFlags, opts map[string]string) error {
	if s.disk != nil {
		s.errorf("file open already, try 'help close'")
		return ErrFailed
	}
	if f.ForceShare {
		if v, ok := opts["force-share"]; ok && v != "on" {
			s.errorf("-U conflicts with image options")
			return ErrFailed
		}
	}
	o := s.openOptions(f)
	if len(opts) > 0 {
		o.Options = map[string]string{}
		for k, v := range opts {
			o.Options[k] = v
		}
	}
	n, err := formats.OpenNode(name, o)
	if err != nil {
		s.reportOpenErr(name, err.Error())
		var fe *formats.Error
		if errors.As(err, &fe) && fe.Hint != "" {
			fmt.Fprint(s.Err, fe.Hint)
		}
		return ErrFailed
	}
	s.setNode(n)
	s.curName, s.curFlags, s.curOpts = name, f, opts
	return nil
}

// openOptions are the options of an open with flags f.
func (s *Session) openOptions(f OpenFlags) formats.Options {
	if s.graph == nil {
		s.graph = formats.NewGraph(formats.Env{Prog: s.Prog})
	}
	o := formats.Options{
		ReadOnly:     f.ReadOnly,
		Direct:       f.NoCache,
		NoFlush:      f.NoFlush,
		WriteThrough: f.WriteThrough,
		Unmap:        f.Unmap,
		NativeAIO:    f.NativeAIO,
		Snapshot:     f.Snapshot,
		ForceShare:   f.ForceShare,
		CopyOnRead:   f.CopyOnRead,
		Warn:         func(m string) { fmt.Fprintln(s.Err, m) },
		WarnReport:   s.warn,
		Graph:        s.graph,
		Stderr:       s.Err,
		Prog:         s.Prog,
		Fatal:        s.fatal,
	}
	if s.TraceZero {
		o.Trace = func(m string) { fmt.Fprintf(s.Err, "%s-trace: %s\n", s.Prog, m) }
	}
	return o
}

// fatal ends the process as QEMU's exit(1) from inside the block layer
// does (blkverify's reports): the message on stderr, stdout flushed.
func (s *Session) fatal(msg string) {
	fmt.Fprintln(s.Err, msg)
	s.Out.Flush()
	os.Exit(1)
}

func (s *Session) reportOpenErr(name, msg string) {
	if name != "" {
		s.errorf("can't open device %s: %s", name, msg)
	} else {
		s.errorf("can't open: %s", msg)
	}
}

// Close drains outstanding requests and closes the open image, if any.
func (s *Session) Close() error {
	s.drain()
	s.aio.stop()
	if s.disk == nil {
		return nil
	}
	err := s.node.Close()
	s.disk, s.node = nil, nil
	return err
}

// elapsed measures a request with the session's clock.
func (s *Session) elapsed(start time.Time) time.Duration { return s.Now().Sub(start) }
