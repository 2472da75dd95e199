// Package shell tests goqio's interactive shell in a real terminal: tmux
// runs goqio, send-keys types, capture-pane reads the screen. Skipped when
// tmux is not installed.
package shell

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/raw"
	"github.com/goqio/goqio/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

type term struct {
	t    *testing.T
	name string
}

func (tm term) tmux(args ...string) string {
	out, err := exec.Command("tmux", append([]string{"-L", tm.name}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %q: %v\n%s", args, err, out)
	}
	return string(out)
}

func (tm term) keys(k ...string) { tm.tmux(append([]string{"send-keys", "-t", "s", "--"}, k...)...) }

// waitFor polls the screen until it contains want.
func (tm term) waitFor(want string) string {
	tm.t.Helper()
	var screen string
	for i := 0; i < 400; i++ { // 20 s: a loaded machine (CI under -race) can be slow
		screen = tm.tmux("capture-pane", "-t", "s", "-p")
		if strings.Contains(screen, want) {
			return screen
		}
		time.Sleep(50 * time.Millisecond)
	}
	tm.t.Fatalf("screen never showed %q:\n%s", want, screen)
	return ""
}

func start(t *testing.T, name, cmd string) term {
	tm := term{t, name}
	tm.tmux("new-session", "-d", "-s", "s", "-x", "120", "-y", "40", cmd)
	t.Cleanup(func() { exec.Command("tmux", "-L", name, "kill-server").Run() })
	return tm
}

func TestShell(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed")
	}
	bin := testbin.Goqio(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "t.raw")
	if err := raw.Create(img, 1<<20, image.PreallocOff); err != nil {
		t.Fatal(err)
	}
	hist := filepath.Join(dir, "history")
	cmd := "GOQIO_HISTORY=" + hist + " " + bin + " -f raw " + img + "; echo EXIT=$?; sleep 30"

	tm := start(t, "goqio-shell-1", cmd)
	tm.waitFor("goqio>")
	tm.keys("leng", "Tab", "Enter") // verb completion
	tm.waitFor("1 MiB")
	tm.keys("write -", "Tab", "Tab") // option completion lists the verb's options
	tm.waitFor("-P")
	tm.keys("C-u", "write -P 7 0 512", "Enter")
	tm.waitFor("wrote 512/512 bytes at offset 0")
	tm.keys("read -v 0 1", "C-c") // Ctrl-C abandons the line, not the program
	tm.waitFor("^C")
	tm.keys("Up", "Up", "Enter") // history: the write again... then length
	tm.keys("bogus", "Enter")
	tm.waitFor(`command "bogus" not found`)
	tm.keys("C-d") // Ctrl-D ends the session
	screen := tm.waitFor("EXIT=1")
	if strings.Contains(screen, "00000000:") {
		t.Errorf("the abandoned read ran:\n%s", screen)
	}

	// a second session sees the first one's history
	tm2 := start(t, "goqio-shell-2", cmd)
	tm2.waitFor("goqio>")
	tm2.keys("Up")
	tm2.waitFor("goqio> bogus")
	tm2.keys("C-u", "quit", "Enter")
	tm2.waitFor("EXIT=0")
}

// TestShellFace: completion of file paths after open, verbs after help and
// option values; Ctrl-C during a command returns to the prompt (the image
// intact), at the prompt clears the line; Ctrl-D prints a newline, not ^D.
func TestShellFace(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed")
	}
	bin := testbin.Goqio(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "subdir", "disk.raw")
	if err := raw.Create(img, 1<<20, image.PreallocOff); err != nil {
		t.Fatal(err)
	}
	cmd := "cd " + dir + " && GOQIO_HISTORY=" + filepath.Join(dir, "history") + " " + bin + "; echo EXIT=$?; sleep 30"
	tm := start(t, "goqio-shell-face", cmd)
	tm.waitFor("goqio>")
	tm.keys("open -t writet", "Tab") // a value of -t
	tm.waitFor("goqio> open -t writethrough")
	tm.keys("-d un", "Tab") // a value of -d
	tm.waitFor("-d unmap")
	tm.keys("-o driver=raw su", "Tab") // a directory, then a file in it
	tm.waitFor("open -t writethrough -d unmap -o driver=raw subdir/")
	tm.keys("di", "Tab")
	tm.waitFor("subdir/disk.raw")
	tm.keys("Enter", "help trun", "Tab")
	tm.waitFor("goqio> help truncate")
	tm.keys("Enter")
	tm.waitFor("truncates the current file")
	tm.keys("map --o", "Tab")
	tm.waitFor("goqio> map --output=")
	tm.keys("C-u", "write -P 5 0 4k", "Enter")
	tm.waitFor("wrote 4096/4096 bytes")
	tm.keys("sleep 600000", "Enter") // ten minutes, interrupted
	// the Ctrl-C may come before the command starts (it is lost then, not
	// fatal): it is pressed again until the prompt is back
	prompts := strings.Count(tm.waitFor("goqio> sleep 600000"), "goqio>")
	back := false
	for i := 0; i < 50 && !back; i++ {
		tm.keys("C-c")
		for j := 0; j < 4 && !back; j++ {
			time.Sleep(50 * time.Millisecond)
			back = strings.Count(tm.tmux("capture-pane", "-t", "s", "-p"), "goqio>") > prompts
		}
	}
	if !back {
		t.Fatalf("Ctrl-C did not end the sleep")
	}
	tm.keys("read -P 5 0 4k", "Enter")
	tm.waitFor("read 4096/4096 bytes")
	tm.keys("length 0", "C-c") // at the prompt: the line is dropped
	tm.keys("C-d")
	screen := tm.waitFor("EXIT=")
	if !strings.Contains(screen, "EXIT=1") { // the interrupted sleep failed
		t.Errorf("exit status:\n%s", screen)
	}
	if strings.Contains(screen, "^D") {
		t.Errorf("Ctrl-D echoed ^D:\n%s", screen)
	}
	if strings.Contains(screen, "bad argument count") {
		t.Errorf("the abandoned line ran:\n%s", screen)
	}
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "EXIT=") && (i == 0 || strings.TrimSpace(lines[i-1]) != "goqio>") {
			t.Errorf("Ctrl-D did not end the prompt's line with a newline:\n%s", screen)
		}
	}
}
