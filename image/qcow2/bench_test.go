package qcow2

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
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

// BenchmarkParallel4K: 4 KiB random reads of allocated data and in-place
// writes from 1, 2, 4 and 8 goroutines on a 256 MiB image in /dev/shm when
// there is one (the disk's noise kept out): with data I/O outside the
// metadata lock, throughput scales with the cores.
func BenchmarkParallel4K(b *testing.B) {
	const size = 256 << 20
	dir := b.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "qcow2bench"); err == nil {
			dir = d
			b.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	path := filepath.Join(dir, "p.qcow2")
	if err := Create(path, CreateOptions{Size: size, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
		b.Fatal(err)
	}
	d, err := Open(path, Options{Unmap: true})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	fill := make([]byte, 1<<20)
	for off := int64(0); off < size; off += 1 << 20 {
		if _, err := d.WriteAt(fill, off); err != nil {
			b.Fatal(err)
		}
	}
	disk := image.New(d, path, image.Options{})
	// read/write: the driver's ReadAt/WriteAt; disk-*: through the block
	// layer (image.Disk), whose plain calls take no place in submission
	// order (no Ticket drawn). Writes to one tmpfs file serialise on its
	// inode lock in the kernel, so only reads can scale here
	for _, op := range []string{"read", "write", "disk-read", "disk-write"} {
		for _, g := range []int{1, 2, 4, 8} {
			b.Run(fmt.Sprintf("%s-g%d", op, g), func(b *testing.B) {
				b.SetBytes(4096)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for w := 0; w < g; w++ {
					wg.Add(1)
					go func(seed int64) {
						defer wg.Done()
						rng := rand.New(rand.NewSource(seed))
						buf := make([]byte, 4096)
						for next.Add(1) <= int64(b.N) {
							off := rng.Int63n(size/4096) * 4096
							var err error
							switch op {
							case "read":
								_, err = d.ReadAt(buf, off)
							case "write":
								_, err = d.WriteAt(buf, off)
							case "disk-read":
								err = disk.ReadAt(buf, off)
							default:
								err = disk.WriteAt(buf, off, false)
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					}(int64(w))
				}
				wg.Wait()
			})
		}
	}
}
