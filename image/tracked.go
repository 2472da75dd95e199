package image

import (
	"math"
	"sync"
)

// Tracked requests, as QEMU's block/io.c keeps them (BdrvTrackedRequest):
// every request in flight on a Disk is registered with its range; a
// serialising request (a padded write's read-modify-write, a padded zero
// write, a copy-on-read) widens its range to the request alignment and
// waits until no overlapping request is in flight, and any request waits
// for overlapping serialising ones. Requests that do not overlap run
// concurrently, so a write suspended at a blkdebug breakpoint in its
// read-modify-write holds up only the requests that touch its blocks.
//
// Waiting requests resume in the order they began to wait, one at a time,
// as QEMU's coroutine queues restart them: the first one to wake takes its
// turn before the next one looks for a conflict, so requests on the same
// blocks take effect in submission order.

// trackedReq is one request in flight.
type trackedReq struct {
	start, end  int64 // the overlap range
	serialising bool
	waitingFor  *trackedReq
	waiters     []*reqWaiter
}

// reqWaiter is a request waiting for another: wake is closed when the other
// ends, and ack is closed once the waiter has looked again for a conflict
// (and proceeded or waits for another request).
type reqWaiter struct {
	wake, ack chan struct{}
}

type tracker struct {
	mu          sync.Mutex
	reqs        []*trackedReq // in the order they began
	serialising int           // serialising requests in flight
	loop        *Loop         // polled by a request that waits (SetLoop)
}

// track registers a request for [off, off+n) and, when a serialising
// request is in flight, waits for those it overlaps (QEMU's
// tracked_request_begin and bdrv_wait_serialising_requests). The caller
// ends it with untrack.
func (d *Disk) track(off, n int64) *trackedReq {
	t := &d.tracked
	r := &trackedReq{start: off, end: satAdd(off, n)}
	t.mu.Lock()
	t.reqs = append(t.reqs, r)
	if t.serialising > 0 {
		t.waitLocked(r)
	}
	t.mu.Unlock()
	return r
}

// trackAll registers a request covering the whole image (copy-on-read,
// which goqio serialises against everything).
func (d *Disk) trackAll() *trackedReq {
	return d.trackSerialising(0, math.MaxInt64, 1)
}

// trackSerialising registers a serialising request over [off, off+n)
// widened to align, and waits for every overlapping request in flight:
// QEMU's tracked_request_begin and bdrv_make_request_serialising, which
// run in one step of a coroutine. Under one lock, so that no request woken
// meanwhile sees it as an ordinary one and goes on beside it.
func (d *Disk) trackSerialising(off, n, align int64) *trackedReq {
	t := &d.tracked
	start := off - off%align
	end := satAdd(off, n)
	if rem := end % align; rem != 0 {
		end = satAdd(end, align-rem)
	}
	r := &trackedReq{start: start, end: end, serialising: true}
	t.mu.Lock()
	t.reqs = append(t.reqs, r)
	t.serialising++
	t.waitLocked(r)
	t.mu.Unlock()
	return r
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// conflict is bdrv_find_conflicting_request: the newest overlapping request
// in flight, one of the two serialising, that is not itself waiting.
func (t *tracker) conflict(r *trackedReq) *trackedReq {
	for i := len(t.reqs) - 1; i >= 0; i-- {
		o := t.reqs[i]
		if o == r || (!o.serialising && !r.serialising) {
			continue
		}
		if r.start < o.end && o.start < r.end && o.waitingFor == nil {
			return o
		}
	}
	return nil
}

// waitLocked waits, with t.mu held (and released while waiting), until r
// has no conflicting request.
func (t *tracker) waitLocked(r *trackedReq) {
	var ack chan struct{}
	for {
		o := t.conflict(r)
		if o == nil {
			break
		}
		w := &reqWaiter{wake: make(chan struct{}), ack: make(chan struct{})}
		r.waitingFor = o
		o.waiters = append(o.waiters, w)
		if ack != nil {
			close(ack)
		}
		if t.loop != nil {
			t.loop.Yield()
		}
		t.mu.Unlock()
		<-w.wake
		t.mu.Lock()
		r.waitingFor = nil
		ack = w.ack
	}
	if ack != nil {
		close(ack)
	}
}

// untrack ends r (tracked_request_end): the requests waiting for it resume,
// in the order they began to wait, each looking for a conflict before the
// next one wakes.
func (d *Disk) untrack(r *trackedReq) {
	t := &d.tracked
	t.mu.Lock()
	for i, o := range t.reqs {
		if o == r {
			t.reqs = append(t.reqs[:i], t.reqs[i+1:]...)
			break
		}
	}
	if r.serialising {
		t.serialising--
	}
	waiters := r.waiters
	r.waiters = nil
	t.mu.Unlock()
	for _, w := range waiters {
		close(w.wake)
		<-w.ack
	}
}
