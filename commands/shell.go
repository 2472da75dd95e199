package commands

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/chzyer/readline"
)

// HistoryFile is where the interactive shell keeps its history:
// $GOQIO_HISTORY, else ~/.goqio_history.
func HistoryFile() string {
	if f := os.Getenv("GOQIO_HISTORY"); f != "" {
		return f
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".goqio_history")
}

// completer completes the verb at the start of a line; after it, the
// verb's options (a word starting with '-'), the values of options that
// take a fixed set (open -t/-d, reopen -c cache modes, truncate -m,
// map --output=), verbs after help, and file paths after open.
type completer struct{}

// optionValues are the values completed after a verb's option.
var optionValues = map[string]map[string][]string{
	"open":     {"-t": CacheModes, "-d": DiscardModes},
	"reopen":   {"-c": CacheModes},
	"truncate": {"-m": {"off", "metadata", "falloc", "full"}},
}

func suffixes(cands []string, cur string, space string) [][]rune {
	var out [][]rune
	for _, c := range cands {
		if strings.HasPrefix(c, cur) {
			out = append(out, []rune(c[len(cur):]+space))
		}
	}
	return out
}

func (completer) Do(line []rune, pos int) ([][]rune, int) {
	head := string(line[:pos])
	words := strings.Split(head, " ")
	cur := words[len(words)-1]
	n := len([]rune(cur))
	if len(words) == 1 {
		var names []string
		for _, c := range Table {
			names = append(names, c.Name)
		}
		return suffixes(names, cur, " "), n
	}
	c := Lookup(words[0])
	if c == nil {
		return nil, 0
	}
	prev := words[len(words)-2]
	if vals, ok := optionValues[c.Name][prev]; ok {
		return suffixes(vals, cur, " "), n
	}
	switch {
	case c.Name == "map" && strings.HasPrefix(cur, "--"):
		return suffixes([]string{"--output=json", "--output=human"}, cur, ""), n
	case c.Name == "help" && len(words) == 2:
		var names []string
		for _, c := range Table {
			names = append(names, c.Name)
		}
		return suffixes(names, cur, ""), n
	case strings.HasPrefix(cur, "-") && len(cur) <= 2:
		var opts []string
		for _, o := range c.Opts {
			if o != ':' {
				opts = append(opts, "-"+string(o))
			}
		}
		return suffixes(opts, cur, " "), n
	case c.Name == "open" && !strings.HasPrefix(cur, "-") && prev != "-o":
		return completePath(cur), n
	}
	return nil, 0
}

// completePath completes cur as a file path: directories get a '/'.
func completePath(cur string) [][]rune {
	dir, base := filepath.Split(cur)
	list := dir
	if list == "" {
		list = "."
	}
	entries, err := os.ReadDir(list)
	if err != nil {
		return nil
	}
	var out [][]rune
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, base) || (strings.HasPrefix(name, ".") && !strings.HasPrefix(base, ".")) {
			continue
		}
		tail := name[len(base):]
		if e.IsDir() {
			tail += "/"
		} else {
			tail += " "
		}
		out = append(out, []rune(tail))
	}
	return out
}

// Shell is the interactive loop on a terminal: a readline prompt with
// history and tab completion. Ctrl-C abandons the line being typed; Ctrl-D
// on an empty line ends the session with a newline, as qemu-io's does.
// Ctrl-C while a command runs does not end the program: the command stops
// at its next interruption point (sleep; between the block status calls of
// map and alloc; between the chunks of a streamed read or write of 64 MiB
// or more; otherwise when its request is done, so the image stays
// consistent) and the prompt comes back. It reports whether any command failed.
func (s *Session) Shell(stdin io.Reader) bool {
	rl, err := readline.NewEx(&readline.Config{
		Prompt:          s.Prog + "> ",
		HistoryFile:     HistoryFile(),
		AutoComplete:    completer{},
		InterruptPrompt: "^C",
		EOFPrompt:       "\n", // readline's way of asking for a bare newline, not "^D"
		Stdin:           io.NopCloser(stdin),
	})
	if err != nil {
		return s.stdinLoop(stdin)
	}
	defer rl.Close()
	// SIGINT is caught for the whole session, not only while a command
	// runs: a Ctrl-C just after Enter (the terminal back in cooked mode,
	// the command not started yet) or just after a command ends must not
	// kill the program. At the prompt the terminal is raw and Ctrl-C is a
	// key readline reads.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	stop := make(chan struct{})
	defer func() { signal.Stop(sig); close(stop) }()
	go func() {
		for {
			select {
			case <-sig:
				s.intrMu.Lock()
				if s.intrCur != nil {
					close(s.intrCur)
					s.intrCur = nil
				}
				s.intrMu.Unlock()
			case <-stop:
				return
			}
		}
	}()
	failed := false
	for !s.quit {
		s.Out.Flush()
		// qemu-io's event loop runs while the shell waits for a line: the
		// requests in flight go on, and their reports print before the
		// next command runs
		s.loop.Open()
		line, err := rl.Readline()
		s.loop.Close()
		s.printDone()
		if errors.Is(err, readline.ErrInterrupt) {
			continue
		}
		if err != nil {
			break // readline has printed the newline
		}
		if s.runInterruptible(line) != nil {
			failed = true
		}
	}
	s.Out.Flush()
	return failed
}

// interrupted reports whether Ctrl-C was pressed while the shell command
// runs: commands made of many requests (map, alloc) check it between them
// and stop there, with the image as the requests done so far left it.
func (s *Session) interrupted() bool {
	if s.interrupt == nil {
		return false
	}
	select {
	case <-s.interrupt:
		return true
	default:
		return false
	}
}

// reportInterrupted reports a streamed read or write stopped by Ctrl-C
// between two chunks (goqio's message: qemu-io would have been killed).
func (s *Session) reportInterrupted(op, verb string, err error, offset, count int64) bool {
	var ie *interruptedError
	if !errors.As(err, &ie) {
		return false
	}
	s.errorf("%s interrupted: %d/%d bytes %s at offset %d", op, ie.done, count, verb, offset)
	return true
}

// errInterrupted ends a command stopped by Ctrl-C.
var errInterrupted = errors.New("interrupted")

// runInterruptible runs one shell command, a Ctrl-C meanwhile closing
// s.interrupt (see Shell) instead of killing the program.
func (s *Session) runInterruptible(line string) error {
	intr := make(chan struct{})
	s.intrMu.Lock()
	s.intrCur = intr
	s.intrMu.Unlock()
	s.interrupt = intr
	err := s.Run(line)
	s.intrMu.Lock()
	s.intrCur = nil
	s.intrMu.Unlock()
	s.interrupt = nil
	select {
	case <-intr:
		fmt.Fprintln(s.Out)
		return ErrFailed
	default:
	}
	return err
}
