package commands

import (
	"errors"
	"fmt"
	"io"
	"os"
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

// completer completes the verb at the start of a line, and after it the
// verb's options (a word starting with '-').
type completer struct{}

func (completer) Do(line []rune, pos int) ([][]rune, int) {
	head := string(line[:pos])
	words := strings.Split(head, " ")
	cur := words[len(words)-1]
	var out [][]rune
	if len(words) == 1 {
		for _, c := range Table {
			if strings.HasPrefix(c.Name, cur) {
				out = append(out, []rune(c.Name[len(cur):]+" "))
			}
		}
		return out, len([]rune(cur))
	}
	c := Lookup(words[0])
	if c == nil || !strings.HasPrefix(cur, "-") || len(cur) > 2 {
		return nil, 0
	}
	for _, o := range c.Opts {
		if opt := "-" + string(o); o != ':' && strings.HasPrefix(opt, cur) {
			out = append(out, []rune(opt[len(cur):]+" "))
		}
	}
	return out, len([]rune(cur))
}

// Shell is the interactive loop on a terminal: a readline prompt with
// history and tab completion. Ctrl-C abandons the line being typed; Ctrl-D
// on an empty line ends the session. It reports whether any command failed.
func (s *Session) Shell(stdin io.Reader) bool {
	rl, err := readline.NewEx(&readline.Config{
		Prompt:          s.Prog + "> ",
		HistoryFile:     HistoryFile(),
		AutoComplete:    completer{},
		InterruptPrompt: "^C",
		EOFPrompt:       "",
		Stdin:           io.NopCloser(stdin),
	})
	if err != nil {
		return s.stdinLoop(stdin)
	}
	defer rl.Close()
	failed := false
	for !s.quit {
		s.Out.Flush()
		line, err := rl.Readline()
		if errors.Is(err, readline.ErrInterrupt) {
			continue
		}
		if err != nil {
			fmt.Fprintln(s.Out)
			break
		}
		if s.Run(line) != nil {
			failed = true
		}
	}
	s.Out.Flush()
	return failed
}
