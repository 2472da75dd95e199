package shell

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/internal/testbin"
)

// openPty opens a pseudo-terminal pair through /dev/ptmx (what openpty(3)
// does), 120 columns by 40 lines.
func openPty() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err == nil {
		var n int
		if n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN); err == nil {
			slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
		}
	}
	if err == nil {
		err = unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 120})
	}
	if err != nil {
		master.Close()
		if slave != nil {
			slave.Close()
		}
		return nil, nil, err
	}
	return master, slave, nil
}

// ptyTerm is goqio on a pseudo-terminal: what it writes is collected,
// what the test types goes to the terminal's input.
type ptyTerm struct {
	t      *testing.T
	master *os.File
	mu     sync.Mutex
	out    bytes.Buffer
	mark   int // expect looks at what came after it
	more   chan struct{}
}

func (p *ptyTerm) read() {
	buf := make([]byte, 4096)
	for {
		n, err := p.master.Read(buf)
		p.mu.Lock()
		p.out.Write(buf[:n])
		p.mu.Unlock()
		select {
		case p.more <- struct{}{}:
		default:
		}
		if err != nil {
			close(p.more)
			return
		}
	}
}

func (p *ptyTerm) typ(s string) {
	if _, err := p.master.WriteString(s); err != nil {
		p.t.Fatal(err)
	}
}

// all is everything goqio wrote.
func (p *ptyTerm) all() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// since is what goqio wrote after the mark.
func (p *ptyTerm) since() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.out.Bytes()[p.mark:])
}

// expect waits (at most d) until goqio has written want after the mark,
// then moves the mark past it. It reports whether want came.
func (p *ptyTerm) expect(want string, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		i := bytes.Index(p.out.Bytes()[p.mark:], []byte(want))
		if i >= 0 {
			p.mark += i + len(want)
		}
		p.mu.Unlock()
		if i >= 0 {
			return true
		}
		select {
		case _, ok := <-p.more:
			if !ok {
				// goqio has ended: one last look
				p.mu.Lock()
				i = bytes.Index(p.out.Bytes()[p.mark:], []byte(want))
				p.mu.Unlock()
				return i >= 0
			}
		case <-deadline.C:
			return false
		}
	}
}

func (p *ptyTerm) must(want string) {
	p.t.Helper()
	if !p.expect(want, 20*time.Second) {
		p.t.Fatalf("goqio never wrote %q; after the mark:\n%q", want, p.since())
	}
}

// TestShellPty is the shell on a pseudo-terminal (no tmux needed): tab
// completion of option values, file paths and verbs (the completed lines
// run), Ctrl-C during a command (sleep) returning to the prompt with the
// image intact and clean, Ctrl-C at the prompt dropping the line, Ctrl-D
// ending the session with a newline rather than ^D.
func TestShellPty(t *testing.T) {
	master, slave, err := openPty()
	if err != nil {
		t.Skip("no pseudo-terminal:", err)
	}
	defer master.Close()
	bin := testbin.Goqio(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "subdir", "disk.qcow2")
	if err := qcow2.Create(img, qcow2.CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOQIO_HISTORY="+filepath.Join(dir, "history"), "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	}()
	p := &ptyTerm{t: t, master: master, more: make(chan struct{}, 1)}
	go p.read()

	p.must("goqio> ")
	// -t, -d values and the path, each completed from a prefix: open
	// fails unless all three were
	p.typ("open -t writet\t-d un\t-o driver=qcow2 su\t")
	p.must("subdir/")
	p.typ("di\t")
	p.must("disk.qcow2")
	p.typ("\r")
	p.must("goqio> ")
	p.typ("leng\t\r")
	p.must("1 MiB")
	p.must("goqio> ")
	p.typ("help trun\t\r")
	p.must("truncates the current file")
	p.must("goqio> ")
	if all := p.all(); strings.Contains(all, "nvalid") || strings.Contains(all, "can't open") || strings.Contains(all, "not found") || strings.Contains(all, "no file open") {
		t.Fatalf("a completed line failed:\n%q", all)
	}
	p.typ("write -P 5 0 64k\r")
	p.must("wrote 65536/65536 bytes at offset 0")
	p.must("goqio> ")

	// Ctrl-C while sleep runs: goqio may still be between readline and the
	// command when the first one comes (then it is lost, not fatal), so
	// it is typed again until the prompt is back.
	p.typ("sleep 600000\r")
	p.must("sleep 600000\r\n") // readline's last echo of the line, then the command runs
	start := time.Now()
	back := false
	for i := 0; i < 50 && !back; i++ {
		p.typ("\x03")
		back = p.expect("goqio> ", 200*time.Millisecond)
	}
	t.Logf("sleep interrupted after %v", time.Since(start))
	if !back || time.Since(start) > 30*time.Second {
		t.Fatalf("Ctrl-C did not end the sleep:\n%q", p.since())
	}
	p.typ("read -P 5 0 64k\r")
	p.must("read 65536/65536 bytes at offset 0")
	p.must("goqio> ")

	// Ctrl-C during a long write (1 GiB to a null-co image taking 200 ms a
	// request: 13 s in 64 chunks) stops it between two chunks
	// (each line's end first: readline redraws the prompt with the line
	// as it is typed, and a "goqio> " of those redraws is no sign that the
	// command ran; a line typed ahead while a command runs is echoed by
	// the terminal, and a Ctrl-C then reaches the wrong command)
	p.typ("close\r")
	p.must("close\r\n")
	p.must("goqio> ")
	p.typ("open -o driver=null-co,size=4G,latency-ns=200000000 null-co://\r")
	p.must("null-co://\r\n")
	p.must("goqio> ")
	p.typ("write -P 1 0 1G\r")
	p.must("write -P 1 0 1G\r\n")
	start = time.Now()
	back = false
	for i := 0; i < 50 && !back; i++ {
		p.typ("\x03")
		back = p.expect("goqio> ", 250*time.Millisecond)
	}
	if s := p.since(); !back || !strings.Contains(p.all(), "goqio: write interrupted: ") || time.Since(start) > 10*time.Second {
		t.Fatalf("Ctrl-C did not stop the write:\n%q", s)
	}

	// at the prompt: the line is dropped
	p.typ("length 0")
	p.must("length 0")
	p.typ("\x03")
	p.must("^C")
	// the fresh prompt first: a Ctrl-D that reaches readline before it
	// has dropped the line deletes a character instead of ending input
	p.must("goqio> ")
	p.typ("\x04")
	var exit *exec.ExitError
	select {
	case err := <-done:
		if !errors.As(err, &exit) || exit.ExitCode() != 1 { // the interrupted sleep failed
			t.Errorf("goqio ended with %v, want exit status 1", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Ctrl-D did not end goqio:\n%q", p.since())
	}
	for range p.more {
	}
	tail := p.since()
	if strings.Contains(tail, "bad argument count") {
		t.Errorf("the dropped line ran:\n%q", tail)
	}
	last := strings.LastIndex(tail, "goqio> ")
	if strings.Contains(tail, "^D") || last < 0 || !strings.Contains(tail[last:], "\n") {
		t.Errorf("Ctrl-D: want a newline after the last prompt, no ^D:\n%q", tail)
	}
	out, err := exec.Command(bin, "check", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No errors were found on the image.") {
		t.Errorf("goqio check after the session: %v\n%s", err, out)
	}
}
