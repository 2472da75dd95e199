package image_test

import (
	"testing"
	"time"

	"github.com/goqio/goqio/image"
)

// TestLoopPark: a parked request goes on only when released or when the
// loop opens; Release gives later keys to events processed later; a yield
// opens the loop only inside a command, until the command ends.
func TestLoopPark(t *testing.T) {
	l := image.NewLoop()
	a, b := l.NewReq(), l.NewReq()
	if a.Key() >= b.Key() {
		t.Fatalf("keys %d %d: not in submission order", a.Key(), b.Key())
	}
	done := make(chan *image.Req, 2)
	for _, r := range []*image.Req{a, b} {
		go func() { l.Park(r); done <- r }()
	}
	for len(l.Parked()) < 2 {
		time.Sleep(time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("request %d went on with the loop closed", r.Key())
	case <-time.After(20 * time.Millisecond):
	}
	if l.Idle() != 2 {
		t.Fatalf("Idle %d, want 2", l.Idle())
	}
	l.Release([]*image.Req{b, a})
	<-done
	<-done
	if b.Key() >= a.Key() {
		t.Fatalf("after Release(b, a): keys b %d a %d, want b's first", b.Key(), a.Key())
	}

	l.Yield() // outside a command: nothing
	c := l.NewReq()
	go func() { l.Park(c); done <- c }()
	for len(l.Parked()) < 1 {
		time.Sleep(time.Millisecond)
	}
	l.BeginCmd(false)
	l.Yield()
	<-done    // the yield opened the loop
	l.Park(c) // and nothing parks while it is open
	l.EndCmd()
	go func() { l.Park(c); done <- c }()
	select {
	case <-done:
		t.Fatal("the loop stayed open after the command")
	case <-time.After(20 * time.Millisecond):
	}
	l.Open()
	<-done
	l.Close()
}
