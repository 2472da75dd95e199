package reliability

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/goqio/goqio/internal/testbin"
)

// memLimit is the peak RSS a request over a huge image may reach (issue
// 16: write -zn 0 128T on a 2 MiB-cluster qcow2 at most 100 MiB; qemu-io
// peaks at 45 MB, goqio at about 51 MB with its default caches of 32 MiB
// of L2 tables and 16 refcount blocks).
const memLimit = 100 << 20

// peakEnv marks a run of this test binary as the measuring parent of one
// goqio run (see init).
const peakEnv = "GOQIO_TEST_PEAK_RSS"

// init: as the measuring parent, run the command in os.Args[1:], copy its
// output and exit code, and print its peak RSS (KiB) on stderr. A child
// started by the test process itself would not do: Go starts children
// with vfork semantics (the child shares the parent's memory until exec),
// and Linux carries the high-water RSS of that memory across exec into
// the child's ru_maxrss, so each child would report at least the test
// process's own peak. This small process's peak is what its child gets.
func init() {
	if os.Getenv(peakEnv) != "1" {
		return
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	err := cmd.Run()
	code := 0
	if err != nil {
		code = 125
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			fmt.Fprintf(os.Stderr, "%d\n", ru.Maxrss)
		}
	}
	os.Exit(code)
}

// runPeak runs the goqio binary (through a measuring parent) and returns
// its output and peak RSS in bytes.
func runPeak(t *testing.T, bin string, args ...string) (string, int64) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{bin}, args...)...)
	cmd.Env = append(os.Environ(), peakEnv+"=1")
	var out, peak bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &peak
	if err := cmd.Run(); err != nil {
		t.Fatalf("goqio %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(peak.String()), 10, 64)
	if err != nil {
		t.Skipf("no peak RSS of the child on this system (%q)", peak.String())
	}
	return out.String(), kib << 10 // ru_maxrss is in KiB on Linux
}

// TestMemoryBoundedByCache: one request that walks hundreds of L2 tables
// stays within the cache sizes: a zero write over 128 TiB of a 2 MiB-
// cluster image (256 tables of 2 MiB: 543 MB before the caches evicted
// within a request), the check and the map of that image, and a zero
// write deep inside a 64 PiB image. The binary is built without -race
// (whose shadow memory would be measured too).
func TestMemoryBoundedByCache(t *testing.T) {
	bin := testbin.GoqioPlain(t)
	for _, c := range []struct {
		name, size, write string
		mapArgs           []string
		mapWant           string
	}{
		{"128T", "128T", "write -zn 0 128T", nil,
			`"start": 0, "length": 140737488355328, "depth": 0, "present": true, "zero": true, "data": false`},
		// the map of 2P only: 1 GiB a step, all 64P would take 16 s
		{"64P", "64P", "write -zn 1P 64T", []string{"--max-length=2P"},
			`"start": 1125899906842624, "length": 70368744177664, "depth": 0, "present": true, "zero": true, "data": false`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			img := filepath.Join(t.TempDir(), "t.qcow2")
			runPeak(t, bin, "create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", img, c.size)
			check := func(what string, peak int64) {
				t.Helper()
				t.Logf("%s: peak RSS %.1f MiB", what, float64(peak)/(1<<20))
				if peak > memLimit {
					t.Errorf("%s: peak RSS %.1f MiB, more than %d MiB", what, float64(peak)/(1<<20), memLimit>>20)
				}
			}
			_, peak := runPeak(t, bin, "-c", c.write, img)
			check(c.write, peak)
			out, peak := runPeak(t, bin, "check", img)
			check("check", peak)
			if !strings.Contains(out, "No errors were found on the image.") {
				t.Errorf("check:\n%s", out)
			}
			out, peak = runPeak(t, bin, append(append([]string{"map", "--output=json"}, c.mapArgs...), img)...)
			check("map", peak)
			if !strings.Contains(out, c.mapWant) {
				t.Errorf("map lacks %s:\n%s", c.mapWant, out)
			}
		})
	}
}
