package formats

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/nbd"
	"github.com/goqio/goqio/nbd/client"
)

// The nbd protocol driver is QEMU 7.2's block/nbd.c over package
// nbd/client. QEMU registers three drivers named "nbd" (protocols nbd,
// nbd+tcp and nbd+unix); driver=nbd finds the last registered, nbd+unix,
// whose protocol name qemu-io's info prints. goqio registers one with
// the three protocol prefixes.

var nbdOpts = []OptDesc{
	{"host", OptString}, {"port", OptString}, {"path", OptString}, {"export", OptString},
	{"tls-creds", OptString}, {"tls-hostname", OptString}, {"x-dirty-bitmap", OptString},
	{"reconnect-delay", OptNumber}, {"open-timeout", OptNumber},
}

func init() {
	strongOptions["nbd"] = []string{"path", "host", "port", "export", "tls-creds", "tls-hostname", "server."}
}

// nbdHasFilenameConflict is nbd_has_filename_options_conflict.
func nbdHasFilenameConflict(opts *qdict.Dict) error {
	for _, k := range opts.Keys() {
		if k == "host" || k == "port" || k == "path" || k == "export" || strings.HasPrefix(k, "server.") {
			return errorf(nil, "Option '%s' cannot be used with a file name", k)
		}
	}
	return nil
}

// parseNBDFilename is nbd_parse_filename.
func parseNBDFilename(filename string, opts *qdict.Dict) error {
	if err := nbdHasFilenameConflict(opts); err != nil {
		return err
	}
	if strings.Contains(filename, "://") {
		if !parseNBDURI(filename, opts) {
			return errorf(nil, "No valid URL specified")
		}
		return nil
	}
	file := filename
	if i := strings.Index(file, ":exportname="); i >= 0 {
		name := file[i+len(":exportname="):]
		if name == "" {
			return nil
		}
		file = file[:i]
		opts.Put("export", name)
	}
	spec, ok := strings.CutPrefix(file, "nbd:")
	if !ok {
		return errorf(nil, "File name string for NBD must start with 'nbd:'")
	}
	if spec == "" {
		return nil
	}
	if path, ok := strings.CutPrefix(spec, "unix:"); ok {
		opts.Put("server.type", "unix")
		opts.Put("server.path", path)
		return nil
	}
	host, port, err := inetParse(spec)
	if err != nil {
		return err
	}
	opts.Put("server.type", "inet")
	opts.Put("server.host", host)
	opts.Put("server.port", port)
	return nil
}

// inetParse is the host and port part of QEMU's inet_parse (its sscanf
// patterns: a host of at most 64 bytes, a port of at most 32).
func inetParse(s string) (string, string, error) {
	scan := func(str string, stop byte, max int) (string, string) {
		i := 0
		for i < len(str) && i < max && str[i] != stop {
			i++
		}
		return str[:i], str[i:]
	}
	var host, port, rest string
	switch {
	case strings.HasPrefix(s, ":"):
		port, _ = scan(s[1:], ',', 32)
		if port == "" {
			return "", "", errorf(nil, "error parsing port in address '%s'", s)
		}
	case strings.HasPrefix(s, "["):
		host, rest = scan(s[1:], ']', 64)
		if host == "" || !strings.HasPrefix(rest, "]:") {
			return "", "", errorf(nil, "error parsing IPv6 address '%s'", s)
		}
		if port, _ = scan(rest[2:], ',', 32); port == "" {
			return "", "", errorf(nil, "error parsing IPv6 address '%s'", s)
		}
	default:
		host, rest = scan(s, ':', 64)
		if host == "" || !strings.HasPrefix(rest, ":") {
			return "", "", errorf(nil, "error parsing address '%s'", s)
		}
		if port, _ = scan(rest[1:], ',', 32); port == "" {
			return "", "", errorf(nil, "error parsing address '%s'", s)
		}
	}
	return host, port, nil
}

// parseNBDURI is nbd_parse_uri.
func parseNBDURI(filename string, opts *qdict.Dict) bool {
	u, err := url.Parse(filename)
	if err != nil {
		return false
	}
	var unix bool
	switch u.Scheme {
	case "nbd", "nbd+tcp":
	case "nbd+unix":
		unix = true
	default:
		return false
	}
	if u.Opaque != "" || u.User != nil || u.Fragment != "" {
		return false
	}
	p := strings.TrimPrefix(u.Path, "/")
	var params [][2]string
	if u.RawQuery != "" {
		for _, kv := range strings.FieldsFunc(u.RawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
			k, v, _ := strings.Cut(kv, "=")
			k, err1 := url.QueryUnescape(k)
			v, err2 := url.QueryUnescape(v)
			if err1 != nil || err2 != nil {
				return false
			}
			params = append(params, [2]string{k, v})
		}
	}
	if len(params) > 1 || (unix && len(params) == 0) || (!unix && len(params) > 0) {
		return false
	}
	if p != "" {
		opts.Put("export", p)
	}
	if unix {
		if u.Host != "" || params[0][0] != "socket" {
			return false
		}
		opts.Put("server.type", "unix")
		opts.Put("server.path", params[0][1])
		return true
	}
	host := u.Hostname()
	if host == "" {
		return false
	}
	port := u.Port()
	if n, err := strconv.Atoi(port); port == "" || (err == nil && n == 0) {
		port = strconv.Itoa(nbd.DefaultPort)
	} else if err != nil {
		return false
	} else {
		port = strconv.Itoa(n)
	}
	opts.Put("server.type", "inet")
	opts.Put("server.host", host)
	opts.Put("server.port", port)
	return true
}

// nbdAddress is QEMU's SocketAddress for the nbd driver.
type nbdAddress struct {
	typ        string // inet, unix, vsock, fd
	host, port string
	path       string
	inetExtras bool // ipv4, ipv6 or to given: no pseudo-filename
	fd         string
}

// socketAddress visits options (the server.* keys) as a SocketAddress,
// in QAPI's order of checks.
func socketAddress(d *qdict.Dict) (*nbdAddress, error) {
	get := func(k string) (string, bool, error) {
		v := d.Get(k)
		if v == nil {
			return "", false, nil
		}
		d.Del(k)
		s, ok := qdict.ScalarString(v)
		if !ok {
			return "", false, fmt.Errorf("Invalid parameter type for '%s', expected: string", k)
		}
		return s, true, nil
	}
	need := func(k string) (string, error) {
		s, ok, err := get(k)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("Parameter '%s' is missing", k)
		}
		return s, nil
	}
	boolean := func(k string) (bool, error) {
		s, ok, err := get(k)
		if err != nil || !ok {
			return false, err
		}
		if _, valid := ParseBool(s); !valid {
			return false, fmt.Errorf("Parameter '%s' expects 'on' or 'off'", k)
		}
		return true, nil
	}
	a := &nbdAddress{}
	var err error
	if a.typ, err = need("type"); err != nil {
		return nil, err
	}
	switch a.typ {
	case "inet":
		if a.host, err = need("host"); err != nil {
			return nil, err
		}
		if a.port, err = need("port"); err != nil {
			return nil, err
		}
		if _, err := boolean("numeric"); err != nil {
			return nil, err
		}
		if s, ok, err := get("to"); err != nil {
			return nil, err
		} else if ok {
			if _, err := strconv.ParseUint(s, 10, 16); err != nil {
				return nil, fmt.Errorf("Parameter 'to' expects uint16")
			}
			a.inetExtras = true
		}
		for _, k := range []string{"ipv4", "ipv6"} {
			given, err := boolean(k)
			if err != nil {
				return nil, err
			}
			a.inetExtras = a.inetExtras || given
		}
		for _, k := range []string{"keep-alive", "mptcp"} {
			if _, err := boolean(k); err != nil {
				return nil, err
			}
		}
	case "unix":
		if a.path, err = need("path"); err != nil {
			return nil, err
		}
		for _, k := range []string{"abstract", "tight"} {
			if _, err := boolean(k); err != nil {
				return nil, err
			}
		}
	case "vsock":
		if a.host, err = need("cid"); err != nil {
			return nil, err
		}
		if a.port, err = need("port"); err != nil {
			return nil, err
		}
	case "fd":
		if a.fd, err = need("str"); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("Parameter 'type' does not accept value '%s'", a.typ)
	}
	if k := d.First(); k != "" {
		return nil, fmt.Errorf("Parameter '%s' is unexpected", k)
	}
	return a, nil
}

// nbdNode is an open nbd node.
type nbdNode struct {
	addr  *nbdAddress
	opts  client.Options
	exact string // the pseudo-filename (nbd_refresh_filename)
	delay time.Duration
	mu    sync.Mutex
	conn  *client.Conn
	info  client.Info
	size  int64 // rounded up to sectors, as QEMU's total_sectors
	align int64
	depth bool // x-dirty-bitmap=qemu:allocation-depth
	rw    bool // opened read-write: flushed at close
	kept  bool // the connection goes on in the reopened node (KeepConnections)
	key   string
}

// KeepConnections is what keeps a reopen from reconnecting: QEMU's
// reopen changes an nbd node's flags and keeps its connection, which a
// server that serves one client (qemu-nbd without -t) would not accept
// again. goqio reopens by opening the graph again; the nbd nodes of top's
// tree hand their connections to g, to be taken by the open that follows
// (the same server, export and options); DropKept closes those left.
func (g *Graph) KeepConnections(top *Node) {
	seen := map[*Node]bool{}
	var walk func(n *Node)
	walk = func(n *Node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		if d, ok := n.Impl.(*nbdNode); ok {
			d.mu.Lock()
			if d.conn != nil && d.conn.Err() == nil {
				d.kept = true
				if g.keptNBD == nil {
					g.keptNBD = map[string][]*client.Conn{}
				}
				g.keptNBD[d.key] = append(g.keptNBD[d.key], d.conn)
			}
			d.mu.Unlock()
		}
		for _, c := range n.Children {
			walk(c.Node)
		}
	}
	walk(top)
}

// DropKept disconnects the kept connections no node took.
func (g *Graph) DropKept() {
	for _, cs := range g.keptNBD {
		for _, c := range cs {
			c.Close()
		}
	}
	g.keptNBD = nil
}

// takeKept returns a kept connection for key, or nil.
func (g *Graph) takeKept(key string) *client.Conn {
	cs := g.keptNBD[key]
	if len(cs) == 0 {
		return nil
	}
	g.keptNBD[key] = cs[1:]
	return cs[0]
}

var (
	_ image.Zeroer        = (*nbdNode)(nil)
	_ image.Discarder     = (*nbdNode)(nil)
	_ image.BlockStatuser = (*nbdNode)(nil)
	_ image.Truncater     = (*nbdNode)(nil)
	_ image.Infoer        = (*nbdNode)(nil)
	_ image.FUAWriter     = (*nbdNode)(nil)
)

// openNBD is nbd_open: nbd_process_options, the connection, then
// nbd_handle_updated_info.
func openNBD(g *Graph, n *Node, opts *qdict.Dict) error {
	err := openNBDNode(g, n, opts)
	var e *Error
	if err != nil && !errors.As(err, &e) {
		return &Error{Msg: err.Error(), Err: err}
	}
	return err
}

func openNBDNode(g *Graph, n *Node, opts *qdict.Dict) error {
	o, err := Absorb(nbdOpts, opts)
	if err != nil {
		return err
	}
	path, hasPath := o.Str("path")
	host, hasHost := o.Str("host")
	port, hasPort := o.Str("port")
	if hasPath || hasHost || hasPort {
		for _, k := range opts.Keys() {
			if strings.HasPrefix(k, "server.") {
				return errorf(nil, "Cannot use 'server' and path/host/port at the same time")
			}
		}
		switch {
		case hasPath && hasHost:
			return errorf(nil, "path and host may not be used at the same time")
		case hasPath && hasPort:
			return errorf(nil, "port may not be used without host")
		case hasPath:
			opts.Put("server.type", "unix")
			opts.Put("server.path", path)
		case hasHost:
			if !hasPort {
				port = strconv.Itoa(nbd.DefaultPort)
			}
			opts.Put("server.type", "inet")
			opts.Put("server.host", host)
			opts.Put("server.port", port)
		}
	}
	sub := opts.ExtractSub("server.")
	if sub.Len() == 0 {
		return errorf(nil, "NBD server address missing")
	}
	addr, err := socketAddress(sub)
	if err != nil {
		return err
	}
	d := &nbdNode{addr: addr}
	export, hasExport := o.Str("export")
	if len(export) > nbd.MaxStringSize {
		return errorf(nil, "export name too long to send to server")
	}
	d.opts.Export = export
	if id, ok := o.Str("tls-creds"); ok {
		obj := g.Objects.Get(id)
		if obj == nil {
			return errorf(nil, "No TLS credentials with id '%s'", id)
		}
		if !strings.HasPrefix(obj.Type, "tls-creds-") {
			return errorf(nil, "Object with id '%s' is not TLS credentials", id)
		}
		if ep := obj.Props["endpoint"]; ep != "" && ep != "client" {
			return errorf(nil, "Expected TLS credentials for a client endpoint")
		}
		if obj.Type != "tls-creds-x509" {
			return errorf(nil, "TLS credentials of type '%s' are not supported by goqio (only tls-creds-x509)", obj.Type)
		}
		hostname, ok := o.Str("tls-hostname")
		if !ok && addr.typ == "inet" {
			hostname = addr.host
		}
		verify := true
		if v, ok := obj.Props["verify-peer"]; ok {
			verify, _ = ParseBool(v)
		}
		cfg, err := client.X509Config(obj.Props["dir"], verify, hostname)
		if err != nil {
			return nbdErr(err)
		}
		d.opts.TLS = cfg
	}
	if bm, ok := o.Str("x-dirty-bitmap"); ok {
		if len(bm) > nbd.MaxStringSize {
			return errorf(nil, "x-dirty-bitmap query too long to send to server")
		}
		d.opts.MetaContext = bm
		d.depth = bm == nbd.ContextAllocationDepth
	}
	d.delay = time.Duration(o.Num("reconnect-delay", 0)) * time.Second
	timeout := time.Duration(o.Num("open-timeout", 0)) * time.Second
	d.exact = nbdExactFilename(addr, export, hasExport)

	tlsID, _ := o.Str("tls-creds")
	d.key = strings.Join([]string{d.exact, d.opts.MetaContext, tlsID}, "\x00")
	conn := g.takeKept(d.key)
	if conn == nil {
		if conn, err = d.connect(timeout); err != nil {
			return nbdErr(err)
		}
	}
	info := conn.Info()
	if d.opts.MetaContext != "" && !info.BaseAllocation {
		// QEMU loses this message (nbd_handle_updated_info gets no errp)
		conn.Close()
		return &Error{Msg: "Could not open image: Invalid argument", Err: syscall.EINVAL}
	}
	if info.Flags&nbd.FlagReadOnly != 0 && n.Flags&FlagRDWR != 0 {
		if n.Flags&FlagAutoRdonly == 0 {
			conn.Close()
			return &Error{Msg: "Could not open image: Permission denied", Err: syscall.EACCES}
		}
		n.Flags &^= FlagRDWR
	}
	d.conn, d.info = conn, info
	d.rw = n.Flags&FlagRDWR != 0
	d.size = int64(min(info.Size, math.MaxInt64-511)+511) &^ 511
	// nbd_refresh_limits
	d.align = int64(info.MinBlock)
	if d.align == 0 {
		d.align = 512
		if info.Size%512 != 0 || info.BaseAllocation {
			d.align = 1
		}
	}
	n.Impl = d
	return nil
}

// nbdErr turns a client error into the graph's, keeping QEMU's hint.
func nbdErr(err error) error {
	var ce *client.Error
	if errors.As(err, &ce) {
		return &Error{Msg: ce.Msg, Hint: ce.Hint, Err: ce.Err}
	}
	return err
}

// nbdExactFilename is nbd_refresh_filename.
func nbdExactFilename(a *nbdAddress, export string, hasExport bool) string {
	switch {
	case a.typ == "unix" && hasExport:
		return "nbd+unix:///" + export + "?socket=" + a.path
	case a.typ == "unix":
		return "nbd+unix://?socket=" + a.path
	case a.typ == "inet" && !a.inetExtras && hasExport:
		return "nbd://" + a.host + ":" + a.port + "/" + export
	case a.typ == "inet" && !a.inetExtras:
		return "nbd://" + a.host + ":" + a.port
	}
	return ""
}

// connect dials the server and negotiates, retrying for timeout (QEMU's
// open-timeout) when it is not zero.
func (d *nbdNode) connect(timeout time.Duration) (*client.Conn, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := d.dialOnce()
		if err == nil || timeout == 0 || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(min(time.Second, time.Until(deadline)+time.Millisecond))
	}
}

func (d *nbdNode) dialOnce() (*client.Conn, error) {
	ctx := context.Background()
	a := d.addr
	switch a.typ {
	case "unix":
		return client.Dial(ctx, "unix", a.path, d.opts)
	case "inet":
		o := d.opts
		o.AddressName = a.host + ":" + a.port
		return client.Dial(ctx, "tcp", net.JoinHostPort(a.host, a.port), o)
	case "fd":
		fd, err := strconv.Atoi(a.fd)
		if err != nil || fd < 0 {
			return nil, &Error{Msg: fmt.Sprintf("No file descriptor named %s found", a.fd), Err: syscall.EINVAL}
		}
		if _, err := syscall.Getsockname(fd); err != nil {
			return nil, &Error{Msg: fmt.Sprintf("File descriptor '%s' is not a socket", a.fd), Err: syscall.EINVAL}
		}
		f := os.NewFile(uintptr(fd), "nbd-fd")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, &Error{Msg: fmt.Sprintf("File descriptor '%s' is not a socket", a.fd), Err: syscall.EINVAL}
		}
		conn, err := client.Negotiate(c, d.opts)
		if err != nil {
			c.Close()
		}
		return conn, err
	}
	return nil, &Error{Msg: fmt.Sprintf("Failed to connect to '%s:%s': %s", a.host, a.port, Strerror(syscall.ENODEV)), Err: syscall.ENODEV}
}

// do runs op on the connection; with reconnect-delay, a request that
// failed because the connection broke waits for a new connection (for
// at most the delay) and runs again, as QEMU's reconnect does.
func (d *nbdNode) do(op func(c *client.Conn) error) error {
	d.mu.Lock()
	c := d.conn
	d.mu.Unlock()
	err := op(c)
	if err == nil || d.delay == 0 || c.Err() == nil {
		return err
	}
	deadline := time.Now().Add(d.delay)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		if d.conn == c {
			if nc, derr := d.dialOnce(); derr == nil {
				d.conn = nc
				c.Close()
			}
		}
		nc := d.conn
		d.mu.Unlock()
		if nc != c {
			c = nc
			if err = op(c); err == nil || c.Err() == nil {
				return err
			}
			continue
		}
		time.Sleep(100 * time.Millisecond)
	}
	return syscall.EIO
}

func (d *nbdNode) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	size := int64(d.info.Size)
	if off >= size {
		clear(p)
		return len(p), nil
	}
	q := p
	if off+int64(len(p)) > size {
		clear(p[size-off:])
		q = p[:size-off]
	}
	if err := d.do(func(c *client.Conn) error { return c.Read(q, uint64(off)) }); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (d *nbdNode) WriteAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := d.do(func(c *client.Conn) error { return c.Write(p, uint64(off), 0) }); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Size is nbd_getlength, in sectors as QEMU's block layer has it.
func (d *nbdNode) Size() int64 { return d.size }

// Limits is nbd_refresh_limits.
func (d *nbdNode) Limits() image.Limits {
	maxT := int64(nbd.MaxBufferSize)
	if d.info.MaxBlock != 0 {
		maxT = min(maxT, int64(d.info.MaxBlock))
	}
	return image.Limits{RequestAlignment: d.align, MaxTransfer: maxT, MaxZero: maxT,
		MaxDiscard: math.MaxInt32 / d.align * d.align}
}

// Flush is nbd_client_co_flush: nothing when the server takes no flush.
func (d *nbdNode) Flush() error {
	if d.info.Flags&nbd.FlagSendFlush == 0 {
		return nil
	}
	return d.do(func(c *client.Conn) error { return c.Flush() })
}

// Close is bdrv_close: a writable node is flushed first (bdrv_flush,
// which sends NBD_CMD_FLUSH whenever the server takes it), then
// NBD_CMD_DISC.
func (d *nbdNode) Close() error {
	if d.rw {
		_ = d.Flush()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.kept {
		return nil // the reopened node has it
	}
	return d.conn.Close()
}

// WriteZeroes is nbd_client_co_pwrite_zeroes: NO_HOLE unless unmapping
// is allowed, FAST_ZERO for a zero write without fallback.
func (d *nbdNode) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	return d.writeZeroes(off, n, flags, 0)
}

func (d *nbdNode) writeZeroes(off, n int64, flags image.ZeroFlags, f uint16) error {
	if d.info.Flags&nbd.FlagSendWriteZeroes == 0 {
		return image.ErrNotSupported
	}
	if flags&image.ZeroMayUnmap == 0 {
		f |= nbd.CmdFlagNoHole
	}
	if flags&image.ZeroNoFallback != 0 {
		f |= nbd.CmdFlagFastZero
	}
	if n == 0 {
		return nil
	}
	err := d.do(func(c *client.Conn) error { return c.WriteZeroes(uint64(off), uint32(n), f) })
	if errors.Is(err, syscall.ENOTSUP) {
		return image.ErrNotSupported
	}
	return err
}

// SupportsFUA: the server takes NBD_CMD_FLAG_FUA (supported_write_flags).
func (d *nbdNode) SupportsFUA() bool { return d.info.Flags&nbd.FlagSendFUA != 0 }

// WriteAtFUA is a write with NBD_CMD_FLAG_FUA.
func (d *nbdNode) WriteAtFUA(p []byte, off int64) error {
	return d.do(func(c *client.Conn) error { return c.Write(p, uint64(off), nbd.CmdFlagFUA) })
}

// WriteZeroesFUA is WriteZeroes with NBD_CMD_FLAG_FUA.
func (d *nbdNode) WriteZeroesFUA(off, n int64, flags image.ZeroFlags) error {
	return d.writeZeroes(off, n, flags, nbd.CmdFlagFUA)
}

// SupportedZeroFlags is nbd_handle_updated_info's supported_zero_flags.
func (d *nbdNode) SupportedZeroFlags() image.ZeroFlags {
	var f image.ZeroFlags
	if d.info.Flags&nbd.FlagSendWriteZeroes != 0 {
		f |= image.ZeroMayUnmap
		if d.info.Flags&nbd.FlagSendFastZero != 0 {
			f |= image.ZeroNoFallback
		}
	}
	return f
}

// Discard is nbd_client_co_pdiscard.
func (d *nbdNode) Discard(off, n int64) error {
	if d.info.Flags&nbd.FlagSendTrim == 0 || n == 0 {
		return nil
	}
	return d.do(func(c *client.Conn) error { return c.Trim(uint64(off), uint32(n)) })
}

// BlockStatus is nbd_client_co_block_status: everything is data without a
// negotiated context; a hole is not data, a zero reads as zero, and the
// offset is the node's own.
func (d *nbdNode) BlockStatus(off, n int64, wantZero bool) (image.Extent, error) {
	if !d.info.BaseAllocation {
		return image.Extent{Status: image.StatusData | image.StatusOffsetValid, Len: n, Offset: off, File: d.exact}, nil
	}
	size := int64(d.info.Size)
	if off >= size {
		return image.Extent{Status: image.StatusZero, Len: n}, nil
	}
	l := min(math.MaxInt32/d.align*d.align, min(n, size-off))
	var e client.Extent
	err := d.do(func(c *client.Conn) error {
		var err error
		e, err = c.BlockStatus(uint64(off), uint32(l))
		return err
	})
	if err != nil {
		return image.Extent{}, err
	}
	if d.depth && e.Flags > 2 {
		e.Flags = 2
	}
	st := image.StatusOffsetValid
	if e.Flags&nbd.StateHole == 0 {
		st |= image.StatusData
	}
	if e.Flags&nbd.StateZero != 0 {
		st |= image.StatusZero
	}
	return image.Extent{Status: st, Len: int64(e.Length), Offset: off, File: d.exact}, nil
}

// Truncate is nbd_co_truncate (not exact, as qemu-io's truncate asks).
func (d *nbdNode) Truncate(size int64, _ image.Prealloc) error {
	if size > int64(d.info.Size) {
		return &Error{Msg: "Cannot grow NBD nodes", Err: syscall.EINVAL}
	}
	return nil
}

// Info: nbd has no bdrv_get_info; qemu-io prints the format name and the
// protocol name of the driver driver=nbd finds (nbd+unix).
func (d *nbdNode) Info() (image.Info, error) {
	return image.Info{FormatName: "nbd", ProtocolName: "nbd+unix"}, image.ErrNotSupported
}

// IsNBDFilename reports whether filename names an NBD export (the nbd,
// nbd+tcp and nbd+unix protocol prefixes).
func IsNBDFilename(filename string) bool {
	if !pathHasProtocol(filename) {
		return false
	}
	p := filename[:strings.Index(filename, ":")]
	return p == "nbd" || p == "nbd+tcp" || p == "nbd+unix"
}

// checkX509Object is the loading of a tls-creds-x509 object
// (endpoint=client|server, the files, the sanity check).
func checkX509Object(obj *Object) error {
	ep := obj.Props["endpoint"]
	switch ep {
	case "", "client", "server":
	default:
		return fmt.Errorf("Parameter 'endpoint' does not accept value '%s'", ep)
	}
	sanity := true
	if v, ok := obj.Props["sanity-check"]; ok {
		b, valid := ParseBool(v)
		if !valid {
			return fmt.Errorf("Parameter 'sanity-check' expects 'on' or 'off'")
		}
		sanity = b
	}
	return nbdErr(client.CheckX509Dir(obj.Props["dir"], ep == "server", sanity))
}

// reopenNBD is nbd_client_reopen_prepare.
func reopenNBD(n *Node, opts *qdict.Dict, flags Flags) error {
	if d, ok := n.Impl.(*nbdNode); ok && flags&FlagRDWR != 0 && d.info.Flags&nbd.FlagReadOnly != 0 {
		return &Error{Msg: "Can't reopen read-only NBD mount as read/write", Err: syscall.EACCES}
	}
	return nil
}
