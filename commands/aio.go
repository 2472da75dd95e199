package commands

import (
	"cmp"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goqio/goqio/image"
	"golang.org/x/sys/unix"
)

// aioQueue runs asynchronous requests in goroutines and keeps their
// completion reports, in completion order, until the session drains them
// (aio_flush, sleep, close, exit), which is when qemu-io's event loop runs
// their callbacks. A report prints to the session's stdout.
type aioQueue struct {
	wg      sync.WaitGroup
	running atomic.Int64 // requests not yet completed
	mu      sync.Mutex
	done    []doneRec
	spare   []doneRec // takeDone's other slice, so that neither regrows

	// idle workers wait on work for the next request: a goroutine per
	// request would be made, and its stack grown, for every aio command
	work chan aioReq
	idle atomic.Int32

	// kick has a token when a request completed, parked or began to wait
	// since the last look (waitQuiescent)
	kick chan struct{}
}

// signal puts a token in kick.
func (q *aioQueue) signal() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// aioReq is a submitted request: run returns its completion report.
type aioReq struct {
	req *image.Req
	run func() func()
}

// doneRec is a completed request's report.
type doneRec struct {
	req    *image.Req
	report func()
}

// maxIdleAio is how many finished workers stay for the next requests.
const maxIdleAio = 128

// submit runs req in a goroutine; req returns the completion report.
func (q *aioQueue) submit(req aioReq) {
	q.wg.Add(1)
	q.running.Add(1)
	if q.work == nil {
		q.work = make(chan aioReq)
	}
	if q.kick == nil {
		q.kick = make(chan struct{}, 1)
	}
	select {
	case q.work <- req:
	default:
		go q.worker(q.work, req)
	}
}

func (q *aioQueue) worker(work chan aioReq, req aioReq) {
	for {
		report := req.run()
		q.mu.Lock()
		q.done = append(q.done, doneRec{req.req, report})
		q.mu.Unlock()
		q.running.Add(-1)
		q.signal()
		q.wg.Done()
		if q.idle.Add(1) > maxIdleAio {
			q.idle.Add(-1)
			return
		}
		var ok bool
		if req, ok = <-work; !ok {
			return
		}
		q.idle.Add(-1)
	}
}

// takeDone returns the reports of the requests completed so far; the
// caller gives the slice back with giveBack.
func (q *aioQueue) takeDone() []doneRec {
	q.mu.Lock()
	done := q.done
	q.done = q.spare[:0]
	q.spare = nil
	q.mu.Unlock()
	return done
}

// putBack returns reports takeDone gave out, to be taken again.
func (q *aioQueue) putBack(done []doneRec) {
	q.mu.Lock()
	q.done = append(q.done, done...)
	q.mu.Unlock()
}

// giveBack returns takeDone's slice once its reports printed, to be the
// next one's spare.
func (q *aioQueue) giveBack(done []doneRec) {
	clear(done)
	q.mu.Lock()
	if q.spare == nil {
		q.spare = done[:0]
	}
	q.mu.Unlock()
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
func (s *Session) submitAio(r *image.Req, req func() func()) {
	s.aio.submit(aioReq{r, req})
	s.settle()
}

// newAio registers an asynchronous request on the session's loop and
// draws its place in submission order.
func (s *Session) newAio() (*image.Req, *image.Ticket) {
	r := s.loop.NewReq()
	return r, s.disk.AsyncTicket(r)
}

// drain waits for every request and prints their reports: it runs the
// loop in rounds, as QEMU's aio_poll does (runRounds), until only
// requests suspended at breakpoints, or waiting behind them, are left;
// those go on as they come.
func (s *Session) drain() {
	if s.aio.running.Load() > 0 {
		s.waitAdmitted()
		s.runRounds()
	}
	end := s.beginPoll()
	s.waitSuspended()
	s.aio.wg.Wait()
	end()
	s.flushDebug()
	s.printDone()
}

// runRounds polls the loop as QEMU's aio_poll: in each round, the events
// ready (requests completed, requests parked after their I/O) are taken
// newest first; the parked ones go on, in parallel, to their next I/O or
// to their end, and the reports of the requests that completed print in
// that order. So the reports of requests that needed no I/O print newest
// first, as QEMU's bottom halves run, and the order is the same in every
// run.
func (s *Session) runRounds() {
	var evs []*image.Req
	byReq := map[*image.Req]func(){}
	for {
		s.waitQuiescent()
		ready := s.aio.takeDone()
		parked := s.loop.Parked()
		if len(ready)+len(parked) == 0 {
			s.aio.giveBack(ready)
			return
		}
		evs = evs[:0]
		clear(byReq)
		for _, d := range ready {
			evs = append(evs, d.req)
			byReq[d.req] = d.report
		}
		evs = append(evs, parked...)
		slices.SortStableFunc(evs, func(a, b *image.Req) int { return cmp.Compare(b.Key(), a.Key()) })
		s.aio.giveBack(ready)
		s.loop.Release(evs)
		if len(parked) > 0 {
			s.waitQuiescent()
			done := s.aio.takeDone()
			var later []doneRec
			for _, d := range done {
				if !slices.Contains(parked, d.req) {
					later = append(later, d) // not one of this round's events
					continue
				}
				byReq[d.req] = d.report
			}
			s.aio.putBack(later)
			s.aio.giveBack(done)
		}
		s.flushDebug()
		for _, r := range evs {
			if report := byReq[r]; report != nil {
				report()
			}
		}
	}
}

// stalled reports whether every request running waits: parked on the
// loop, waiting for another request, or suspended at a breakpoint.
func (s *Session) stalled() bool {
	n := s.loop.Idle()
	if bd := s.debugNode(); bd != nil {
		n += len(bd.Suspended())
	}
	return s.aio.running.Load() <= int64(n)
}

// waitQuiescent waits (a bounded time) until no request runs: each is
// done, parked, waiting for another, or suspended at a breakpoint.
func (s *Session) waitQuiescent() { s.waitUntil(s.stalled) }

// waitAdmitted waits (a bounded time) until the driver has admitted every
// request submitted, or the ones it has not are suspended at breakpoints.
func (s *Session) waitAdmitted() {
	if s.disk == nil || s.aio.running.Load() == 0 {
		return
	}
	s.waitUntil(func() bool { return s.disk.Admitted() || s.stalled() })
}

// waitUntil waits until cond holds, at most settleTimeout: it lets the
// requests run first, then wakes when one completes, parks or begins to
// wait (kick), or every millisecond (a suspension at a breakpoint, or an
// admission, does not kick).
func (s *Session) waitUntil(cond func() bool) {
	var deadline time.Time
	var tick *time.Timer
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for i := 0; !cond(); i++ {
		if i < 100 {
			runtime.Gosched()
			continue
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(settleTimeout)
			tick = time.NewTimer(time.Millisecond)
		} else if time.Now().After(deadline) {
			return
		}
		select {
		case <-s.aio.kick:
		case <-tick.C:
			tick.Reset(time.Millisecond)
		}
	}
}

// beginPoll opens the loop, as qemu-io's event loop runs in aio_flush,
// sleep, wait_break, close and exit: the requests in flight go on after
// their I/O. It opens it once the requests submitted so far have taken
// their first step (image.Disk.Admitted), as QEMU's coroutines did at
// submission, and returns what closes it.
func (s *Session) beginPoll() (end func()) {
	s.waitAdmitted()
	s.loop.Open()
	return s.loop.Close
}

// printDone prints the reports of the requests completed so far, newest
// event first (see runRounds).
func (s *Session) printDone() {
	done := s.aio.takeDone()
	if len(done) > 1 {
		slices.SortStableFunc(done, func(a, b doneRec) int { return cmp.Compare(b.req.Key(), a.req.Key()) })
	}
	for _, d := range done {
		d.report()
	}
	s.aio.giveBack(done)
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
	r, tk := s.newAio()
	var start time.Time
	if !quiet {
		start = s.Now()
	}
	s.submitAio(r, func() func() {
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
	r, tk := s.newAio()
	var start time.Time
	if !quiet {
		start = s.Now()
	}
	s.submitAio(r, func() func() {
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
		switch {
		case quiet:
		case zflag:
			// qemu-io 7.2 starts the clock of a zero write nowhere: its
			// time is the monotonic clock's reading (the time since boot)
			elapsed = monotonicNow()
		default:
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
	// qemu-io's sleep runs the main loop: the requests that completed
	// meanwhile report, the others (some perhaps suspended at a
	// breakpoint) go on
	end := s.beginPoll()
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
	s.settle()
	end()
	s.printDone()
}

// monotonicNow reads CLOCK_MONOTONIC.
func monotonicNow() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
