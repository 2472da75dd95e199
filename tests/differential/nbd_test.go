package differential

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goqio/goqio/nbd"
)

// nbdCase runs qemu-io (and qemu-img commands) over an NBD export with
// both programs, each against its own server over its own copy of the
// image, and compares what they print, their exit codes, and the images
// the servers leave.
type nbdCase struct {
	Fmt   string // format of the image "img" behind the server ("raw")
	Size  string // its size; "" for a server without image (nbdkit memory)
	Setup []string
	// Server: "qemu-nbd" (its arguments come before the image: -f FMT is
	// added) or "nbdkit" (ServerArgs are the plugin and its parameters;
	// IMG in them is the image's path). "" runs no server.
	Server     string
	ServerArgs []string
	// OneShot runs qemu-nbd without -t: it ends when its client leaves
	OneShot bool
	// Args are the qemu-io arguments; URI stands for the export's URI
	// (nbd+unix:///exp?socket=S for qemu-nbd, nbd+unix://?socket=S for
	// nbdkit), SOCK for the socket's path.
	Args []string
	// Img are qemu-img command lines (URI, SOCK as in Args) run with the
	// real qemu-img and goqio as qemu-img.
	Img [][]string
}

func (c nbdCase) format() string {
	if c.Fmt == "" {
		return "raw"
	}
	return c.Fmt
}

func needTool(t *testing.T, name string) {
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
}

// startServer starts the case's server in dir and returns the socket
// and a function that stops it (and waits until it has exited).
func (c nbdCase) startServer(t *testing.T, dir string) (string, string, func()) {
	sock := filepath.Join(dir, "s")
	pidf := filepath.Join(dir, "pid")
	var cmd *exec.Cmd
	uri := "nbd+unix:///exp?socket=" + sock
	switch c.Server {
	case "":
		return sock, "nbd+unix:///exp?socket=" + sock, func() {}
	case "qemu-nbd":
		args := []string{"--fork", "--pid-file", pidf, "-k", sock, "-x", "exp", "-t", "-e", "4", "-f", c.format()}
		if c.OneShot {
			args = append(args[:7], args[8:]...) // no -t
		}
		args = append(args, c.ServerArgs...)
		cmd = exec.Command("qemu-nbd", append(args, filepath.Join(dir, "img"))...)
	case "nbdkit":
		args := []string{"-U", sock, "-P", pidf}
		for _, a := range c.ServerArgs {
			args = append(args, strings.ReplaceAll(a, "IMG", filepath.Join(dir, "img")))
		}
		cmd = exec.Command("nbdkit", args...)
		uri = "nbd+unix://?socket=" + sock
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd.Args, err, out)
	}
	var pid int
	for i := 0; i < 200; i++ {
		b, _ := os.ReadFile(pidf)
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 {
			if _, err := os.Stat(sock); err == nil {
				pid = p
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatalf("%s did not start", c.Server)
	}
	stop := func() {
		syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 500 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Cleanup(stop)
	return sock, uri, stop
}

func subst(args []string, uri, sock string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		a = strings.ReplaceAll(a, "URI", uri)
		out[i] = strings.ReplaceAll(a, "SOCK", sock)
	}
	return out
}

func (tl tools) runNBD(t *testing.T, c nbdCase) {
	t.Helper()
	if c.Server != "" {
		needTool(t, c.Server)
	}
	top := t.TempDir()
	bin := filepath.Join(top, "bin")
	os.Mkdir(bin, 0o755)
	for _, n := range []string{"qemu-io", "qemu-img"} {
		if err := os.Symlink(tl.goqio, filepath.Join(bin, n)); err != nil {
			t.Fatal(err)
		}
	}
	var outs [2]string
	dirs := [2]string{filepath.Join(top, "q"), filepath.Join(top, "g")}
	for i := range dirs {
		d := dirs[i]
		os.Mkdir(d, 0o755)
		if c.Size != "" {
			if _, e, rc := sh(t, d, "", tl.qemuImg, "create", "-q", "-f", c.format(), "img", c.Size); rc != 0 {
				t.Fatalf("qemu-img create: %s", e)
			}
			for _, s := range c.Setup {
				sh(t, d, "", tl.qemuIO, "-f", c.format(), "-c", s, "img")
			}
		}
		sock, uri, stop := c.startServer(t, d)
		// both sides print the same names: the directories differ only
		// in their last letter, which the filter takes out
		norm := func(s string) string { return strings.ReplaceAll(filter(s), d, "DIR") }
		io, img := tl.qemuIO, tl.qemuImg
		if i == 1 {
			io, img = filepath.Join(bin, "qemu-io"), filepath.Join(bin, "qemu-img")
		}
		var b strings.Builder
		if c.Args != nil {
			o, e, rc := sh(t, d, "", io, subst(c.Args, uri, sock)...)
			fmt.Fprintf(&b, "%s--stderr\n%s[exit %d]\n", norm(o), norm(e), rc)
		}
		for _, a := range c.Img {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			cmd := exec.CommandContext(ctx, img, subst(a, uri, sock)...)
			cmd.Args[0] = "qemu-img"
			cmd.Dir = d
			o, _ := cmd.CombinedOutput()
			cancel()
			fmt.Fprintf(&b, "qemu-img %q\n%s[exit %d]\n", a, norm(string(o)), cmd.ProcessState.ExitCode())
		}
		stop()
		outs[i] = b.String()
	}
	if outs[0] != outs[1] {
		t.Errorf("args %q img %q:\nqemu:\n%s\ngoqio:\n%s", c.Args, c.Img, outs[0], outs[1])
	}
	if os.Getenv("DIFFDEBUG") != "" {
		t.Logf("%s", outs[0])
	}
	if c.Size == "" || c.Server == "nbdkit" && !strings.Contains(strings.Join(c.ServerArgs, " "), "IMG") {
		return
	}
	a, b := filepath.Join(dirs[0], "img"), filepath.Join(dirs[1], "img")
	if _, e, rc := sh(t, top, "", tl.qemuImg, "compare", "-q", "-f", c.format(), "-F", c.format(), a, b); rc != 0 {
		t.Errorf("args %q: images differ (qemu-img compare exit %d %s)", c.Args, rc, e)
	}
	m0, _, _ := sh(t, top, "", tl.qemuImg, "map", "--output=json", "-f", c.format(), a)
	m1, _, _ := sh(t, top, "", tl.qemuImg, "map", "--output=json", "-f", c.format(), b)
	if normalizeMap(m0) != normalizeMap(m1) {
		t.Errorf("args %q: maps differ:\nqemu-io: %s\ngoqio:   %s", c.Args, m0, m1)
	}
	if c.format() == "qcow2" {
		if o, e, rc := sh(t, top, "", tl.qemuImg, "check", b); rc != 0 {
			t.Errorf("qemu-img check of goqio's image: exit %d\n%s%s", rc, o, e)
		}
	}
}

// ncmds is cmds with the export's URI as the image.
func ncmds(flags []string, cs ...string) []string {
	a := cmds(flags, cs...)
	a[len(a)-1] = "URI"
	return a
}

func runNBDCases(t *testing.T, cases []nbdCase) {
	tl := setup(t)
	for i, c := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			tl.runNBD(t, c)
		})
	}
}

var nbdIOCmds = []string{"info", "length", "map", "alloc 0 1M", "write -P 0x5a 4096 8192", "write -z 65536 131072",
	"write -zu 262144 65536", "discard 524288 65536", "write -zn 0 512", "write -f -P 1 1000 24", "read -v 990 40",
	"readv -P 0x5a 4096 4096 4096", "writev -P 2 700000 512 1000", "map", "alloc 0 1M", "flush", "read -P 0 300000 100",
	"aio_write -P 7 0 4096", "aio_flush", "read -P 7 0 4096", "truncate 1M", "truncate 2M"}

func TestNBDQemuNBD(t *testing.T) {
	needTool(t, "qemu-nbd")
	setupRaw := []string{"write -P 0x11 0 64k", "write -P 0x22 300k 100k"}
	img := [][]string{{"info", "URI"}, {"info", "--output=json", "URI"}, {"map", "URI"}, {"map", "--output=json", "URI"},
		{"info", "-f", "raw", "URI"}, {"map", "-f", "raw", "--output=json", "URI"}, {"check", "URI"}}
	cases := []nbdCase{
		{Size: "1M", Setup: setupRaw, Server: "qemu-nbd", Args: ncmds(nil, nbdIOCmds...), Img: img},
		{Size: "1M", Setup: setupRaw, Server: "qemu-nbd", Args: ncmds([]string{"-f", "raw"}, nbdIOCmds...)},
		{Size: "1M", Setup: setupRaw, Server: "qemu-nbd", Args: ncmds([]string{"--image-opts"}, nbdIOCmds...)[:0]},
		{Fmt: "qcow2", Size: "1M", Setup: setupRaw, Server: "qemu-nbd", Args: ncmds(nil, nbdIOCmds...), Img: img},
		{Fmt: "qcow2", Size: "1M", Setup: setupRaw, Server: "qemu-nbd", ServerArgs: []string{"-A"},
			Args: ncmds([]string{"-r", "--image-opts"}, "map", "alloc 0 1M", "info"), Img: [][]string{
				{"map", "--output=json", "--image-opts", "driver=nbd,server.type=unix,server.path=SOCK,export=exp,x-dirty-bitmap=qemu:allocation-depth"},
				{"map", "--image-opts", "driver=nbd,server.type=unix,server.path=SOCK,export=exp,x-dirty-bitmap=qemu:allocation-depth"},
				{"map", "--output=json", "--image-opts", "driver=nbd,server.type=unix,server.path=SOCK,export=exp,x-dirty-bitmap=qemu:dirty-bitmap:nope"},
				{"info", "--image-opts", "driver=nbd,server.type=unix,server.path=SOCK,export=exp,x-dirty-bitmap=qemu:allocation-depth"},
			}},
		{Fmt: "qcow2", Size: "1M", Setup: setupRaw, Server: "qemu-nbd", ServerArgs: []string{"-r"},
			Args: ncmds(nil, "read -P 0x22 300k 100k", "map"), Img: [][]string{{"compare", "URI", "URI"}, {"map", "-f", "qcow2", "URI"}}},
		{Size: "1M", Setup: setupRaw, Server: "qemu-nbd", ServerArgs: []string{"-r"},
			Args: ncmds([]string{"-f", "raw"}, "read -P 0x22 300k 100k", "write 0 512")},
		// a reopen keeps the connection: a server without -t would not
		// take a new one
		{Fmt: "qcow2", Size: "1M", Setup: setupRaw, Server: "qemu-nbd", OneShot: true,
			Args: ncmds([]string{"-f", "raw"}, "reopen -r", "read -P 0x11 0 4k", "write 0 512", "reopen -w", "write -P 3 0 512",
				"reopen -c none", "read -P 3 0 512", "reopen -o server.path=/x", "reopen -o detect-zeroes=on", "write -P 0 4k 4k", "map")},
		{Size: "1M", Setup: setupRaw, Server: "qemu-nbd", OneShot: true, ServerArgs: []string{"-r"},
			Args: ncmds([]string{"-f", "raw"}, "reopen -w", "read -P 0x11 0 4k", "reopen -r", "reopen -o auto-read-only=on", "read -P 0x11 0 4k")},
		// the forms of the filename
		{Size: "1M", Setup: setupRaw, Server: "qemu-nbd", Args: ncmds([]string{"-f", "raw"}, "read -P 0x11 0 4k", "info"), Img: [][]string{
			{"info", "nbd:unix:SOCK:exportname=exp"}, {"info", "nbd:unix:SOCK"}, {"info", "nbd+unix:///nope?socket=SOCK"},
			{"info", "--image-opts", "driver=nbd,path=SOCK,export=exp"},
			{"info", "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"SOCK\"},\"export\":\"exp\"}}"},
		}},
	}
	cases[2].Args = []string{"--image-opts", "-c", "info", "-c", "map", "-c", "write -P 3 0 1k", "-c", "read -P 3 0 1k",
		"driver=nbd,server.type=unix,server.path=SOCK,export=exp"}
	runNBDCases(t, cases)
}

func TestNBDKit(t *testing.T) {
	needTool(t, "nbdkit")
	cmdsK := append([]string{}, nbdIOCmds[:len(nbdIOCmds)-2]...)
	cases := []nbdCase{
		{Server: "nbdkit", ServerArgs: []string{"memory", "size=1M"}, Args: ncmds(nil, cmdsK...)},
		{Server: "nbdkit", ServerArgs: []string{"memory", "size=1M"}, Args: ncmds([]string{"-f", "raw"}, cmdsK...)},
		{Size: "1M", Setup: []string{"write -P 0x11 0 64k"}, Server: "nbdkit", ServerArgs: []string{"file", "file=IMG"},
			Args: ncmds([]string{"-f", "raw"}, cmdsK...), Img: [][]string{{"map", "--output=json", "URI"}, {"info", "URI"}}},
		{Server: "nbdkit", ServerArgs: []string{"sparse-random", "size=4M", "seed=7"},
			Args: ncmds([]string{"-r"}, "map", "alloc 0 4M", "read 0 4M"), Img: [][]string{{"map", "--output=json", "URI"}, {"map", "URI"}, {"compare", "URI", "URI"}}},
		{Server: "nbdkit", ServerArgs: []string{"--filter=noextents", "memory", "size=1M"}, Args: ncmds(nil, "write -P 1 0 4k", "map", "alloc 0 1M"),
			Img: [][]string{{"map", "--output=json", "URI"}}},
		{Server: "nbdkit", ServerArgs: []string{"--filter=blocksize-policy", "memory", "size=1M", "blocksize-minimum=4096",
			"blocksize-preferred=65536", "blocksize-maximum=1M"}, Args: ncmds([]string{"-f", "raw"}, "write -P 1 100 1000", "read -v 90 30", "write -z 5000 10000", "map")},
		{Server: "nbdkit", ServerArgs: []string{"--filter=nozero", "memory", "size=1M"}, Args: ncmds([]string{"-f", "raw"}, "write -P 1 0 64k", "write -z 0 4k", "write -zn 0 4k", "write -zu 4k 4k", "map")},
		{Server: "nbdkit", ServerArgs: []string{"--filter=error", "memory", "size=1M", "error=EIO", "error-rate=100%", "error-pread-rate=0"},
			Args: ncmds([]string{"-f", "raw"}, "read 0 4k", "write 0 4k", "write -z 0 4k", "discard 0 4k", "flush")},
		{Server: "nbdkit", ServerArgs: []string{"pattern", "size=100001"}, Args: ncmds(nil, "length", "map", "read -v 99990 11", "read 99990 20", "alloc 99000 2000", "read -v 99990 20")},
		{Server: "nbdkit", ServerArgs: []string{"--filter=exportname", "memory", "size=1M", "exportname-strict=true", "exportname=a"},
			Args: ncmds(nil, "read 0 1"), Img: [][]string{{"info", "nbd+unix:///a?socket=SOCK"}, {"info", "nbd+unix:///b?socket=SOCK"}}},
	}
	runNBDCases(t, cases)
}

// TestNBDErrors: connections refused or missing, malformed filenames
// and option errors, as qemu-io and qemu-img word them.
func TestNBDErrors(t *testing.T) {
	dead := filepath.Join(t.TempDir(), "dead")
	l, err := net.Listen("unix", dead)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // a socket file nobody listens on: ECONNREFUSED
	var cases []nbdCase
	for _, f := range []string{"nbd+unix:///x?socket=SOCK", "nbd+unix:///x?socket=" + dead, "nbd://127.0.0.1:1/x", "nbd:127.0.0.1:1",
		"nbd:unix:" + dead + ":exportname=e", "nbd:", "nbd:foo", "nbd::1", "nbd:[::1", "nbd://", "nbd:///x", "nbd://h:x/",
		"nbd+unix:///x", "nbd+unix://h/x?socket=a", "nbd://127.0.0.1:1/x?a=b", "nbd+unix:///x?socket=/a&b=c",
		"nbd+tcp://127.0.0.1:1", "nbd:unix:SOCK:exportname=", "nbd+foo://x", "nbd:h:1:exportname=x"} {
		cases = append(cases, nbdCase{Args: []string{"-c", "read 0 512", f}, Img: [][]string{{"info", f}}})
	}
	for _, o := range []string{"driver=nbd", "driver=nbd,server.type=inet,server.host=x", "driver=nbd,server.type=unix",
		"driver=nbd,server.type=foo", "driver=nbd,server.type=unix,server.path=/x,server.zz=1", "driver=nbd,path=/a,host=b",
		"driver=nbd,path=/a,port=1", "driver=nbd,host=127.0.0.1,port=1", "driver=nbd,path=/a,server.type=unix",
		"driver=nbd,path=" + dead + ",tls-creds=x", "driver=nbd,path=/a,reconnect-delay=x", "driver=nbd,path=/a,zz=1",
		"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=1,server.ipv4=on",
		"driver=nbd,filename=nbd:unix:/x,path=/y", "driver=nbd,filename=foo"} {
		cases = append(cases, nbdCase{Args: []string{"--image-opts", "-c", "read 0 512", o}})
	}
	runNBDCases(t, cases)
}

// dropServer is an NBD server that negotiates and then closes the
// connection in the middle of its first reply.
func dropServer(t *testing.T, sock string) {
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				w := func(v ...any) {
					for _, x := range v {
						binary.Write(c, binary.BigEndian, x)
					}
				}
				w(nbd.Magic, nbd.OptMagic, nbd.FlagFixedNewstyle|nbd.FlagNoZeroes)
				var cf uint32
				binary.Read(c, binary.BigEndian, &cf)
				for {
					var h struct {
						Magic    uint64
						Opt, Len uint32
					}
					if binary.Read(c, binary.BigEndian, &h) != nil || h.Len > 1<<16 {
						return
					}
					if _, err := io.CopyN(io.Discard, c, int64(h.Len)); err != nil {
						return
					}
					if h.Opt != nbd.OptGo {
						w(nbd.RepMagic, h.Opt, nbd.RepErrUnsup, uint32(0))
						continue
					}
					w(nbd.RepMagic, h.Opt, nbd.RepInfo, uint32(12), nbd.InfoExport, uint64(1<<20), nbd.FlagHasFlags|nbd.FlagSendFlush)
					w(nbd.RepMagic, h.Opt, nbd.RepAck, uint32(0))
					var r [nbd.RequestSize]byte
					if _, err := io.ReadFull(c, r[:]); err != nil {
						return
					}
					req, _ := nbd.DecodeRequest(r[:])
					b := make([]byte, nbd.SimpleReplySize)
					nbd.EncodeSimpleReply(b, 0, req.Handle)
					c.Write(append(b, make([]byte, 100)...)) // of the 512 bytes asked for
					return
				}
			}(c)
		}
	}()
}

// TestNBDDrop: a server that drops the connection in the middle of a
// reply gets an EIO, then every request fails; nothing hangs.
func TestNBDDrop(t *testing.T) {
	tl := setup(t)
	top := t.TempDir()
	sock := filepath.Join(top, "s")
	dropServer(t, sock)
	link := filepath.Join(top, "qemu-io")
	os.Symlink(tl.goqio, link)
	var outs [2]string
	for i, prog := range []string{tl.qemuIO, link} {
		o, e, rc := sh(t, top, "", prog, "-f", "raw", "-c", "read 0 512", "-c", "read 0 512", "-c", "write 0 512", "-c", "map", "nbd:unix:"+sock)
		outs[i] = fmt.Sprintf("%s--\n%s[exit %d]", filter(o), filter(e), rc)
	}
	if outs[0] != outs[1] {
		t.Errorf("qemu:\n%s\ngoqio:\n%s", outs[0], outs[1])
	}
}

// randomNBDCase is a random command list over a qemu-nbd export (raw or
// qcow2 behind it, read through the raw format or the protocol node).
func randomNBDCase(seed int64) nbdCase {
	rng := rand.New(rand.NewSource(seed))
	size := []int64{1 << 20, 2 << 20, 100352}[rng.Intn(3)]
	c := nbdCase{Fmt: []string{"raw", "qcow2"}[rng.Intn(2)], Size: fmt.Sprint(size), Server: "qemu-nbd"}
	if rng.Intn(2) == 0 {
		c.Setup = append(c.Setup, fmt.Sprintf("write -P 0x%02x 0 %d", rng.Intn(256), size/2))
	}
	if rng.Intn(3) == 0 {
		c.ServerArgs = append(c.ServerArgs, "--detect-zeroes=on")
	}
	var args []string
	if rng.Intn(2) == 0 {
		args = []string{"-f", "raw"}
	}
	var cs []string
	for i := 0; i < 3+rng.Intn(12); i++ {
		gran := []int64{1, 512, 4096, 65536}[rng.Intn(4)]
		off := rng.Int63n(size/gran) * gran
		n := min(rng.Int63n(4*65536/gran+2)*gran+1, size-off)
		switch rng.Intn(10) {
		case 0, 1:
			cs = append(cs, fmt.Sprintf("write -P 0x%02x %d %d", rng.Intn(256), off, n))
		case 2:
			cs = append(cs, fmt.Sprintf("write %s %d %d", []string{"-z", "-zu", "-zn", "-zf", "-zun"}[rng.Intn(5)], off, n))
		case 3:
			cs = append(cs, fmt.Sprintf("discard %d %d", off, n))
		case 4:
			cs = append(cs, fmt.Sprintf("read -v %d %d", off, min(n, 48)))
		case 5:
			cs = append(cs, fmt.Sprintf("writev -P %d %d %d %d", rng.Intn(256), off, n/2, n-n/2))
		case 6:
			cs = append(cs, fmt.Sprintf("aio_write -P %d %d %d", rng.Intn(256), off, n), "aio_flush")
		case 7:
			cs = append(cs, fmt.Sprintf("alloc %d %d", off, n))
		case 8:
			cs = append(cs, "map")
		default:
			cs = append(cs, fmt.Sprintf("read -P 0 %d %d", off, n))
		}
	}
	c.Args = ncmds(args, append(cs, "map")...)
	c.Img = [][]string{{"map", "--output=json", "URI"}}
	return c
}

func TestNBDRandom(t *testing.T) {
	needTool(t, "qemu-nbd")
	runSeeds(t, 8, 3, func(t *testing.T, tl tools, seed int64) { tl.runNBD(t, randomNBDCase(seed)) })
}

var logNoise = regexp.MustCompile(`(?m)^[0-9: .-]+|connection=[0-9]+ |id=[0-9]+ | \.\.\.|return=.*$`)

// TestNBDWire: the requests goqio sends are qemu-io's (nbdkit's log
// filter records them): FUA on every write of qemu-io's default
// writethrough mode, NO_HOLE, FAST_ZERO, trims, flushes, the probe's
// read, the flush at close; raw over the protocol node and the protocol
// node alone.
func TestNBDWire(t *testing.T) {
	needTool(t, "nbdkit")
	tl := setup(t)
	sessions := [][]string{
		{"-f", "raw", "-c", "write -f 0 4k", "-c", "write -z -f 8k 4k", "-c", "write -zu 64k 64k", "-c", "write -zn 0 4k",
			"-c", "flush", "-c", "write 1 100", "-c", "writev -f 0 512 512", "-c", "discard 128k 64k", "-c", "read 0 100k", "URI"},
		{"-t", "writethrough", "-f", "raw", "-c", "write 0 512", "-c", "write -z 0 4k", "URI"},
		{"-t", "writeback", "-c", "write 0 512", "-c", "write -f -z 0 4k", "-c", "write -f 0 4k", "-c", "alloc 0 1M", "URI"},
		{"-r", "-c", "read 0 512", "-c", "map", "URI"},
		{"--image-opts", "-c", "write 0 512", "-c", "aio_write 4k 4k", "-c", "aio_flush", "driver=nbd,path=SOCK"},
		// not yet: reopen (goqio opens the graph again, so it
		// reconnects, and the probed raw node's 512-byte alignment is
		// lost on the way)
	}
	for i, args := range sessions {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			top := t.TempDir()
			link := filepath.Join(top, "qemu-io")
			os.Symlink(tl.goqio, link)
			var logs [2]string
			for j, prog := range []string{tl.qemuIO, link} {
				d := filepath.Join(top, fmt.Sprint(j))
				os.Mkdir(d, 0o755)
				logf := filepath.Join(d, "log")
				c := nbdCase{Server: "nbdkit", ServerArgs: []string{"--filter=log", "memory", "size=1M", "logfile=" + logf}}
				sock, uri, stop := c.startServer(t, d)
				sh(t, d, "", prog, subst(args, uri, sock)...)
				stop()
				b, _ := os.ReadFile(logf)
				logs[j] = logNoise.ReplaceAllString(string(b), "")
			}
			if logs[0] != logs[1] {
				t.Errorf("args %q: requests differ:\nqemu-io:\n%s\ngoqio:\n%s", args, logs[0], logs[1])
			}
		})
	}
}
