package qcow2

import (
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/goqio/goqio/image"
)

func benchImage(b *testing.B, size int64) *Driver {
	path := filepath.Join(b.TempDir(), "b.qcow2")
	if err := Create(path, CreateOptions{Size: size, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
		b.Fatal(err)
	}
	d, err := Open(path, Options{Unmap: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// BenchmarkRandomWrite4K: allocating and in-place 4 KiB writes.
func BenchmarkRandomWrite4K(b *testing.B) {
	d := benchImage(b, 1<<30)
	buf := make([]byte, 4096)
	rng := rand.New(rand.NewSource(1))
	b.SetBytes(4096)
	for i := 0; i < b.N; i++ {
		if _, err := d.WriteAt(buf, rng.Int63n(1<<18)*4096); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSequentialRead: 1 MiB reads of allocated data.
func BenchmarkSequentialRead(b *testing.B) {
	d := benchImage(b, 64<<20)
	buf := make([]byte, 1<<20)
	for off := int64(0); off < 64<<20; off += 1 << 20 {
		d.WriteAt(buf, off)
	}
	b.SetBytes(1 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.ReadAt(buf, int64(i%64)<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkZeroWrite64G: the whole-image zero write of W4, in memory.
func BenchmarkZeroWrite64G(b *testing.B) {
	for i := 0; i < b.N; i++ {
		d := benchImage(b, 64<<30)
		if err := d.WriteZeroes(0, 64<<30, image.ZeroNoFallback); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBlockStatus: walking the map of a sparse image.
func BenchmarkBlockStatus(b *testing.B) {
	d := benchImage(b, 1<<34)
	buf := make([]byte, 4096)
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 2000; i++ {
		d.WriteAt(buf, rng.Int63n(1<<18)*65536)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for off := int64(0); off < d.Size(); {
			e, err := d.BlockStatus(off, d.Size()-off, false)
			if err != nil {
				b.Fatal(err)
			}
			off += e.Len
		}
	}
}
