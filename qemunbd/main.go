// Package qemunbd is goqio standing in for qemu-nbd 7.2: qemu-nbd's command
// line (GNU getopt_long with qemu-nbd's option table), its usage and
// version texts, its messages and exit codes, and its server loop: the
// image opened through the block graph as qemu-nbd opens it, exported by
// nbd/server on a unix socket, a TCP address or a socket-activated file
// descriptor. Run it through Main.
package qemunbd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/img"
	"github.com/goqio/goqio/nbd"
	"github.com/goqio/goqio/nbd/server"
)

// Long option values, as qemu-nbd.c numbers them.
const (
	optCache        = 256
	optAIO          = 257
	optDiscard      = 258
	optDetectZeroes = 259
	optObject       = 260
	optTLSCreds     = 261
	optImageOpts    = 262
	optFork         = 263
	optTLSAuthz     = 264
	optPidFile      = 265
	optSELinuxLabel = 266
	optTLSHostname  = 267
)

const shortOpts = "hVb:o:p:rsnc:dvk:e:f:tl:x:T:D:AB:L"

var longOpts = []commands.LongOption{
	{Name: "help", Val: 'h'}, {Name: "version", Val: 'V'},
	{Name: "bind", HasArg: true, Val: 'b'}, {Name: "port", HasArg: true, Val: 'p'},
	{Name: "socket", HasArg: true, Val: 'k'}, {Name: "offset", HasArg: true, Val: 'o'},
	{Name: "read-only", Val: 'r'}, {Name: "allocation-depth", Val: 'A'},
	{Name: "bitmap", HasArg: true, Val: 'B'}, {Name: "connect", HasArg: true, Val: 'c'},
	{Name: "disconnect", Val: 'd'}, {Name: "list", Val: 'L'},
	{Name: "snapshot", Val: 's'}, {Name: "load-snapshot", HasArg: true, Val: 'l'},
	{Name: "nocache", Val: 'n'}, {Name: "cache", HasArg: true, Val: optCache},
	{Name: "aio", HasArg: true, Val: optAIO}, {Name: "discard", HasArg: true, Val: optDiscard},
	{Name: "detect-zeroes", HasArg: true, Val: optDetectZeroes},
	{Name: "shared", HasArg: true, Val: 'e'}, {Name: "format", HasArg: true, Val: 'f'},
	{Name: "persistent", Val: 't'}, {Name: "verbose", Val: 'v'},
	{Name: "object", HasArg: true, Val: optObject},
	{Name: "export-name", HasArg: true, Val: 'x'}, {Name: "description", HasArg: true, Val: 'D'},
	{Name: "tls-creds", HasArg: true, Val: optTLSCreds},
	{Name: "tls-hostname", HasArg: true, Val: optTLSHostname},
	{Name: "tls-authz", HasArg: true, Val: optTLSAuthz},
	{Name: "image-opts", Val: optImageOpts}, {Name: "trace", HasArg: true, Val: 'T'},
	{Name: "fork", Val: optFork}, {Name: "pid-file", HasArg: true, Val: optPidFile},
	{Name: "selinux-label", HasArg: true, Val: optSELinuxLabel},
}

// env is one run.
type env struct {
	argv0  string // as given: usage, version and "Try" name it so
	prog   string // its base name: error_report's prefix
	stdout io.Writer
	stderr io.Writer
}

func (e *env) report(format string, a ...any) {
	fmt.Fprintf(e.stderr, "%s: %s\n", e.prog, fmt.Sprintf(format, a...))
}

// exitError is error_report followed by exit(EXIT_FAILURE).
func (e *env) fail(format string, a ...any) int {
	e.report(format, a...)
	return 1
}

// config is what the command line asks for.
type config struct {
	readOnly, snapshot, persistent, verbose, disconnect, list bool
	allocDepth, imageOpts, forkProcess                        bool
	flags                                                     commands.OpenFlags
	detectZeroes                                              image.DetectZeroes
	bind, port, sockpath, device, format                      string
	exportName, description                                   *string
	bitmaps                                                   []string
	tlsCreds, tlsHostname, tlsAuthz, pidFile, selinux         string
	loadSnapshot                                              *img.SnapshotParam // -l
	devOffset                                                 uint64
	shared                                                    int
	seenCache, seenAIO, seenDiscard                           bool
	bindSet, portSet                                          bool
}

// Main runs qemu-nbd's main() on argv and returns the exit status. It
// blocks while the server runs.
func Main(argv []string, stdout, stderr io.Writer) int {
	e := &env{argv0: argv[0], prog: commands.ProgName(argv[0]), stdout: stdout, stderr: stderr}
	graph := formats.NewGraph(formats.Env{Prog: e.prog})
	cfg := &config{shared: 1}
	g := commands.NewGetopt(argv, shortOpts, longOpts, stderr)
	for {
		ch, arg := g.Next()
		if ch == -1 {
			break
		}
		switch ch {
		case 's':
			cfg.snapshot = true
		case 'n', optCache:
			if ch == 'n' {
				arg = "none"
			}
			if cfg.seenCache {
				return e.fail("-n and --cache can only be specified once")
			}
			cfg.seenCache = true
			if !commands.ParseCacheMode(arg, &cfg.flags) {
				return e.fail("Invalid cache mode `%s'", arg)
			}
		case optAIO:
			if cfg.seenAIO {
				return e.fail("--aio can only be specified once")
			}
			cfg.seenAIO = true
			if !commands.ParseAIO(arg, &cfg.flags) {
				return e.fail("Invalid aio mode '%s'", arg)
			}
		case optDiscard:
			if cfg.seenDiscard {
				return e.fail("--discard can only be specified once")
			}
			cfg.seenDiscard = true
			if !commands.ParseDiscard(arg, &cfg.flags) {
				return e.fail("Invalid discard mode `%s'", arg)
			}
		case optDetectZeroes:
			switch arg {
			case "off":
				cfg.detectZeroes = image.DetectZeroesOff
			case "on":
				cfg.detectZeroes = image.DetectZeroesOn
			case "unmap":
				cfg.detectZeroes = image.DetectZeroesUnmap
			default:
				return e.fail("Failed to parse detect_zeroes mode: invalid parameter value: %s", arg)
			}
			if cfg.detectZeroes == image.DetectZeroesUnmap && !cfg.flags.Unmap {
				return e.fail("setting detect-zeroes to unmap is not allowed without setting discard operation to unmap")
			}
		case 'b':
			cfg.bind, cfg.bindSet = arg, true
		case 'p':
			cfg.port, cfg.portSet = arg, true
		case 'o':
			v, err := strconv.ParseUint(arg, 0, 64)
			if err != nil || strings.HasPrefix(strings.TrimSpace(arg), "-") {
				return e.fail("Invalid offset '%s'", arg)
			}
			cfg.devOffset = v
		case 'l':
			p, err := img.ParseSnapshotParam(arg, func(m string) { e.report("warning: %s", m) })
			if err != nil {
				e.report("%v", err)
				return e.fail("Failed in parsing snapshot param `%s'", arg)
			}
			cfg.loadSnapshot = &p
			cfg.readOnly = true
		case 'r':
			cfg.readOnly = true
		case 'A':
			cfg.allocDepth = true
		case 'B':
			cfg.bitmaps = append([]string{arg}, cfg.bitmaps...)
		case 'k':
			cfg.sockpath = arg
			if !strings.HasPrefix(arg, "/") {
				return e.fail("socket path must be absolute")
			}
		case 'd':
			cfg.disconnect = true
		case 'c':
			cfg.device = arg
		case 'e':
			v, err := strconv.ParseInt(arg, 0, 32)
			if err != nil || v < 0 {
				return e.fail("Invalid shared device number '%s'", arg)
			}
			cfg.shared = int(v)
		case 'f':
			cfg.format = arg
		case 't':
			cfg.persistent = true
		case 'x':
			if len(arg) > nbd.MaxStringSize {
				return e.fail("export name '%s' too long", arg)
			}
			s := arg
			cfg.exportName = &s
		case 'D':
			if len(arg) > nbd.MaxStringSize {
				return e.fail("export description '%s' too long", arg)
			}
			s := arg
			cfg.description = &s
		case 'v':
			cfg.verbose = true
		case 'V':
			fmt.Fprintf(stdout, versionText, e.argv0)
			return 0
		case 'h':
			fmt.Fprintf(stdout, helpText, e.argv0, nbd.DefaultPort)
			return 0
		case '?':
			return e.fail("Try `%s --help' for more information.", e.argv0)
		case optObject:
			if arg == "help" || arg == "?" {
				// qemu-nbd has an iothread type qemu-io and qemu-img lack
				fmt.Fprint(stdout, "List of user creatable objects:\n")
				for _, t := range formats.ObjectTypes {
					if t == "main-loop" {
						fmt.Fprint(stdout, "  iothread\n")
					}
					fmt.Fprintf(stdout, "  %s\n", t)
				}
				return 0
			}
			if err := graph.Objects.Add(arg, func(t string) { io.WriteString(stdout, t) }); err != nil {
				if err == formats.ErrHelp {
					return 0
				}
				e.report("%v", err)
				var fe *formats.Error
				if errors.As(err, &fe) && fe.Hint != "" {
					fmt.Fprint(stderr, fe.Hint)
				}
				return 1
			}
			if err := loadCreds(graph, arg); err != nil {
				return e.fail("%v", err)
			}
		case optTLSCreds:
			cfg.tlsCreds = arg
		case optTLSHostname:
			cfg.tlsHostname = arg
		case optImageOpts:
			cfg.imageOpts = true
		case 'T':
			e.trace(arg)
		case optTLSAuthz:
			cfg.tlsAuthz = arg
		case optFork:
			cfg.forkProcess = true
		case 'L':
			cfg.list = true
		case optPidFile:
			cfg.pidFile = arg
		case optSELinuxLabel:
			cfg.selinux = arg
		}
	}
	rest := g.Operands()
	if cfg.list {
		if len(rest) != 0 {
			return e.fail("List mode is incompatible with a file name")
		}
		if cfg.exportName != nil || cfg.description != nil || cfg.devOffset != 0 || cfg.device != "" ||
			cfg.disconnect || cfg.format != "" || cfg.loadSnapshot != nil || len(cfg.bitmaps) > 0 ||
			cfg.allocDepth || cfg.seenAIO || cfg.seenDiscard || cfg.seenCache {
			return e.fail("List mode is incompatible with per-device settings")
		}
		if cfg.forkProcess {
			return e.fail("List mode is incompatible with forking")
		}
	} else if len(rest) != 1 {
		e.report("Invalid number of arguments")
		fmt.Fprintf(stderr, "Try `%s --help' for more information.\n", e.argv0)
		return 1
	} else if cfg.exportName == nil {
		s := ""
		cfg.exportName = &s
	}
	activation, err := socketActivation()
	if err != nil {
		return e.fail("%v", err)
	}
	if activation == 0 {
		if cfg.sockpath == "" {
			if !cfg.bindSet {
				cfg.bind = "0.0.0.0"
			}
			if !cfg.portSet {
				cfg.port = strconv.Itoa(nbd.DefaultPort)
			}
		}
	} else {
		var msg string
		switch {
		case cfg.device != "":
			msg = "NBD device can't be set when using socket activation"
		case cfg.sockpath != "":
			msg = "Unix socket can't be set when using socket activation"
		case cfg.bindSet:
			msg = "The interface can't be set when using socket activation"
		case cfg.portSet:
			msg = "TCP port number can't be set when using socket activation"
		case cfg.selinux != "":
			msg = "SELinux label can't be set when using socket activation"
		case cfg.list:
			msg = "List mode is incompatible with socket activation"
		}
		if msg != "" {
			return e.fail("%s", msg)
		}
		if activation > 1 {
			return e.fail("qemu-nbd does not support socket activation with %s > 1", "LISTEN_FDS")
		}
	}
	var tlsCfg *tlsSetup
	if cfg.tlsCreds != "" {
		if cfg.device != "" {
			return e.fail("TLS is not supported with a host device")
		}
		if cfg.tlsAuthz != "" && cfg.list {
			return e.fail("TLS authorization is incompatible with export list")
		}
		if cfg.tlsHostname != "" && !cfg.list {
			return e.fail("TLS hostname is only supported with export list")
		}
		tlsCfg, err = tlsCreds(graph, cfg.tlsCreds, cfg.list)
		if err != nil {
			return e.fail("Failed to get TLS creds: %v", err)
		}
	} else {
		if cfg.tlsAuthz != "" {
			return e.fail("--tls-authz is not permitted without --tls-creds")
		}
		if cfg.tlsHostname != "" {
			return e.fail("--tls-hostname is not permitted without --tls-creds")
		}
	}
	if cfg.selinux != "" && cfg.sockpath == "" && cfg.device == "" {
		return e.fail("--selinux-label is not permitted without --socket")
	}
	if cfg.list {
		return e.list(cfg, tlsCfg)
	}
	if cfg.disconnect {
		return e.disconnectDevice(rest[0])
	}
	var ready func()
	if (cfg.device != "" && !cfg.verbose) || cfg.forkProcess {
		if os.Getenv(forkEnv) == "" {
			return e.forkParent(activation)
		}
		if activation == 0 && os.Getenv(forkListenEnv) != "" {
			activation = 1
		}
		ready = forkedReady()
	}
	return e.serve(cfg, graph, tlsCfg, activation, rest[0], ready)
}

// trace is -T: goqio has none of QEMU's trace events; a plain event name
// gets QEMU's warning.
func (e *env) trace(arg string) {
	for _, part := range strings.Split(arg, ",") {
		k, v, ok := strings.Cut(part, "=")
		if ok && k != "enable" {
			continue
		}
		if !ok {
			v = part
		}
		name := strings.TrimPrefix(v, "-")
		if name == "" || strings.ContainsAny(name, "*?[") {
			continue
		}
		fmt.Fprintf(e.stderr, "%s: warning: trace event '%s' does not exist\n", e.prog, name)
	}
}

// socketActivation is QEMU's check_socket_activation: the number of
// sockets systemd passed (LISTEN_PID is this process, LISTEN_FDS set), or 0.
func socketActivation() (int, error) {
	pidS, fdsS := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	if pidS == "" || fdsS == "" {
		return 0, nil
	}
	pid, err := strconv.ParseUint(pidS, 10, 64)
	if err != nil || int(pid) != os.Getpid() {
		return 0, nil
	}
	n, err := strconv.ParseUint(fdsS, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("Cannot parse LISTEN_FDS environment variable: %s", fdsS)
	}
	// QEMU sets the descriptors close-on-exec and leaves the variables
	return int(n), nil
}

// listen opens the listening socket as qio_net_listener_open_sync does, or
// takes the socket-activated descriptor.
func (e *env) listen(cfg *config, activation int) (net.Listener, error) {
	if activation > 0 {
		f := os.NewFile(3, "LISTEN_FDS")
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("Failed to use socket activation: %v", err)
		}
		return l, nil
	}
	if cfg.sockpath != "" {
		os.Remove(cfg.sockpath)
		l, err := net.Listen("unix", cfg.sockpath)
		if err != nil {
			return nil, fmt.Errorf("Failed to bind socket to %s: %s", cfg.sockpath, sysErr(err))
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		return l, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(cfg.bind, cfg.port))
	if err != nil {
		var ae *net.AddrError
		var dn *net.DNSError
		switch {
		case errors.As(err, &dn), errors.As(err, &ae):
			return nil, fmt.Errorf("address resolution failed for %s:%s: Name or service not known", cfg.bind, cfg.port)
		}
		return nil, fmt.Errorf("Failed to find an available port: %s", sysErr(err))
	}
	return l, nil
}

// sysErr is the strerror text of the errno behind err.
func sysErr(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		return image.Strerror(en)
	}
	return err.Error()
}

// open is qemu-nbd's blk_new_open, with -o's raw node on top.
func (e *env) open(cfg *config, graph *formats.Graph, src string) (*formats.Node, error) {
	f := cfg.flags
	o := formats.Options{Format: cfg.format, ReadOnly: cfg.readOnly, Direct: f.NoCache, NoFlush: f.NoFlush,
		WriteThrough: f.WriteThrough, Unmap: f.Unmap, NativeAIO: f.NativeAIO, Snapshot: cfg.snapshot,
		Graph: graph, Stderr: e.stderr, Prog: e.prog,
		Warn:       func(m string) { fmt.Fprintln(e.stderr, m) },
		WarnReport: func(m string) { fmt.Fprintf(e.stderr, "%s: warning: %s\n", e.prog, m) }}
	path := src
	if cfg.imageOpts && cfg.format != "" {
		return nil, errors.New("--image-opts and -f are mutually exclusive")
	}
	if cfg.imageOpts {
		opts, err := commands.ParseOptions(src, "file", o.WarnReport)
		if err != nil {
			return nil, err
		}
		o.Options = opts
		path = ""
	}
	n, err := formats.OpenNode(path, o)
	if err != nil {
		return nil, fmt.Errorf("Failed to blk_new_open '%s': %w", src, err)
	}
	if cfg.devOffset != 0 {
		ro := formats.Options{Format: "raw", ReadOnly: cfg.readOnly, Unmap: f.Unmap, Graph: graph,
			WriteThrough: f.WriteThrough, Stderr: e.stderr, Prog: e.prog,
			Options: map[string]string{"file": n.NodeName, "offset": strconv.FormatUint(cfg.devOffset, 10)}}
		top, err := formats.OpenNode("", ro)
		if err != nil {
			n.Close()
			return nil, err
		}
		top.OnClose(n.Close)
		n = top
	}
	return n, nil
}

// requestAlignment is blk_get_request_alignment of the exported node.
func requestAlignment(n *formats.Node) uint32 {
	if n.Drv != nil && n.Drv.Name == "raw" {
		if n.Probed {
			return 512
		}
		return 1
	}
	return uint32(max(n.Disk.Limits().RequestAlignment, 1))
}

// serve is the rest of qemu-nbd's main(): listen, open, export, loop.
// ready, when set, is called once the server runs (--fork's child).
func (e *env) serve(cfg *config, graph *formats.Graph, tlsCfg *tlsSetup, activation int, src string, ready func()) int {
	if cfg.device != "" && cfg.sockpath == "" {
		cfg.sockpath = socketPathFor(cfg.device)
	}
	l, err := e.listen(cfg, activation)
	if err != nil {
		return e.fail("%v", err)
	}
	defer l.Close()
	node, err := e.open(cfg, graph, src)
	if err != nil {
		e.report("%v", err)
		var fe *formats.Error
		if errors.As(err, &fe) && fe.Hint != "" {
			fmt.Fprint(e.stderr, fe.Hint)
		}
		return 1
	}
	if cfg.loadSnapshot != nil {
		if err := cfg.loadSnapshot.Load(node); err != nil {
			node.Close()
			return e.fail("%v", err)
		}
	}
	node.Disk.SetWriteThrough(cfg.flags.WriteThrough)
	node.Disk.SetDetectZeroes(cfg.detectZeroes)
	exp := &server.Export{Name: *cfg.exportName, Disk: node.Disk, RequestAlignment: requestAlignment(node),
		ReadOnly: cfg.readOnly, MultiConn: cfg.shared != 1, AllocationDepth: cfg.allocDepth}
	if cfg.description != nil {
		exp.Description = *cfg.description
	}
	for _, name := range cfg.bitmaps {
		bm, err := findBitmap(node, name, cfg.readOnly)
		if err != nil {
			node.Close()
			e.report("%v", err)
			var fe *formats.Error
			if errors.As(err, &fe) && fe.Hint != "" {
				fmt.Fprint(e.stderr, fe.Hint)
			}
			return 1
		}
		exp.Bitmaps = append(exp.Bitmaps, bm)
	}
	exp.Init()
	srv := &server.Server{Exports: []*server.Export{exp}, Report: func(m string) { e.report("%s", m) }}
	if tlsCfg != nil {
		srv.TLS = tlsCfg.config
	}
	if cfg.pidFile != "" {
		if err := writePidFile(cfg.pidFile); err != nil {
			node.Close()
			return e.fail("%v", err)
		}
	}
	if err := os.Chdir("/"); err != nil {
		node.Close()
		return e.fail("Could not chdir to root directory: %s", sysErr(err))
	}
	// with -c, the device's client lets the parent of the fork go once
	// the device runs (--fork: once the server runs, as without -c)
	var devConnected func()
	if cfg.device != "" && !cfg.forkProcess {
		devConnected, ready = ready, nil
	}
	if ready != nil {
		ready()
	}
	var devDone chan int
	var started func(stop func())
	if cfg.device != "" {
		devDone = make(chan int, 1)
		started = func(stop func()) {
			go func() {
				devDone <- e.deviceClient(cfg.device, cfg.sockpath, src, cfg.verbose, devConnected)
				stop() // QEMU's thread ends the server with a SIGTERM
			}()
		}
	}
	code := run(srv, l, cfg, func() {
		if cfg.sockpath != "" {
			os.Remove(cfg.sockpath)
		}
	}, started)
	if devDone != nil {
		code = <-devDone
	}
	if err := node.Close(); err != nil {
		e.report("%v", err)
	}
	if cfg.sockpath != "" {
		os.Remove(cfg.sockpath)
	}
	return code
}

// run is qemu-nbd's main loop: clients are accepted while fewer than -e
// are connected (any number with -e 0); without -t the server ends when
// the last client that reached the transmission phase leaves; SIGTERM,
// SIGINT and SIGHUP end it too (exit status 0).
func run(srv *server.Server, l net.Listener, cfg *config, unlink func(), started func(stop func())) int {
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	conns := map[net.Conn]bool{}
	nfds := 0
	terminate := false
	var wg sync.WaitGroup
	stop := func() {
		mu.Lock()
		if !terminate {
			terminate = true
			for c := range conns {
				c.Close()
			}
			unlink()
			l.Close()
		}
		cond.Broadcast()
		mu.Unlock()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	if started != nil {
		started(stop)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sig:
			stop()
		case <-done:
		}
	}()
	for {
		mu.Lock()
		for !terminate && cfg.shared != 0 && nfds >= cfg.shared {
			cond.Wait()
		}
		if terminate {
			mu.Unlock()
			break
		}
		mu.Unlock()
		c, err := l.Accept()
		if err != nil {
			mu.Lock()
			t := terminate
			mu.Unlock()
			if t || errors.Is(err, net.ErrClosed) {
				break
			}
			continue
		}
		mu.Lock()
		if terminate {
			mu.Unlock()
			c.Close()
			break
		}
		nfds++
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			negotiated := srv.Serve(c)
			mu.Lock()
			delete(conns, c)
			nfds--
			last := negotiated && nfds == 0 && !cfg.persistent
			cond.Broadcast()
			mu.Unlock()
			if last {
				stop()
			}
		}()
	}
	stop()
	wg.Wait()
	return 0
}

// writePidFile is qemu_write_pidfile.
func writePidFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("Cannot open pid file: %s", sysErr(err))
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("Cannot lock pid file: %s", sysErr(err))
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("Failed to truncate pid file: %s", sysErr(err))
	}
	if _, err := fmt.Fprintf(f, "%d\n", os.Getpid()); err != nil {
		return fmt.Errorf("Failed to write pid file: %s", sysErr(err))
	}
	return nil
}
