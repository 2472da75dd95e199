package qcow2

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/goqio/goqio/image"
)

// TestConcurrentStress runs rounds of concurrent requests (overlapping
// reads, writes, zero writes, discards, compressed writes) on small images
// of several geometries, with and without a backing file, and checks after
// each round that the image holds what some serial order of the round's
// requests gives, that every read saw, byte by byte, either the content
// before the round or what one of the round's writes put there, and at
// the end that the image checks clean.
func TestConcurrentStress(t *testing.T) {
	type geo struct {
		cluster int64
		extL2   bool
		tiny    bool // the smallest caches over an image of many L2 tables and refcount blocks
	}
	geos := []geo{{512, false, false}, {4096, false, false}, {65536, false, false}, {65536, true, false}, {512, false, true}}
	for _, g := range geos {
		for _, backing := range []bool{false, true} {
			g, backing := g, backing
			name := fmt.Sprintf("c%d-ext%v-backing%v", g.cluster, g.extL2, backing)
			if g.tiny {
				name += "-tinycache"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				seed := int64(len(t.Name()))
				if s, err := strconv.ParseInt(os.Getenv("STRESS_SEED"), 10, 64); err == nil {
					seed += s
				}
				stress(t, g.cluster, g.extL2, backing, g.tiny, seed)
			})
		}
	}
}

// stressOp is one mutating request of a round.
type stressOp struct {
	kind   byte // 'w' write, 'z' zero write, 'd' discard, 'c' compressed (after a discard of the cluster), '?' any content (a model's allowance)
	off, n int64
	data   []byte
	failed bool // a compressed write refused (the cluster was allocated again)
}

func stress(t *testing.T, cluster int64, extL2, backing, tiny bool, seed int64) {
	nclusters := int64(96)
	if cluster == 65536 {
		nclusters = 24
	}
	if tiny {
		// 16 L2 tables and 4 refcount blocks of 512 bytes through caches
		// of 2 tables each: requests evict what others just used
		nclusters = 1024
	}
	size := nclusters * cluster
	dir := t.TempDir()
	path := filepath.Join(dir, "t.qcow2")
	model := make([]byte, size)
	rng := rand.New(rand.NewSource(seed))
	opts := stressImage(t, path, rng, model, cluster, extL2, backing, tiny)
	drv, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	disk := image.New(drv, path, image.Options{Unmap: true})

	rounds := 40
	if raceEnabled {
		rounds = 15
	}
	span := func(maxClusters int64) (int64, int64) {
		off := rng.Int63n(size/512*512/512) * 512
		n := 512 * (1 + rng.Int63n(maxClusters*cluster/512))
		if rng.Intn(3) == 0 { // unaligned
			off += rng.Int63n(512)
			n = max(1, n-rng.Int63n(512))
		}
		return off, min(n, size-off)
	}
	for r := 0; r < rounds; r++ {
		var ops []*stressOp
		nops := 2 + rng.Intn(3)
		compressed := false
		// the requests overlap: they fall in a window of a few clusters
		for i := 0; i < nops; i++ {
			op := &stressOp{}
			switch k := rng.Intn(10); {
			case k < 5:
				op.kind = 'w'
				op.off, op.n = span(3)
				op.data = make([]byte, op.n)
				rng.Read(op.data)
			case k < 7:
				op.kind = 'z'
				op.off, op.n = span(3)
			case k < 8:
				op.kind = 'd'
				c := rng.Int63n(nclusters - 2)
				op.off, op.n = c*cluster, cluster*(1+rng.Int63n(2))
			case compressed:
				op.kind = 'w'
				op.off, op.n = span(1)
				op.data = make([]byte, op.n)
				rng.Read(op.data)
			default: // at most one a round (the model tries every order)
				compressed = true
				op.kind = 'c'
				op.off, op.n = rng.Int63n(nclusters)*cluster, cluster
				op.data = bytes.Repeat([]byte{byte(rng.Intn(256)), 1, 2, 3}, int(cluster/4))
			}
			ops = append(ops, op)
		}
		// and they are bunched up: one round's requests share a window
		base := rng.Int63n(nclusters/2) * cluster
		for _, op := range ops {
			op.off = (base + op.off%(nclusters/2*cluster))
			if op.kind == 'c' || op.kind == 'd' {
				op.off &^= cluster - 1
			}
			op.n = min(op.n, size-op.off)
			if op.data != nil {
				op.data = op.data[:op.n]
			}
		}
		type readReq struct {
			off int64
			buf []byte
		}
		var reads []*readReq
		for i := 0; i < 1+rng.Intn(3); i++ {
			off, n := span(3)
			off = base + off%(nclusters/2*cluster)
			n = min(n, size-off)
			reads = append(reads, &readReq{off: off, buf: make([]byte, n)})
		}
		before := bytes.Clone(model)
		var wg sync.WaitGroup
		errs := make(chan error, len(ops)+len(reads))
		for _, op := range ops {
			wg.Add(1)
			go func(op *stressOp) {
				defer wg.Done()
				var err error
				switch op.kind {
				case 'w':
					err = disk.WriteAt(op.data, op.off, false)
				case 'z':
					err = disk.WriteZeroes(op.off, op.n, image.ZeroMayUnmap, false)
				case 'd':
					err = disk.Discard(op.off, op.n)
				case 'c':
					if err = disk.Discard(op.off, op.n); err != nil {
						break
					}
					err = drv.WriteCompressed(op.data, op.off)
					if errors.Is(err, syscall.EIO) {
						op.failed, err = true, nil // allocated again by a request of the round
					}
				}
				if err != nil {
					errs <- fmt.Errorf("%c %#x+%#x: %w", op.kind, op.off, op.n, err)
				}
			}(op)
			if os.Getenv("STRESS_SERIAL") != "" {
				wg.Wait()
			}
		}
		for _, rd := range reads {
			wg.Add(1)
			go func(rd *readReq) {
				defer wg.Done()
				if err := disk.ReadAt(rd.buf, rd.off); err != nil {
					errs <- fmt.Errorf("read %#x+%#x: %w", rd.off, len(rd.buf), err)
				}
			}(rd)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", r, err)
		}
		got := make([]byte, size)
		if err := disk.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		unit := cluster
		if extL2 {
			unit = cluster / 32
		}
		if !serialOrderExists(before, got, ops, unit, false) {
			for i := range got {
				if got[i] != before[i] {
					inop := false
					for _, op := range ops {
						inop = inop || (int64(i) >= op.off && int64(i) < op.off+op.n)
					}
					if !inop {
						t.Logf("byte %#x changed outside the ops: %#x -> %#x", i, before[i], got[i])
						break
					}
				}
			}
			for _, op := range ops {
				if op.kind == 'c' {
					t.Logf("c: got[0:8] %x want %x failed %v", got[op.off:op.off+8], op.data[:8], op.failed)
				}
			}
			t.Fatalf("round %d: the image is no serial order of %s", r, describeOps(ops))
		}
		model = got
		for _, rd := range reads {
			if i := badRead(before, rd.buf, rd.off, ops); i >= 0 {
				t.Fatalf("round %d: read %#x+%#x: byte %#x is %#x, neither the old content nor any write's (%s)",
					r, rd.off, len(rd.buf), rd.off+i, rd.buf[i], describeOps(ops))
			}
		}
		if r%5 == 4 {
			if err := disk.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := disk.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	var out bytes.Buffer
	res, err := d2.Check(&out, 0)
	if err != nil || res.Corruptions != 0 || res.Leaks != 0 || res.CheckErrors != 0 {
		t.Fatalf("check: %+v %v\n%s", res, err, out.String())
	}
	got := make([]byte, size)
	if _, err := d2.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		t.Fatal("reopened image differs from the last round's content")
	}
}

func describeOps(ops []*stressOp) string {
	var b bytes.Buffer
	for _, op := range ops {
		fmt.Fprintf(&b, "%c %#x+%#x", op.kind, op.off, op.n)
		if op.failed {
			b.WriteString(" (refused)")
		}
		b.WriteString("; ")
	}
	return b.String()
}

// serialOrderExists reports whether, in every unit (subcluster) of the
// image, some order of the ops (a compressed write after its discard)
// turns before into got; with optional, some order of any subset of them
// (a crash image, where a request begun since the last completed flush
// may or may not have taken effect, there or anywhere). Whole requests
// are not atomic, as in QEMU: a write takes effect one allocation round
// at a time, and the block layer splits a zero write into a head, a
// middle and a tail request; within a subcluster, each request takes
// effect at once.
func serialOrderExists(before, got []byte, ops []*stressOp, unit int64, optional bool) bool {
	// only the bytes the ops touch can differ
	lo, hi := int64(len(before)), int64(0)
	for _, op := range ops {
		lo, hi = min(lo, op.off), max(hi, op.off+op.n)
	}
	lo, hi = min(lo, hi), min(hi, int64(len(before)))
	if !bytes.Equal(before[:lo], got[:lo]) || !bytes.Equal(before[hi:], got[hi:]) {
		return false
	}
	for u := lo &^ (unit - 1); u < hi; u += unit {
		ue := min(u+unit, int64(len(before)))
		if optional && bytes.Equal(before[u:ue], got[u:ue]) {
			continue // the empty subset
		}
		var in []*stressOp
		for _, op := range ops {
			if op.off < ue && op.off+op.n > u {
				in = append(in, op)
			}
		}
		if !unitOrderExists(before, got, in, u, ue, optional) {
			return false
		}
	}
	return true
}

// unitOrderExists decides serialOrderExists for the unit [lo, hi). It
// builds the order from its end: the step applied last must have put all
// its bytes of the unit there; the one before it those that no later step
// covers; and so on, and what no step explains must be as before. Taking
// any step that fits never spoils an order that exists (the step, placed
// last, leaves an order of the others that explains the bytes it does
// not cover), so one greedy pass decides it, where trying every order of
// many overlapping requests would not end.
func unitOrderExists(before, got []byte, ops []*stressOp, lo, hi int64, optional bool) bool {
	type step struct {
		op      *stressOp
		discard bool // the discard before a compressed write
		placed  bool
	}
	var steps []step
	for _, op := range ops {
		if op.kind == 'c' {
			steps = append(steps, step{op: op, discard: true})
		}
		steps = append(steps, step{op: op})
	}
	explained := make([]bool, hi-lo)
	fits := func(s step) bool {
		if s.op.kind == 'c' && !s.discard && s.op.failed || s.op.kind == '?' {
			return true // no effect, or any
		}
		for x := max(s.op.off, lo); x < min(s.op.off+s.op.n, hi); x++ {
			if explained[x-lo] {
				continue
			}
			var v byte
			if !s.discard && (s.op.kind == 'w' || s.op.kind == 'c') {
				v = s.op.data[x-s.op.off]
			}
			if got[x] != v {
				return false
			}
		}
		return true
	}
	for progress := true; progress; {
		progress = false
		for i := range steps {
			s := &steps[i]
			if s.placed {
				continue
			}
			// a compressed write comes after its own discard: when every
			// step takes effect, the discard is placed (before) once the
			// write is (a subset may have the discard alone: the write
			// covers all the discard does, so that is all it changes)
			if s.discard && !optional && !steps[i+1].placed {
				continue
			}
			if !fits(*s) {
				continue
			}
			if !(s.op.kind == 'c' && !s.discard && s.op.failed) {
				for x := max(s.op.off, lo); x < min(s.op.off+s.op.n, hi); x++ {
					explained[x-lo] = true
				}
			}
			s.placed, progress = true, true
		}
	}
	for _, s := range steps {
		if !s.placed && !optional {
			return false
		}
	}
	for x := lo; x < hi; x++ {
		if !explained[x-lo] && got[x] != before[x] {
			return false
		}
	}
	return true
}

// badRead returns the index of a byte of the read at off that is neither
// the content before the round nor what an op of the round put there, or -1.
// A read may see zeroes where a write is under way: as QEMU's
// handle_alloc_space, a write whose copy-on-write areas read as zero
// zeroes its clusters in the file before it writes its data.
func badRead(before, buf []byte, off int64, ops []*stressOp) int64 {
	for i, v := range buf {
		x := off + int64(i)
		if before[x] == v {
			continue
		}
		ok := false
		for _, op := range ops {
			if x < op.off || x >= op.off+op.n {
				continue
			}
			switch {
			case op.kind == 'w' || op.kind == 'c':
				ok = ok || op.data[x-op.off] == v || v == 0
			default:
				ok = ok || v == 0
			}
		}
		if !ok {
			return int64(i)
		}
	}
	return -1
}

// stressImage creates the image of a stress case at path, over a raw
// backing file of random bytes (which model then holds) when backing, and
// returns the options to open it with (tiny: caches of two tables).
func stressImage(t *testing.T, path string, rng *rand.Rand, model []byte, cluster int64, extL2, backing, tiny bool) Options {
	t.Helper()
	co := CreateOptions{Size: int64(len(model)), ClusterSize: cluster, Version: 3, RefcountBits: 16, ExtendedL2: extL2}
	if backing {
		bpath := filepath.Join(filepath.Dir(path), "b.raw")
		rng.Read(model)
		if err := os.WriteFile(bpath, model, 0o644); err != nil {
			t.Fatal(err)
		}
		co.BackingFile, co.BackingFmt = bpath, "raw"
	}
	if err := Create(path, co); err != nil {
		t.Fatal(err)
	}
	opts := Options{Unmap: true}
	if tiny {
		l2, rc := uint64(2*cluster), uint64(2*cluster)
		opts.Runtime.L2CacheSize, opts.Runtime.RefcountCacheSize = &l2, &rc
	}
	return opts
}
