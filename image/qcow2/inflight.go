package qcow2

import (
	"sync"

	"github.com/goqio/goqio/image"
)

// Concurrency, as QEMU's qcow2 has it.
//
// The metadata (header, L1, the caches, the allocator) is guarded by d.mu
// (coMutex); a request waiting on a queue (coQueue, QEMU's CoQueue) gives
// it up and takes it back when woken. Guest data is read and written
// without it:
//
//   - a read looks up one run of clusters under the lock, then reads the
//     data (data clusters, the backing file, compressed clusters and their
//     decompression) without it, and looks up the next run;
//   - a write allocates under the lock (the host offsets and the in-flight
//     allocation, QEMU's QCowL2Meta, registered), writes its data and its
//     copy-on-write areas without it, and links the L2 entries under it
//     again;
//   - a write that allocates or overwrites bytes another in-flight write is
//     allocating (or writing) waits for it, or stops short of it, as QEMU's
//     handle_dependencies; reads never wait;
//   - discards, zero writes and compressed writes, which may free clusters
//     or need them unallocated, run entirely under the lock once no
//     request in flight touches their clusters (a zero write or discard
//     does not wait for clusters being allocated where they read as zero,
//     as QEMU's do not: waitClusters); a write that drops a
//     compressed cluster waits for the reads of that cluster in flight, so
//     that no read ever finds its host cluster reused;
//   - everything else (snapshots, truncate, check, amend, bitmaps, close)
//     takes the lock exclusively: it waits until no request is in flight,
//     and no new request starts meanwhile.
//
// Sequential requests do exactly what they did under one lock: the same
// host offsets, the same metadata writes, the same blkdebug events in the
// same order.

// coMutex is the metadata lock. Requests take it as they come (a
// sync.Mutex: a running goroutine may take it ahead of a sleeping one,
// which keeps the lock cheap under contention); the order of admission
// that QEMU's coroutines have is kept by the block layer's submission
// ticket, which a request gives up only once it holds the lock
// (admitHook), so that request n+1 cannot take it before request n.
type coMutex struct {
	inner sync.Mutex
	// guarded by inner:
	inflight  []*flight         // newest last
	exclWait  int               // exclusive lockers waiting for the requests to drain
	drainQ    coQueue           // exclusive lockers waiting
	exclQ     coQueue           // new requests waiting for an exclusive locker
	admitHook func() *image.Req // called once a request holds the lock
	loop      *image.Loop       // the client's event loop (SetLoop), or nil
	// resume are the waiters restartAll woke, in the order they began to
	// wait: each may try to take the lock once the one before it has it
	// (resuming: one of them is trying), so that they take it in that
	// order, as QEMU's woken coroutines run one after the other; the
	// holder that woke them may still take it again first (a flush right
	// after a write), as QEMU's coroutine runs on until it yields
	resume   []chan struct{}
	resuming bool
	// lateQ are new requests that came while woken ones were taking the
	// lock in turn: they go after them (their goroutines started late,
	// where QEMU's coroutines would already have been waiting)
	lateQ coQueue
}

// signalNext lets the next woken waiter try to take the lock (m held).
func (m *coMutex) signalNext() {
	if len(m.resume) == 0 && len(m.lateQ.waiters) > 0 {
		m.resume, m.lateQ.waiters = m.lateQ.waiters, nil
	}
	if len(m.resume) == 0 {
		m.resuming = false
		return
	}
	close(m.resume[0])
	m.resume = m.resume[1:]
	m.resuming = true
}

// lockRaw takes the lock, for a holder that changes no guest data (or
// that already has requests in flight: it must not wait for them).
func (m *coMutex) lockRaw() { m.inner.Lock() }

// Lock takes the lock exclusively: once no request is in flight (their
// data I/O done), with no new request starting meanwhile.
func (m *coMutex) Lock() {
	m.inner.Lock()
	for len(m.inflight) > 0 {
		if m.loop != nil {
			m.loop.Yield() // (requests in flight may be parked)
		}
		m.exclWait++
		m.drainQ.wait(m)
		m.exclWait--
	}
}

// Unlock ends any hold; when the last exclusive locker is done, the
// requests that waited for it go on.
func (m *coMutex) Unlock() {
	if m.exclWait == 0 {
		m.exclQ.restartAll(m)
	}
	m.inner.Unlock()
}

// lockReq takes the lock for a new request: it is admitted (admitHook),
// then waits for any exclusive locker that waits. It returns how the
// request holds the lock over its I/O: holdAsync for an asynchronous
// request of a client with a loop.
func (m *coMutex) lockReq() hold {
	m.inner.Lock()
	if m.resuming {
		m.lateQ.wait(m)
	}
	h := holdSync
	if m.admitHook != nil {
		if r := m.admitHook(); r != nil && m.loop != nil {
			h = hold{async: true, req: r}
		}
	}
	for m.exclWait > 0 {
		if m.loop != nil && !h.async {
			m.loop.Yield() // (the exclusive locker may wait for parked requests)
		}
		m.exclQ.wait(m)
	}
	return h
}

// hold is how a request holds d.mu over its I/O: holdSync drops it over
// the I/O and, with a loop, yields the loop (the client polls while a
// synchronous request waits); an asynchronous request (async) drops it
// and, if it writes (req set), parks after the I/O until the client's
// loop runs it (image.Loop); holdKeep keeps it: an exclusive operation,
// or one that must be atomic (no conflict in flight).
//
// An asynchronous read does not park: what it does after its I/O (the
// lookup of its next run, its end) sees what the parked writes leave,
// and its report is ordered by the loop all the same.
type hold struct {
	keep  bool
	async bool
	req   *image.Req
}

var (
	holdSync = hold{}
	holdKeep = hold{keep: true}
)

// waitOn waits on q (d.mu held) for a request holding the lock as h: a
// synchronous request yields the loop first (what it waits for may be
// parked), an asynchronous one is counted idle meanwhile.
func (d *Driver) waitOn(q *coQueue, h hold) {
	loop := d.mu.loop
	switch {
	case loop == nil:
		q.wait(&d.mu)
	case h.async:
		loop.Wait(true)
		q.wait(&d.mu)
		loop.Wait(false)
	default:
		loop.Yield()
		q.wait(&d.mu)
	}
}

// coQueue is QEMU's CoQueue over a coMutex: wait gives the lock up until
// restartAll, and returns with it held again.
type coQueue struct {
	waiters []chan struct{}
}

// wait must be called with m held; it returns with m held, taken in the
// order of the woken waiters (see coMutex.resume).
func (q *coQueue) wait(m *coMutex) {
	ch := make(chan struct{})
	q.waiters = append(q.waiters, ch)
	m.inner.Unlock()
	<-ch
	m.inner.Lock()
	m.signalNext()
}

// restartAll (with m held) wakes every waiter: they take the lock one
// after the other, in the order they began to wait.
func (q *coQueue) restartAll(m *coMutex) {
	m.resume = append(m.resume, q.waiters...)
	q.waiters = nil
	if !m.resuming {
		m.signalNext()
	}
}

// flight is a request in flight: a read, or one round of a write (its
// byte range and its allocations), guarded by d.mu.
type flight struct {
	write      bool
	start, end int64     // guest bytes
	metas      []*l2Meta // a write's allocations (QEMU's cluster_allocs)
	q          coQueue   // requests waiting for this one
}

// begin registers f as in flight (d.mu held).
func (d *Driver) begin(f *flight) {
	d.mu.inflight = append(d.mu.inflight, f)
}

// end removes f and wakes whoever waits for it (d.mu held).
func (d *Driver) end(f *flight) {
	if f == nil {
		return
	}
	for i, g := range d.mu.inflight {
		if g == f {
			d.mu.inflight = append(d.mu.inflight[:i], d.mu.inflight[i+1:]...)
			break
		}
	}
	f.q.restartAll(&d.mu)
	if len(d.mu.inflight) == 0 {
		d.mu.drainQ.restartAll(&d.mu)
	}
}

// metaRange is the guest range an allocation owns for dependencies: its
// clusters, from the start of its COW area to the end of the other.
func (d *Driver) metaRange(m *l2Meta) (int64, int64) {
	start := (m.guest + m.cowStart[0]) &^ (d.clusterSize - 1)
	end := (m.guest + m.cowEnd[0] + m.cowEnd[1] + d.clusterSize - 1) &^ (d.clusterSize - 1)
	return start, end
}

// handleDependencies is QEMU's handle_dependencies for a write of *n bytes
// at off: a write that would touch what an in-flight write allocates (or,
// beyond QEMU, bytes it writes in place, so that overlapping writes take
// effect in submission order) is shortened to end before it, or, when it
// starts inside it, waits for it and reports true (the caller starts
// over). With allocations already gathered (haveMetas) it does not wait
// but stops (*n = 0).
func (d *Driver) handleDependencies(off int64, n *int64, haveMetas bool, h hold) bool {
	start, end := off, off+*n
	bytes := *n
	// newest first, as QEMU walks its list
	for i := len(d.mu.inflight) - 1; i >= 0; i-- {
		f := d.mu.inflight[i]
		if !f.write {
			continue
		}
		cs := int64(-1)
		if start < f.end && end > f.start {
			cs = f.start // bytes written by the other request
		}
		for _, m := range f.metas {
			ms, me := d.metaRange(m)
			if end <= ms || start >= me {
				continue
			}
			if m.keepOld && (end <= m.guest+m.cowStart[0] || start >= m.guest+m.cowEnd[0]+m.cowEnd[1]) {
				continue // the clusters are there already, the COW areas apart
			}
			if cs < 0 || ms < cs {
				cs = ms
			}
		}
		if cs < 0 {
			continue
		}
		if start < cs {
			bytes = min(bytes, cs-start)
			end = start + bytes
			continue
		}
		if haveMetas {
			*n = 0
			return false
		}
		d.waitOn(&f.q, h)
		return true
	}
	*n = bytes
	return false
}

// waitClusters waits (d.mu held) until no request in flight touches the
// clusters of [off, off+n): what a discard, a zero write or a compressed
// write needs before it changes them.
//
// A zero write or a discard (zeroing) does not wait for a cluster an
// in-flight write is allocating where it read as zero (zeroSrc): the
// cluster is not linked yet, so nothing of it is freed, and the write that
// links it later gives what the two give in the other order (its data, its
// COW areas zero). That is QEMU's outcome, which has no such wait: after
// `aio_write -P 1 0 4k` and `aio_write -z 0 64k`, the data write wins.
func (d *Driver) waitClusters(off, n int64, h hold, zeroing bool) {
	start := off &^ (d.clusterSize - 1)
	end := (off + n + d.clusterSize - 1) &^ (d.clusterSize - 1)
again:
	for _, f := range d.mu.inflight {
		fs, fe := f.start&^(d.clusterSize-1), (f.end+d.clusterSize-1)&^(d.clusterSize-1)
		hit := fs < end && fe > start && !(zeroing && d.zeroAllocated(f, max(fs, start), min(fe, end)))
		for _, m := range f.metas {
			if zeroing && m.zeroSrc {
				continue
			}
			ms, me := d.metaRange(m)
			hit = hit || (ms < end && me > start)
		}
		if hit {
			d.waitOn(&f.q, h)
			goto again
		}
	}
}

// zeroAllocated reports whether f allocates all of [a, b) (clusters) in
// allocations that read as zero (zeroSrc).
func (d *Driver) zeroAllocated(f *flight, a, b int64) bool {
	for moved := true; moved && a < b; {
		moved = false
		for _, m := range f.metas {
			if !m.zeroSrc {
				continue
			}
			if ms, me := d.metaRange(m); ms <= a && me > a {
				a, moved = me, true
			}
		}
	}
	return a >= b
}

// waitReads waits (d.mu held) until no read in flight touches the
// clusters of m: they may be reading the compressed cluster m replaces.
func (d *Driver) waitReads(m *l2Meta, h hold) {
	start, end := m.guest, m.guest+m.nbClusters<<d.clusterBits
again:
	for _, f := range d.mu.inflight {
		if !f.write && f.start < end && f.end > start {
			d.waitOn(&f.q, h)
			goto again
		}
	}
}

// SetAdmit sets what the driver calls once a guest request (a read, write,
// zero write, discard or compressed write) holds the metadata lock: from
// then on no request that comes later can take the lock before it, so the
// block layer may let the next request of its submission order in
// (image.Ticket), and requests in flight allocate in submission order, as
// QEMU's coroutines do.
func (d *Driver) SetAdmit(f func() *image.Req) {
	d.mu.lockRaw()
	d.mu.admitHook = f
	d.mu.Unlock()
}

// SetLoop sets the event loop of the client whose asynchronous requests
// park after their I/O until it runs (image.Loop).
func (d *Driver) SetLoop(l *image.Loop) {
	d.mu.lockRaw()
	d.mu.loop = l
	d.mu.Unlock()
}

var (
	_ image.AdmittingDriver = (*Driver)(nil)
	_ image.LoopDriver      = (*Driver)(nil)
)
