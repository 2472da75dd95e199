package image

import "sync"

// Submission order.
//
// QEMU runs a request's coroutine at submission until its first yield, so
// the requests a client has in flight take the driver's lock, and allocate
// clusters, in the order they were submitted: an NBD client's writes, or
// qemu-io's aio_writes, land at the same host offsets in every run. A
// goroutine per request would race for the lock instead. A Ticket keeps
// QEMU's order: the submitter draws it (in its own goroutine, when it
// submits), and the request's goroutine uses it for its Disk call, which
// waits until every earlier ticket of that Disk has gone through.
//
// Only a Disk whose driver runs one request at a time (SerialDriver, or a
// filter over one) orders its requests: there, waiting for the turn costs
// nothing the driver's own lock would not. A Disk whose driver admits its
// requests (AdmittingDriver: qcow2, whose metadata lock requests take in
// turn while their data I/O runs in parallel) orders them only up to the
// driver's lock. Elsewhere a Ticket is free and requests run in parallel,
// as QEMU's thread pool runs them.
//
// Known limit: a Disk request that calls its driver twice (a zero write
// the driver refuses and the Disk writes as explicit zeroes, the
// read-modify-write of a padded write) is admitted by its first call; its
// second one admits the next ticket early, which then runs unordered
// against the ticket after it.

// SerialDriver is implemented by drivers that run one request at a time:
// their Disk runs ticketed requests in submission order.
type SerialDriver interface {
	SerialRequests() bool
}

// AdmittingDriver is implemented by drivers that run requests in parallel
// but in the order they take their lock, which no later request can take
// first once a request holds it (qcow2's metadata lock, which QEMU's
// coroutines take in submission order): the Disk hands SetAdmit a function
// that the driver calls once a request holds its lock, and lets the next
// ticket in from then on instead of when the request completes. Through a
// filter, such a driver is ordered as a serial one.
//
// admit returns the admitted request's Req when it is asynchronous (its
// ticket came from AsyncTicket), for a driver that parks such requests on
// a Loop, and nil otherwise.
type AdmittingDriver interface {
	SetAdmit(admit func() *Req)
}

// Ticket is one request's place in its Disk's submission order. It is
// used once, by one goroutine, for one call of its methods (a second call
// takes a new place, at the end of the queue); a ticket that is not used
// must be dropped with Drop, or the requests after it would wait forever.
type Ticket struct {
	d    *Disk
	n    uint64 // 0: the Disk does not order its requests
	used bool
	req  *Req // AsyncTicket's
}

// Ticket draws the next place in d's submission order.
func (d *Disk) Ticket() *Ticket {
	d.ticketed.Store(true)
	t := d.draw()
	return &t
}

// unordered reports whether a plain call (not through a Ticket) runs
// without taking a place in submission order: when d orders nothing, and
// when its driver admits requests and no Ticket was ever drawn. Calls
// from goroutines of their own have no order to keep (which of two
// concurrent calls comes first is the scheduler's choice either way), and
// an admitting driver is safe for concurrent use, so they run in
// parallel; once a client orders its requests with tickets (qemu-io's aio,
// the NBD server), its plain calls take their place too.
func (d *Disk) unordered() bool {
	g := d.gate()
	return g == nil || (g.early && !d.ticketed.Load())
}

// draw is Ticket as a value, for Disk's own calls (no allocation).
func (d *Disk) draw() Ticket {
	t := Ticket{d: d}
	if g := d.gate(); g != nil {
		t.n = g.draw()
	}
	return t
}

// AsyncTicket is Ticket for the asynchronous request r of d's loop: its
// request parks after its I/O until the loop runs it (r nil: Ticket).
func (d *Disk) AsyncTicket(r *Req) *Ticket {
	d.ticketed.Store(true)
	t := d.draw()
	t.req = r
	return &t
}

// Admitted reports whether every ticket drawn so far has been admitted by
// the driver (or used, or dropped): no request submitted earlier still has
// its first step to run.
func (d *Disk) Admitted() bool {
	g := d.gate()
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.turn == g.next && g.holder == 0
}

// Drop gives the place up when the ticket was not used (it is harmless
// after a use, so that `defer t.Drop()` is the usual pattern).
func (t *Ticket) Drop() {
	if t.used || t.n == 0 {
		return
	}
	t.used = true
	t.d.order.drop(t.n)
}

// enter waits for the ticket's turn and returns what ends it.
func (t *Ticket) enter() func() {
	g := t.d.gate()
	if g == nil {
		return func() {}
	}
	if t.used || t.n == 0 {
		t.n = g.draw()
	}
	t.used = true
	g.acquire(t.n)
	if !g.early {
		return g.release
	}
	n := t.n
	g.mu.Lock()
	g.holder, g.holderReq = n, t.req
	g.mu.Unlock()
	return func() { g.releaseHolder(n) }
}

// ReadAt is Disk.ReadAt in the ticket's turn.
func (t *Ticket) ReadAt(p []byte, off int64) error {
	defer t.enter()()
	return t.d.readAt(p, off)
}

// WriteAt is Disk.WriteAt in the ticket's turn.
func (t *Ticket) WriteAt(p []byte, off int64, fua bool) error {
	defer t.enter()()
	return t.d.writeAt(p, off, fua)
}

// WriteZeroes is Disk.WriteZeroes in the ticket's turn.
func (t *Ticket) WriteZeroes(off, n int64, flags ZeroFlags, fua bool) error {
	defer t.enter()()
	return t.d.writeZeroes(off, n, flags, fua)
}

// Discard is Disk.Discard in the ticket's turn.
func (t *Ticket) Discard(off, n int64) error {
	defer t.enter()()
	return t.d.discard(off, n)
}

// WriteCompressed is Disk.WriteCompressed in the ticket's turn.
func (t *Ticket) WriteCompressed(p []byte, off int64) error {
	defer t.enter()()
	return t.d.writeCompressed(p, off)
}

// Prefetch is Disk.Prefetch in the ticket's turn.
func (t *Ticket) Prefetch(off, n int64) error {
	defer t.enter()()
	return t.d.prefetch(off, n)
}

// Ordered reports whether d runs its requests in submission order (its
// driver, or the driver under its filters, is serial or admitting), for
// drivers over several children that order their requests when one of
// the children does.
func (d *Disk) Ordered() bool { return d.gate() != nil }

// gate returns d's order gate, nil when d does not order its requests.
func (d *Disk) gate() *orderGate {
	d.orderOnce.Do(func() {
		if serialDriver(d) {
			d.order = &orderGate{next: 1, turn: 1}
		} else if a, ok := d.drv.(AdmittingDriver); ok {
			g := &orderGate{next: 1, turn: 1, early: true}
			a.SetAdmit(func() *Req { return g.releaseHolder(0) })
			d.order = g
		}
	})
	return d.order
}

// serialDriver reports whether d's driver, or the driver under its
// filters, runs one request at a time.
func serialDriver(d *Disk) bool {
	for i := 0; d != nil && i < 64; i++ {
		if s, ok := d.drv.(SerialDriver); ok && s.SerialRequests() {
			return true
		}
		if _, ok := d.drv.(AdmittingDriver); ok && i > 0 {
			return true // under a filter: its requests one at a time, in order
		}
		f, ok := d.drv.(Filter)
		if !ok {
			return false
		}
		d = f.Filtered()
	}
	return false
}

// orderGate is a FIFO ticket lock whose tickets are drawn ahead of use.
type orderGate struct {
	mu      sync.Mutex
	next    uint64 // the next ticket drawn
	turn    uint64 // the ticket that holds, or may take, the gate
	waiting map[uint64]chan struct{}
	dropped map[uint64]bool
	// early: the driver admits requests (AdmittingDriver); holder is the
	// ticket in its turn that the driver has not admitted yet, 0 when none
	early     bool
	holder    uint64
	holderReq *Req
}

// releaseHolder ends the turn of ticket n (of whichever ticket holds it,
// for n 0: the driver admitted it) unless it has ended already, and
// returns that ticket's Req (nil unless asynchronous).
func (g *orderGate) releaseHolder(n uint64) *Req {
	g.mu.Lock()
	var r *Req
	if g.holder != 0 && (n == 0 || g.holder == n) {
		r = g.holderReq
		g.holder, g.holderReq = 0, nil
		g.advance()
	}
	g.mu.Unlock()
	return r
}

func (g *orderGate) draw() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.next
	g.next++
	return n
}

// acquire waits until it is ticket n's turn.
func (g *orderGate) acquire(n uint64) {
	g.mu.Lock()
	if g.turn == n {
		g.mu.Unlock()
		return
	}
	if g.waiting == nil {
		g.waiting = map[uint64]chan struct{}{}
	}
	ch := make(chan struct{})
	g.waiting[n] = ch
	g.mu.Unlock()
	<-ch
}

// release ends the current turn.
func (g *orderGate) release() {
	g.mu.Lock()
	g.advance()
	g.mu.Unlock()
}

// advance passes the turn on, over dropped tickets, and wakes its holder.
func (g *orderGate) advance() {
	g.turn++
	for g.dropped[g.turn] {
		delete(g.dropped, g.turn)
		g.turn++
	}
	if ch, ok := g.waiting[g.turn]; ok {
		delete(g.waiting, g.turn)
		close(ch)
	}
}

// drop gives up unused ticket n.
func (g *orderGate) drop(n uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.turn == n {
		g.advance()
		return
	}
	if g.dropped == nil {
		g.dropped = map[uint64]bool{}
	}
	g.dropped[n] = true
}
