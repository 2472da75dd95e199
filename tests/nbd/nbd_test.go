// Package nbd runs goqio as qemu-nbd (argv[0] "qemu-nbd") and the real
// qemu-nbd 7.2 side by side, each on its own copy of the same images made
// by the real tools, with real NBD clients (qemu-io, qemu-img, nbdinfo,
// nbdcopy, nbdsh) and a raw client speaking the protocol byte by byte; it
// requires the same client output, the same server messages and exit
// status, and the same images afterwards (qemu-img map --output=json, host
// offsets included). A test skips when a tool it needs is missing.
package nbd

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// need skips the test unless every tool is installed.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
}

// servers returns the real qemu-nbd and goqio standing in for it.
func servers(t *testing.T) map[string]string {
	t.Helper()
	need(t, "qemu-nbd", "qemu-img", "qemu-io")
	real, _ := exec.LookPath("qemu-nbd")
	return map[string]string{"qemu": real, "goqio": testbin.Goqio(t)}
}

// sh runs a shell script in dir and fails the test when it fails.
func sh(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// server is one running qemu-nbd.
type server struct {
	cmd    *exec.Cmd
	sock   string
	stderr bytes.Buffer
	done   chan struct{}
	rc     int
}

// start runs prog as qemu-nbd -k DIR/s.sock ARGS in dir and waits until
// the socket exists.
func start(t *testing.T, prog, dir string, args ...string) *server {
	t.Helper()
	s := &server{sock: filepath.Join(dir, "s.sock"), done: make(chan struct{})}
	s.cmd = exec.Command(prog, append([]string{"-k", s.sock}, args...)...)
	s.cmd.Args[0] = "qemu-nbd"
	s.cmd.Dir = dir
	s.cmd.Stderr = &s.stderr
	s.cmd.Stdout = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := s.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			s.rc = ee.ExitCode()
		}
		close(s.done)
	}()
	t.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if listening(s.sock) {
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("qemu-nbd %q exited: %d\n%s", args, s.rc, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu-nbd %q: no socket", args)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// wait waits for the server to end by itself.
func (s *server) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit\n%s", s.cmd.Path, s.stderr.String())
	}
}

// stop ends the server with SIGTERM, as a user would.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *server) uri() string { return "nbd+unix:///?socket=" + s.sock }

var timing = regexp.MustCompile(`(?m)^.*ops; .*\n`)

// filter makes outputs of two runs comparable: timings, directories.
func filter(s, dir string) string {
	s = timing.ReplaceAllString(s, "")
	return strings.ReplaceAll(s, dir, "DIR")
}

// run runs a command (argv) and returns its combined output and status.
func run(dir string, argv ...string) string {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	rc := 0
	if ee, ok := err.(*exec.ExitError); ok {
		rc = ee.ExitCode()
	} else if err != nil {
		return fmt.Sprintf("%s: %v", argv[0], err)
	}
	return fmt.Sprintf("%s[rc=%d]\n", out, rc)
}

// outcome is what a case gives with one server.
type outcome struct {
	client, server, images string
}

// sideBySide runs one case with the real qemu-nbd and goqio: setup makes
// the images in a fresh directory, the server runs with args, client
// talks to it; the server is then awaited (persistent: stopped) and the
// images named in maps are mapped.
func sideBySide(t *testing.T, setup string, args []string, persistent bool, maps []string,
	client func(t *testing.T, s *server, dir string) string) {
	t.Helper()
	res := map[string]outcome{}
	for _, name := range []string{"qemu", "goqio"} {
		prog := servers(t)[name]
		dir := t.TempDir()
		if setup != "" {
			sh(t, dir, setup)
		}
		s := start(t, prog, dir, args...)
		out := client(t, s, dir)
		if persistent {
			s.stop()
		}
		s.wait(t)
		var im strings.Builder
		for _, m := range maps {
			im.WriteString(run(dir, "qemu-img", "map", "--output=json", "-U", m))
			im.WriteString(run(dir, "qemu-img", "check", "-U", m))
		}
		res[name] = outcome{filter(out, dir), filter(s.stderr.String(), dir) + fmt.Sprintf("[exit %d]\n", s.rc), filter(im.String(), dir)}
	}
	q, g := res["qemu"], res["goqio"]
	if q.client != g.client {
		t.Errorf("client output differs\nqemu-nbd:\n%s\ngoqio:\n%s", q.client, g.client)
	}
	if q.server != g.server {
		t.Errorf("server output differs\nqemu-nbd:\n%s\ngoqio:\n%s", q.server, g.server)
	}
	if q.images != g.images {
		t.Errorf("images differ\nqemu-nbd:\n%s\ngoqio:\n%s", q.images, g.images)
	}
}

const chainSetup = `set -e
qemu-img create -f qcow2 base.qcow2 4M >/dev/null
qemu-io -c 'write -P 0x55 0 1M' -c 'write -z 2M 64k' base.qcow2 >/dev/null
qemu-img create -f qcow2 -b base.qcow2 -F qcow2 t.qcow2 >/dev/null
qemu-io -c 'write -P 0x66 512k 1M' -c 'write -z 3M 128k' t.qcow2 >/dev/null
qemu-img create -f raw r.img 4M >/dev/null
qemu-io -f raw -c 'write -P 0x77 1M 64k' r.img >/dev/null
qemu-img create -f qcow2 bm.qcow2 4M >/dev/null
qemu-img bitmap --add bm.qcow2 b0
qemu-io -c 'write 1M 64k' -c 'write 3M 4k' bm.qcow2 >/dev/null
qemu-img bitmap --add bm.qcow2 b1
qemu-img bitmap --add -g 1M bm.qcow2 big
qemu-img bitmap --disable bm.qcow2 big
qemu-io -c 'write 2M 512' bm.qcow2 >/dev/null
`

// qemuIO runs qemu-io -f raw with commands on the export.
func qemuIO(s *server, dir string, cmds ...string) string {
	argv := []string{"qemu-io", "-f", "raw"}
	for _, c := range cmds {
		argv = append(argv, "-c", c)
	}
	return run(dir, append(argv, s.uri())...)
}

func TestQemuIO(t *testing.T) {
	cmds := []string{"write -P 0xab 0 64k", "write -z 128k 64k", "write -z -u 512k 64k", "discard 1M 128k",
		"write -P 0xcd 100000 5000", "write -f -P 0x11 2M 4k", "flush", "read -P 0xab 0 64k",
		"read -v 99990 32", "readv -P 0 128k 4k 60k", "map", "alloc 0 4M", "alloc 3M 1M",
		"aio_write -P 0x22 3M 64k", "aio_flush", "read -P 0x22 3M 64k",
		"write -P 1 4M 512", "read 4194000 1000", "length", "info"}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"qcow2", []string{"-f", "qcow2", "t.qcow2"}},
		{"qcow2-discard", []string{"-f", "qcow2", "--discard=unmap", "--detect-zeroes=unmap", "t.qcow2"}},
		{"raw", []string{"-f", "raw", "r.img"}},
		{"raw-probed", []string{"r.img"}},
		{"raw-writethrough", []string{"-f", "raw", "--cache=writethrough", "--discard=unmap", "r.img"}},
		{"snapshot", []string{"-s", "t.qcow2"}},
		{"offset", []string{"-f", "raw", "-o", "1048576", "r.img"}},
		{"readonly", []string{"-r", "-f", "qcow2", "t.qcow2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			sideBySide(t, chainSetup, c.args, false, []string{"t.qcow2", "r.img"}, func(t *testing.T, s *server, dir string) string {
				return qemuIO(s, dir, cmds...)
			})
		})
	}
}

// ksplit is the seed's pattern: a write of length at off split as the
// kernel's NBD client split an O_DIRECT write (1023 sectors, then 8, 1016,
// 8, ...), as qemu-io commands of the given verb.
func ksplit(verb string, off, length int64) []string {
	var out []string
	end := off + length
	first := true
	for off < end {
		n := int64(1016 * 512)
		if first {
			n, first = 1023*512, false
		}
		n = min(n, end-off)
		out = append(out, fmt.Sprintf("%s %d %d", verb, off, n))
		off += n
		if off < end {
			n = min(8*512, end-off)
			out = append(out, fmt.Sprintf("%s %d %d", verb, off, n))
			off += n
		}
	}
	return out
}

func TestSeed(t *testing.T) {
	setup := `set -e
qemu-img create -f qcow2 base.qcow2 4M >/dev/null
qemu-io -c 'write -P 0x55 0 4M' base.qcow2 >/dev/null
qemu-img create -f qcow2 -b base.qcow2 -F qcow2 o.qcow2 >/dev/null
`
	for _, c := range []struct {
		name, verb string
		args       []string
	}{
		{"data-zeroes-detect-on", "write -P 0", []string{"-f", "qcow2", "--detect-zeroes=on", "o.qcow2"}},
		{"data-zeroes-detect-unmap", "write -P 0", []string{"-f", "qcow2", "--discard=unmap", "--detect-zeroes=unmap", "o.qcow2"}},
		{"write-zeroes", "write -z", []string{"-f", "qcow2", "o.qcow2"}},
		{"write-zeroes-unmap", "write -z -u", []string{"-f", "qcow2", "--discard=unmap", "o.qcow2"}},
		{"data-zeroes-no-detect", "write -P 0", []string{"-f", "qcow2", "o.qcow2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cmds := append(ksplit(c.verb, 1536, 1<<20), "read -P 0x55 0 1536", "read -P 0 1536 1M",
				"read -P 0x55 1050112 1000", "map")
			sideBySide(t, setup, c.args, false, []string{"o.qcow2"}, func(t *testing.T, s *server, dir string) string {
				return qemuIO(s, dir, cmds...)
			})
		})
	}
}

func TestNbdinfo(t *testing.T) {
	need(t, "nbdinfo")
	cans := "for c in cache connect df fast-zero flush fua multi-conn read trim zero structured-reply; do nbdinfo --can $c \"$URI\"; echo $c $?; done"
	for _, c := range []struct {
		name   string
		args   []string
		script string
	}{
		{"json", []string{"-f", "qcow2", "-A", "t.qcow2"}, `nbdinfo --json "$URI"`},
		{"map", []string{"-f", "qcow2", "t.qcow2"}, `nbdinfo --map "$URI"`},
		{"map-depth", []string{"-f", "qcow2", "-A", "t.qcow2"}, `nbdinfo --map=qemu:allocation-depth "$URI"`},
		{"map-totals", []string{"-f", "qcow2", "t.qcow2"}, `nbdinfo --map --totals "$URI"`},
		{"can", []string{"-f", "qcow2", "t.qcow2", "-t"}, cans},
		{"can-ro-multi", []string{"-f", "qcow2", "-r", "-e", "3", "t.qcow2", "-t"}, cans},
		{"list", []string{"-f", "qcow2", "-x", "foo", "-D", "a description", "t.qcow2", "-t"}, `nbdinfo --list "$URI"; nbdinfo --list --json "$URI"`},
		{"probed-raw", []string{"r.img"}, `nbdinfo --json "$URI"`},
		{"bitmaps", []string{"-f", "qcow2", "-B", "b0", "-B", "b1", "-B", "big", "-A", "-t", "bm.qcow2"},
			`for m in b0 b1 big; do nbdinfo --map=qemu:dirty-bitmap:$m "$URI"; done; nbdinfo --json "$URI"; qemu-io -f raw -c 'write 512k 4k' "$URI"; nbdinfo --map=qemu:dirty-bitmap:b1 "$URI"`},
		{"contexts", []string{"-f", "qcow2", "-A", "-t", "t.qcow2"}, `nbdinfo --map=qemu: "$URI"; nbdinfo --map=base: "$URI"; echo $?`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			persistent := false
			for _, a := range c.args {
				persistent = persistent || a == "-t"
			}
			sideBySide(t, chainSetup, c.args, persistent, []string{"t.qcow2"}, func(t *testing.T, s *server, dir string) string {
				cmd := exec.Command("bash", "-c", c.script)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "URI="+s.uri())
				out, _ := cmd.CombinedOutput()
				return string(out)
			})
		})
	}
}

func TestQemuImg(t *testing.T) {
	sideBySide(t, chainSetup, []string{"-f", "qcow2", "-t", "t.qcow2"}, true, []string{"t.qcow2", "c.qcow2"},
		func(t *testing.T, s *server, dir string) string {
			return run(dir, "qemu-img", "info", s.uri()) + run(dir, "qemu-img", "map", s.uri()) +
				run(dir, "qemu-img", "map", "--output=json", s.uri()) +
				run(dir, "qemu-img", "convert", "-O", "qcow2", s.uri(), "c.qcow2") +
				run(dir, "qemu-img", "compare", s.uri(), "c.qcow2") +
				run(dir, "qemu-img", "convert", "-n", "-O", "raw", "r.img", s.uri()) +
				run(dir, "qemu-img", "compare", "-f", "raw", "-F", "raw", "r.img", s.uri())
		})
}

// TestLoadSnapshot: -l exports an internal snapshot, read-only, by ID,
// name or both.
func TestLoadSnapshot(t *testing.T) {
	setup := chainSetup + `qemu-img snapshot -c s1 t.qcow2
qemu-io -c 'write -P 0x44 0 2M' t.qcow2 >/dev/null
qemu-img snapshot -c s2 t.qcow2
qemu-io -c 'write -P 0x45 1M 2M' t.qcow2 >/dev/null
`
	for _, l := range []string{"s1", "2", "snapshot.name=s2", "snapshot.id=1,snapshot.name=s1"} {
		t.Run(l, func(t *testing.T) {
			t.Parallel()
			sideBySide(t, setup, []string{"-l", l, "t.qcow2"}, false, []string{"t.qcow2"}, func(t *testing.T, s *server, dir string) string {
				return qemuIO(s, dir, "read -P 0x44 0 64k", "read -P 0x66 1M 64k", "write 0 4k", "map")
			})
		})
	}
}

func TestNbdcopy(t *testing.T) {
	need(t, "nbdcopy")
	for _, conns := range []string{"1", "4"} {
		t.Run(conns, func(t *testing.T) {
			t.Parallel()
			sideBySide(t, chainSetup, []string{"-f", "qcow2", "-e", conns, "-t", "t.qcow2"}, true, []string{"t.qcow2"},
				func(t *testing.T, s *server, dir string) string {
					cmd := exec.Command("bash", "-c", `set -e
nbdcopy -C `+conns+` "$URI" out.raw
qemu-img compare -f raw out.raw t.qcow2 -U
nbdcopy -C `+conns+` "$URI" null:
qemu-img create -f raw in.raw 4M >/dev/null
qemu-io -f raw -c 'write -P 0x99 64k 1M' in.raw >/dev/null
nbdcopy -C `+conns+` in.raw "$URI"
qemu-img compare -f raw in.raw "$URI"`)
					cmd.Dir = dir
					cmd.Env = append(os.Environ(), "URI="+s.uri())
					out, _ := cmd.CombinedOutput()
					return string(out)
				})
		})
	}
}

// listening reports whether a unix socket listens at path (in
// /proc/net/unix, flag __SO_ACCEPTCON), so that a client does not find the
// socket bound but not yet listening.
func listening(path string) bool {
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		_, err := os.Stat(path)
		return err == nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && f[7] == path && f[3] == "00010000" {
			return true
		}
	}
	return false
}
