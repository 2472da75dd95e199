package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/internal/testbin"
	"github.com/goqio/goqio/qemuimg"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func runBin(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// qemuLink is bin under the name qemu-io.
func qemuLink(t *testing.T, bin string) string {
	link := filepath.Join(t.TempDir(), "qemu-io")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	return link
}

func TestHelpAndVersion(t *testing.T) {
	bin := testbin.Goqio(t)
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		out, _, code := runBin(t, bin, args...)
		if code != 0 {
			t.Errorf("goqio %v: exit %d", args, code)
		}
		for _, want := range []string{"Usage: goqio", "Subcommands:", "create", "check", "snapshot", "completion", "man",
			"version", "--output=json", "-T zero", "issue tracker", "github.com/goqio/goqio", "Run as qemu-io"} {
			if !strings.Contains(out, want) {
				t.Errorf("goqio %v lacks %q:\n%s", args, want, out)
			}
		}
		for _, c := range commands.Table {
			if !strings.Contains(out, "  "+c.Name+" ") {
				t.Errorf("goqio %v lacks the verb %s", args, c.Name)
			}
		}
		for _, o := range commands.MainOptions {
			if !strings.Contains(out, "--"+o.Long) {
				t.Errorf("goqio %v lacks the option --%s", args, o.Long)
			}
		}
		if strings.Contains(out, "QEMU Disk exerciser") || strings.Contains(out, "qemu.org") {
			t.Errorf("goqio %v speaks as QEMU:\n%s", args, out)
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}, {"-V"}} {
		out, _, code := runBin(t, bin, args...)
		if code != 0 || !strings.HasPrefix(out, "goqio "+commands.Version+"\n") ||
			!strings.Contains(out, "module: github.com/goqio/goqio") || !strings.Contains(out, "revision: ") ||
			!strings.Contains(out, "matches: qemu-io "+commands.QEMUVersion+"\n") {
			t.Errorf("goqio %v: exit %d\n%s", args, code, out)
		}
	}
	// help VERB is the verb's help; help SUBCOMMAND the subcommand's options
	out, _, _ := runBin(t, bin, "help", "write")
	want, _ := commands.VerbHelp("write")
	if out != want {
		t.Errorf("goqio help write:\n%s\nwant:\n%s", out, want)
	}
	out, _, _ = runBin(t, bin, "help", "help") // the help verb's too, not cli's help of help
	if want, _ := commands.VerbHelp("help"); !strings.Contains(out, "goqio help [command options] [SUBCOMMAND|VERB]") || !strings.HasSuffix(out, want) {
		t.Errorf("goqio help help:\n%s", out)
	}
	out, _, _ = runBin(t, bin, "help", "create")
	if !strings.Contains(out, "goqio create") || !strings.Contains(out, "-f value") {
		t.Errorf("goqio help create:\n%s", out)
	}
	if _, errs, code := runBin(t, bin, "help", "bogus"); code != 1 || !strings.Contains(errs, `"bogus"`) {
		t.Errorf("goqio help bogus: exit %d, %q", code, errs)
	}

	// as qemu-io nothing of this exists
	q := qemuLink(t, bin)
	out, _, code := runBin(t, q, "-V")
	if code != 0 || out != commands.QEMUVersionText("qemu-io") {
		t.Errorf("qemu-io -V: %q", out)
	}
	if real, err := exec.LookPath("qemu-io"); err == nil {
		rout, _, _ := runBin(t, real, "-V")
		if rout != out {
			t.Errorf("qemu-io -V:\n%q\nreal qemu-io:\n%q", out, rout)
		}
		for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"version"}, {"man"}, {"completion", "bash"}, {"info"}, {"resize"}, {"nbd"}, {"create"}} {
			o1, e1, c1 := runBin(t, q, args...)
			o2, e2, c2 := runBin(t, real, args...)
			if o1 != o2 || e1 != e2 || c1 != c2 {
				t.Errorf("qemu-io %v: goqio %d %q %q, qemu-io %d %q %q", args, c1, o1, e1, c2, o2, e2)
			}
		}
	}
}

func TestManPage(t *testing.T) {
	bin := testbin.Goqio(t)
	out, _, code := runBin(t, bin, "man")
	if code != 0 || !strings.HasPrefix(out, ".nh\n.TH goqio 1") {
		t.Fatalf("goqio man: exit %d\n%.200s", code, out)
	}
	for _, c := range newApp("goqio").Commands {
		if !strings.Contains(out, c.Name) {
			t.Errorf("man page lacks the subcommand %s", c.Name)
		}
	}
	for _, o := range commands.MainOptions {
		if !strings.Contains(out, "--"+o.Long) {
			t.Errorf("man page lacks --%s", o.Long)
		}
	}
	for _, c := range commands.Table {
		if !strings.Contains(out, `\fB`+strings.ReplaceAll(c.Name, "_", "_")+`\fP`) {
			t.Errorf("man page lacks the verb %s", c.Name)
		}
	}
	if strings.Contains(out, "issue tracker") == false {
		t.Errorf("man page has no BUGS text")
	}
	// groff renders it without warnings, when installed
	if _, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = strings.NewReader(out)
		if msg, err := cmd.CombinedOutput(); err != nil || len(msg) > 0 {
			t.Errorf("groff: %v\n%s", err, msg)
		}
	}
	if _, _, code := runBin(t, qemuLink(t, bin), "man"); code == 0 {
		t.Errorf("qemu-io man succeeded")
	}
}

// complete runs the bash completion function for the words typed so far
// (the last one being completed) and returns COMPREPLY.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	prog := script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
		string(rune('0'+len(words)-1)) + "\n_goqio_complete\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	cmd := exec.Command("bash", "--norc", "-c", prog)
	cmd.Dir = t.TempDir()
	os.WriteFile(filepath.Join(cmd.Dir, "disk.qcow2"), nil, 0o644)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func TestCompletion(t *testing.T) {
	bin := testbin.Goqio(t)
	scripts := map[string]string{}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, errs, code := runBin(t, bin, "completion", sh)
		if code != 0 || out == "" {
			t.Fatalf("goqio completion %s: exit %d %s", sh, code, errs)
		}
		scripts[sh] = out
		for _, o := range commands.MainOptions {
			if !strings.Contains(out, o.Long) {
				t.Errorf("%s script lacks --%s", sh, o.Long)
			}
		}
		for _, c := range append(newApp("goqio").Commands, nil) {
			if c != nil && !strings.Contains(out, c.Name) {
				t.Errorf("%s script lacks the subcommand %s", sh, c.Name)
			}
		}
		for _, v := range append(append([]string{"write", "aio_flush"}, commands.CacheModes...), commands.DiscardModes...) {
			if !strings.Contains(out, v) {
				t.Errorf("%s script lacks %s", sh, v)
			}
		}
		if _, err := exec.LookPath(sh); err == nil && sh != "bash" {
			cmd := exec.Command(sh, "-n")
			cmd.Stdin = strings.NewReader(out)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", sh, err, msg)
			}
		}
	}
	if _, _, code := runBin(t, bin, "completion", "tcsh"); code != 1 {
		t.Errorf("completion tcsh: exit %d", code)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	b := scripts["bash"]
	cases := []struct {
		words []string
		want  []string
	}{
		{[]string{"goqio", "compl"}, []string{"completion"}},
		{[]string{"goqio", "co"}, []string{"compare", "convert", "commit", "completion"}},
		{[]string{"goqio", "-t", "w"}, []string{"writeback", "writethrough"}},
		{[]string{"goqio", "--discard", "u"}, []string{"unmap"}},
		{[]string{"goqio", "--output=j"}, []string{"--output=json"}},
		{[]string{"goqio", "-c", "aio_"}, []string{"aio_flush", "aio_read", "aio_write"}},
		{[]string{"goqio", "help", "trunc"}, []string{"truncate"}},
		{[]string{"goqio", "completion", "z"}, []string{"zsh"}},
		{[]string{"goqio", "--force-sh"}, []string{"--force-share"}},
		{[]string{"goqio", "-f", "qcow2", "dis"}, []string{"disk.qcow2"}},
	}
	for _, c := range cases {
		if got := complete(t, b, c.words...); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("completing %q: %q, want %q", c.words, got, c.want)
		}
	}
	// zsh: the script's function, with zsh's completion builtins stubbed to
	// print what they are given, for each kind of position
	if _, err := exec.LookPath("zsh"); err == nil {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "_goqio"), []byte(scripts["zsh"]), 0o644)
		prog := `compdef() { :; }
compadd() { print -r -- "compadd $*"; }
_describe() { print -rl -- "describe" ${(P)4}; }
_files() { print -r -- "files"; }
_arguments() { print -rl -- "arguments" "$@"; }
source ./_goqio
print '== help'; words=(goqio help tr); CURRENT=3; _goqio
print '== completion'; words=(goqio completion ''); CURRENT=3; _goqio
print '== sub'; words=(goqio co); CURRENT=2; _goqio
print '== info'; words=(goqio info x); CURRENT=3; _goqio
print '== opts'; words=(goqio -t w); CURRENT=3; _goqio
`
		cmd := exec.Command("zsh", "-f", "-c", prog)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("zsh: %v\n%s", err, out)
		}
		parts := map[string]string{}
		for _, p := range strings.Split(string(out), "== ")[1:] {
			name, body, _ := strings.Cut(p, "\n")
			parts[name] = body
		}
		for name, want := range map[string][]string{
			"help":       {"compadd -- ", " truncate ", " completion "},
			"completion": {"compadd -- bash zsh fish\n"},
			"sub":        {"describe\n", "compare:compare the guest contents", "completion:print a shell completion script", "files\n"},
			"info":       {"files\n"},
			"opts": {"(-t --cache)-t[use the given cache mode for the image]:mode:(none off writeback writethrough directsync unsafe)",
				"(-d --discard)--discard=[", ":mode:(ignore off unmap on)", "--output=[", ":fmt:(human json)", "(-c --cmd)-c[", ":string:($verbs)", "*:image file:_files"},
		} {
			for _, w := range want {
				if !strings.Contains(parts[name], w) {
					t.Errorf("zsh %s: lacks %q:\n%s", name, w, parts[name])
				}
			}
		}
	}

	// fish completes the same from its script (complete -C), when installed
	if _, err := exec.LookPath("fish"); err != nil {
		return
	}
	dir := t.TempDir()
	fishScript := filepath.Join(dir, "goqio.fish")
	os.WriteFile(fishScript, []byte(scripts["fish"]), 0o644)
	os.WriteFile(filepath.Join(dir, "disk.qcow2"), nil, 0o644)
	for _, c := range cases {
		line := strings.Join(c.words, " ")
		cmd := exec.Command("fish", "--no-config", "-c", "source "+fishScript+"; complete -C '"+line+"'")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				got = append(got, strings.Split(l, "\t")[0])
			}
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") && !sameSet(got, c.want) {
			t.Errorf("fish completing %q: %q, want %q", line, got, c.want)
		}
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// TestPassSubcommands: the qemu-img and qemu-nbd subcommands goqio runs
// are those of the table the help, man page and completion scripts come
// from, every qemu-img subcommand goqio implements is one of them (or one
// of goqio's own create, check, snapshot), and help shows their synopsis.
func TestPassSubcommands(t *testing.T) {
	bin := testbin.Goqio(t)
	own := map[string]bool{}
	for _, c := range newApp("goqio").Commands {
		own[c.Name] = true
	}
	for _, name := range qemuimg.Commands {
		if qemuimg.Implemented(name) && !own[name] {
			t.Errorf("qemu-img %s is implemented but not a goqio subcommand", name)
		}
	}
	help, _, _ := runBin(t, bin, "--help")
	for _, s := range append(append([]passSub{}, imgSubs...), nbdSub) {
		s := s
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			if s.name != "nbd" && !qemuimg.Implemented(s.name) {
				t.Errorf("goqio %s: qemuimg does not implement it", s.name)
			}
			if !strings.Contains(help, "  "+s.name+" ") {
				t.Errorf("--help does not list %s", s.name)
			}
			// dispatched to the QEMU command line, not opened as an image
			_, errs, code := runBin(t, bin, s.name)
			if code == 0 || strings.Contains(errs, "Could not open '"+s.name+"'") {
				t.Errorf("goqio %s: exit %d %q", s.name, code, errs)
			}
			out, _, code := runBin(t, bin, "help", s.name)
			if code != 0 || !strings.Contains(out, "goqio "+s.name+" - "+s.usage) || strings.Contains(out, "OPTIONS:") {
				t.Errorf("goqio help %s: exit %d\n%s", s.name, code, out)
			}
			if s.name != "nbd" && !strings.Contains(out, imgSynopsis("goqio", s.name)) {
				t.Errorf("goqio help %s lacks qemu-img's synopsis:\n%s", s.name, out)
			}
			if vh, ok := commands.VerbHelp(s.name); ok && !strings.Contains(out, vh) {
				t.Errorf("goqio help %s lacks the verb's help:\n%s", s.name, out)
			}
		})
	}
}

// TestBuildInfo: the module version and the VCS revision, time and
// modified flag as go build stamps them (go install PATH@VERSION gives a
// version; a build in a clone a revision unless -buildvcs=false).
func TestBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "v0.1.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef"},
		{Key: "vcs.time", Value: "2026-12-01T15:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	m, r := buildInfoOf(bi, true)
	if m != "github.com/goqio/goqio v0.1.0" || r != "0123456789abcdef (2026-12-01T15:00:00Z) modified" {
		t.Errorf("buildInfoOf: %q %q", m, r)
	}
	bi.Settings = bi.Settings[:2]
	if _, r := buildInfoOf(bi, true); r != "0123456789abcdef" {
		t.Errorf("revision without time: %q", r)
	}
	bi.Settings = nil
	if _, r := buildInfoOf(bi, true); !strings.HasPrefix(r, "unknown") {
		t.Errorf("no VCS stamp: %q", r)
	}
	if m, _ := buildInfoOf(nil, false); m != "unknown" {
		t.Errorf("no build info: %q", m)
	}
	// goqio's version: a release's tag, else commands.Version
	for v, want := range map[string]string{"v0.2.1": "0.2.1", "(devel)": commands.Version,
		"v0.0.0-20261201155433-0d67d32f3016": commands.Version, "v0.2.0-rc1": commands.Version} {
		bi.Main.Version = v
		if got := goqioVersion(bi, true); got != want {
			t.Errorf("goqioVersion(%s) = %s, want %s", v, got, want)
		}
	}
	if got := goqioVersion(nil, false); got != commands.Version {
		t.Errorf("goqioVersion without build info: %s", got)
	}
}

// TestSubcommandJSON: the subcommands that take --output=json are the
// ones docs/json.md lists, and print what qemu-img prints (when installed).
func TestSubcommandJSON(t *testing.T) {
	doc, err := os.ReadFile("../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	var withJSON []string
	for _, s := range imgSubs {
		if strings.Contains(imgSynopsis("goqio", s.name), "--output=") {
			withJSON = append(withJSON, s.name)
		}
	}
	for _, c := range newApp("goqio").Commands {
		for _, f := range c.Flags {
			if f.Names()[0] == "output" {
				withJSON = append(withJSON, c.Name)
			}
		}
	}
	if len(withJSON) < 4 {
		t.Fatalf("subcommands with --output: %q", withJSON)
	}
	for _, name := range withJSON {
		if !strings.Contains(string(doc), "`goqio "+name+" --output=json`") {
			t.Errorf("docs/json.md does not document goqio %s --output=json", name)
		}
	}
	real, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("no qemu-img")
	}
	bin := testbin.Goqio(t)
	dir := t.TempDir()
	if msg, err := exec.Command(real, "create", "-q", "-f", "qcow2", filepath.Join(dir, "t.qcow2"), "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v %s", err, msg)
	}
	for _, name := range withJSON {
		var outs [2]string
		for i, prog := range []string{bin, real} {
			cmd := exec.Command(prog, name, "--output=json", "t.qcow2")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%s %s: %v %s", prog, name, err, out)
			}
			outs[i] = string(out)
		}
		if outs[0] != outs[1] {
			t.Errorf("goqio %s --output=json:\n%s\nqemu-img:\n%s", name, outs[0], outs[1])
		}
	}
}
