package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/nbd"
)

// MaxInFlight is how many requests one connection has in flight at most
// (QEMU's MAX_NBD_REQUESTS).
const MaxInFlight = 16

// maxPayload bounds the payload of a structured chunk that is not READ
// data (QEMU's NBD_MAX_MALLOC_PAYLOAD).
const maxPayload = 1000

// Conn is a connection in the transmission phase.
type Conn struct {
	c    net.Conn
	rw   io.ReadWriter // c, or TLS over it
	info Info

	wmu  sync.Mutex // one request on the wire at a time
	sem  chan struct{}
	mu   sync.Mutex // guards the fields below
	reqs map[uint64]*request
	next uint64
	err  error // the connection's failure, once it failed
	shut bool  // Close was called

	done chan struct{} // closed when the reader has ended
}

type request struct {
	typ    uint16
	off    uint64
	buf    []byte // READ: where the data goes
	length uint32
	// results, set by the reader before done is closed
	errno  syscall.Errno // the server's error for this request
	err    error         // a channel or protocol error for this request
	extent Extent
	got    bool // a BLOCK_STATUS chunk arrived
	done   chan struct{}
}

// Extent is one block status extent of the negotiated context.
type Extent struct {
	Length uint32
	Flags  uint32
}

// Dial connects to network ("unix" or "tcp") address and negotiates. The
// errors are QEMU's: "Failed to connect to 'ADDR': strerror" for a
// connect that fails, the handshake's messages after.
func Dial(ctx context.Context, network, address string, o Options) (*Conn, error) {
	name := o.AddressName
	if name == "" {
		name = address
	}
	c, err := dial(ctx, network, address, name)
	if err != nil {
		return nil, err
	}
	conn, err := Negotiate(c, o)
	if err != nil {
		c.Close()
		return nil, err
	}
	return conn, nil
}

func dial(ctx context.Context, network, address, name string) (net.Conn, error) {
	var d net.Dialer
	if network == "unix" && len(address) > 108 {
		return nil, &Error{Msg: fmt.Sprintf("UNIX socket path '%s' is too long", address),
			Hint: "Path must be less than 108 bytes\n", Err: syscall.EINVAL}
	}
	host, port, _ := net.SplitHostPort(address)
	if network == "tcp" && host == "" {
		// getaddrinfo of no host and no AI_PASSIVE
		return nil, &Error{Msg: fmt.Sprintf("address resolution failed for %s:%s: Name or service not known", host, port), Err: syscall.EINVAL}
	}
	c, err := d.DialContext(ctx, network, address)
	if err == nil {
		return c, nil
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		msg := "Name or service not known"
		if dnsErr.IsTemporary {
			msg = "Temporary failure in name resolution"
		}
		return nil, &Error{Msg: fmt.Sprintf("address resolution failed for %s:%s: %s", host, port, msg), Err: syscall.EINVAL}
	}
	var en syscall.Errno
	if !errors.As(err, &en) {
		en = syscall.EIO
	}
	return nil, &Error{Msg: fmt.Sprintf("Failed to connect to '%s': %s", name, image.Strerror(en)), Err: en}
}

// Negotiate runs the handshake on c and returns the connection in the
// transmission phase; on failure the caller closes c.
func Negotiate(c net.Conn, o Options) (*Conn, error) {
	g := &negotiator{rw: c, raw: c}
	info, err := g.negotiate(o)
	if err != nil {
		return nil, err
	}
	conn := &Conn{c: c, rw: g.rw, info: info, sem: make(chan struct{}, MaxInFlight),
		reqs: map[uint64]*request{}, next: 1, done: make(chan struct{})}
	go conn.reader()
	return conn, nil
}

// Info returns what the handshake learnt.
func (c *Conn) Info() Info { return c.info }

// Err is the connection's failure, or nil while it works.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// fail marks the connection failed (nbd_channel_error): every request in
// flight fails with EIO, except the one whose reply broke the protocol,
// which gets its own error. Only the reader calls it.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	reqs := c.reqs
	c.reqs = map[uint64]*request{}
	c.mu.Unlock()
	c.c.Close()
	for _, r := range reqs {
		if r.err == nil {
			r.err = &Error{Msg: "Connection closed", Err: syscall.EIO}
		}
		close(r.done)
	}
}

// reader reads replies until the connection ends.
func (c *Conn) reader() {
	defer close(c.done)
	for {
		if err := c.readReply(); err != nil {
			c.fail(err)
			return
		}
	}
}

// protoErr is a protocol violation: the connection cannot go on.
func protoErr(format string, a ...any) error {
	return &Error{Msg: fmt.Sprintf(format, a...), Err: syscall.EINVAL}
}

func (c *Conn) lookup(handle uint64) *request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reqs[handle]
}

// complete hands r its reply. Only the reader completes or fails
// requests, so a caller's buffer is never written after its request
// returned.
func (c *Conn) complete(handle uint64, r *request) {
	c.mu.Lock()
	delete(c.reqs, handle)
	c.mu.Unlock()
	close(r.done)
}

// readReply reads one simple reply or one structured chunk.
func (c *Conn) readReply() error {
	var h [nbd.ChunkHeaderSize]byte
	if _, err := io.ReadFull(c.rw, h[:4]); err != nil {
		return &Error{Msg: "Connection closed", Err: syscall.EIO}
	}
	magic := binary.BigEndian.Uint32(h[:])
	switch magic {
	case nbd.SimpleReplyMagic:
		if _, err := io.ReadFull(c.rw, h[4:nbd.SimpleReplySize]); err != nil {
			return &Error{Msg: "Connection closed", Err: syscall.EIO}
		}
		errno := binary.BigEndian.Uint32(h[4:])
		handle := binary.BigEndian.Uint64(h[8:])
		r := c.lookup(handle)
		if r == nil {
			return protoErr("Protocol error: reply for unknown handle %d", handle)
		}
		if r.typ == nbd.CmdRead && c.info.StructuredReply {
			r.err = protoErr("Protocol error: simple reply when structured reply chunk was expected")
			return r.err
		}
		if r.typ == nbd.CmdBlockStatus {
			r.err = protoErr("Protocol error: simple reply when structured reply chunk was expected")
			return r.err
		}
		r.errno = nbd.WireToErrno(errno)
		if r.errno == 0 && r.typ == nbd.CmdRead {
			if _, err := io.ReadFull(c.rw, r.buf); err != nil {
				r.err = &Error{Msg: "Connection closed", Err: syscall.EIO}
				return r.err
			}
		}
		c.complete(handle, r)
		return nil
	case nbd.StructuredReplyMagic:
		if !c.info.StructuredReply {
			return protoErr("Protocol error: structured reply without negotiation")
		}
		if _, err := io.ReadFull(c.rw, h[4:nbd.ChunkHeaderSize]); err != nil {
			return &Error{Msg: "Connection closed", Err: syscall.EIO}
		}
		ch := nbd.Chunk{Flags: binary.BigEndian.Uint16(h[4:]), Type: binary.BigEndian.Uint16(h[6:]),
			Handle: binary.BigEndian.Uint64(h[8:]), Length: binary.BigEndian.Uint32(h[16:])}
		r := c.lookup(ch.Handle)
		if r == nil {
			return protoErr("Protocol error: reply for unknown handle %d", ch.Handle)
		}
		if err := c.readChunk(r, ch); err != nil {
			if r.err == nil {
				r.err = err
			}
			return err
		}
		if ch.Flags&nbd.ReplyFlagDone != 0 {
			if r.typ == nbd.CmdBlockStatus && !r.got && r.errno == 0 && r.err == nil {
				// not a channel error: the connection goes on
				r.err = &Error{Msg: "Server did not reply with any status extents", Err: syscall.EIO}
			}
			c.complete(ch.Handle, r)
		}
		return nil
	default:
		return protoErr("invalid magic (got 0x%x)", magic)
	}
}

// readChunk reads a structured chunk's payload for r
// (nbd_co_do_receive_one_chunk and the per-command loops).
func (c *Conn) readChunk(r *request, ch nbd.Chunk) error {
	if ch.Type == nbd.ReplyTypeNone {
		if ch.Flags&nbd.ReplyFlagDone == 0 {
			return protoErr("Protocol error: NBD_REPLY_TYPE_NONE chunk without NBD_REPLY_FLAG_DONE flag set")
		}
		if ch.Length != 0 {
			return protoErr("Protocol error: NBD_REPLY_TYPE_NONE chunk with nonzero length")
		}
		return nil
	}
	if ch.Type == nbd.ReplyTypeOffsetData {
		if r.typ != nbd.CmdRead {
			return protoErr("Unexpected NBD_REPLY_TYPE_OFFSET_DATA chunk")
		}
		if ch.Length <= 8 {
			return protoErr("Protocol error: invalid payload for NBD_REPLY_TYPE_OFFSET_DATA")
		}
		var b [8]byte
		if _, err := io.ReadFull(c.rw, b[:]); err != nil {
			return &Error{Msg: "Failed to read OFFSET_DATA offset", Err: syscall.EIO}
		}
		off := binary.BigEndian.Uint64(b[:])
		n := uint64(ch.Length - 8)
		size := uint64(len(r.buf))
		if off < r.off || n > size || off-r.off > size-n {
			return protoErr("Protocol error: server sent chunk exceeding requested region")
		}
		if _, err := io.ReadFull(c.rw, r.buf[off-r.off:off-r.off+n]); err != nil {
			return &Error{Msg: "Connection closed", Err: syscall.EIO}
		}
		return nil
	}
	isErr := ch.Type&(1<<15) != 0
	if ch.Length > maxPayload {
		return protoErr("Payload too large")
	}
	p := make([]byte, ch.Length)
	if _, err := io.ReadFull(c.rw, p); err != nil {
		return &Error{Msg: "Failed to read structured payload", Err: syscall.EIO}
	}
	if isErr {
		if len(p) < 6 {
			return protoErr("Protocol error: invalid payload for structured error")
		}
		e := nbd.WireToErrno(binary.BigEndian.Uint32(p))
		if e == 0 {
			return protoErr("Protocol error: server sent structured error chunk with error = 0")
		}
		if r.errno == 0 {
			r.errno = e
		}
		if int(binary.BigEndian.Uint16(p[4:])) > len(p)-6 {
			return protoErr("Protocol error: server sent structured error chunk with incorrect message size")
		}
		return nil
	}
	switch {
	case ch.Type == nbd.ReplyTypeOffsetHole && r.typ == nbd.CmdRead:
		if len(p) != 12 {
			return protoErr("Protocol error: invalid payload for NBD_REPLY_TYPE_OFFSET_HOLE")
		}
		off := binary.BigEndian.Uint64(p)
		n := uint64(binary.BigEndian.Uint32(p[8:]))
		size := uint64(len(r.buf))
		if n == 0 || off < r.off || n > size || off-r.off > size-n {
			return protoErr("Protocol error: server sent chunk exceeding requested region")
		}
		clear(r.buf[off-r.off : off-r.off+n])
		return nil
	case ch.Type == nbd.ReplyTypeBlockStatus && r.typ == nbd.CmdBlockStatus:
		if r.got {
			return protoErr("Several BLOCK_STATUS chunks in reply")
		}
		r.got = true
		return c.parseBlockStatus(r, p)
	}
	cmd := "CMD_READ"
	if r.typ == nbd.CmdBlockStatus {
		cmd = "CMD_BLOCK_STATUS"
	} else if r.typ != nbd.CmdRead {
		// nbd_co_receive_return_code ignores the chunks of other commands
		return nil
	}
	return protoErr("Unexpected reply type: %d (%s) for %s", ch.Type, nbd.ReplyTypeName(ch.Type), cmd)
}

// parseBlockStatus is nbd_parse_blockstatus_payload.
func (c *Conn) parseBlockStatus(r *request, p []byte) error {
	if len(p) < 12 {
		return protoErr("Protocol error: invalid payload for NBD_REPLY_TYPE_BLOCK_STATUS")
	}
	id := binary.BigEndian.Uint32(p)
	if id != c.info.ContextID {
		return protoErr("Protocol error: unexpected context id %d for NBD_REPLY_TYPE_BLOCK_STATUS, when negotiated context id is %d", int32(id), int32(c.info.ContextID))
	}
	e := Extent{Length: binary.BigEndian.Uint32(p[4:]), Flags: binary.BigEndian.Uint32(p[8:])}
	if e.Length == 0 {
		return protoErr("Protocol error: server sent status chunk with zero length")
	}
	if m := c.info.MinBlock; m != 0 && e.Length%m != 0 {
		if e.Length > m {
			e.Length -= e.Length % m
		} else {
			e.Length, e.Flags = m, 0
		}
	}
	if e.Length > r.length {
		e.Length = r.length
	}
	r.extent = e
	return nil
}

// do sends one request and waits for its reply.
func (c *Conn) do(typ, flags uint16, off uint64, length uint32, data, buf []byte) (*request, error) {
	c.sem <- struct{}{}
	defer func() { <-c.sem }()
	r := &request{typ: typ, off: off, buf: buf, length: length, done: make(chan struct{})}
	c.mu.Lock()
	if c.err != nil || c.shut {
		c.mu.Unlock()
		return nil, &Error{Msg: "Connection closed", Err: syscall.EIO}
	}
	h := c.next
	c.next++
	c.reqs[h] = r
	c.mu.Unlock()
	var hdr [nbd.RequestSize]byte
	nbd.Request{Flags: flags, Type: typ, Handle: h, Offset: off, Length: length}.Encode(hdr[:])
	c.wmu.Lock()
	var err error
	if len(data) > 0 {
		if _, ok := c.rw.(net.Conn); ok {
			bufs := net.Buffers{hdr[:], data}
			_, err = bufs.WriteTo(c.rw)
		} else {
			_, err = c.rw.Write(append(hdr[:], data...))
		}
	} else {
		_, err = c.rw.Write(hdr[:])
	}
	c.wmu.Unlock()
	if err != nil {
		// the reader sees the closed socket and fails every request
		c.c.Close()
	}
	<-r.done
	if r.err != nil {
		return r, r.err
	}
	if r.errno != 0 {
		return r, r.errno
	}
	return r, nil
}

// Read reads len(p) bytes at off (NBD_CMD_READ; structured replies with
// data and hole chunks when negotiated). A server's error comes back as
// its syscall.Errno.
func (c *Conn) Read(p []byte, off uint64) error {
	if len(p) == 0 {
		return nil
	}
	_, err := c.do(nbd.CmdRead, 0, off, uint32(len(p)), nil, p)
	return err
}

// Write writes p at off with the command flags (FUA).
func (c *Conn) Write(p []byte, off uint64, flags uint16) error {
	_, err := c.do(nbd.CmdWrite, flags, off, uint32(len(p)), p, nil)
	return err
}

// WriteZeroes is NBD_CMD_WRITE_ZEROES with the flags (FUA, NO_HOLE,
// FAST_ZERO).
func (c *Conn) WriteZeroes(off uint64, n uint32, flags uint16) error {
	_, err := c.do(nbd.CmdWriteZeroes, flags, off, n, nil, nil)
	return err
}

// Trim is NBD_CMD_TRIM.
func (c *Conn) Trim(off uint64, n uint32) error {
	_, err := c.do(nbd.CmdTrim, 0, off, n, nil, nil)
	return err
}

// Flush is NBD_CMD_FLUSH.
func (c *Conn) Flush() error {
	_, err := c.do(nbd.CmdFlush, 0, 0, 0, nil, nil)
	return err
}

// Cache is NBD_CMD_CACHE.
func (c *Conn) Cache(off uint64, n uint32) error {
	_, err := c.do(nbd.CmdCache, 0, off, n, nil, nil)
	return err
}

// BlockStatus asks for the status of the negotiated context at off, at
// most n bytes, with NBD_CMD_FLAG_REQ_ONE: one extent, clamped to n.
func (c *Conn) BlockStatus(off uint64, n uint32) (Extent, error) {
	r, err := c.do(nbd.CmdBlockStatus, nbd.CmdFlagReqOne, off, n, nil, nil)
	if err != nil {
		return Extent{}, err
	}
	return r.extent, nil
}

// Close sends NBD_CMD_DISC (when the connection still works), closes it
// and waits for the reader to end. Requests in flight fail.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.shut {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.shut = true
	ok := c.err == nil
	c.mu.Unlock()
	if ok {
		var hdr [nbd.RequestSize]byte
		nbd.Request{Type: nbd.CmdDisc, Handle: 0}.Encode(hdr[:])
		c.wmu.Lock()
		_ = c.c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.rw.Write(hdr[:])
		c.wmu.Unlock()
	}
	c.c.Close()
	<-c.done
	return nil
}

// Handshake runs the handshake alone on c and returns what it learnt,
// leaving c at the start of the transmission phase for another user of
// the socket (qemu-nbd -c hands it to the kernel's NBD client).
func Handshake(c net.Conn, o Options) (Info, error) {
	g := &negotiator{rw: c, raw: c}
	return g.negotiate(o)
}
