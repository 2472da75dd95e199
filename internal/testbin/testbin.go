// Package testbin builds the goqio binary for tests that run it as a
// program, and finds the real QEMU tools the differential tests compare with.
package testbin

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	once sync.Once
	bin  string
	err  error
	dir  string

	plainOnce sync.Once
	plainBin  string
	plainErr  error
	plainDir  string
)

// Goqio builds ./cmd/goqio once per test process (with -race when the test
// binary has it) and returns the path of the binary.
func Goqio(t testing.TB) string {
	t.Helper()
	once.Do(func() { dir, bin, err = build(raceEnabled) })
	if err != nil {
		t.Fatalf("building goqio: %v", err)
	}
	return bin
}

// GoqioPlain is Goqio without -race whatever the test binary has: for
// tests that measure the program (its peak memory), which the race
// detector's shadow memory and slowness would distort. Without -race it
// is Goqio's binary.
func GoqioPlain(t testing.TB) string {
	t.Helper()
	if !raceEnabled {
		return Goqio(t)
	}
	plainOnce.Do(func() { plainDir, plainBin, plainErr = build(false) })
	if plainErr != nil {
		t.Fatalf("building goqio: %v", plainErr)
	}
	return plainBin
}

func build(race bool) (dir, bin string, err error) {
	dir, err = os.MkdirTemp("", "goqio-bin-")
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "goqio")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/goqio")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		err = &buildError{string(out), err}
	}
	return dir, bin, err
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// QEMU returns the paths of the real qemu-io and qemu-img, or skips the
// test when they are not installed.
func QEMU(t testing.TB) (qemuIO, qemuImg string) {
	t.Helper()
	io, err1 := exec.LookPath("qemu-io")
	img, err2 := exec.LookPath("qemu-img")
	if err1 != nil || err2 != nil {
		t.Skip("qemu-io/qemu-img not installed: differential check skipped")
	}
	return io, img
}

// QEMUFlake reports whether out (a QEMU tool's messages) is QEMU's PBKDF2
// benchmark giving up on a busy machine ("Unable to get accurate CPU
// usage": its thread's CPU clock read no time, with iter-time=10 as the
// tests use it). That is the oracle's flake, not a divergence: the caller
// runs the command again.
func QEMUFlake(out string) bool {
	return strings.Contains(out, "Unable to get accurate CPU usage")
}

// HaveQEMU reports whether the real qemu-io and qemu-img are installed.
func HaveQEMU() bool {
	_, err1 := exec.LookPath("qemu-io")
	_, err2 := exec.LookPath("qemu-img")
	return err1 == nil && err2 == nil
}

// Cleanup removes the built binary; call it from TestMain after m.Run.
func Cleanup() {
	for _, d := range []string{dir, plainDir} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
}

// WidenParallel raises the default of -test.parallel to twice GOMAXPROCS,
// for packages whose parallel tests mostly wait for the programs they run
// (qemu-io, qemu-img, goqio): at GOMAXPROCS they keep about one core busy.
// Called from TestMain before m.Run, so an explicit -parallel still wins.
func WidenParallel() {
	flag.Set("test.parallel", strconv.Itoa(2*runtime.GOMAXPROCS(0)))
}
