package commands

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func runGetopt(argv []string, opts string, long []LongOption) (string, string) {
	var errb bytes.Buffer
	g := NewGetopt(argv, opts, long, &errb)
	var b strings.Builder
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		if arg != "" {
			fmt.Fprintf(&b, "%c=%s ", c, arg)
		} else {
			fmt.Fprintf(&b, "%c ", c)
		}
	}
	fmt.Fprintf(&b, "| %s", strings.Join(g.Operands(), ","))
	return b.String(), errb.String()
}

func TestGetopt(t *testing.T) {
	t.Setenv("POSIXLY_CORRECT", "")
	for _, tc := range []struct {
		argv, want, err string
	}{
		{"read 0 16 -v", "v | 0,16", ""},
		{"write 0 4 -P 1 -q", "P=1 q | 0,4", ""},
		{"write -P0x41 0 1", "P=0x41 | 0,1", ""},
		{"write -zu 0 1", "z u | 0,1", ""},
		{"read -vqP 7 0 1", "v q P=7 | 0,1", ""},
		{"read 0 -1", "? | 0", "read: invalid option -- '1'\n"},
		{"read -- 0 -1", "| 0,-1", ""},
		{"read 0 -- -1 -v", "| 0,-1,-v", ""},
		{"r -x 0 1", "? | 0,1", "r: invalid option -- 'x'\n"},
		{"read 0 1 -P", "? | 0,1", "read: option requires an argument -- 'P'\n"},
		{"read -P -v 0 1", "P=-v | 0,1", ""},
		{"read - 0", "| -,0", ""},
	} {
		got, errs := runGetopt(strings.Fields(tc.argv), "bCl:pP:qs:uvz", nil)
		if got != tc.want || errs != tc.err {
			t.Errorf("%q: got %q (stderr %q), want %q (stderr %q)", tc.argv, got, errs, tc.want, tc.err)
		}
	}
}

func TestGetoptPosixlyCorrect(t *testing.T) {
	t.Setenv("POSIXLY_CORRECT", "1")
	got, _ := runGetopt(strings.Fields("read 0 16 -v"), "v", nil)
	if got != "| 0,16,-v" {
		t.Errorf("got %q", got)
	}
}

func TestGetoptLong(t *testing.T) {
	t.Setenv("POSIXLY_CORRECT", "")
	for _, tc := range []struct {
		argv, want, err string
	}{
		{"qemu-io --cmd length f", "c=length | f", ""},
		{"qemu-io --cmd=length f", "c=length | f", ""},
		{"qemu-io --form raw f", "f=raw | f", ""},
		{"qemu-io f --read-only", "r | f", ""},
		{"qemu-io --foo", "? | ", "qemu-io: unrecognized option '--foo'\n"},
		{"qemu-io --c x", "? | x", "qemu-io: option '--c' is ambiguous; possibilities: '--cmd' '--copy-on-read' '--cache'\n"},
		{"qemu-io --cmd", "? | ", "qemu-io: option '--cmd' requires an argument\n"},
		{"qemu-io --read-only=1", "? | ", "qemu-io: option '--read-only' doesn't allow an argument\n"},
		{"/bin/qemu-io -q", "? | ", "/bin/qemu-io: invalid option -- 'q'\n"},
		{"qemu-io --ca=none", "t=none | ", ""},
		{"qemu-io --image-opts x", fmt.Sprintf("%c | x", rune(optImageOpts)), ""},
	} {
		got, errs := runGetopt(strings.Fields(tc.argv), "hVc:d:f:rsnCmki:t:T:U", mainLongOpts)
		if got != tc.want || errs != tc.err {
			t.Errorf("%q: got %q (stderr %q), want %q (stderr %q)", tc.argv, got, errs, tc.want, tc.err)
		}
	}
}
