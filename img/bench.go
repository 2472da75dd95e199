package img

import (
	"context"
	"sync"
	"time"

	"github.com/goqio/goqio/image"
)

// BenchOptions are qemu-img bench's options. The zero value reads 75000
// requests of 4 KiB, 64 in flight, from offset 0 on.
type BenchOptions struct {
	Env
	Image      string
	Format     string // -f
	ImageOpts  bool   // --image-opts
	ForceShare bool   // -U
	Cache      string // -t ("": writeback)
	NativeAIO  bool   // -n / -i native

	Write    bool  // -w
	Count    int   // -c (0: 75000)
	CountSet bool  // -c was given (to run 0 requests)
	Depth    int   // -d (0: 64)
	DepthSet bool  // -d was given
	Offset   int64 // -o
	// BufSize is -s (0: 4096, unless BufSizeSet); Step is -S (0: BufSize).
	BufSize    int64
	BufSizeSet bool
	Step       int64
	Pattern    byte // --pattern
	// FlushInterval is --flush-interval: a flush every so many requests
	// (write tests only); NoDrain (--no-drain) flushes without waiting
	// for the requests in flight.
	FlushInterval int
	NoDrain       bool
	// Started, when set, is called after the image is open, before the
	// first request (qemu-img prints its "Sending ..." lines there).
	Started func(BenchParams)
}

// BenchParams are the parameters a run uses, the defaults applied.
type BenchParams struct {
	Count, Depth  int
	BufSize, Step int64
	Offset        int64
	Write         bool
	FlushInterval int
}

// Bench is qemu-img bench: Count requests of BufSize bytes, Depth in
// flight, at offsets Offset, Offset+Step, ... modulo the image size. It
// returns the time the requests took.
func Bench(ctx context.Context, o BenchOptions) (time.Duration, error) {
	p := BenchParams{Count: 75000, Depth: 64, BufSize: 4096, Offset: o.Offset, Write: o.Write, FlushInterval: o.FlushInterval}
	if o.CountSet || o.Count != 0 {
		p.Count = o.Count
	}
	if o.DepthSet || o.Depth != 0 {
		p.Depth = o.Depth
	}
	if o.BufSizeSet || o.BufSize != 0 {
		p.BufSize = o.BufSize
	}
	p.Step = o.Step
	if p.Step == 0 {
		p.Step = p.BufSize
	}
	if !o.Write && o.FlushInterval != 0 {
		return 0, errorf(ErrInvalidOptions, "--flush-interval is only available in write tests")
	}
	if o.FlushInterval != 0 && o.FlushInterval < p.Depth {
		return 0, errorf(ErrInvalidOptions, "Flush interval can't be smaller than depth")
	}
	cache := o.Cache
	if cache == "" {
		cache = "writeback"
	}
	n, err := o.Open(OpenSpec{Name: o.Image, Format: o.Format, ImageOpts: o.ImageOpts, ForceShare: o.ForceShare,
		ReadOnly: !o.Write, Cache: cache})
	if err != nil {
		return 0, err
	}
	defer n.Close()
	d := n.Disk
	size := d.Size()
	if o.Started != nil {
		o.Started(p)
	}
	buf := make([]byte, p.BufSize)
	for i := range buf {
		buf[i] = o.Pattern
	}
	var (
		mu     sync.Mutex
		first  error
		wg     sync.WaitGroup
		bufs   = make(chan []byte, max(p.Depth, 1))
		offset = p.Offset
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	for i := 0; i < cap(bufs); i++ {
		if p.Write {
			bufs <- buf
		} else {
			bufs <- make([]byte, p.BufSize)
		}
	}
	start := time.Now()
	for i := 0; i < p.Count && !failed(); i++ {
		if err := ctx.Err(); err != nil {
			fail(errorf(err, "%v", err))
			break
		}
		off := offset
		if size > 0 {
			offset = (offset + p.Step) % size
		}
		b := <-bufs
		wg.Add(1)
		go func() {
			defer func() { bufs <- b; wg.Done() }()
			var err error
			if p.Write {
				err = d.WriteAt(b, off, false)
			} else {
				err = d.ReadAt(b, off)
			}
			if err != nil {
				fail(errorf(err, "Failed request: %s", image.StrerrorOf(err)))
			}
		}()
		if p.FlushInterval != 0 && (p.Count-i-1)%p.FlushInterval == 0 && i+1 < p.Count {
			if !o.NoDrain {
				wg.Wait()
			}
			if err := d.Flush(); err != nil {
				fail(errorf(err, "Failed flush request: %s", image.StrerrorOf(err)))
			}
		}
	}
	wg.Wait()
	el := time.Since(start)
	return el, first
}
