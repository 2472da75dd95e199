package commands

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/goqio/goqio/image"
)

// aioQueue runs asynchronous requests in goroutines and keeps their
// completion reports, in completion order, until the session drains them
// (aio_flush, sleep, close, exit), which is when qemu-io's event loop runs
// their callbacks. A report prints to the session's stdout.
type aioQueue struct {
	wg      sync.WaitGroup
	running atomic.Int64 // requests not yet completed
	mu      sync.Mutex
	done    []func()
	spare   []func() // printDone's other slice, so that neither regrows

	// idle workers wait on work for the next request: a goroutine per
	// request would be made, and its stack grown, for every aio command
	work chan func() func()
	idle atomic.Int32
}

// maxIdleAio is how many finished workers stay for the next requests.
const maxIdleAio = 128

// submit runs req in a goroutine; req returns the completion report.
func (q *aioQueue) submit(req func() func()) {
	q.wg.Add(1)
	q.running.Add(1)
	if q.work == nil {
		q.work = make(chan func() func())
	}
	select {
	case q.work <- req:
	default:
		go q.worker(q.work, req)
	}
}

func (q *aioQueue) worker(work chan func() func(), req func() func()) {
	for {
		report := req()
		q.mu.Lock()
		q.done = append(q.done, report)
		q.mu.Unlock()
		q.running.Add(-1)
		q.wg.Done()
		if q.idle.Add(1) > maxIdleAio {
			q.idle.Add(-1)
			return
		}
		req = <-work
		q.idle.Add(-1)
		if req == nil {
			return
		}
	}
}

// stop lets the idle workers go (the session's image is closed); the
// next request starts them again.
func (q *aioQueue) stop() {
	if q.work != nil {
		close(q.work)
		q.work = nil
	}
}

// submitAio submits req and, with blkdebug breakpoints set, lets it run
// until it completes or is suspended (see settle).
func (s *Session) submitAio(req func() func()) {
	s.aio.submit(req)
	s.settle()
}

// drain waits for every request and prints their reports.
func (s *Session) drain() {
	s.waitSuspended()
	s.aio.wg.Wait()
	s.flushDebug()
	s.printDone()
}

// printDone prints the reports of the requests completed so far.
func (s *Session) printDone() {
	s.aio.mu.Lock()
	done := s.aio.done
	s.aio.done = s.aio.spare[:0]
	s.aio.mu.Unlock()
	for _, r := range done {
		r()
	}
	// the slice is the next one's spare (reports appended meanwhile went
	// to the other)
	clear(done)
	s.aio.mu.Lock()
	s.aio.spare = done[:0]
	s.aio.mu.Unlock()
}

func init() {
	aioReadCmd.Run = runAioRead
	aioWriteCmd.Run = runAioWrite
	aioFlushCmd.Run = func(s *Session, argv []string) error { s.drain(); return nil }
	for _, c := range []*Command{aioReadCmd, aioWriteCmd, aioFlushCmd} {
		register(c)
	}
}

func runAioRead(s *Session, argv []string) error {
	var machine, quiet, verbose, pflag bool
	var pattern byte
	g := s.getopt(argv, aioReadCmd.Opts)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case 'C':
			machine = true
		case 'P':
			pflag = true
			p, ok := s.parsePattern(arg)
			if !ok {
				return ErrFailed
			}
			pattern = p
		case 'i':
			s.printf("injecting invalid read request\n")
			return nil
		case 'q':
			quiet = true
		case 'v':
			verbose = true
		default:
			return s.usage(aioReadCmd)
		}
	}
	args := g.Operands()
	if len(args) < 2 {
		return s.usage(aioReadCmd)
	}
	offset, err := s.cvtnum(args[0])
	if err != nil {
		s.printCvtnumErr(err, args[0])
		return ErrFailed
	}
	total := s.iovecTotal(args[1:])
	if total < 0 {
		return ErrFailed
	}
	buf := getAioBuf(total, 0xab)
	// the request's place in submission order is taken here, as QEMU's
	// coroutine runs at submission (image.Ticket)
	tk := s.disk.Ticket()
	var start time.Time
	if !quiet {
		start = s.Now()
	}
	s.submitAio(func() func() {
		err := tk.ReadAt(buf, offset)
		var elapsed time.Duration
		if !quiet {
			elapsed = s.Now().Sub(start)
		}
		return func() {
			defer putAioBuf(buf)
			if err != nil {
				s.printf("readv failed: %s\n", Strerror(err))
				return
			}
			// a completion does not fail the command that submitted it
			s.readDone(readOutcome{op: "aio_read", d: elapsed, offset: offset, count: total,
				pflag: pflag, match: pflag && allBytes(buf, pattern), patCount: total,
				quiet: quiet, machine: machine, verbose: verbose, buf: buf})
		}
	})
	return nil
}

func runAioWrite(s *Session, argv []string) error {
	var machine, quiet, fua, unmap, zflag bool
	pattern := byte(0xcd)
	g := s.getopt(argv, aioWriteCmd.Opts)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case 'C':
			machine = true
		case 'f':
			fua = true
		case 'q':
			quiet = true
		case 'u':
			unmap = true
		case 'P':
			p, ok := s.parsePattern(arg)
			if !ok {
				return ErrFailed
			}
			pattern = p
		case 'i':
			s.printf("injecting invalid write request\n")
			return nil
		case 'z':
			zflag = true
		default:
			return s.usage(aioWriteCmd)
		}
	}
	args := g.Operands()
	if len(args) < 2 {
		return s.usage(aioWriteCmd)
	}
	if zflag && len(args) != 2 {
		s.printf("-z supports only a single length parameter\n")
		return ErrFailed
	}
	if unmap && !zflag {
		s.printf("-u requires -z to be specified\n")
		return ErrFailed
	}
	offset, err := s.cvtnum(args[0])
	if err != nil {
		s.printCvtnumErr(err, args[0])
		return ErrFailed
	}
	var total int64
	var buf []byte
	if zflag {
		if total, err = s.cvtnum(args[1]); err != nil {
			s.printCvtnumErr(err, args[1])
			return ErrFailed
		}
	} else {
		if total = s.iovecTotal(args[1:]); total < 0 {
			return ErrFailed
		}
		buf = getAioBuf(total, pattern)
	}
	tk := s.disk.Ticket()
	var start time.Time
	if !quiet {
		start = s.Now()
	}
	s.submitAio(func() func() {
		var err error
		if zflag {
			var flags image.ZeroFlags
			if unmap {
				flags |= image.ZeroMayUnmap
			}
			err = tk.WriteZeroes(offset, total, flags, fua)
		} else {
			err = tk.WriteAt(buf, offset, fua)
			putAioBuf(buf)
		}
		var elapsed time.Duration
		if !quiet {
			elapsed = s.Now().Sub(start)
		}
		return func() {
			// a completion does not fail the command that submitted it
			s.writeDone("aio_write", "wrote", err, elapsed, offset, total, quiet, machine)
		}
	})
	return nil
}

// sleepDrain sleeps while the event loop runs, as qemu-io's sleep does:
// requests that complete meanwhile are reported.
func (s *Session) sleepDrain(d time.Duration) {
	if s.interrupt != nil {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.interrupt:
			t.Stop()
		}
	} else {
		time.Sleep(d)
	}
	// qemu-io's sleep runs the main loop: the requests that completed
	// meanwhile report, the others (some perhaps suspended at a
	// breakpoint) go on
	s.settle()
	s.printDone()
}
