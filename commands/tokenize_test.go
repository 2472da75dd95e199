package commands

import (
	"reflect"
	"testing"

	"github.com/google/shlex"
)

func TestTokenize(t *testing.T) {
	for in, want := range map[string][]string{
		"read 0 1":         {"read", "0", "1"},
		"  read   0  1  ":  {"read", "0", "1"},
		"":                 nil,
		"    ":             nil,
		"read\t0 1":        {"read\t0", "1"},
		"write -s 'a b' 0": {"write", "-s", "'a", "b'", "0"},
		`open a\ b`:        {"open", `a\`, "b"},
	} {
		if got := Tokenize(in); !reflect.DeepEqual(got, want) {
			t.Errorf("Tokenize(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTokenizeVersusShlex records why goqio does not use google/shlex for
// command lines: shlex agrees with qemu-io's single-space splitting only on
// lines without tabs, quotes, backslashes or '#', and qemu-io users do put
// such characters in file names and in tests ('read\t0' must be an unknown
// command). shlex would change results, so it is not used for commands.
func TestTokenizeVersusShlex(t *testing.T) {
	same := []string{"read 0 1", "write -P 0x41 -q 0 64k", "  open  -o driver=raw x.raw "}
	for _, in := range same {
		sh, err := shlex.Split(in)
		if err != nil || !reflect.DeepEqual(sh, Tokenize(in)) {
			t.Errorf("%q: shlex %q, qemu-io %q", in, sh, Tokenize(in))
		}
	}
	differ := []string{"read\t0 1", "write -s 'a b' 0 1", `open a\ b`, "open #x"}
	for _, in := range differ {
		sh, _ := shlex.Split(in)
		if reflect.DeepEqual(sh, Tokenize(in)) {
			t.Errorf("%q: shlex now agrees with qemu-io; reconsider using it", in)
		}
	}
}
