package commands

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/raw"
)

// tclock advances 1 ms at every reading, so every request takes 1 ms.
type tclock struct{ t time.Time }

func (c *tclock) now() time.Time { c.t = c.t.Add(time.Millisecond); return c.t }

type harness struct {
	s        *Session
	out, err strings.Builder
	dir      string
}

// newQcow2Harness is a session on a new 1 MiB qcow2 image (64 KiB
// clusters).
func newQcow2Harness(t *testing.T) *harness {
	t.Helper()
	h := &harness{dir: t.TempDir()}
	path := filepath.Join(h.dir, "t.qcow2")
	if err := qcow2.Create(path, qcow2.CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
		t.Fatal(err)
	}
	h.s = NewSession("/usr/bin/qemu-io", NewOutput(&h.out, 4096, false), &h.err)
	h.s.Now = (&tclock{}).now
	if err := h.s.Open(path, DefaultOpenFlags(), map[string]string{"driver": "qcow2"}); err != nil {
		t.Fatalf("open: %s", h.err.String())
	}
	return h
}

func newHarness(t *testing.T, size int64) *harness {
	t.Helper()
	h := &harness{dir: t.TempDir()}
	path := filepath.Join(h.dir, "t.raw")
	if err := raw.Create(path, size, image.PreallocOff); err != nil {
		t.Fatal(err)
	}
	h.s = NewSession("/usr/bin/qemu-io", NewOutput(&h.out, 4096, false), &h.err)
	c := &tclock{}
	h.s.Now = c.now
	if err := h.s.Open(path, DefaultOpenFlags(), map[string]string{"driver": "raw"}); err != nil {
		t.Fatalf("open: %s", h.err.String())
	}
	return h
}

// run runs the lines and returns stdout, stderr and whether any failed.
func (h *harness) run(lines ...string) (string, string, bool) {
	h.out.Reset()
	h.err.Reset()
	failed := false
	for _, l := range lines {
		if h.s.Run(l) != nil {
			failed = true
		}
	}
	h.s.Out.Flush()
	return h.out.String(), h.err.String(), failed
}

func expect(t *testing.T, h *harness, lines []string, wantOut, wantErr string, wantFail bool) {
	t.Helper()
	out, errs, failed := h.run(lines...)
	if out != wantOut || errs != wantErr || failed != wantFail {
		t.Errorf("%q:\nstdout %q\n  want %q\nstderr %q\n  want %q\nfailed %v, want %v", lines, out, wantOut, errs, wantErr, failed, wantFail)
	}
}

const stats512 = "512 bytes, 1 ops; 00.00 sec (500 KiB/sec and 1000.0000 ops/sec)\n"

func TestReadWrite(t *testing.T) {
	h := newHarness(t, 1<<20)
	expect(t, h, []string{"write -P 0x41 0 512", "read -P 0x41 0 512"},
		"wrote 512/512 bytes at offset 0\n"+stats512+"read 512/512 bytes at offset 0\n"+stats512, "", false)
	expect(t, h, []string{"read -P 0x42 0 512"},
		"Pattern verification failed at offset 0, 512 bytes\nread 512/512 bytes at offset 0\n"+stats512, "", true)
	expect(t, h, []string{"read -v 510 4"},
		"000001fe:  41 41 00 00  AA..\nread 4/4 bytes at offset 510\n4 bytes, 1 ops; 00.00 sec (3.906 KiB/sec and 1000.0000 ops/sec)\n", "", false)
	expect(t, h, []string{"read -q -v 0 512", "write -q 0 1"}, "", "", false)
	expect(t, h, []string{"write -C 0 512"}, "512,1,0:00:00.00,512000.000,1000.000\n", "", false)
	expect(t, h, []string{"read 1M 1"}, "read failed: Input/output error\n", "", true)
	expect(t, h, []string{"read 0 -1"}, readCmd.Usage(), "read: invalid option -- '1'\n", true)
	expect(t, h, []string{"write -z -P 1 0 1"}, "Only one of -z, -P, and -s can be specified at the same time\n", "", true)
	expect(t, h, []string{"write -c 0 512"}, "write failed: Operation not supported\n", "", true)
	expect(t, h, []string{"read -b 0 512"}, "read failed: Operation not supported\n", "", true)
	expect(t, h, []string{"write 0 3G"}, "length cannot exceed 2147483136 without -n, given 3G\n", "", true)
	expect(t, h, []string{"write -zu 0 4k", "read -q -P 0 0 4k"}, "wrote 4096/4096 bytes at offset 0\n4 KiB, 1 ops; 00.00 sec (3.906 MiB/sec and 1000.0000 ops/sec)\n", "", false)
}

func TestVectors(t *testing.T) {
	h := newHarness(t, 1<<20)
	expect(t, h, []string{"writev -P 3 0 256 256", "readv -q -P 3 0 100 412"},
		"wrote 512/512 bytes at offset 0\n"+stats512, "", false)
	expect(t, h, []string{"readv 0 1G 1G"}, "The total number of bytes exceed the maximum size 2147483136\n", "", true)
	expect(t, h, []string{"readv 0 3G"}, "Argument '3G' exceeds maximum size 2147483136\n", "", true)
	expect(t, h, []string{"readv -P 4 0 512"}, "Pattern verification failed at offset 0, 512 bytes\nread 512/512 bytes at offset 0\n"+stats512, "", true)
}

func TestDiscardAllocMapLengthInfo(t *testing.T) {
	h := newHarness(t, 1<<20)
	expect(t, h, []string{"discard 0 512"}, "discard 512/512 bytes at offset 0\n"+stats512, "", false)
	expect(t, h, []string{"alloc 1000k 100k", "alloc 0", "alloc 2M"},
		"24576/24576 bytes allocated at offset 1000 KiB\n512/512 bytes allocated at offset 0 bytes\n0/0 bytes allocated at offset 2 MiB\n", "", false)
	expect(t, h, []string{"map"}, "1 MiB (0x100000) bytes     allocated at offset 0 bytes (0x0)\n", "", false)
	expect(t, h, []string{"length", "info"}, "1 MiB\nformat name: raw\ncluster size: 0 bytes\nvm state offset: 0 bytes\n", "", false)
	expect(t, h, []string{"length 1"}, "", "bad argument count 1 to length, expected 0 arguments\n", true)
}

func TestSessionCommands(t *testing.T) {
	h := newHarness(t, 1<<20)
	expect(t, h, []string{"bogus"}, "", "command \"bogus\" not found\n", true)
	expect(t, h, []string{"help a b"}, "", "bad argument count 2 to help, expected between 0 and 1 arguments\n", true)
	expect(t, h, []string{"help w"}, writeCmd.helpLine("w")+writeCmd.Help, "", false)
	expect(t, h, []string{"help nope"}, "command nope not found\n", "", true)
	expect(t, h, []string{"sleep 08", "sleep 0x1"}, "08 is not a valid number\n", "", true)
	expect(t, h, []string{"open x"}, "", "qemu-io: file open already, try 'help close'\n", true)
	expect(t, h, []string{"close", "length"}, "", "no file open, try 'help open'\n", true)
	expect(t, h, []string{"quit"}, "", "", false)
	if !h.s.Quit() {
		t.Error("quit did not set the quit flag")
	}
}

func TestReadOnlySession(t *testing.T) {
	h := newHarness(t, 1<<20)
	h.s.Close()
	f := DefaultOpenFlags()
	f.ReadOnly = true
	if err := h.s.Open(filepath.Join(h.dir, "t.raw"), f, map[string]string{"driver": "raw"}); err != nil {
		t.Fatal(err)
	}
	expect(t, h, []string{"write 0 1", "discard 0 1", "read -q 0 1"}, "", "qemu-io: Block node is read-only\nqemu-io: Block node is read-only\n", true)
}

func TestParseOptions(t *testing.T) {
	var warned []string
	o, err := ParseOptions("driver=raw,file.filename=a,,b,bare", "", func(s string) { warned = append(warned, s) })
	if err != nil || o["driver"] != "raw" || o["file.filename"] != "a,b" || o["bare"] != "on" || len(warned) != 1 {
		t.Errorf("got %v %v %v", o, err, warned)
	}
}

func TestTraceZero(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.qcow2")
	if err := qcow2.Create(path, qcow2.CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
		t.Fatal(err)
	}
	h := &harness{dir: dir}
	h.s = NewSession("goqio", NewOutput(&h.out, 4096, false), &h.err)
	h.s.TraceZero = true
	if err := h.s.Open(path, DefaultOpenFlags(), nil); err != nil {
		t.Fatal(h.err.String())
	}
	_, errs, _ := h.run("write -q -P 1 136k 4k", "write -q -z 512 131072", "discard -q 4k 200k")
	want := `goqio-trace: zero write off=0x200 size=0x20000 flags=0
goqio-trace:   piece off=0x200 size=0xfe00
goqio-trace: qcow2 pwrite_zeroes off=0x200 size=0xfe00 -> widened to cluster 0x0
goqio-trace:   piece off=0x10000 size=0x10000
goqio-trace: qcow2 pwrite_zeroes off=0x10000 size=0x10000
goqio-trace:   piece off=0x20000 size=0x200
goqio-trace: qcow2 pwrite_zeroes off=0x20000 size=0x200 -> rest of cluster not zero: ENOTSUP, explicit zeroes
goqio-trace:   -> explicit zeroes off=0x20000 size=0x200
goqio-trace: discard off=0x1000 size=0x32000
goqio-trace:   piece off=0x1000 size=0xf000
goqio-trace: qcow2 pdiscard off=0x1000 size=0xf000 -> partial cluster: ignored
goqio-trace:   piece off=0x10000 size=0x20000
goqio-trace: qcow2 pdiscard off=0x10000 size=0x20000
goqio-trace:   piece off=0x30000 size=0x3000
goqio-trace: qcow2 pdiscard off=0x30000 size=0x3000 -> partial cluster: ignored
`
	if errs != want {
		t.Errorf("trace:\n%s\nwant:\n%s", errs, want)
	}
}

// TestAioConcurrent: many concurrent aio writes to the same and to
// neighbouring clusters of a qcow2 image (allocations, copy-on-write), then
// the content is checked against a model. Run under -race.
func TestAioConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.qcow2")
	if err := qcow2.Create(path, qcow2.CreateOptions{Size: 4 << 20, ClusterSize: 4096, Version: 3, RefcountBits: 16}); err != nil {
		t.Fatal(err)
	}
	h := &harness{dir: dir}
	h.s = NewSession("qemu-io", NewOutput(&h.out, 4096, false), &h.err)
	if err := h.s.Open(path, DefaultOpenFlags(), nil); err != nil {
		t.Fatal(h.err.String())
	}
	model := make([]byte, 4<<20)
	var lines []string
	for i := 0; i < 64; i++ {
		off := 2<<20 + int64(i%16)*3000 // overlapping each other in a few clusters
		if i%2 == 1 {
			off = int64(i) * 4096 // neighbours
		}
		pat := byte(i + 1)
		lines = append(lines, fmt.Sprintf("aio_write -q -P %d %d 3000", pat, off))
	}
	// overlapping writes may land in any order: only disjoint ones are modelled
	for i := 1; i < 64; i += 2 {
		for j := int64(0); j < 3000; j++ {
			model[int64(i)*4096+j] = byte(i + 1)
		}
	}
	lines = append(lines, "aio_flush")
	if _, errs, failed := h.run(lines...); failed || errs != "" {
		t.Fatalf("aio writes failed: %s", errs)
	}
	for i := 1; i < 64; i += 2 {
		out, _, failed := h.run(fmt.Sprintf("read -q -P %d %d 3000", i+1, i*4096))
		if failed {
			t.Fatalf("neighbour %d: %s", i, out)
		}
	}
	h.s.Close()
}

func TestJSONOutput(t *testing.T) {
	h := newHarness(t, 1<<20)
	h.s.JSON = true
	out, errs, failed := h.run("write -P 1 0 512", "read -P 2 0 512", "length", "alloc 0 1M", "map", "info", "read -x 0 1")
	if !failed {
		t.Error("a failed pattern check did not fail")
	}
	want := []string{
		`{"command":"write","offset":0,"bytes":512,"ops":1,"seconds":0.001,"bytes_per_sec":512000,"ops_per_sec":1000}`,
		`{"command":"read","offset":0,"bytes":512,"ops":1,"seconds":0.001,"bytes_per_sec":512000,"ops_per_sec":1000,"pattern_ok":false}`,
		`{"command":"length","bytes":1048576}`,
		`{"command":"alloc","offset":0,"bytes":1048576,"allocated":1048576}`,
		`{"command":"map","runs":[{"start":0,"length":1048576,"allocated":true}]}`,
		`{"command":"info","format":"raw","cluster_size":0,"vm_state_offset":0}`,
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if !strings.Contains(errs, "Pattern verification failed at offset 0, 512 bytes") || !strings.Contains(errs, readCmd.Usage()) {
		t.Errorf("stderr: %q", errs)
	}
}

func TestCompleter(t *testing.T) {
	var c completer
	got, n := c.Do([]rune("wri"), 3)
	if n != 3 || len(got) != 2 || string(got[0]) != "te " || string(got[1]) != "tev " {
		t.Errorf("verbs: %q %d", got, n)
	}
	got, n = c.Do([]rune("write -"), 7)
	if n != 1 || len(got) != 11 || string(got[0]) != "b " {
		t.Errorf("options: %q %d", got, n)
	}
	got, _ = c.Do([]rune("read -P"), 7)
	if len(got) != 1 || string(got[0]) != " " {
		t.Errorf("option -P: %q", got)
	}
	if got, _ := c.Do([]rune("read 0"), 6); got != nil {
		t.Errorf("operand: %q", got)
	}
}
