package commands

import (
	"os"
	"sync"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The blkdebug commands: they act on the first blkdebug node below the
// image (QEMU's bdrv_find_debug_node); without one they fail with
// "Operation not supported" as qemu-io's do.
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
		bd := s.debugNode()
		err := error(unix.ENOTSUP)
		if bd != nil {
			err = bd.Breakpoint(argv[1], argv[2])
		}
		if err != nil {
			s.printf("Could not set breakpoint: %s\n", image.StrerrorOf(err))
			return ErrFailed
		}
		return nil
	}
	removeBreakCmd.Run = func(s *Session, argv []string) error {
		bd := s.debugNode()
		err := error(unix.ENOTSUP)
		if bd != nil {
			err = bd.RemoveBreakpoint(argv[1])
			s.settle()
		}
		if err != nil {
			s.printf("Could not remove breakpoint %s: %s\n", argv[1], image.StrerrorOf(err))
			return ErrFailed
		}
		return nil
	}
	resumeCmd.Run = func(s *Session, argv []string) error {
		bd := s.debugNode()
		err := error(unix.ENOTSUP)
		if bd != nil {
			err = bd.Resume(argv[1])
			s.settle()
		}
		if err != nil {
			s.printf("Could not resume request: %s\n", image.StrerrorOf(err))
			return ErrFailed
		}
		return nil
	}
	// qemu-io runs its event loop until a request is suspended with the
	// tag, forever if none ever is; goqio says why it cannot wait instead
	// of hanging.
	waitBreakCmd.Run = func(s *Session, argv []string) error {
		bd := s.debugNode()
		if bd == nil {
			s.errorf("cannot wait for breakpoint %s: no blkdebug layer: Operation not supported", argv[1])
			return ErrFailed
		}
		defer s.beginPoll()() // (qemu-io's wait_break runs the event loop)
		deadline := time.Now().Add(waitBreakTimeout)
		for !bd.IsSuspended(argv[1]) {
			if s.aio.running.Load() <= int64(len(bd.Suspended())) || time.Now().After(deadline) {
				s.flushDebug()
				s.errorf("cannot wait for breakpoint %s: no request can reach it (qemu-io would wait forever)", argv[1])
				return ErrFailed
			}
			time.Sleep(time.Millisecond)
		}
		s.flushDebug()
		return nil
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

// waitBreakTimeout bounds wait_break while requests are still running
// (they may be blocked behind a suspended one).
const waitBreakTimeout = 5 * time.Second

// settleTimeout bounds how long a command waits for the requests it let
// go (aio submissions, resume) to complete or reach a breakpoint, so that
// blkdebug's messages come where qemu-io prints them.
const settleTimeout = time.Second

// debugger is a blkdebug node as the commands use it.
type debugger interface {
	Breakpoint(event, tag string) error
	RemoveBreakpoint(tag string) error
	Resume(tag string) error
	IsSuspended(tag string) bool
	Suspended() []string
	HasBreakpoints() bool
	ResumeAll()
	SetPrinter(func(string))
}

// debugMsgs holds blkdebug's stdout messages until the main goroutine
// writes them (Output is not safe for concurrent use).
type debugMsgs struct {
	mu   sync.Mutex
	msgs []string
}

// debugNode is bdrv_find_debug_node: the first blkdebug node on the path of
// primary children from the top, or nil.
func (s *Session) debugNode() debugger {
	n := s.node
	for n != nil {
		if d, ok := n.Impl.(debugger); ok {
			d.SetPrinter(func(m string) {
				s.dbg.mu.Lock()
				s.dbg.msgs = append(s.dbg.msgs, m)
				s.dbg.mu.Unlock()
			})
			return d
		}
		n = primaryChild(n)
	}
	return nil
}

func primaryChild(n *formats.Node) *formats.Node {
	for _, c := range n.Children {
		if c.Role&formats.RolePrimary != 0 {
			return c.Node
		}
	}
	return nil
}

// flushDebug writes blkdebug's pending messages to stdout.
func (s *Session) flushDebug() {
	s.dbg.mu.Lock()
	m := s.dbg.msgs
	s.dbg.msgs = nil
	s.dbg.mu.Unlock()
	for _, x := range m {
		s.printf("%s", x)
	}
}

// settle waits (a bounded time) until every running request is suspended
// or done, then prints blkdebug's messages: qemu-io runs a request until
// it yields before the command returns.
func (s *Session) settle() {
	bd := s.debugNode()
	if bd == nil {
		return
	}
	deadline := time.Now().Add(settleTimeout)
	for !s.stalled() && time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
	}
	s.flushDebug()
}

// waitSuspended refuses to wait forever for requests suspended at a
// breakpoint (qemu-io would hang draining them): once only suspended
// requests remain, they are resumed with a message.
func (s *Session) waitSuspended() {
	bd := s.debugNode()
	if bd == nil {
		return
	}
	last, since := int64(-1), time.Now()
	for {
		running := s.aio.running.Load()
		if running == 0 {
			return
		}
		if running != last {
			last, since = running, time.Now()
		}
		tags := bd.Suspended()
		// only suspended requests left, or the others stuck behind them
		// (goqio's locks are not QEMU's): resume rather than hang
		if len(tags) > 0 && (int64(len(tags)) >= running || time.Since(since) > waitBreakTimeout) {
			s.flushDebug()
			s.errorf("requests still suspended at breakpoints (qemu-io would wait forever): resuming %q", tags)
			bd.ResumeAll()
			since = time.Now()
		}
		time.Sleep(time.Millisecond)
	}
}
