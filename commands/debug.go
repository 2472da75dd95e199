package commands

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The blkdebug commands. goqio has no blkdebug driver, so, as qemu-io on an
// image without blkdebug, they fail with "Operation not supported".
var (
	breakCmd = &Command{Name: "break", ArgMin: 2, ArgMax: 2, Args: str("event tag"),
		OneLine: "sets a breakpoint on event and tags the stopped request as tag"}
	removeBreakCmd = &Command{Name: "remove_break", ArgMin: 1, ArgMax: 1, Args: str("tag"),
		OneLine: "remove a breakpoint by tag"}
	resumeCmd = &Command{Name: "resume", ArgMin: 1, ArgMax: 1, Args: str("tag"),
		OneLine: "resumes the request tagged as tag"}
	waitBreakCmd = &Command{Name: "wait_break", ArgMin: 1, ArgMax: 1, Args: str("tag"),
		OneLine: "waits for the suspension of a request"}
	abortCmd = &Command{Name: "abort", Flags: flagNoFile,
		OneLine: "simulate a program crash using abort(3)"}
	sigraiseCmd = &Command{Name: "sigraise", ArgMin: 1, ArgMax: 1, Flags: flagNoFile,
		Args: str("signal"), OneLine: "raises a signal",
		Help: `
 raises the given signal

 Example:
 'sigraise 15' - raises SIGTERM

 Invokes raise(signal), where "signal" is the mandatory integer argument
 given to sigraise.

`}
)

func init() {
	breakCmd.Run = func(s *Session, argv []string) error {
		s.printf("Could not set breakpoint: %s\n", "Operation not supported")
		return ErrFailed
	}
	removeBreakCmd.Run = func(s *Session, argv []string) error {
		s.printf("Could not remove breakpoint %s: %s\n", argv[1], "Operation not supported")
		return ErrFailed
	}
	resumeCmd.Run = func(s *Session, argv []string) error {
		s.printf("Could not resume request: %s\n", "Operation not supported")
		return ErrFailed
	}
	// qemu-io waits forever here when the image has no blkdebug layer;
	// goqio says why it cannot wait instead of hanging.
	waitBreakCmd.Run = func(s *Session, argv []string) error {
		s.errorf("cannot wait for breakpoint %s: no blkdebug layer: Operation not supported", argv[1])
		return ErrFailed
	}
	abortCmd.Run = func(s *Session, argv []string) error {
		// abort(3) does not flush stdio: what stdout holds is lost.
		s.Out.Discard()
		RaiseDefault(unix.SIGABRT)
		return ErrFailed
	}
	sigraiseCmd.Run = runSigraise
	for _, c := range []*Command{breakCmd, removeBreakCmd, resumeCmd, waitBreakCmd, abortCmd, sigraiseCmd} {
		register(c)
	}
}

// nsig is glibc's NSIG on Linux.
const nsig = 65

func runSigraise(s *Session, argv []string) error {
	sig, err := s.cvtnum(argv[1])
	if err != nil {
		s.printCvtnumErr(err, argv[1])
		return ErrFailed
	}
	if sig > nsig {
		s.printf("signal argument '%s' is too large to be a valid signal\n", argv[1])
		return ErrFailed
	}
	s.Out.Flush()
	if sig > 0 && sig < nsig {
		RaiseDefault(unix.Signal(sig))
	}
	return nil
}

// RaiseDefault raises sig with its default disposition, as raise(3) does
// in a C program that installed no handler: the Go runtime's own handlers
// (which print goroutine dumps for SIGABRT and SIGQUIT) are bypassed.
func RaiseDefault(sig unix.Signal) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// struct kernel_sigaction { handler, flags, restorer, mask }, SIG_DFL = 0
	var act [4]uint64
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act[0])), 0, 8, 0, 0)
	var set unix.Sigset_t
	set.Val[(sig-1)/64] |= 1 << ((uint(sig) - 1) % 64)
	unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_UNBLOCK, uintptr(unsafe.Pointer(&set)), 0, 8, 0, 0)
	unix.Tgkill(os.Getpid(), unix.Gettid(), sig)
}
