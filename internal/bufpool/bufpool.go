// Package bufpool recycles I/O buffers by power-of-two class (4 KiB to
// 32 MiB), for the requests that come by the thousand: an NBD server's
// and qemu-io's aio requests.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minClass = 12 // 4 KiB
	classes  = 26 // up to 32 MiB
)

var pools [classes]sync.Pool

// class is the smallest power-of-two exponent (at least minClass) whose
// size holds n.
func class(n int) int {
	return max(minClass, bits.Len(uint(n-1)))
}

// Get returns a buffer of n bytes, its contents undefined; larger ones
// than the biggest class are made, not pooled.
func Get(n int) []byte {
	if n <= 0 {
		return nil
	}
	c := class(n)
	if c >= classes {
		return make([]byte, n)
	}
	if p, ok := pools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<c)
}

// Put gives back a buffer from Get once nothing uses it; others are left
// to the garbage collector.
func Put(b []byte) {
	c := class(cap(b))
	if c >= classes || cap(b) != 1<<c {
		return
	}
	b = b[:cap(b)]
	pools[c].Put(&b)
}
