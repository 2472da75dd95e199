// Package reliability holds the tests that check goqio cannot damage an
// image: killed at any moment, fed crafted images, or opened read-only.
package reliability

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goqio/goqio/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

const (
	crashSize = 16 << 20
	sector    = 512
)

type op struct {
	cmd      string
	off, len int64
	val      int // pattern byte, 0 for zeroes, -1 unknown afterwards (discard)
	ack      int // > 0: this is "flush" followed by ack number ack
}

// crashWorkload makes a seeded mix of allocating, partial, zero and
// discard requests, with a flush and an acknowledgement every few.
func crashWorkload(seed int64) []op {
	rng := rand.New(rand.NewSource(seed))
	var ops []op
	ack := 0
	for i := 0; i < 4000; i++ {
		if i%8 == 7 {
			ack++
			ops = append(ops, op{cmd: "flush", ack: ack})
			continue
		}
		off := rng.Int63n(crashSize/sector) * sector
		n := min(int64(1+rng.Intn(300))*sector, crashSize-off)
		switch k := rng.Intn(10); {
		case k < 6:
			v := 1 + rng.Intn(255)
			ops = append(ops, op{fmt.Sprintf("write -q -P %d %d %d", v, off, n), off, n, v, 0})
		case k < 8:
			fl := []string{"-z", "-zu"}[rng.Intn(2)]
			ops = append(ops, op{fmt.Sprintf("write -q %s %d %d", fl, off, n), off, n, 0, 0})
		default:
			ops = append(ops, op{fmt.Sprintf("discard -q %d %d", off, n), off, n, -1, 0})
		}
	}
	return ops
}

func script(ops []op) string {
	var b strings.Builder
	for _, o := range ops {
		if o.ack > 0 {
			fmt.Fprintf(&b, "flush\nack_%d\n", o.ack)
		} else {
			b.WriteString(o.cmd + "\n")
		}
	}
	return b.String()
}

// TestCrashConsistency kills goqio with SIGKILL at random points of a long
// workload, 20 times; every time qemu-img check must find no corruption
// (leaks are allowed) and everything acknowledged after a completed flush
// must read back.
func TestCrashConsistency(t *testing.T) {
	qemuIO, _ := exec.LookPath("qemu-io")
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil || qemuIO == "" {
		t.Skip("qemu-io/qemu-img not installed")
	}
	bin := testbin.Goqio(t)
	dir := t.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "goqio-crash-"); err == nil {
			dir = d
			defer os.RemoveAll(d)
		}
	}
	runs := 20
	if v, err := strconv.Atoi(os.Getenv("GOQIO_CRASH_RUNS")); err == nil {
		runs = v
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for run := 0; run < runs; run++ {
		seed := int64(run + 1)
		cl := []string{"65536", "4096", "512"}[run%3]
		img := filepath.Join(dir, fmt.Sprintf("crash-%d.qcow2", run))
		if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", "-o", "cluster_size="+cl, img, fmt.Sprint(crashSize)).CombinedOutput(); err != nil {
			t.Fatalf("create: %v %s", err, out)
		}
		ops := crashWorkload(seed)
		cmd := exec.Command(bin, "-f", "qcow2", "-t", "writeback", img)
		cmd.Stdin = strings.NewReader(script(ops))
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := make(chan int, 1000)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				var n int
				if _, err := fmt.Sscanf(sc.Text(), "command \"ack_%d\" not found", &n); err == nil {
					acked <- n
				}
			}
			close(acked)
		}()
		time.Sleep(time.Duration(2+rng.Intn(120)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		last := 0
		for n := range acked {
			last = n
		}
		out, err := exec.Command(qemuImg, "check", "-f", "qcow2", img).CombinedOutput()
		if code := exitCode(err); code != 0 && code != 3 {
			t.Fatalf("run %d (cluster %s, ack %d): qemu-img check exit %d:\n%s", run, cl, last, code, out)
		}
		// goqio's own check must agree: leaks (exit 3) allowed, nothing worse
		gout, gerr := exec.Command(bin, "check", "-f", "qcow2", img).CombinedOutput()
		if code := exitCode(gerr); code != exitCode(err) {
			t.Fatalf("run %d: goqio check exit %d, qemu-img check exit %d:\n%s", run, code, exitCode(err), gout)
		}
		t.Logf("run %d: cluster %s, killed after ack %d of %d", run, cl, last, 500)
		verify(t, qemuIO, img, ops, last, run)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(*exec.ExitError); ok {
		return e.ExitCode()
	}
	return -1
}

// verify reads back, with the real qemu-io, every sector whose content was
// known at the last acknowledged flush and that no later request touched.
func verify(t *testing.T, qemuIO, img string, ops []op, last, run int) {
	t.Helper()
	const unknown = -1
	model := make([]int16, crashSize/sector) // 0: zero (a fresh image reads zeroes)
	touched := make([]bool, crashSize/sector)
	acked := last == 0
	for _, o := range ops {
		if o.ack > 0 {
			if o.ack == last {
				acked = true
			}
			continue
		}
		for s := o.off / sector; s < (o.off+o.len)/sector; s++ {
			if !acked || last == 0 {
				if last > 0 {
					if o.val < 0 {
						model[s] = unknown
					} else {
						model[s] = int16(o.val)
					}
				}
			}
			if acked {
				touched[s] = true
			}
		}
	}
	var args []string
	for s := 0; s < len(model); {
		if touched[s] || model[s] == unknown {
			s++
			continue
		}
		e := s
		for e < len(model) && !touched[e] && model[e] == model[s] {
			e++
		}
		args = append(args, "-c", fmt.Sprintf("read -q -P %d %d %d", model[s], s*sector, (e-s)*sector))
		s = e
	}
	for len(args) > 0 {
		n := min(len(args), 400)
		out, err := exec.Command(qemuIO, append(append([]string{"-f", "qcow2", "-r"}, args[:n]...), img)...).CombinedOutput()
		if err != nil || strings.Contains(string(out), "failed") {
			t.Fatalf("run %d: acknowledged data lost after a kill at ack %d:\n%.2000s", run, last, out)
		}
		args = args[n:]
	}
}
