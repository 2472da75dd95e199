package qemunbd

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// forkEnv marks the daemon of --fork (and of -c without -v): Go cannot
// fork a running process, so the parent runs itself again with this
// variable naming the descriptor of its own stderr, and waits as QEMU's
// parent waits. forkListenEnv passes a socket-activated descriptor on.
const (
	forkEnv       = "GOQIO_QEMU_NBD_DAEMON"
	forkListenEnv = "GOQIO_QEMU_NBD_DAEMON_LISTEN"
)

// forkParent is the parent of qemu-nbd's fork: it starts the daemon with
// its stderr on a pipe, copies what the daemon prints there to stderr
// until the daemon closes it (once the server runs), and exits 1 if
// anything was printed, else 0.
func (e *env) forkParent(activation int) int {
	self, err := os.Executable()
	if err != nil {
		return e.fail("Failed to fork: %s", sysErr(err))
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return e.fail("Error setting up communication pipe: %s", sysErr(err))
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return e.fail("Failed to fork: %s", sysErr(err))
	}
	cmd := &exec.Cmd{Path: self, Args: os.Args, Stdin: null, Stdout: null, Stderr: pw,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true}}
	var listen *os.File
	if activation > 0 {
		listen = os.NewFile(3, "LISTEN_FDS")
	}
	cmd.ExtraFiles = []*os.File{listen, os.Stderr}
	cmd.Env = append(os.Environ(), forkEnv+"=4")
	if activation > 0 {
		cmd.Env = append(cmd.Env, forkListenEnv+"=1", "LISTEN_PID=", "LISTEN_FDS=")
	}
	if err := cmd.Start(); err != nil {
		return e.fail("Failed to fork: %s", sysErr(err))
	}
	pw.Close()
	null.Close()
	cmd.Process.Release()
	n, err := io.Copy(e.stderr, pr)
	if err != nil {
		return e.fail("Cannot read from daemon: %s", sysErr(err))
	}
	if n > 0 {
		return 1
	}
	return 0
}

// forkedReady is the daemon's side: once the server runs (with -c, once
// the device runs) the pipe is closed, which lets the parent exit, and
// stderr goes to /dev/null. qemu-nbd 7.2 means to give the daemon the
// parent's stderr back with --fork, but what it restores is its stdout,
// /dev/null by then (qemu-nbd --fork prints nothing once it has started:
// checked with the installed 7.2.22), so the daemon says nothing more.
func forkedReady() func() {
	fd, _ := strconv.Atoi(os.Getenv(forkEnv))
	os.Unsetenv(forkEnv)
	os.Unsetenv(forkListenEnv)
	return func() {
		if fd <= 2 {
			return
		}
		if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
			unix.Dup2(int(null.Fd()), 2)
			null.Close()
		}
		unix.Close(fd)
	}
}
