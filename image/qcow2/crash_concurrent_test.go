package qcow2

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
	"github.com/goqio/goqio/image/raw"
)

// TestCrashAtEveryWriteConcurrent is TestCrashAtEveryWrite for concurrent
// workloads: in each round, several goroutines issue overlapping
// allocating, partial (copy-on-write), zero, discard and compressed
// requests through an image.Disk over the driver over a recording file;
// then, at a barrier, one goroutine flushes (most rounds: some rounds end
// without one, so that a crash may undo two rounds). Then the file is
// rebuilt as a crash after each change that reached it would leave it,
// as the serial test does (every prefix of the changes, in the order they
// reached the file), and each of those files must
//
//   - check free of corruption (leaks are allowed), and
//   - hold, in every subcluster, what some order of some of the requests
//     begun since the last completed flush makes of the content at that
//     flush (serialOrderExists of stress_test.go with optional: a
//     subcluster no such request touched reads as at that flush).
//
// Two allowances in that model are what QEMU 7.2 does too (goqio keeps
// its I/O; CRASH_STRICT=1 drops them, and the test then fails on them):
//
//   - a write under way may read as zeroes in its range: QEMU's
//     handle_alloc_space zeroes the whole l2meta range in the file before
//     the data goes there, which for a write over a zero-allocated
//     cluster followed by a normal one includes that normal cluster;
//   - a range a request since the flush freed (a discard, an unmapping
//     zero write, a compressed write's discard, a write over a compressed
//     cluster) may read as anything, or fail to read where it was a
//     compressed cluster: the freed host cluster is reused by another
//     request's data, or discarded in the file, before the L2 table that
//     no longer points at it is written (QEMU reuses freed clusters at
//     once and qcow2_process_discards does not wait for the L2 cache);
//     the serial test's model allows as much ("discarded data is
//     unknown"), for every range a request touched.
//
// Each round's result (without a crash) must also be some serial order of
// all of its requests, and the final image checks clean in the driver's
// check and in the real qemu-img check when it is installed.
//
// The requests are drawn from the seed (CRASH_SEED adds to it), so every
// run issues the same ones; which goroutine issued which, and where it
// began and ended in the recorded changes, is in the failure message.
// Under -race only every few crash points are checked.
func TestCrashAtEveryWriteConcurrent(t *testing.T) {
	type geo struct {
		cluster int64
		extL2   bool
		tiny    bool // caches of 2 tables: metadata reaches the file between flushes
	}
	for i, g := range []geo{{512, false, true}, {4096, false, false}, {4096, false, true}, {65536, false, false}, {65536, true, false}, {16384, true, true}} {
		for _, backing := range []bool{false, true} {
			i, g, backing := i, g, backing
			name := fmt.Sprintf("c%d-ext%v-backing%v", g.cluster, g.extL2, backing)
			if g.tiny {
				name += "-tinycache"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				seed := int64(i)
				if backing {
					seed += 100
				}
				if s, err := strconv.ParseInt(os.Getenv("CRASH_SEED"), 10, 64); err == nil {
					seed += s
				}
				crashConcurrent(t, g.cluster, g.extL2, backing, g.tiny, seed)
			})
		}
	}
}

// orderedRecorder makes each change and records it in one step, so that
// the recorded order is the order in which the changes reached the file
// even when requests write the same bytes at once (the driver still runs
// its requests concurrently; only their file I/O is one at a time).
type orderedRecorder struct {
	mu sync.Mutex
	*imagetest.Recorder
}

func (r *orderedRecorder) WriteAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Recorder.WriteAt(p, off)
}

func (r *orderedRecorder) WritevAt(bufs [][]byte, off int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Recorder.WritevAt(bufs, off)
}

func (r *orderedRecorder) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	size := r.Recorder.Driver.Size()
	err := r.Recorder.WriteZeroes(off, n, flags)
	if grown := r.Recorder.Driver.Size(); err == nil && grown > size {
		// zeroing past the end grows a file (a recorded zeroing does
		// not: it may be a discard); nothing else records meanwhile
		r.Ops = append(r.Ops, imagetest.Op{Off: grown, Truncate: true})
	}
	return err
}

func (r *orderedRecorder) Discard(off, n int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Recorder.Discard(off, n)
}

func (r *orderedRecorder) Truncate(size int64, p image.Prealloc) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Recorder.Truncate(size, p)
}

// changes is how many changes have reached the file.
func (r *orderedRecorder) changes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.Ops)
}

// crashOp is one request of the concurrent workload and where it began
// and ended in the recorded changes.
type crashOp struct {
	*stressOp
	round, g   int // the round and the goroutine that issued it
	start, end int // changes recorded before it began, and once it ended
	mayUnmap   bool
}

func (o *crashOp) String() string {
	s := fmt.Sprintf("round %d goroutine %d: %c %#x+%#x changes [%d,%d)", o.round, o.g, o.kind, o.off, o.n, o.start, o.end)
	if o.failed {
		s += " (refused)"
	}
	return s
}

// crashFlush is a completed flush: the content then, and the changes
// recorded once it ended.
type crashFlush struct {
	round, end int
	content    []byte
}

func crashConcurrent(t *testing.T, cluster int64, extL2, backing, tiny bool, seed int64) {
	const goroutines = 4
	nclusters := int64(64)
	if cluster >= 16384 {
		nclusters = 16
	}
	if tiny && cluster == 512 {
		nclusters = 512 // 8 L2 tables and 2 refcount blocks through caches of 2
	}
	size := nclusters * cluster
	unit := cluster
	if extL2 {
		unit = cluster / 32
	}
	dir := t.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		// the flushes sync the file: in memory, they cost nothing
		if d, err := os.MkdirTemp("/dev/shm", "goqio-crash-"); err == nil {
			dir = d
			defer os.RemoveAll(d)
		}
	}
	path := filepath.Join(dir, "t.qcow2")
	rng := rand.New(rand.NewSource(seed))
	model := make([]byte, size)
	opts := stressImage(t, path, rng, model, cluster, extL2, backing, tiny)
	opts.OpenBacking = defaultOpenBacking(0)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := raw.Open(path, raw.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &orderedRecorder{Recorder: &imagetest.Recorder{Driver: rd}}
	drv, err := openOn(image.New(rec, path, image.Options{Grow: true, Unmap: true}), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	disk := image.New(drv, path, image.Options{Unmap: true})

	rounds := 20
	window := min(nclusters/2, 8) * cluster // one round's requests fall in it
	span := func(maxClusters int64) (int64, int64) {
		off := rng.Int63n(window/512) * 512
		n := 512 * (1 + rng.Int63n(maxClusters*cluster/512))
		if rng.Intn(3) == 0 { // unaligned
			off += rng.Int63n(512)
			n = max(1, n-rng.Int63n(512))
		}
		return off, n
	}
	var all []*crashOp
	flushes := []crashFlush{{round: -1, end: 0, content: bytes.Clone(model)}}
	for r := 0; r < rounds; r++ {
		base := rng.Int63n(nclusters-window/cluster+1) * cluster
		var ops []*crashOp
		for g := 0; g < goroutines; g++ {
			for i := 0; i < 1+rng.Intn(3); i++ {
				op := &crashOp{stressOp: &stressOp{}, round: r, g: g}
				switch k := rng.Intn(20); {
				case k < 10:
					op.kind = 'w'
					op.off, op.n = span(2)
				case k < 14:
					op.kind = 'z'
					op.off, op.n = span(2)
					op.mayUnmap = rng.Intn(2) == 0
				case k < 17:
					op.kind = 'd'
					op.off, op.n = rng.Int63n(window/cluster)*cluster, cluster*(1+rng.Int63n(2))
				default:
					op.kind = 'c'
					op.off, op.n = rng.Int63n(window/cluster)*cluster, cluster
				}
				op.off += base
				op.n = min(op.n, size-op.off)
				switch op.kind {
				case 'w':
					// random bytes repeating every 1031 (a prime: data
					// misplaced by any power of two shows): quick to make
					// under -race
					op.data = make([]byte, op.n)
					rng.Read(op.data[:min(op.n, 1031)])
					for i := int64(1031); i < op.n; i *= 2 {
						copy(op.data[i:], op.data[:i])
					}
				case 'c':
					op.data = bytes.Repeat([]byte{byte(rng.Intn(256)), byte(g), byte(r), 3}, int(cluster/4))
				}
				ops = append(ops, op)
			}
		}
		before := bytes.Clone(model)
		var wg sync.WaitGroup
		errs := make(chan error, len(ops))
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for _, op := range ops {
					if op.g != g {
						continue
					}
					op.start = rec.changes()
					var err error
					switch op.kind {
					case 'w':
						err = disk.WriteAt(op.data, op.off, false)
					case 'z':
						var fl image.ZeroFlags
						if op.mayUnmap {
							fl = image.ZeroMayUnmap
						}
						err = disk.WriteZeroes(op.off, op.n, fl, false)
					case 'd':
						err = disk.Discard(op.off, op.n)
					case 'c':
						// compressed writes go to clusters that hold
						// nothing; one of the round may have taken it again
						if err = disk.Discard(op.off, op.n); err != nil {
							break
						}
						err = disk.WriteCompressed(op.data, op.off)
						if errors.Is(err, syscall.EIO) {
							op.failed, err = true, nil
						}
					}
					op.end = rec.changes()
					if err != nil {
						errs <- fmt.Errorf("%v: %w", op, err)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		all = append(all, ops...)
		got := make([]byte, size)
		if err := disk.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !serialOrderExists(before, got, stressOps(ops), unit, false) {
			t.Fatalf("seed %d round %d: the image is no serial order of the round's requests:\n%s", seed, r, describeCrashOps(ops))
		}
		model = got
		if rng.Intn(4) != 0 || r == rounds-1 {
			if err := disk.Flush(); err != nil {
				t.Fatal(err)
			}
			flushes = append(flushes, crashFlush{round: r, end: rec.changes(), content: got})
		}
	}
	if err := disk.Close(); err != nil {
		t.Fatal(err)
	}
	final, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if qimg, err := exec.LookPath("qemu-img"); err == nil {
		if out, err := exec.Command(qimg, "check", "-f", "qcow2", path).CombinedOutput(); err != nil {
			t.Errorf("seed %d: qemu-img check of the final image: %v\n%s", seed, err, out)
		}
	}
	ops := rec.Ops
	t.Logf("seed %d: %d requests, %d flushes, %d changes reached the file", seed, len(all), len(flushes)-1, len(ops))

	crash := filepath.Join(dir, "crash.qcow2")
	if err := os.WriteFile(crash, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(crash, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stride := 1
	if raceEnabled {
		stride = max(1, len(ops)/30)
	}
	// the first change of a compressed write to each cluster
	compressedBy := make([]int, nclusters)
	for i := range compressedBy {
		compressedBy[i] = len(ops) + 1
	}
	for _, op := range all {
		if op.kind == 'c' && !op.failed {
			compressedBy[op.off/cluster] = min(compressedBy[op.off/cluster], op.start)
		}
	}
	strict := os.Getenv("CRASH_STRICT") != ""
	got := make([]byte, size)
	for k := 0; k <= len(ops); k++ {
		if k > 0 {
			if err := ops[k-1].Apply(f); err != nil {
				t.Fatal(err)
			}
		}
		if k%stride != 0 && k != len(ops) {
			continue
		}
		fl := flushes[0]
		for _, x := range flushes {
			if x.end <= k {
				fl = x
			}
		}
		var since []*crashOp
		var model []*stressOp
		for _, op := range all {
			if op.round > fl.round && op.start < k {
				since = append(since, op)
				model = append(model, op.stressOp)
				if strict {
					continue
				}
				if op.kind == 'w' && op.end > k {
					// a write under way may have zeroed its range in
					// the file first (QEMU's handle_alloc_space)
					model = append(model, &stressOp{kind: 'z', off: op.off, n: op.n})
				}
				if op.kind == 'd' || op.kind == 'c' || op.kind == 'z' && op.mayUnmap {
					// what a request freed reads as anything (the
					// serial test's "discarded data is unknown")
					model = append(model, &stressOp{kind: '?', off: op.off, n: op.n})
				}
				if op.kind == 'w' || op.kind == 'z' {
					// and so does a compressed cluster a write replaced
					for x := op.off &^ (cluster - 1); x < op.off+op.n; x += cluster {
						if compressedBy[x/cluster] < k {
							model = append(model, &stressOp{kind: '?', off: x, n: cluster})
						}
					}
				}
			}
		}
		fail := func(format string, a ...any) {
			t.Helper()
			if d := os.Getenv("CRASH_DEBUG_DIR"); d != "" {
				// the crash image, and the image at the last completed flush
				if b, err := os.ReadFile(crash); err == nil {
					os.WriteFile(filepath.Join(d, "crash.qcow2"), b, 0o644)
					fp := filepath.Join(d, "flush.qcow2")
					os.WriteFile(fp, orig, 0o644)
					if ff, err := os.OpenFile(fp, os.O_RDWR, 0); err == nil {
						for _, o := range ops[:fl.end] {
							o.Apply(ff)
						}
						ff.Close()
					}
				}
			}
			var ch strings.Builder
			for i := fl.end; i < k; i++ {
				fmt.Fprintf(&ch, "  %d: %s\n", i, describe(ops, i+1))
			}
			t.Fatalf("seed %d: crash after change %d of %d (%s), last completed flush after round %d: %s\nrequests begun since:\n%s\nchanges since:\n%s",
				seed, k, len(ops), describe(ops, k), fl.round, fmt.Sprintf(format, a...), describeCrashOps(since), ch.String())
		}
		c, err := Open(crash, Options{ReadOnly: true, Check: true})
		if err != nil {
			fail("open: %v", err)
		}
		var msgs strings.Builder
		res, err := c.Check(&msgs, 0)
		if err != nil || res.Corruptions != 0 || res.CheckErrors != 0 {
			c.Close()
			fail("check: %+v %v\n%.3000s", res, err, msgs.String())
		}
		cd := image.New(c, crash, image.Options{ReadOnly: true})
		for x := int64(0); x < size; x += cluster {
			if err := cd.ReadAt(got[x:x+cluster], x); err != nil {
				// a compressed cluster whose host clusters a request
				// freed (and the file discarded, or another request
				// reused) reads as an error: that request's range is
				// "any content", but it must cover the cluster
				if !anyContent(model, x, cluster) {
					c.Close()
					fail("read %#x+%#x: %v", x, cluster, err)
				}
				copy(got[x:x+cluster], fl.content[x:])
			}
		}
		c.Close()
		if !serialOrderExists(fl.content, got, model, unit, true) {
			u := int64(0)
			for u < size && serialOrderExists(fl.content[:u+unit], got[:u+unit], model, unit, true) {
				u += unit
			}
			fail("guest bytes %#x+%#x are no order of the requests begun since the flush; by byte runs, bytes that neither the flush nor any of them could have put there:\n%s",
				u, unit, explainUnit(fl.content, got, since, u, min(u+unit, size)))
		}
	}
	if rebuilt, err := os.ReadFile(crash); err != nil || !bytes.Equal(rebuilt, final) {
		i := 0
		for i < min(len(rebuilt), len(final)) && rebuilt[i] == final[i] {
			i++
		}
		t.Fatalf("the recorded changes do not rebuild the final file (%v): sizes %d %d, first difference at %#x", err, len(rebuilt), len(final), i)
	}
}

func stressOps(ops []*crashOp) []*stressOp {
	s := make([]*stressOp, len(ops))
	for i, op := range ops {
		s[i] = op.stressOp
	}
	return s
}

func describeCrashOps(ops []*crashOp) string {
	var b strings.Builder
	for i, op := range ops {
		fmt.Fprintf(&b, "  %d: %v\n", i, op)
	}
	return b.String()
}

// explainUnit describes, in runs of bytes of [lo, hi), which of the
// content at the flush ("flush") and the requests could have put each
// byte there.
func explainUnit(stable, got []byte, ops []*crashOp, lo, hi int64) string {
	var b strings.Builder
	who := func(x int64) string {
		var w []string
		if got[x] == stable[x] {
			w = append(w, "flush")
		}
		for i, op := range ops {
			if x < op.off || x >= op.off+op.n {
				continue
			}
			v := byte(0)
			if op.kind == 'w' || op.kind == 'c' {
				v = op.data[x-op.off]
			}
			if got[x] == v || (op.kind == 'c' && got[x] == 0) {
				w = append(w, strconv.Itoa(i))
			}
		}
		if len(w) == 0 {
			return "none"
		}
		return strings.Join(w, ",")
	}
	start, cur, shown := lo, who(lo), 0
	for x := lo + 1; x <= hi; x++ {
		var c string
		if x < hi {
			c = who(x)
		}
		if (x == hi || c != cur) && cur == "none" && shown < 8 {
			shown++
			fmt.Fprintf(&b, "  %#x+%#x: %s (reads %x...)\n", start, x-start, cur, got[start:min(x, start+8)])
		}
		if x == hi || c != cur {
			start, cur = x, c
		}
	}
	return b.String()
}

// anyContent reports whether one of the model's '?' steps covers off+n.
func anyContent(model []*stressOp, off, n int64) bool {
	for _, op := range model {
		if op.kind == '?' && op.off <= off && op.off+op.n >= off+n {
			return true
		}
	}
	return false
}
