// Package imagetest helps test image drivers: an in-memory driver with
// configurable limits that records the requests it sees, a driver wrapper
// that injects errors, and a conformance suite every driver must pass.
package imagetest

import (
	"fmt"
	"sync"

	"github.com/goqio/goqio/image"
)

// Call is one request a MemDriver received.
type Call struct {
	Op       string // "read", "write", "zero", "discard", "flush"
	Off, Len int64
	Flags    image.ZeroFlags
}

func (c Call) String() string {
	if c.Op == "zero" {
		return fmt.Sprintf("%s %d+%d flags=%d", c.Op, c.Off, c.Len, c.Flags)
	}
	return fmt.Sprintf("%s %d+%d", c.Op, c.Off, c.Len)
}

// MemDriver is an in-memory image. It enforces its own limits (a request
// that breaks them is a test failure, reported as an error) and records
// every call. ZeroFunc, when set, decides how a zero write is handled:
// return image.ErrNotSupported to make Disk fall back.
type MemDriver struct {
	mu       sync.Mutex
	data     []byte
	lim      image.Limits
	calls    []Call
	zeroOK   bool
	ZeroFunc func(off, n int64, flags image.ZeroFlags) error
	Flags    image.ZeroFlags // supported zero flags
}

// NewMem makes an in-memory image of size bytes with the given limits.
// zero selects whether it implements zero writes natively.
func NewMem(size int64, lim image.Limits, zero bool) *MemDriver {
	return &MemDriver{data: make([]byte, size), lim: lim, zeroOK: zero,
		Flags: image.ZeroMayUnmap | image.ZeroNoFallback}
}

func (m *MemDriver) check(off, n int64, align int64) error {
	if align < 1 {
		align = 1
	}
	ra := max(m.lim.RequestAlignment, 1)
	if off%ra != 0 || n%ra != 0 {
		return fmt.Errorf("imagetest: unaligned request %d+%d (alignment %d)", off, n, ra)
	}
	if off < 0 || n < 0 || off+n > int64(len(m.data)) {
		return fmt.Errorf("imagetest: request %d+%d out of range %d", off, n, len(m.data))
	}
	return nil
}

func (m *MemDriver) record(c Call) { m.calls = append(m.calls, c) }

// Calls returns the requests received so far and forgets them.
func (m *MemDriver) Calls() []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.calls
	m.calls = nil
	return c
}

// Bytes returns a copy of the image's content.
func (m *MemDriver) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.data...)
}

func (m *MemDriver) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(off, int64(len(p)), 1); err != nil {
		return 0, err
	}
	if m.lim.MaxTransfer > 0 && int64(len(p)) > m.lim.MaxTransfer {
		return 0, fmt.Errorf("imagetest: read of %d exceeds max transfer %d", len(p), m.lim.MaxTransfer)
	}
	m.record(Call{Op: "read", Off: off, Len: int64(len(p))})
	return copy(p, m.data[off:]), nil
}

func (m *MemDriver) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(off, int64(len(p)), 1); err != nil {
		return 0, err
	}
	if m.lim.MaxTransfer > 0 && int64(len(p)) > m.lim.MaxTransfer {
		return 0, fmt.Errorf("imagetest: write of %d exceeds max transfer %d", len(p), m.lim.MaxTransfer)
	}
	m.record(Call{Op: "write", Off: off, Len: int64(len(p))})
	return copy(m.data[off:], p), nil
}

func (m *MemDriver) Size() int64          { return int64(len(m.data)) }
func (m *MemDriver) Limits() image.Limits { return m.lim }
func (m *MemDriver) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(Call{Op: "flush"})
	return nil
}
func (m *MemDriver) Close() error { return nil }

// MemZeroDriver is a MemDriver that implements image.Zeroer and
// image.Discarder; make one with NewMem(..., true) and call Zeroing.
type MemZeroDriver struct{ *MemDriver }

// Zeroing returns m as a driver with native zero writes and discard.
func (m *MemDriver) Zeroing() MemZeroDriver { return MemZeroDriver{m} }

func (m MemZeroDriver) SupportedZeroFlags() image.ZeroFlags { return m.Flags }

func (m MemZeroDriver) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(off, n, 1); err != nil {
		return err
	}
	za := max(m.lim.ZeroAlignment, 1)
	if (off%za != 0 || n%za != 0) && off/za != (off+n-1)/za {
		return fmt.Errorf("imagetest: unaligned zero piece %d+%d crosses a boundary of %d", off, n, za)
	}
	m.record(Call{Op: "zero", Off: off, Len: n, Flags: flags})
	if m.ZeroFunc != nil {
		if err := m.ZeroFunc(off, n, flags); err != nil {
			return err
		}
	}
	clear(m.data[off : off+n])
	return nil
}

func (m MemZeroDriver) Discard(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(off, n, 1); err != nil {
		return err
	}
	m.record(Call{Op: "discard", Off: off, Len: n})
	return image.ErrNotSupported
}
