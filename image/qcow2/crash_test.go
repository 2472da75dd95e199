package qcow2

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
	"github.com/goqio/goqio/image/raw"
)

// TestCrashAtEveryWrite runs a seeded mix of allocating, partial, zero and
// discard requests and flushes over a recording file, then rebuilds the
// file as a crash after each change that reached it would leave it, and
// requires of every one of those files: no corruption in check (leaks are
// allowed), and every byte that no request started since the last
// completed flush has changed reads as it did at that flush.
//
// This is the deterministic form of the SIGKILL test in tests/reliability:
// every point of the write order is a crash point.
func TestCrashAtEveryWrite(t *testing.T) {
	for _, tc := range []struct {
		cluster int64
		seed    int64
		extL2   bool
	}{{512, 1, false}, {4096, 3, false}, {65536, 4, false}, {16384, 6, true}, {512, 2, false}, {512, 5, false}, {65536, 7, true}} {
		if raceEnabled && tc.seed == 2 {
			break // the first four under -race
		}
		t.Run(fmt.Sprintf("cluster%d-seed%d-extl2=%v", tc.cluster, tc.seed, tc.extL2), func(t *testing.T) {
			crashAtEveryWrite(t, tc.cluster, tc.seed, tc.extL2)
		})
	}
}

type crashReq struct {
	start int   // index of the first recorded change after the request began
	off   int64 // guest range the request may change
	n     int64
	flush bool // a completed flush: everything before it is stable
}

func crashAtEveryWrite(t *testing.T, cluster, seed int64, extL2 bool) {
	const size = 2 << 20
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	if err := Create(base, CreateOptions{Size: size, ClusterSize: cluster, Version: 3, RefcountBits: 16, ExtendedL2: extL2}); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := raw.Open(base, raw.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &imagetest.Recorder{Driver: rd}
	drv, err := openOn(image.New(rec, base, image.Options{Grow: true, Unmap: true}), base, Options{Unmap: true})
	if err != nil {
		t.Fatal(err)
	}
	disk := image.New(drv, base, image.Options{Unmap: true})

	rng := rand.New(rand.NewSource(seed))
	model := make([]byte, size)
	var reqs []crashReq
	var stable [][]byte // the model at each completed flush
	for i := 0; i < 400; i++ {
		if i%10 == 9 {
			if err := disk.Flush(); err != nil {
				t.Fatal(err)
			}
			reqs = append(reqs, crashReq{start: len(rec.Ops), flush: true})
			stable = append(stable, bytes.Clone(model))
			continue
		}
		off := rng.Int63n(size/512) * 512
		n := min(int64(1+rng.Intn(64))*512, size-off)
		if rng.Intn(3) == 0 {
			off, n = off+int64(rng.Intn(512)), n-512+int64(rng.Intn(512))
			n = max(1, min(n, size-off))
		}
		if i%50 == 24 {
			// shrink and grow back: what was past the new end reads zero
			cut := size/2 + rng.Int63n(size/2/cluster)*cluster
			reqs = append(reqs, crashReq{start: len(rec.Ops), off: cut, n: size - cut})
			if err := disk.Truncate(cut, image.PreallocOff); err != nil {
				t.Fatal(err)
			}
			if err := disk.Truncate(size, image.PreallocOff); err != nil {
				t.Fatal(err)
			}
			clear(model[cut:])
			continue
		}
		if i%7 == 3 {
			// a compressed cluster
			off = rng.Int63n(size/cluster) * cluster
			buf := bytes.Repeat([]byte{byte(rng.Intn(256)), 7, 7, 7}, int(cluster/4))
			reqs = append(reqs, crashReq{start: len(rec.Ops), off: off, n: cluster})
			// compressed writes go to clusters that hold nothing
			if err := disk.Discard(off, cluster); err != nil {
				t.Fatal(err)
			}
			if err := drv.WriteCompressed(buf, off); err != nil {
				t.Fatalf("request %d: compressed write: %v", i, err)
			}
			copy(model[off:], buf)
			continue
		}
		reqs = append(reqs, crashReq{start: len(rec.Ops), off: off, n: n})
		switch k := rng.Intn(10); {
		case k < 6:
			buf := bytes.Repeat([]byte{byte(1 + rng.Intn(255))}, int(n))
			err = disk.WriteAt(buf, off, false)
			copy(model[off:], buf)
		case k < 8:
			var fl image.ZeroFlags
			if rng.Intn(2) == 0 {
				fl = image.ZeroMayUnmap
			}
			err = disk.WriteZeroes(off, n, fl, false)
			clear(model[off : off+n])
		default:
			err = disk.Discard(off, n)
			// discarded data is unknown afterwards; read it back as it is
			if err == nil {
				err = disk.ReadAt(model[off:off+n], off)
			}
		}
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if err := disk.Close(); err != nil {
		t.Fatal(err)
	}
	ops := rec.Ops
	t.Logf("%d changes reached the file", len(ops))

	crash := filepath.Join(dir, "crash.qcow2")
	if err := os.WriteFile(crash, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(crash, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, size)
	for k := 0; k <= len(ops); k++ {
		if k > 0 {
			if err := ops[k-1].Apply(f); err != nil {
				t.Fatal(err)
			}
		}
		// the last flush completed with at most k changes on the file, and
		// the guest ranges of the requests begun since
		last, fi := -1, -1
		for i, r := range reqs {
			if r.start > k {
				break
			}
			if r.flush {
				last = i
				fi++
			}
		}
		c, err := Open(crash, Options{ReadOnly: true, Check: true})
		if err != nil {
			t.Fatalf("crash after change %d of %d: open: %v", k, len(ops), err)
		}
		var msgs strings.Builder
		res, err := c.Check(&msgs, 0)
		if err != nil || res.Corruptions != 0 || res.CheckErrors != 0 {
			c.Close()
			t.Fatalf("crash after change %d of %d (%s): check: %v\n%.3000s", k, len(ops), describe(ops, k), err, msgs.String())
		}
		if fi >= 0 {
			// mid-truncate the image may be shorter; what is past its end
			// was touched by the truncate
			clear(got)
			if err := image.New(c, crash, image.Options{ReadOnly: true}).ReadAt(got[:min(size, c.Size())], 0); err != nil {
				t.Fatalf("crash after change %d: read: %v", k, err)
			}
			// what the flush made stable, except where requests begun since
			// may have changed it
			want := bytes.Clone(stable[fi])
			for _, r := range reqs[last+1:] {
				if r.start > k {
					break
				}
				copy(want[r.off:r.off+r.n], got[r.off:r.off+r.n])
			}
			clear(want[min(size, c.Size()):])
			if !bytes.Equal(got, want) {
				b := 0
				for got[b] == want[b] {
					b++
				}
				c.Close()
				t.Fatalf("crash after change %d of %d: guest byte %d reads %#x, was %#x at flush %d", k, len(ops), b, got[b], want[b], fi)
			}
		}
		c.Close()
	}
}

func describe(ops []imagetest.Op, k int) string {
	if k == 0 {
		return "before any change"
	}
	o := ops[k-1]
	switch {
	case o.Truncate:
		return fmt.Sprintf("truncate to %d", o.Off)
	case o.Data == nil:
		return fmt.Sprintf("zero/discard %d+%d", o.Off, o.N)
	}
	return fmt.Sprintf("write %d+%d", o.Off, o.N)
}
