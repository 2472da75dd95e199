package imagetest

import (
	"fmt"
	"sync"

	"github.com/goqio/goqio/image"
)

// Overlay is an in-memory image with a backing file, for tests of what the
// generic layer does across layers (copy-on-read). It stores data in
// granules (its allocation unit, like qcow2's subclusters) inside clusters
// (the cluster size it reports through Info): a granule is unallocated
// (read from the backing file, zeroes past its end), zero, or data. A write
// of part of a granule copies the rest of it from the backing file first.
// Zero writes must cover whole granules (others are refused with
// ErrNotSupported, so Disk falls back to explicit zeroes). Every request is
// recorded, as MemDriver records them.
type Overlay struct {
	mu      sync.Mutex
	data    []byte
	state   []byte // per granule: 0 unallocated, 'z' zero, 'd' data
	cluster int64
	granule int64
	backing *image.Disk
	calls   []Call
}

// NewOverlay makes an overlay of size bytes over backing (which may be
// nil) with the given cluster size and allocation granule (a divisor of
// the cluster size).
func NewOverlay(size, cluster, granule int64, backing *image.Disk) *Overlay {
	return &Overlay{data: make([]byte, size), state: make([]byte, (size+granule-1)/granule),
		cluster: cluster, granule: granule, backing: backing}
}

// Calls returns the requests received so far and forgets them.
func (o *Overlay) Calls() []Call {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls
	o.calls = nil
	return c
}

// State returns the state of every granule: '.' unallocated, 'z' zero,
// 'd' data.
func (o *Overlay) State() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := make([]byte, len(o.state))
	for i, s := range o.state {
		b[i] = s
		if s == 0 {
			b[i] = '.'
		}
	}
	return string(b)
}

func (o *Overlay) check(off, n int64) error {
	if off < 0 || n < 0 || off+n > int64(len(o.data)) {
		return fmt.Errorf("imagetest: request %d+%d out of range %d", off, n, len(o.data))
	}
	return nil
}

// readBacking fills p from the backing file, zeroes past its end.
func (o *Overlay) readBacking(p []byte, off int64) error {
	clear(p)
	if o.backing == nil || off >= o.backing.Size() {
		return nil
	}
	n := min(int64(len(p)), o.backing.Size()-off)
	return o.backing.ReadAt(p[:n], off)
}

func (o *Overlay) ReadAt(p []byte, off int64) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	o.calls = append(o.calls, Call{Op: "read", Off: off, Len: int64(len(p))})
	for done := int64(0); done < int64(len(p)); {
		at := off + done
		g := at / o.granule
		l := min(int64(len(p))-done, (g+1)*o.granule-at)
		b := p[done : done+l]
		switch o.state[g] {
		case 'd':
			copy(b, o.data[at:])
		case 'z':
			clear(b)
		default:
			if err := o.readBacking(b, at); err != nil {
				return int(done), err
			}
		}
		done += l
	}
	return len(p), nil
}

func (o *Overlay) WriteAt(p []byte, off int64) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	o.calls = append(o.calls, Call{Op: "write", Off: off, Len: int64(len(p))})
	end := off + int64(len(p))
	for g := off / o.granule; g*o.granule < end; g++ {
		gs, ge := g*o.granule, min((g+1)*o.granule, int64(len(o.data)))
		switch o.state[g] {
		case 'z':
			clear(o.data[gs:ge])
		case 0:
			if err := o.readBacking(o.data[gs:ge], gs); err != nil {
				return 0, err
			}
		}
		o.state[g] = 'd'
	}
	copy(o.data[off:], p)
	return len(p), nil
}

func (o *Overlay) SupportedZeroFlags() image.ZeroFlags { return image.ZeroMayUnmap }

func (o *Overlay) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.check(off, n); err != nil {
		return err
	}
	o.calls = append(o.calls, Call{Op: "zero", Off: off, Len: n, Flags: flags})
	if off%o.granule != 0 || (n%o.granule != 0 && off+n != int64(len(o.data))) {
		return image.ErrNotSupported
	}
	for g := off / o.granule; g*o.granule < off+n; g++ {
		o.state[g] = 'z'
	}
	clear(o.data[off : off+n])
	return nil
}

func (o *Overlay) BlockStatus(off, n int64, wantZero bool) (image.Extent, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := off / o.granule
	s := o.state[g]
	end := off + n
	l := min((g+1)*o.granule, end) - off
	for g++; g*o.granule < end && o.state[g] == s; g++ {
		l = min((g+1)*o.granule, end) - off
	}
	e := image.Extent{Len: l}
	switch s {
	case 'd':
		e.Status = image.StatusData
	case 'z':
		e.Status = image.StatusZero
	}
	return e, nil
}

func (o *Overlay) Backing() *image.Disk { return o.backing }

func (o *Overlay) Info() (image.Info, error) {
	return image.Info{FormatName: "overlay", ClusterSize: o.cluster}, nil
}

func (o *Overlay) Size() int64 { return int64(len(o.data)) }
func (o *Overlay) Limits() image.Limits {
	return image.Limits{RequestAlignment: 1, ZeroAlignment: o.granule}
}
func (o *Overlay) Flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, Call{Op: "flush"})
	return nil
}
func (o *Overlay) Close() error { return nil }
