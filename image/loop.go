package image

import (
	"sync"
	"time"
)

// Loop is QEMU's event loop as one client of a Disk sees it (qemu-io's
// session). In QEMU a request's coroutine runs at submission until it
// first yields (for I/O, or to wait for another request); what it does
// after its I/O happens only when the client polls: qemu-io's aio_flush,
// sleep, wait_break, close and exit, and a synchronous command whose own
// request yields. So `aio_write 0 4k` followed by `aio_read 0 4k` reads
// the old data in every qemu-io run: the write has not linked its new
// cluster when the read looks it up, and cannot until the loop runs.
//
// A Loop gives goqio the same order. A driver that admits requests
// (AdmittingDriver) and is given a Loop (LoopDriver) parks an asynchronous
// request (one drawn with Disk.AsyncTicket) after each of its I/Os until
// the loop is open: during Poll, and during a command (BeginCmd..EndCmd)
// from the moment a synchronous request yields (Yield) or the command has
// run for longer than a poll would let it without one (the watchdog).
// Without a Loop nothing parks: NBD clients, convert and the library run
// their requests as fast as they go.
type Loop struct {
	mu     sync.Mutex
	opens  int    // polls in progress: nothing parks
	seq    uint64 // the last key given
	parked []*Req // in Park, in the order they came
	idle   int    // asynchronous requests waiting for another (Wait)

	// OnIdle, when set (before any request), is called when a request
	// parks or begins to wait for another
	OnIdle func()

	inCmd   bool
	cmdOpen bool   // the command's poll is open
	gen     uint64 // counts BeginCmd and EndCmd calls
	armed   uint64 // the gen the watchdog was set for
	timer   *time.Timer
}

// Req is one asynchronous request on a Loop.
type Req struct {
	// key orders its next event (its completion, or the end of its I/O)
	// among the others of a poll: QEMU's aio_poll runs the bottom halves
	// and thread-pool completions newest first
	key      uint64
	first    bool // its first step: the key is its submission's
	released bool // Release gave it the key of its next event
	ch       chan struct{}
}

// Key is the request's order in the loop (see Req.key).
func (r *Req) Key() uint64 { return r.key }

// loopWatchdog is how long a command runs before its loop is polled
// without a yield: a guard against a wait the drivers do not report.
const loopWatchdog = 2 * time.Second

// NewLoop returns a closed loop.
func NewLoop() *Loop { return &Loop{} }

// NewReq registers an asynchronous request at its submission.
func (l *Loop) NewReq() *Req {
	l.mu.Lock()
	l.seq++
	r := &Req{key: l.seq, first: true}
	l.mu.Unlock()
	return r
}

// Park waits until the loop runs r's continuation after its I/O: Release,
// or a poll opened (Open, a yield).
func (l *Loop) Park(r *Req) {
	l.mu.Lock()
	if l.opens > 0 {
		r.first, r.released = false, false
		l.mu.Unlock()
		return
	}
	if !r.first && !r.released {
		// woken by another request's progress: its event comes now
		l.seq++
		r.key = l.seq
	}
	r.first, r.released = false, false
	r.ch = make(chan struct{})
	ch := r.ch
	l.parked = append(l.parked, r)
	l.mu.Unlock()
	if l.OnIdle != nil {
		l.OnIdle()
	}
	<-ch
}

// Parked returns the requests waiting in Park.
func (l *Loop) Parked() []*Req {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Req(nil), l.parked...)
}

// Release runs one round of a poll over evs, the events ready (requests
// parked after their I/O, and completed ones), in the order the caller
// processes them: each gets the key of what it does next (a later event
// for one that comes later here), and those parked go on.
func (l *Loop) Release(evs []*Req) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range evs {
		l.seq++
		r.key = l.seq
		for i, p := range l.parked {
			if p == r {
				l.parked = append(l.parked[:i], l.parked[i+1:]...)
				r.released = true
				close(r.ch)
				break
			}
		}
	}
}

// Wait brackets an asynchronous request's wait for another request
// (begin true, then false), so that Idle counts it.
func (l *Loop) Wait(begin bool) {
	l.mu.Lock()
	if begin {
		l.idle++
	} else {
		l.idle--
	}
	l.mu.Unlock()
	if begin && l.OnIdle != nil {
		l.OnIdle()
	}
}

// Idle is how many asynchronous requests wait for the loop, or for
// another request.
func (l *Loop) Idle() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.parked) + l.idle
}

// Open starts a poll that runs everything as it comes: the parked
// continuations go on, and none parks until the matching Close.
func (l *Loop) Open() {
	l.mu.Lock()
	l.openLocked()
	l.mu.Unlock()
}

func (l *Loop) openLocked() {
	l.opens++
	if l.opens == 1 {
		for _, r := range l.parked {
			close(r.ch)
		}
		l.parked = nil
	}
}

// Close ends a poll Open started.
func (l *Loop) Close() {
	l.mu.Lock()
	l.closeLocked()
	l.mu.Unlock()
}

func (l *Loop) closeLocked() { l.opens-- }

// BeginCmd starts a command; watch arms the watchdog (requests are in
// flight that a wait of the command might need).
func (l *Loop) BeginCmd(watch bool) {
	l.mu.Lock()
	l.inCmd = true
	l.gen++
	if watch {
		l.armed = l.gen
		if l.timer == nil {
			l.timer = time.AfterFunc(loopWatchdog, l.fire)
		} else {
			l.timer.Reset(loopWatchdog)
		}
	}
	l.mu.Unlock()
}

func (l *Loop) fire() {
	l.mu.Lock()
	if l.armed == l.gen {
		l.yieldLocked()
	}
	l.mu.Unlock()
}

// EndCmd ends the command, and the poll its yield opened.
func (l *Loop) EndCmd() {
	l.mu.Lock()
	l.inCmd = false
	l.gen++
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.cmdOpen {
		l.cmdOpen = false
		l.closeLocked()
	}
	l.mu.Unlock()
}

// Yield reports that a synchronous request waits (for its I/O or for
// another request): qemu-io polls the loop until it completes, so the
// loop stays open until the command ends.
func (l *Loop) Yield() {
	l.mu.Lock()
	l.yieldLocked()
	l.mu.Unlock()
}

func (l *Loop) yieldLocked() {
	if l.inCmd && !l.cmdOpen {
		l.cmdOpen = true
		l.openLocked()
	}
}

// LoopDriver is implemented by admitting drivers that park asynchronous
// requests on a Loop (Disk.SetLoop).
type LoopDriver interface {
	SetLoop(l *Loop)
}

// SetLoop makes l the event loop of d's client: d's asynchronous tickets
// park in its driver when the driver admits requests and takes a loop.
func (d *Disk) SetLoop(l *Loop) {
	g := d.gate()
	d.loop = l
	d.tracked.mu.Lock()
	d.tracked.loop = l
	d.tracked.mu.Unlock()
	if g == nil || !g.early {
		return
	}
	if ld, ok := d.drv.(LoopDriver); ok {
		ld.SetLoop(l)
	}
}
