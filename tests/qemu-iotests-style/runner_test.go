// Package iotests runs goqio's golden transcripts, in the manner of QEMU's
// qemu-iotests. Each file named NNN in this directory is a bash script; it
// runs with a fresh test directory as its working directory and with
// "qemu-io" on PATH meaning goqio (a symlink, so goqio takes that name) and
// "goqio" meaning goqio. Its stdout and stderr go to one file, as in
// qemu-iotests, then pass the filters (the timing part of statistics lines,
// prompts, the test directory) and must equal NNN.out.
//
// When the real qemu-io is installed, every script also runs with
// "qemu-io" meaning the real one and must give the same NNN.out: a golden
// file is evidence only if QEMU agrees with it. With -update the .out files
// are written from the real qemu-io's run (and goqio must then agree), or,
// without QEMU, from goqio's run.
package iotests

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/goqio/goqio/internal/testbin"
)

var update = flag.Bool("update", false, "rewrite the NNN.out golden files")

func TestMain(m *testing.M) {
	testbin.WidenParallel()
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

var (
	timing = regexp.MustCompile(`[0-9]* ops; [0-9/:. sec]* \([0-9/.inf]* [EPTGMKiBbytes]*/sec and [0-9/.inf]* ops/sec\)`)
	script = regexp.MustCompile(`^[0-9]{3}$`)
)

// filter applies qemu-iotests' _filter_qemu_io and _filter_testdir, and
// strips trailing white space as the iotests comparison does.
func filter(out, testDir string) string {
	out = strings.ReplaceAll(out, "\r", "")
	out = timing.ReplaceAllString(out, "X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)")
	out = strings.ReplaceAll(out, "qemu-io> ", "")
	out = strings.ReplaceAll(out, testDir+"/", "TEST_DIR/")
	out = strings.ReplaceAll(out, testDir, "TEST_DIR")
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	return strings.Join(lines, "\n")
}

// runScript runs one script with qemuIO as "qemu-io" and returns its
// filtered transcript.
func runScript(t *testing.T, path, qemuIO, goqio string) string {
	t.Helper()
	top := t.TempDir()
	bin := filepath.Join(top, "bin")
	dir := filepath.Join(top, "scratch")
	for _, d := range []string{bin, dir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"qemu-io": qemuIO, "goqio": goqio} {
		if err := os.Symlink(target, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	outFile := filepath.Join(top, "out")
	f, err := os.Create(outFile)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	cmd := exec.Command("bash", abs)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(),
		"PATH="+bin+":"+os.Getenv("PATH"),
		"TEST_DIR="+dir,
		"LC_ALL=C",
		"GOQIO_HISTORY="+filepath.Join(top, "history"),
	)
	runErr := cmd.Run()
	f.Close()
	raw, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	out := filter(string(raw), dir)
	if runErr != nil {
		out += fmt.Sprintf("[script exited: %v]\n", runErr)
	}
	return out
}

func TestGolden(t *testing.T) {
	goqio := testbin.Goqio(t)
	realIO := ""
	if testbin.HaveQEMU() {
		realIO, _ = exec.LookPath("qemu-io")
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if script.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatal("no golden scripts found")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			golden := name + ".out"
			got := runScript(t, name, goqio, goqio)
			var want string
			if realIO != "" {
				want = runScript(t, name, realIO, goqio)
			}
			if *update {
				src := got
				if realIO != "" {
					src = want
				}
				if err := os.WriteFile(golden, []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			exp, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if realIO != "" && want != string(exp) {
				t.Errorf("the real qemu-io disagrees with %s:\n%s", golden, diff(string(exp), want))
			}
			if got != string(exp) {
				os.WriteFile(name+".out.bad", []byte(got), 0o644)
				t.Errorf("goqio's transcript differs from %s (written to %s.out.bad):\n%s", golden, name, diff(string(exp), got))
			} else {
				os.Remove(name + ".out.bad")
			}
		})
	}
}

// diff is a small line diff for failure messages.
func diff(want, got string) string {
	w := strings.Split(want, "\n")
	g := strings.Split(got, "\n")
	var b bytes.Buffer
	n := max(len(w), len(g))
	shown := 0
	for i := 0; i < n && shown < 40; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want: %q\n  got:  %q\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}
