// Package client is an NBD client speaking the protocol as QEMU 7.2's
// nbd/client.c does: the fixed newstyle handshake (NBD_OPT_STARTTLS when
// TLS credentials are given, NBD_OPT_STRUCTURED_REPLY, one
// NBD_OPT_SET_META_CONTEXT, NBD_OPT_GO with NBD_INFO_BLOCK_SIZE, and for
// servers without NBD_OPT_GO, NBD_OPT_LIST and NBD_OPT_EXPORT_NAME; the
// oldstyle handshake too), then the transmission phase with many requests
// in flight on one connection.
//
// Concurrency: a Conn is safe for concurrent use. Requests are sent under
// one lock, each with its own handle; one reader goroutine reads every
// reply and hands it to the request waiting for it, reading a READ's data
// straight into the caller's buffer. At most MaxInFlight requests are in
// flight; more wait.
//
// A hostile or broken server cannot make the client allocate more than
// the request asked for: every length read from the wire is checked
// before anything is allocated for it (option replies and error messages
// are read as they arrive, never allocated from a length up front), and
// a protocol violation ends the connection with an error instead of a
// panic. Once the connection has failed, every request fails with EIO.
package client

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"strings"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/nbd"
)

// Error is a handshake or connection error with QEMU's message and, when
// QEMU gives one, its hint (printed on the lines after the message).
type Error struct {
	Msg  string
	Hint string
	Err  error // the underlying error, if any (a syscall.Errno for connects)
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

func errf(err error, format string, a ...any) *Error {
	return &Error{Msg: fmt.Sprintf(format, a...), Err: err}
}

// Options say what to negotiate.
type Options struct {
	// Export is the export's name ("" for the default export).
	Export string
	// TLS, when set, makes the client negotiate NBD_OPT_STARTTLS and run
	// TLS over the connection with this configuration.
	TLS *tls.Config
	// MetaContext is the one context to set ("" for base:allocation): a
	// "qemu:dirty-bitmap:NAME" or "qemu:allocation-depth" (QEMU's
	// x-dirty-bitmap option).
	MetaContext string
	// NoStructuredReply, NoMetaContext and NoBlockSize turn off what QEMU
	// always asks for (for tests of older behaviour).
	NoStructuredReply, NoMetaContext, NoBlockSize bool
	// AddressName is the server's address as messages name it (QEMU's
	// "host:port", without brackets); "" for Dial's address.
	AddressName string
}

// Info is what the handshake learnt about the export (QEMU's
// NBDExportInfo).
type Info struct {
	Size                         uint64
	Flags                        uint16 // transmission flags
	MinBlock, OptBlock, MaxBlock uint32 // 0 when the server sent no INFO_BLOCK_SIZE
	StructuredReply              bool
	// BaseAllocation: the meta context (base:allocation or the
	// MetaContext asked for) was negotiated, with id ContextID.
	BaseAllocation bool
	ContextID      uint32
	// Context is the name of the negotiated context.
	Context string
}

// negotiator runs the handshake on one stream.
type negotiator struct {
	rw  io.ReadWriter
	raw net.Conn
}

// readErr is qio_channel_read_all's error, prefixed as nbd_read does.
func readErr(desc string, err error) *Error {
	msg := "Unexpected end-of-file before all data were read"
	var en syscall.Errno
	if errors.As(err, &en) {
		msg = "Unable to read from socket: " + image.Strerror(en)
	} else if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		msg = "Unable to read from socket: " + err.Error()
	}
	if desc == "" {
		return &Error{Msg: msg, Err: syscall.EIO}
	}
	return &Error{Msg: "Failed to read " + desc + ": " + msg, Err: syscall.EIO}
}

func (g *negotiator) read(b []byte, desc string) error {
	if _, err := io.ReadFull(g.rw, b); err != nil {
		return readErr(desc, err)
	}
	return nil
}

func (g *negotiator) read16(desc string) (uint16, error) {
	var b [2]byte
	err := g.read(b[:], desc)
	return binary.BigEndian.Uint16(b[:]), err
}

func (g *negotiator) read32(desc string) (uint32, error) {
	var b [4]byte
	err := g.read(b[:], desc)
	return binary.BigEndian.Uint32(b[:]), err
}

func (g *negotiator) read64(desc string) (uint64, error) {
	var b [8]byte
	err := g.read(b[:], desc)
	return binary.BigEndian.Uint64(b[:]), err
}

// readString reads n bytes the server announced, growing the buffer only
// as bytes arrive.
func (g *negotiator) readString(n uint32, desc string) (string, error) {
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, g.rw, int64(n)); err != nil {
		return "", readErr(desc, err)
	}
	return buf.String(), nil
}

func (g *negotiator) drop(n uint32) error {
	if _, err := io.CopyN(io.Discard, g.rw, int64(n)); err != nil {
		return readErr("", err)
	}
	return nil
}

func writeErr(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		return "Unable to write to socket: " + image.Strerror(en)
	}
	return "Unable to write to socket: " + err.Error()
}

// sendOption is nbd_send_option_request.
func (g *negotiator) sendOption(opt uint32, data []byte) error {
	b := make([]byte, 16+len(data))
	binary.BigEndian.PutUint64(b, nbd.OptMagic)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], uint32(len(data)))
	copy(b[16:], data)
	if _, err := g.rw.Write(b); err != nil {
		return &Error{Msg: "Failed to send option request header: " + writeErr(err), Err: syscall.EIO}
	}
	return nil
}

// abort is nbd_send_opt_abort: no reply is awaited.
func (g *negotiator) abort() { _ = g.sendOption(nbd.OptAbort, nil) }

type optReply struct {
	option, typ, length uint32
}

// receiveReply is nbd_receive_option_reply.
func (g *negotiator) receiveReply(opt uint32) (optReply, error) {
	var b [20]byte
	if err := g.read(b[:], "option reply"); err != nil {
		g.abort()
		return optReply{}, err
	}
	r := optReply{binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:]), binary.BigEndian.Uint32(b[16:])}
	if binary.BigEndian.Uint64(b[:]) != nbd.RepMagic {
		g.abort()
		return r, errf(syscall.EINVAL, "Unexpected option reply magic")
	}
	if r.option != opt {
		g.abort()
		return r, errf(syscall.EINVAL, "Unexpected option type %d (%s), expected %d (%s)", r.option, nbd.OptName(r.option), opt, nbd.OptName(opt))
	}
	return r, nil
}

// handleReplyErr is nbd_handle_reply_err: 1 for a reply that is no
// error, 0 for an error to ignore (unsupported, or any when not strict).
func (g *negotiator) handleReplyErr(r optReply, strict bool) (int, error) {
	if r.typ&nbd.RepFlagError == 0 {
		return 1, nil
	}
	msg := ""
	if r.length > 0 {
		if r.length > nbd.MaxBufferSize {
			g.abort()
			return -1, errf(syscall.EINVAL, "server error %d (%s) message is too long", r.typ, nbd.RepName(r.typ))
		}
		s, err := g.readString(r.length, "")
		if err != nil {
			g.abort()
			e := err.(*Error)
			e.Msg = fmt.Sprintf("Failed to read option error %d (%s) message: ", r.typ, nbd.RepName(r.typ)) + e.Msg
			return -1, e
		}
		msg = s
	}
	if r.typ == nbd.RepErrUnsup || !strict {
		return 0, nil
	}
	o := fmt.Sprintf("%d (%s)", r.option, nbd.OptName(r.option))
	var e *Error
	switch r.typ {
	case nbd.RepErrPolicy:
		e = errf(syscall.EINVAL, "Denied by server for option %s", o)
	case nbd.RepErrInvalid:
		e = errf(syscall.EINVAL, "Invalid parameters for option %s", o)
	case nbd.RepErrPlatform:
		e = errf(syscall.EINVAL, "Server lacks support for option %s", o)
	case nbd.RepErrTLSReqd:
		e = errf(syscall.EINVAL, "TLS negotiation required before option %s", o)
		e.Hint = "Did you forget a valid tls-creds?\n"
	case nbd.RepErrUnknown:
		e = errf(syscall.EINVAL, "Requested export not available")
	case nbd.RepErrShutdown:
		e = errf(syscall.EINVAL, "Server shutting down before option %s", o)
	case nbd.RepErrBlockSizeReqd:
		e = errf(syscall.EINVAL, "Server requires INFO_BLOCK_SIZE for option %s", o)
	default:
		e = errf(syscall.EINVAL, "Unknown error code when asking for option %s", o)
	}
	if r.length > 0 {
		e.Hint += "server reported: " + msg + "\n"
	}
	g.abort()
	return -1, e
}

// simpleOption is nbd_request_simple_option.
func (g *negotiator) simpleOption(opt uint32, strict bool) (int, error) {
	if err := g.sendOption(opt, nil); err != nil {
		return -1, err
	}
	r, err := g.receiveReply(opt)
	if err != nil {
		return -1, err
	}
	if res, err := g.handleReplyErr(r, strict); res <= 0 {
		return res, err
	}
	if r.typ != nbd.RepAck {
		g.abort()
		return -1, errf(syscall.EINVAL, "Server answered option %d (%s) with unexpected reply %d (%s)", opt, nbd.OptName(opt), r.typ, nbd.RepName(r.typ))
	}
	if r.length != 0 {
		g.abort()
		return -1, errf(syscall.EINVAL, "Option %d ('%s') response length is %d (it should be zero)", opt, nbd.OptName(opt), r.length)
	}
	return 1, nil
}

// startTLS is nbd_receive_starttls.
func (g *negotiator) startTLS(cfg *tls.Config) error {
	res, err := g.simpleOption(nbd.OptStartTLS, true)
	if res <= 0 {
		if res == 0 {
			g.abort()
			return errf(syscall.EINVAL, "Server don't support STARTTLS option")
		}
		return err
	}
	if g.raw == nil {
		return errf(syscall.EINVAL, "Output I/O channel required for TLS")
	}
	tc := tls.Client(g.raw, cfg)
	if err := tc.Handshake(); err != nil {
		return &Error{Msg: tlsMessage(err), Err: syscall.EIO}
	}
	g.rw = tc
	return nil
}

// tlsMessage words a TLS handshake failure as QEMU's GnuTLS client does
// where it can.
func tlsMessage(err error) string {
	if errors.Is(err, errNoHostname) {
		return errNoHostname.Error()
	}
	var r nbd.TLSReason
	if errors.As(err, &r) {
		return string(r)
	}
	var he x509.HostnameError
	if errors.As(err, &he) {
		return "Certificate does not match the hostname " + he.Host
	}
	var ce *tls.CertificateVerificationError
	if errors.As(err, &ce) {
		return "The certificate hasn't got a known issuer"
	}
	if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "EOF") {
		return "The TLS connection was non-properly terminated."
	}
	return "TLS handshake failed: " + err.Error()
}

// metaQuery is nbd_send_meta_query.
func (g *negotiator) metaQuery(opt uint32, export, query string, hasQuery bool) error {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(len(export)))
	b = append(b, export...)
	if hasQuery {
		b = binary.BigEndian.AppendUint32(b, 1)
		b = binary.BigEndian.AppendUint32(b, uint32(len(query)))
		b = append(b, query...)
	} else {
		b = binary.BigEndian.AppendUint32(b, 0)
	}
	return g.sendOption(opt, b)
}

// oneMetaContext is nbd_receive_one_meta_context.
func (g *negotiator) oneMetaContext(opt uint32) (int, string, uint32, error) {
	r, err := g.receiveReply(opt)
	if err != nil {
		return -1, "", 0, err
	}
	if res, err := g.handleReplyErr(r, false); res <= 0 {
		return res, "", 0, err
	}
	if r.typ == nbd.RepAck {
		if r.length != 0 {
			g.abort()
			return -1, "", 0, errf(syscall.EINVAL, "Unexpected length to ACK response")
		}
		return 0, "", 0, nil
	}
	if r.typ != nbd.RepMetaContext {
		g.abort()
		return -1, "", 0, errf(syscall.EINVAL, "Unexpected reply type %d (%s), expected %d (%s)", r.typ, nbd.RepName(r.typ), nbd.RepMetaContext, nbd.RepName(nbd.RepMetaContext))
	}
	if r.length <= 4 || r.length > nbd.MaxBufferSize {
		g.abort()
		return -1, "", 0, errf(syscall.EINVAL, "Failed to negotiate meta context, server answered with unexpected length %d", r.length)
	}
	id, err := g.read32("context id")
	if err != nil {
		return -1, "", 0, err
	}
	name, err := g.readString(r.length-4, "context name")
	if err != nil {
		return -1, "", 0, err
	}
	return 1, name, id, nil
}

// setMetaContext is nbd_negotiate_simple_meta_context.
func (g *negotiator) setMetaContext(info *Info, export, context string) (bool, error) {
	if err := g.metaQuery(nbd.OptSetMetaContext, export, context, true); err != nil {
		return false, err
	}
	res, name, id, err := g.oneMetaContext(nbd.OptSetMetaContext)
	if res < 0 {
		return false, err
	}
	received := false
	if res == 1 {
		if name != context {
			g.abort()
			return false, errf(syscall.EINVAL, "Failed to negotiate meta context '%s', server answered with different context '%s'", context, name)
		}
		info.ContextID, info.Context = id, name
		received = true
		res, _, _, err = g.oneMetaContext(nbd.OptSetMetaContext)
		if res < 0 {
			return false, err
		}
	}
	if res != 0 {
		g.abort()
		return false, errf(syscall.EINVAL, "Server answered with more than one context")
	}
	return received, nil
}

func isPow2(v uint32) bool { return v != 0 && bits.OnesCount32(v) == 1 }

// infoOrGo is nbd_opt_info_or_go: 1 when the server took the option, 0
// when it does not know it.
func (g *negotiator) infoOrGo(opt uint32, info *Info, export string, blockSize bool) (int, error) {
	info.Flags = 0
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(len(export)))
	b = append(b, export...)
	if blockSize {
		b = binary.BigEndian.AppendUint16(b, 1)
		b = binary.BigEndian.AppendUint16(b, nbd.InfoBlockSize)
	} else {
		b = binary.BigEndian.AppendUint16(b, 0)
	}
	if err := g.sendOption(opt, b); err != nil {
		return -1, err
	}
	fail := func(format string, a ...any) (int, error) {
		g.abort()
		return -1, errf(syscall.EINVAL, format, a...)
	}
	for {
		r, err := g.receiveReply(opt)
		if err != nil {
			return -1, err
		}
		if res, err := g.handleReplyErr(r, true); res <= 0 {
			return res, err
		}
		if r.typ == nbd.RepAck {
			if r.length != 0 {
				return -1, errf(syscall.EINVAL, "server sent invalid NBD_REP_ACK")
			}
			if info.Flags == 0 {
				return -1, errf(syscall.EINVAL, "broken server omitted NBD_INFO_EXPORT")
			}
			return 1, nil
		}
		if r.typ != nbd.RepInfo {
			return fail("unexpected reply type %d (%s), expected %d (%s)", r.typ, nbd.RepName(r.typ), nbd.RepInfo, nbd.RepName(nbd.RepInfo))
		}
		if r.length < 2 {
			return fail("NBD_REP_INFO length %d is too short", r.length)
		}
		typ, err := g.read16("info type")
		if err != nil {
			g.abort()
			return -1, err
		}
		n := r.length - 2
		switch typ {
		case nbd.InfoExport:
			if n != 10 {
				return fail("remaining export info len %d is unexpected size", n)
			}
			if info.Size, err = g.read64("info size"); err != nil {
				g.abort()
				return -1, err
			}
			if info.Flags, err = g.read16("info flags"); err != nil {
				g.abort()
				return -1, err
			}
			if info.MinBlock != 0 && info.Size%uint64(info.MinBlock) != 0 {
				return fail("export size %d is not multiple of minimum block size %d", info.Size, info.MinBlock)
			}
		case nbd.InfoBlockSize:
			if n != 12 {
				return fail("remaining export info len %d is unexpected size", n)
			}
			if info.MinBlock, err = g.read32("info minimum block size"); err != nil {
				g.abort()
				return -1, err
			}
			if !isPow2(info.MinBlock) {
				return fail("server minimum block size %d is not a power of two", info.MinBlock)
			}
			if info.OptBlock, err = g.read32("info preferred block size"); err != nil {
				g.abort()
				return -1, err
			}
			if !isPow2(info.OptBlock) || info.OptBlock < info.MinBlock {
				return fail("server preferred block size %d is not valid", info.OptBlock)
			}
			if info.MaxBlock, err = g.read32("info maximum block size"); err != nil {
				g.abort()
				return -1, err
			}
			if info.MaxBlock < info.MinBlock {
				return fail("server maximum block size %d is not valid", info.MaxBlock)
			}
		default:
			if err := g.drop(n); err != nil {
				g.abort()
				e := err.(*Error)
				e.Msg = "Failed to read info payload: " + e.Msg
				return -1, e
			}
		}
	}
}

// queryExports is nbd_receive_query_exports.
func (g *negotiator) queryExports(want string) error {
	if err := g.sendOption(nbd.OptList, nil); err != nil {
		return err
	}
	empty, found := true, false
	for {
		name, res, err := g.receiveList()
		if res < 0 {
			return err
		}
		if res == 0 {
			if !empty && !found {
				g.abort()
				return errf(syscall.EINVAL, "No export with name '%s' available", want)
			}
			return nil
		}
		empty = false
		found = found || name == want
	}
}

// receiveList is nbd_receive_list.
func (g *negotiator) receiveList() (string, int, error) {
	r, err := g.receiveReply(nbd.OptList)
	if err != nil {
		return "", -1, err
	}
	if res, err := g.handleReplyErr(r, true); res <= 0 {
		return "", res, err
	}
	fail := func(format string, a ...any) (string, int, error) {
		g.abort()
		return "", -1, errf(syscall.EINVAL, format, a...)
	}
	if r.typ == nbd.RepAck {
		if r.length != 0 {
			return fail("length too long for option end")
		}
		return "", 0, nil
	}
	if r.typ != nbd.RepServer {
		return fail("Unexpected reply type %d (%s), expected %d (%s)", r.typ, nbd.RepName(r.typ), nbd.RepServer, nbd.RepName(nbd.RepServer))
	}
	if r.length < 4 || r.length > nbd.MaxBufferSize {
		return fail("incorrect option length %d", r.length)
	}
	nl, err := g.read32("option name length")
	if err != nil {
		g.abort()
		return "", -1, err
	}
	rest := r.length - 4
	if rest < nl || nl > nbd.MaxStringSize {
		return fail("incorrect name length in server's list response")
	}
	name, err := g.readString(nl, "export name")
	if err != nil {
		g.abort()
		return "", -1, err
	}
	rest -= nl
	if rest > 0 {
		if rest > nbd.MaxStringSize {
			return fail("incorrect description length in server's list response")
		}
		if _, err := g.readString(rest, "export description"); err != nil {
			g.abort()
			return "", -1, err
		}
	}
	return name, 1, nil
}

// negotiate is nbd_receive_negotiate with request_sizes, structured_reply
// and base_allocation asked for, as QEMU's block driver asks.
func (g *negotiator) negotiate(o Options) (Info, error) {
	var info Info
	if len(o.Export) > nbd.MaxStringSize {
		return info, errf(syscall.EINVAL, "export name too long to send to server")
	}
	magic, err := g.read64("initial magic")
	if err != nil {
		return info, err
	}
	if magic != nbd.Magic {
		return info, errf(syscall.EINVAL, "Bad initial magic received: 0x%x", magic)
	}
	if magic, err = g.read64("server magic"); err != nil {
		return info, err
	}
	zeroes := true
	switch magic {
	case nbd.OptMagic:
		gflags, err := g.read16("server flags")
		if err != nil {
			return info, err
		}
		var cflags uint32
		fixed := gflags&nbd.FlagFixedNewstyle != 0
		if fixed {
			cflags |= nbd.FlagCFixedNewstyle
		}
		if gflags&nbd.FlagNoZeroes != 0 {
			zeroes = false
			cflags |= nbd.FlagCNoZeroes
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], cflags)
		if _, err := g.rw.Write(b[:]); err != nil {
			return info, &Error{Msg: "Failed to send clientflags field: " + writeErr(err), Err: syscall.EIO}
		}
		if o.TLS != nil {
			if !fixed {
				return info, errf(syscall.EINVAL, "Server does not support STARTTLS")
			}
			if err := g.startTLS(o.TLS); err != nil {
				return info, err
			}
		}
		if !fixed {
			if err := g.exportName(&info, o.Export); err != nil {
				return info, err
			}
			break
		}
		if !o.NoStructuredReply {
			res, err := g.simpleOption(nbd.OptStructuredReply, false)
			if res < 0 {
				return info, err
			}
			info.StructuredReply = res == 1
		}
		if info.StructuredReply && !o.NoMetaContext {
			ctx := o.MetaContext
			if ctx == "" {
				ctx = nbd.ContextBaseAllocation
			}
			if info.BaseAllocation, err = g.setMetaContext(&info, o.Export, ctx); err != nil {
				return info, err
			}
		}
		res, err := g.infoOrGo(nbd.OptGo, &info, o.Export, !o.NoBlockSize)
		if res < 0 {
			return info, err
		}
		if res > 0 {
			return info, nil
		}
		if err := g.queryExports(o.Export); err != nil {
			return info, err
		}
		if err := g.exportName(&info, o.Export); err != nil {
			return info, err
		}
	case nbd.OldMagic:
		if o.TLS != nil {
			return info, errf(syscall.EINVAL, "Server does not support STARTTLS")
		}
		if o.Export != "" {
			return info, errf(syscall.EINVAL, "Server does not support non-empty export names")
		}
		if info.Size, err = g.read64("export length"); err != nil {
			return info, err
		}
		f, err := g.read32("export flags")
		if err != nil {
			return info, err
		}
		if f&^0xffff != 0 {
			return info, errf(syscall.EINVAL, "Unexpected export flags %0xx", f)
		}
		info.Flags = uint16(f)
	default:
		return info, errf(syscall.EINVAL, "Bad server magic received: 0x%x", magic)
	}
	if zeroes {
		if err := g.drop(124); err != nil {
			e := err.(*Error)
			e.Msg = "Failed to read reserved block: " + e.Msg
			return info, e
		}
	}
	return info, nil
}

// exportName sends NBD_OPT_EXPORT_NAME and reads its answer (size and
// flags; the caller drops the zeroes).
func (g *negotiator) exportName(info *Info, export string) error {
	if err := g.sendOption(nbd.OptExportName, []byte(export)); err != nil {
		return err
	}
	var err error
	if info.Size, err = g.read64("export length"); err != nil {
		return err
	}
	info.Flags, err = g.read16("export flags")
	// a server without NBD_OPT_GO set no meta context and no structured
	// replies that can be trusted on this path: QEMU keeps what it
	// negotiated
	return err
}
