package image_test

import (
	"runtime"
	"sync"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
)

// serialMem is a MemDriver that says it runs one request at a time and
// records the order in which writes reach it.
type serialMem struct {
	*imagetest.MemDriver
	mu    sync.Mutex
	order []int64
}

func (s *serialMem) SerialRequests() bool { return true }

func (s *serialMem) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	s.order = append(s.order, off)
	s.mu.Unlock()
	return s.MemDriver.WriteAt(p, off)
}

// TestTicketOrder: requests whose goroutines start in the reverse order
// of their tickets still reach a serial driver in ticket order, over
// dropped tickets; a second use of a ticket queues at the end.
func TestTicketOrder(t *testing.T) {
	drv := &serialMem{MemDriver: imagetest.NewMem(1<<20, image.Limits{}, false)}
	d := image.New(drv, "mem", image.Options{})
	const n = 32
	tickets := make([]*image.Ticket, n)
	for i := range tickets {
		tickets[i] = d.Ticket()
	}
	var wg sync.WaitGroup
	for i := n - 1; i >= 0; i-- {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tk := tickets[i]
			defer tk.Drop()
			if i%5 == 3 {
				return // dropped unused
			}
			if err := tk.WriteAt([]byte{byte(i)}, int64(i)*512, false); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	var want []int64
	for i := 0; i < n; i++ {
		if i%5 != 3 {
			want = append(want, int64(i)*512)
		}
	}
	if len(drv.order) != len(want) {
		t.Fatalf("order %v, want %v", drv.order, want)
	}
	for i := range want {
		if drv.order[i] != want[i] {
			t.Fatalf("order %v, want %v", drv.order, want)
		}
	}
	// a used ticket takes a new place; untracked calls still work
	tk := d.Ticket()
	if err := tk.WriteAt([]byte{1}, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := tk.WriteAt([]byte{2}, 512, false); err != nil {
		t.Fatal(err)
	}
	tk.Drop()
	if err := d.WriteAt([]byte{3}, 1024, false); err != nil {
		t.Fatal(err)
	}
}

// TestTicketParallel: a driver that is not serial is not ordered, and a
// ticket there costs nothing (no waiting even when used out of order).
func TestTicketParallel(t *testing.T) {
	d := image.New(imagetest.NewMem(1<<20, image.Limits{}, false), "mem", image.Options{})
	a, b := d.Ticket(), d.Ticket()
	if err := b.WriteAt([]byte{1}, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteAt([]byte{1}, 512, false); err != nil {
		t.Fatal(err)
	}
}

// admittingMem admits a write as soon as it reaches the driver, then
// holds it until release is closed.
type admittingMem struct {
	*imagetest.MemDriver
	admit   func() *image.Req
	mu      sync.Mutex
	order   []int64
	release chan struct{}
}

func (a *admittingMem) SetAdmit(f func() *image.Req) { a.admit = f }

func (a *admittingMem) WriteAt(p []byte, off int64) (int, error) {
	a.mu.Lock()
	a.order = append(a.order, off)
	a.admit()
	a.mu.Unlock()
	<-a.release
	return a.MemDriver.WriteAt(p, off)
}

// TestTicketAdmission: over an AdmittingDriver, requests reach the driver
// in ticket order, and each lets the next in once admitted, before it
// completes (all of them are in the driver at once).
func TestTicketAdmission(t *testing.T) {
	drv := &admittingMem{MemDriver: imagetest.NewMem(1<<20, image.Limits{}, false), release: make(chan struct{})}
	d := image.New(drv, "mem", image.Options{})
	const n = 16
	tickets := make([]*image.Ticket, n)
	for i := range tickets {
		tickets[i] = d.Ticket()
	}
	var wg sync.WaitGroup
	for i := n - 1; i >= 0; i-- {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := tickets[i].WriteAt([]byte{byte(i)}, int64(i)*512, false); err != nil {
				t.Error(err)
			}
		}(i)
	}
	for {
		drv.mu.Lock()
		k := len(drv.order)
		drv.mu.Unlock()
		if k == n {
			break
		}
		runtime.Gosched()
	}
	close(drv.release)
	wg.Wait()
	for i, off := range drv.order {
		if off != int64(i)*512 {
			t.Fatalf("order %v", drv.order)
		}
	}
}
