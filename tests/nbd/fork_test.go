package nbd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFork: --fork returns once the server runs (status 0, the pid file
// written), the daemon serves and ends after its client as qemu-nbd's
// does; a daemon that fails to start passes its message and status 1 to
// the parent.
func TestFork(t *testing.T) {
	for name, prog := range servers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			sh(t, dir, chainSetup)
			sock, pidf := filepath.Join(dir, "f.sock"), filepath.Join(dir, "p.pid")
			out := runNBD(dir, prog, "--fork", "--pid-file", pidf, "-k", sock, "-f", "raw", "r.img")
			if out != "[rc=0]\n" {
				t.Fatalf("--fork: %q", out)
			}
			b, err := os.ReadFile(pidf)
			if err != nil {
				t.Fatal(err)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			io := run(dir, "qemu-io", "-f", "raw", "-c", "read -P 0x77 1M 64k", "nbd+unix:///?socket="+sock)
			if !strings.Contains(io, "read 65536/65536") {
				t.Errorf("client: %s", io)
			}
			deadline := time.Now().Add(20 * time.Second)
			for syscall.Kill(pid, 0) == nil {
				if time.Now().After(deadline) {
					syscall.Kill(pid, syscall.SIGKILL)
					t.Fatal("the daemon did not end after its client")
				}
				time.Sleep(5 * time.Millisecond)
			}
			out = runNBD(dir, prog, "--fork", "-k", filepath.Join(dir, "g.sock"), "-f", "raw", "nonexist.img")
			if want := "qemu-nbd: Failed to blk_new_open 'nonexist.img': Could not open 'nonexist.img': No such file or directory\n[rc=1]\n"; out != want {
				t.Errorf("failing daemon: %q, want %q", out, want)
			}
		})
	}
}

// runNBD is run with argv[0] qemu-nbd, its output in a file: a daemon
// keeps its parent's stderr (as qemu-nbd's does), so a pipe would stay open.
func runNBD(dir, prog string, args ...string) string {
	f, err := os.CreateTemp(dir, "out")
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	cmd := exec.Command(prog, args...)
	cmd.Args[0] = "qemu-nbd"
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	rc := 0
	if ee, ok := err.(*exec.ExitError); ok {
		rc = ee.ExitCode()
	}
	out, _ := os.ReadFile(f.Name())
	return fmt.Sprintf("%s[rc=%d]\n", out, rc)
}
