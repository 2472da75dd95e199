package image

import (
	"sync"
	"testing"
	"time"
)

// waitUntil polls cond (the tracker has no event to wait on) for up to 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTrackedRequests: a serialising request holds up the requests that
// overlap its aligned range, not the others; those waiting go on in the
// order they came, one after the other, as QEMU's queues restart them.
func TestTrackedRequests(t *testing.T) {
	d := &Disk{}
	a := d.trackSerialising(0x200, 0x200, 0x1000)
	if a.start != 0 || a.end != 0x1000 {
		t.Fatalf("serialising range [%#x,%#x), want [0,0x1000)", a.start, a.end)
	}
	// other blocks: neither an aligned nor a serialising request waits
	b := d.track(0x1000, 0x1000)
	c := d.trackSerialising(0x2e00, 0x200, 0x1000)
	d.untrack(b)
	d.untrack(c)

	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		off := int64(0x400 + 0x200*i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 3 { // an aligned read of the same block waits too
				d.track(0, 0x1000)
			} else {
				d.trackSerialising(off, 0x200, 0x1000)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
		waitUntil(t, "request waiting", func() bool {
			d.tracked.mu.Lock()
			defer d.tracked.mu.Unlock()
			n := 0
			for _, q := range d.tracked.reqs {
				if q.waitingFor != nil {
					n++
				}
			}
			return n == i+1
		})
	}
	d.untrack(a)
	// each one that goes on holds up the next ones (they overlap it)
	for want := 0; want < 3; want++ {
		waitUntil(t, "next request", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(order) == want+1
		})
		mu.Lock()
		got := order[want]
		mu.Unlock()
		if got != want {
			t.Fatalf("request %d went on in place %d", got, want)
		}
		d.tracked.mu.Lock()
		r := d.tracked.reqs[0]
		d.tracked.mu.Unlock()
		d.untrack(r)
	}
	wg.Wait()
	if order[3] != 3 {
		t.Fatalf("order %v", order)
	}
	d.tracked.mu.Lock()
	left := len(d.tracked.reqs)
	d.tracked.mu.Unlock()
	if left != 1 {
		t.Fatalf("%d requests still tracked, want the read's", left)
	}
}
