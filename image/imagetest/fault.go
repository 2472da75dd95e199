package imagetest

import (
	"sync"

	"github.com/goqio/goqio/image"
)

// FaultDriver wraps a driver and fails the Nth write (counting from 1, 0:
// never) or the Nth read with Err. It passes everything else through.
type FaultDriver struct {
	image.Driver
	Err error

	mu                    sync.Mutex
	FailWrite, FailRead   int
	writes, reads         int
	WritesSeen, ReadsSeen int
}

func (f *FaultDriver) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	f.reads++
	f.ReadsSeen = f.reads
	fail := f.FailRead != 0 && f.reads == f.FailRead
	f.mu.Unlock()
	if fail {
		return 0, f.Err
	}
	return f.Driver.ReadAt(p, off)
}

func (f *FaultDriver) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	f.writes++
	f.WritesSeen = f.writes
	fail := f.FailWrite != 0 && f.writes == f.FailWrite
	f.mu.Unlock()
	if fail {
		return 0, f.Err
	}
	return f.Driver.WriteAt(p, off)
}
