package commands

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/goqio/goqio/image/formats"
)

// Version is goqio's version, printed by goqio version.
const Version = "0.1.0"

// QEMUVersion is the qemu-io version whose behaviour goqio reproduces.
const QEMUVersion = "7.2.22"

// QEMUPkgVersion is the package suffix of that qemu-io's -V line (Debian
// 12's qemu-utils, the build goqio's golden transcripts come from).
const QEMUPkgVersion = " (Debian 1:7.2+dfsg-7+deb12u18+b3)"

// QEMUVersionText is what qemu-io -V prints, byte for byte.
func QEMUVersionText(name string) string {
	return fmt.Sprintf("%s version %s%s\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n",
		name, QEMUVersion, QEMUPkgVersion)
}

// IsQEMUName reports whether the program runs under one of QEMU's names
// (qemu-io, qemu-img, qemu-nbd, ...), where everything it prints is QEMU's.
func IsQEMUName(name string) bool { return strings.HasPrefix(name, "qemu-") }

// GoqioHelp and GoqioVersion, when set (by cmd/goqio), print -h and -V's
// texts when the program does not run under a QEMU name.
var GoqioHelp, GoqioVersion func(w io.Writer)

// OptionDoc documents one option of the qemu-io mode command line, for
// goqio's help, man page and completion scripts.
type OptionDoc struct {
	Short  string   // "c", or "" for a long-only option
	Long   string   // "cmd"
	Arg    string   // the argument's name, "" for none
	Usage  string   // one line
	Values []string // the argument's values, for completion
	Goqio  bool     // goqio's own (absent as qemu-io)
}

// CacheModes, DiscardModes and AIOModes are the values -t, -d and -i take.
var (
	CacheModes   = []string{"none", "off", "writeback", "writethrough", "directsync", "unsafe"}
	DiscardModes = []string{"ignore", "off", "unmap", "on"}
	AIOModes     = []string{"threads", "native", "io_uring"}
	OutputModes  = []string{"human", "json"}
)

// MainOptions are the options of the qemu-io mode command line.
var MainOptions = []OptionDoc{
	{"", "object", "OBJECTDEF", "define an object such as 'secret' for passwords and/or encryption keys", nil, false},
	{"", "image-opts", "", "treat file as option string", nil, false},
	{"c", "cmd", "STRING", "execute command with its arguments from the given string (repeatable)", nil, false},
	{"f", "format", "FMT", "specifies the block driver to use", []string{"raw", "qcow2", "file", "null-co", "blkdebug"}, false},
	{"r", "read-only", "", "export read-only", nil, false},
	{"s", "snapshot", "", "use snapshot file", nil, false},
	{"n", "nocache", "", "disable host cache, short for -t none", nil, false},
	{"C", "copy-on-read", "", "enable copy-on-read", nil, false},
	{"m", "misalign", "", "misalign allocations for O_DIRECT", nil, false},
	{"k", "native-aio", "", "use kernel AIO implementation", nil, false},
	{"i", "aio", "MODE", "use AIO mode (threads, native or io_uring)", AIOModes, false},
	{"t", "cache", "MODE", "use the given cache mode for the image", CacheModes, false},
	{"d", "discard", "MODE", "use the given discard mode for the image", DiscardModes, false},
	{"T", "trace", "OPTS", "'zero': trace what zero writes and discards become (goqio's); QEMU trace patterns are accepted", nil, false},
	{"U", "force-share", "", "force shared permissions", nil, false},
	{"", "output", "FMT", "human or json: results as one JSON object per line (docs/json.md)", OutputModes, true},
	{"h", "help", "", "display this help and exit", nil, false},
	{"V", "version", "", "output version information and exit", nil, false},
}

var mainLongOpts = []LongOption{
	{"help", false, 'h'},
	{"version", false, 'V'},
	{"cmd", true, 'c'},
	{"format", true, 'f'},
	{"read-only", false, 'r'},
	{"snapshot", false, 's'},
	{"nocache", false, 'n'},
	{"copy-on-read", false, 'C'},
	{"misalign", false, 'm'},
	{"native-aio", false, 'k'},
	{"aio", true, 'i'},
	{"discard", true, 'd'},
	{"cache", true, 't'},
	{"trace", true, 'T'},
	{"object", true, optObject},
	{"image-opts", false, optImageOpts},
	{"force-share", false, 'U'},
}

const (
	optObject    = 256
	optImageOpts = 257
	optOutput    = 258
)

func mainUsage(w io.Writer, name string) {
	fmt.Fprintf(w, `Usage: %s [OPTIONS]... [-c STRING]... [file]
QEMU Disk exerciser

  --object OBJECTDEF   define an object such as 'secret' for
                       passwords and/or encryption keys
  --image-opts         treat file as option string
  -c, --cmd STRING     execute command with its arguments
                       from the given string
  -f, --format FMT     specifies the block driver to use
  -r, --read-only      export read-only
  -s, --snapshot       use snapshot file
  -n, --nocache        disable host cache, short for -t none
  -C, --copy-on-read   enable copy-on-read
  -m, --misalign       misalign allocations for O_DIRECT
  -k, --native-aio     use kernel AIO implementation
                       (Linux only, prefer use of -i)
  -i, --aio=MODE       use AIO mode (threads, native or io_uring)
  -t, --cache=MODE     use the given cache mode for the image
  -d, --discard=MODE   use the given discard mode for the image
  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]
                       specify tracing options
                       see qemu-img(1) man page for full description
  -U, --force-share    force shared permissions
  -h, --help           display this help and exit
  -V, --version        output version information and exit

See '%s -c help' for information on available commands.

See <https://qemu.org/contribute/report-a-bug> for how to report bugs.
More information on the QEMU project at <https://qemu.org>.
`, name, name)
}

// Main runs qemu-io with argv (argv[0] is the program) and returns the
// exit status: 0, or 1 when the open or any command failed.
func Main(argv []string, stdin *os.File, stdout *os.File, stderr io.Writer) int {
	out := StdoutOutput(stdout)
	defer out.Flush()
	return MainWith(argv, stdin, out, stderr, stdin != nil && IsTerminal(stdin))
}

// MainWith is Main with the streams given: commands come from stdin when
// no -c is given (through the readline shell when interactive is set).
func MainWith(argv []string, stdin io.Reader, out *Output, stderr io.Writer, interactive bool) int {
	s := NewSession(argv[0], out, stderr)
	name := s.Prog
	flags := DefaultOpenFlags()
	readOnly := false
	format := ""
	var cmds []string
	long := mainLongOpts
	if name != "qemu-io" {
		// goqio's own option; not offered as qemu-io, where it would make
		// abbreviations such as --o ambiguous
		long = append(append([]LongOption{}, mainLongOpts...), LongOption{"output", true, optOutput})
	}
	g := NewGetopt(argv, "hVc:d:f:rsnCmki:t:T:U", long, stderr)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case 's':
			flags.Snapshot = true
		case 'n':
			flags.NoCache, flags.NoFlush, flags.WriteThrough = true, false, false
		case 'C':
			flags.CopyOnRead = true
		case 'd':
			if !ParseDiscard(arg, &flags) {
				s.errorf("Invalid discard option: %s", arg)
				return 1
			}
		case 'f':
			format = arg
		case 'c':
			cmds = append(cmds, arg)
		case 'r':
			readOnly = true
		case 'm':
		case 'k':
			flags.NativeAIO = true
		case 'i':
			if !ParseAIO(arg, &flags) {
				s.errorf("Invalid aio option: %s", arg)
				return 1
			}
		case 't':
			if !ParseCacheMode(arg, &flags) {
				s.errorf("Invalid cache option: %s", arg)
				return 1
			}
		case 'T':
			// goqio's own trace: -T zero shows what zero writes and discards
			// become. QEMU's trace event patterns are accepted and ignored.
			if arg == "zero" {
				s.TraceZero = true
			} else {
				traceWarn(s, arg)
			}
		case 'V':
			if GoqioVersion != nil && !IsQEMUName(name) {
				GoqioVersion(out)
				return 0
			}
			out.Write([]byte(QEMUVersionText(name)))
			return 0
		case 'h':
			if GoqioHelp != nil && !IsQEMUName(name) {
				GoqioHelp(out)
				return 0
			}
			mainUsage(out, name)
			return 0
		case 'U':
			flags.ForceShare = true
		case optObject:
			if s.graph == nil {
				s.graph = formats.NewGraph(formats.Env{Prog: s.Prog})
			}
			if err := s.graph.Objects.Add(arg, func(t string) { out.Write([]byte(t)) }); err != nil {
				if err == formats.ErrHelp {
					return 0
				}
				s.errorf("%v", err)
				var fe *formats.Error
				if errors.As(err, &fe) && fe.Hint != "" {
					fmt.Fprint(s.Err, fe.Hint)
				}
				return 1
			}
		case optImageOpts:
			s.ImageOpts = true
		case optOutput:
			switch arg {
			case "json":
				s.JSON = true
			case "human":
				s.JSON = false
			default:
				s.errorf("--output must be 'human' or 'json', not '%s'", arg)
				return 1
			}
		default:
			mainUsage(out, name)
			return 1
		}
	}
	args := g.Operands()
	if len(args) > 1 {
		mainUsage(out, name)
		return 1
	}
	if format != "" && s.ImageOpts {
		s.errorf("--image-opts and -f are mutually exclusive")
		return 1
	}
	flags.ReadOnly = readOnly
	if s.JSON {
		s.Err = &jsonStderr{w: s.Err, s: s}
		s.curCmd = "open"
	}
	if len(args) == 1 {
		var err error
		if s.ImageOpts {
			o, perr := ParseOptions(args[0], "", s.warn)
			if perr != nil {
				s.errorf("%v", perr)
				return 1
			}
			err = s.OpenImageOpts(o, flags)
		} else {
			var opts map[string]string
			if format != "" {
				opts = map[string]string{"driver": format}
			}
			err = s.Open(args[0], flags, opts)
		}
		if err != nil {
			return 1
		}
	}
	failed := false
	if len(cmds) > 0 {
		for _, c := range cmds {
			if s.quit {
				break
			}
			if s.Run(c) != nil {
				failed = true
			}
		}
	} else if interactive {
		failed = s.Shell(stdin)
	} else {
		failed = s.stdinLoop(stdin)
	}
	s.Close()
	if failed {
		return 1
	}
	return 0
}

// maxLine is qemu-io's MAXREADLINESZ: fgets reads at most this minus one
// byte at a time, so a longer line becomes several commands.
const maxLine = 1024

// stdinLoop reads commands from a non-terminal stdin as qemu-io does: the
// prompt is printed and stdout flushed before each line; EOF ends silently.
func (s *Session) stdinLoop(stdin io.Reader) bool {
	r := bufio.NewReader(stdin)
	failed := false
	for !s.quit {
		fmt.Fprintf(s.Out, "%s> ", s.Prog)
		s.Out.Flush()
		var line string
		var ok bool
		if s.aio.running.Load() > 0 && !lineBuffered(r) && !inputReady(stdin) {
			// qemu-io runs its event loop while it waits for the next
			// line: the requests in flight go on, and their reports
			// print before the next command's (stdout reaches the reader
			// at the next prompt all the same)
			s.loop.Open()
			line, ok = fgets(r, maxLine)
			s.loop.Close()
			s.printDone()
		} else {
			line, ok = fgets(r, maxLine)
		}
		if !ok {
			break
		}
		if s.Run(line) != nil {
			failed = true
		}
	}
	return failed
}

// lineBuffered reports whether r holds a whole line already.
func lineBuffered(r *bufio.Reader) bool {
	buf, _ := r.Peek(r.Buffered())
	return bytes.IndexByte(buf, '\n') >= 0
}

// inputReady reports whether reading f would not block (f is not a file
// descriptor, or one with input waiting, or at its end).
func inputReady(f io.Reader) bool {
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(fd.Fd()), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err != nil || n > 0
}

// fgets reads like C's fgets(buf, size, f): up to size-1 bytes or through a
// newline, whichever comes first; the newline is dropped, and the line ends
// at the first NUL byte as C's string would.
func fgets(r *bufio.Reader, size int) (string, bool) {
	// a whole line in r's buffer already: not a byte at a time
	if buf, _ := r.Peek(min(r.Buffered(), size-1)); len(buf) > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			line := cLine(buf[:i+1])
			r.Discard(i + 1)
			return line, true
		}
	}
	var b []byte
	for len(b) < size-1 {
		c, err := r.ReadByte()
		if err != nil {
			break
		}
		b = append(b, c)
		if c == '\n' {
			break
		}
	}
	if len(b) == 0 {
		return "", false
	}
	return cLine(b), true
}

// cLine is what C sees of a line fgets read: without its newline, and
// ending at the first NUL byte.
func cLine(b []byte) string {
	if b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	for i, c := range b {
		if c == 0 {
			b = b[:i]
			break
		}
	}
	return string(b)
}

// ProgName is the base name of argv[0].
func ProgName(argv0 string) string { return filepath.Base(argv0) }

// traceWarn is the warning of QEMU's trace_enable_events for an event that
// does not exist: goqio has no QEMU trace events, so a name without a
// pattern character gets it (as in QEMU for a name that is no event).
func traceWarn(s *Session, arg string) {
	for _, part := range strings.Split(arg, ",") {
		k, v, ok := strings.Cut(part, "=")
		if ok && k != "enable" {
			continue // events=FILE, file=FILE
		}
		if !ok {
			v = part
		}
		name := strings.TrimPrefix(v, "-")
		if name == "" || strings.ContainsAny(name, "*?[") {
			continue
		}
		s.warn(fmt.Sprintf("trace event '%s' does not exist", name))
	}
}
