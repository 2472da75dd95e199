package imagetest

import (
	"os"
	"sync"

	"github.com/goqio/goqio/image"
)

// Op is one change a Recorder saw reach the file: Data written at Off, or
// (Data nil) N bytes zeroed or discarded at Off, or (Truncate) the file
// resized to Off.
type Op struct {
	Off, N   int64
	Data     []byte
	Truncate bool
}

// Recorder wraps a driver (a raw file) and records, in order, every change
// that reaches it, so that a test can rebuild the file as it was after any
// prefix of them: the file a crash at that moment would leave.
type Recorder struct {
	image.Driver

	mu  sync.Mutex
	Ops []Op
}

func (r *Recorder) add(o Op) {
	r.mu.Lock()
	r.Ops = append(r.Ops, o)
	r.mu.Unlock()
}

func (r *Recorder) WriteAt(p []byte, off int64) (int, error) {
	n, err := r.Driver.WriteAt(p, off)
	if err == nil {
		r.add(Op{Off: off, N: int64(len(p)), Data: append([]byte(nil), p...)})
	}
	return n, err
}

func (r *Recorder) WritevAt(bufs [][]byte, off int64) error {
	var all []byte
	for _, b := range bufs {
		all = append(all, b...)
	}
	_, err := r.WriteAt(all, off)
	return err
}

func (r *Recorder) SupportedZeroFlags() image.ZeroFlags {
	if z, ok := r.Driver.(image.Zeroer); ok {
		return z.SupportedZeroFlags()
	}
	return 0
}

func (r *Recorder) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	z, ok := r.Driver.(image.Zeroer)
	if !ok {
		return image.ErrNotSupported
	}
	err := z.WriteZeroes(off, n, flags)
	if err == nil {
		r.add(Op{Off: off, N: n})
	}
	return err
}

func (r *Recorder) Discard(off, n int64) error {
	z, ok := r.Driver.(image.Discarder)
	if !ok {
		return image.ErrNotSupported
	}
	err := z.Discard(off, n)
	if err == nil {
		r.add(Op{Off: off, N: n})
	}
	return err
}

func (r *Recorder) Truncate(size int64, p image.Prealloc) error {
	t, ok := r.Driver.(image.Truncater)
	if !ok {
		return image.ErrNotSupported
	}
	err := t.Truncate(size, p)
	if err == nil {
		r.add(Op{Off: size, Truncate: true})
	}
	return err
}

// Apply makes the change o to the file f (zeroed and discarded ranges are
// written as zeroes: they read so afterwards).
func (o Op) Apply(f *os.File) error {
	switch {
	case o.Truncate:
		return f.Truncate(o.Off)
	case o.Data != nil:
		_, err := f.WriteAt(o.Data, o.Off)
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	// a discard or zeroing past the end does not grow the file
	n := min(o.N, st.Size()-o.Off)
	if n <= 0 {
		return nil
	}
	_, err = f.WriteAt(make([]byte, n), o.Off)
	return err
}
