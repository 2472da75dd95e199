package commands

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Getopt is GNU getopt(3) and getopt_long(3) as glibc implements them, so
// that every qemu-io command line parses as it does in qemu-io: options may
// follow operands (the operands are permuted to the end, unless
// POSIXLY_CORRECT is set), flags bundle (-zu), an option's argument may be
// attached (-P0x41) or the next word, "--" ends the options, and a word
// starting with '-' is always an option (so a negative number is one).
// Errors are printed to Err as glibc prints them, prefixed by Argv[0].
type Getopt struct {
	Argv     []string
	Err      io.Writer
	optstr   string
	long     []LongOption
	optind   int    // next word to look at
	nextchar string // rest of a bundle of short options
	operands []string
	done     bool
	posix    bool
	// colon: optstring began with ':' (after any '+'): no messages, and
	// a missing argument returns ':' instead of '?'
	colon bool
}

// LongOption is one entry of getopt_long's table.
type LongOption struct {
	Name   string
	HasArg bool
	Val    rune
}

// NewGetopt starts parsing argv (argv[0] is the program or command name).
func NewGetopt(argv []string, optstring string, long []LongOption, errw io.Writer) *Getopt {
	g := &Getopt{Argv: argv, Err: errw, optstr: optstring, long: long, optind: 1,
		operands: make([]string, 0, len(argv))}
	if strings.HasPrefix(g.optstr, "+") {
		g.posix = true
		g.optstr = g.optstr[1:]
	} else if os.Getenv("POSIXLY_CORRECT") != "" {
		g.posix = true
	}
	if strings.HasPrefix(g.optstr, ":") {
		g.colon = true
		g.optstr = g.optstr[1:]
		g.Err = io.Discard
	}
	return g
}

// Next returns the next option and its argument. It returns -1 when the
// options are done, and '?' after printing an error.
func (g *Getopt) Next() (rune, string) {
	if g.done {
		return -1, ""
	}
	if g.nextchar == "" {
		for {
			if g.optind >= len(g.Argv) {
				g.done = true
				return -1, ""
			}
			w := g.Argv[g.optind]
			if w == "--" {
				g.optind++
				g.operands = append(g.operands, g.Argv[g.optind:]...)
				g.optind = len(g.Argv)
				g.done = true
				return -1, ""
			}
			if len(w) < 2 || w[0] != '-' {
				if g.posix {
					g.operands = append(g.operands, g.Argv[g.optind:]...)
					g.optind = len(g.Argv)
					g.done = true
					return -1, ""
				}
				g.operands = append(g.operands, w)
				g.optind++
				continue
			}
			if g.long != nil && strings.HasPrefix(w, "--") {
				g.optind++
				return g.longOpt(w[2:])
			}
			g.nextchar = w[1:]
			g.optind++
			break
		}
	}
	c := rune(g.nextchar[0])
	g.nextchar = g.nextchar[1:]
	i := strings.IndexRune(g.optstr, c)
	if i < 0 || c == ':' {
		fmt.Fprintf(g.Err, "%s: invalid option -- '%c'\n", g.Argv[0], c)
		return '?', ""
	}
	if i+1 < len(g.optstr) && g.optstr[i+1] == ':' {
		if g.nextchar != "" {
			arg := g.nextchar
			g.nextchar = ""
			return c, arg
		}
		if g.optind >= len(g.Argv) {
			fmt.Fprintf(g.Err, "%s: option requires an argument -- '%c'\n", g.Argv[0], c)
			return g.missing(), ""
		}
		arg := g.Argv[g.optind]
		g.optind++
		return c, arg
	}
	return c, ""
}

func (g *Getopt) longOpt(text string) (rune, string) {
	name, arg, hasEq := strings.Cut(text, "=")
	found := -1
	for i, o := range g.long {
		if o.Name == name {
			found = i
			break
		}
	}
	if found < 0 {
		var ambig []int
		for i, o := range g.long {
			if !strings.HasPrefix(o.Name, name) {
				continue
			}
			if found < 0 {
				found = i
				continue
			}
			f := g.long[found]
			if f.HasArg != o.HasArg || f.Val != o.Val {
				if ambig == nil {
					ambig = []int{found}
				}
				ambig = append(ambig, i)
			}
		}
		if ambig != nil {
			fmt.Fprintf(g.Err, "%s: option '--%s' is ambiguous; possibilities:", g.Argv[0], text)
			for i := range g.long {
				for _, a := range ambig {
					if a == i {
						fmt.Fprintf(g.Err, " '--%s'", g.long[i].Name)
					}
				}
			}
			fmt.Fprintf(g.Err, "\n")
			return '?', ""
		}
	}
	if found < 0 {
		fmt.Fprintf(g.Err, "%s: unrecognized option '--%s'\n", g.Argv[0], text)
		return '?', ""
	}
	o := g.long[found]
	if hasEq {
		if !o.HasArg {
			fmt.Fprintf(g.Err, "%s: option '--%s' doesn't allow an argument\n", g.Argv[0], o.Name)
			return '?', ""
		}
		return o.Val, arg
	}
	if o.HasArg {
		if g.optind >= len(g.Argv) {
			fmt.Fprintf(g.Err, "%s: option '--%s' requires an argument\n", g.Argv[0], o.Name)
			return g.missing(), ""
		}
		arg = g.Argv[g.optind]
		g.optind++
	}
	return o.Val, arg
}

func (g *Getopt) missing() rune {
	if g.colon {
		return ':'
	}
	return '?'
}

// Word is glibc's argv[optind-1] after the last option returned: the word
// holding that option (or its argument), or the word before it when more
// options of a bundle follow. QEMU's tools name it in their messages.
func (g *Getopt) Word() string {
	i := g.optind
	if g.nextchar != "" {
		i--
	}
	if i-1 < 0 || i-1 >= len(g.Argv) {
		return ""
	}
	return g.Argv[i-1]
}

// Operands returns the non-option words, in order, once Next has returned
// -1 (glibc's permuted argv[optind:]).
func (g *Getopt) Operands() []string {
	for !g.done {
		g.Next()
	}
	return g.operands
}
