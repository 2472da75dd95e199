// Package server is an NBD server exporting block graph nodes, speaking the
// protocol as qemu-nbd 7.2's nbd/server.c does: the fixed newstyle
// handshake with its options in qemu-nbd's order of checks and with its
// error replies and messages, structured replies with sparse reads, the
// base:allocation, qemu:allocation-depth and qemu:dirty-bitmap:NAME meta
// contexts, and the transmission phase's commands.
//
// Concurrency: one goroutine per connection reads requests, one at a time
// (a WRITE's payload is read before the next request, as QEMU does); each
// request is then served in its own goroutine, at most MaxRequests of them
// in flight per connection (QEMU's MAX_NBD_REQUESTS) and their buffers
// bounded by MaxBufferedBytes; replies are written whole, one at a time,
// under the connection's send lock, so chunks of different replies never
// interleave. Connections to one export share its image.Disk, which is safe
// for concurrent use; the server adds no ordering of its own between
// requests, as the protocol promises none.
package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/nbd"
)

// MaxRequests is QEMU's MAX_NBD_REQUESTS: the requests of one connection
// served at once; the next request is read when one completes.
const MaxRequests = 16

// MaxBufferedBytes bounds the READ/WRITE buffers of one connection's
// requests in flight (a request larger than this alone still runs).
const MaxBufferedBytes = 64 << 20

// Bitmap is a dirty bitmap exported as qemu:dirty-bitmap:NAME.
type Bitmap interface {
	Name() string
	// NextDirty finds the first dirty area in [off, end): its start and
	// length (at most maxLen), or ok false when there is none.
	NextDirty(off, end, maxLen int64) (start, length int64, ok bool)
}

// Export is one export: a node of the graph, as nbd_export_create builds it.
type Export struct {
	Name        string
	Description string // "" sends no NBD_INFO_DESCRIPTION
	Disk        *image.Disk
	// RequestAlignment is the export's node's request alignment (QEMU's
	// blk_get_request_alignment): 512 for a probed raw image, else the
	// node's own.
	RequestAlignment uint32
	ReadOnly         bool
	// MultiConn is qemu-nbd's "max connections != 1" (-e 0 or -e N > 1):
	// NBD_FLAG_CAN_MULTI_CONN.
	MultiConn       bool
	AllocationDepth bool
	Bitmaps         []Bitmap

	size  uint64
	flags uint16
}

// Size is the size the export announces: the node's length rounded down to
// whole sectors, as QEMU's.
func (e *Export) Size() uint64 { return e.size }

// Flags are the transmission flags (without NBD_FLAG_SEND_DF, which is
// added for clients with structured replies).
func (e *Export) Flags() uint16 { return e.flags }

// Init computes the export's size and flags; call it once before serving.
func (e *Export) Init() {
	e.size = uint64(e.Disk.Size()) &^ 511
	e.flags = nbd.FlagHasFlags | nbd.FlagSendFlush | nbd.FlagSendFUA | nbd.FlagSendCache
	if e.MultiConn {
		e.flags |= nbd.FlagCanMultiConn
	}
	if e.ReadOnly {
		e.flags |= nbd.FlagReadOnly
	} else {
		e.flags |= nbd.FlagSendTrim | nbd.FlagSendWriteZeroes | nbd.FlagSendFastZero
	}
	if e.RequestAlignment == 0 {
		e.RequestAlignment = 1
	}
}

// unixSendBuffer is the send buffer of a unix socket connection (the
// kernel doubles it, within net.core.wmem_max).
const unixSendBuffer = 2 << 20

// Server serves its exports to clients.
type Server struct {
	Exports []*Export
	// TLS, when set, is required: only NBD_OPT_STARTTLS is accepted
	// before the TLS handshake.
	TLS *tls.Config
	// Report receives the messages qemu-nbd prints with error_report
	// (without the program name); nil drops them.
	Report func(msg string)
	// NoSendfile makes reads of data stored as is in a host file go
	// through a buffer too (by default the kernel copies them from the
	// file to the socket).
	NoSendfile bool
}

func (s *Server) report(format string, a ...any) {
	if s.Report != nil {
		s.Report(fmt.Sprintf(format, a...))
	}
}

func (s *Server) find(name string) *Export {
	for _, e := range s.Exports {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// Serve runs one client on conn until it disconnects and closes conn. It
// reports whether the client reached the transmission phase (qemu-nbd's
// "negotiated", which decides whether a non-persistent server ends).
// Closing conn from elsewhere ends Serve, without a message.
func (s *Server) Serve(conn net.Conn) bool {
	c := &client{srv: s, raw: conn, conn: conn, noSendfile: s.NoSendfile}
	defer func() { c.conn.Close() }()
	if u, ok := conn.(*net.UnixConn); ok {
		// a unix socket's default send buffer (~200 KiB) holds less than
		// one of a copy's read replies: the server would wait for the
		// client at every one (TCP tunes its own buffers)
		u.SetWriteBuffer(unixSendBuffer)
	}
	ret, err := c.negotiate()
	if ret != 0 {
		// a connection closed here (the server is ending: qemu-nbd
		// exits without running that client again) says nothing
		if err != nil && !errors.Is(err, net.ErrClosed) {
			s.report("option negotiation failed: %v", err)
		}
		return false
	}
	c.transmit()
	return true
}

// client is one connection (QEMU's NBDClient).
type client struct {
	srv  *Server
	raw  net.Conn // the socket
	conn net.Conn // raw, or the TLS connection over it

	opt    uint32
	optlen uint32

	structured bool
	exp        *Export
	checkAlign uint32
	meta       metaContexts

	sendMu sync.Mutex
	// noSendfile: data replies through a buffer (Server.NoSendfile)
	noSendfile bool
}

// metaContexts is QEMU's NBDExportMetaContexts.
type metaContexts struct {
	exp             *Export
	count           int
	baseAllocation  bool
	allocationDepth bool
	bitmaps         []bool
}

// Meta context ids, as QEMU numbers them.
const (
	metaIDBaseAllocation  = 0
	metaIDAllocationDepth = 1
	metaIDDirtyBitmap     = 2
)

// errShortRead is the text of qio_channel_read_all at EOF.
var errShortRead = errors.New("Unexpected end-of-file before all data were read")

// readAll is nbd_read: desc names what was read in the error.
func (c *client) readAll(b []byte, desc string) error {
	if _, err := io.ReadFull(c.conn, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errShortRead
		} else {
			err = channelError("read from", err)
		}
		if desc != "" {
			return fmt.Errorf("Failed to read %s: %w", desc, err)
		}
		return err
	}
	return nil
}

// channelError is QIOChannelSocket's message for a failed read or write.
func channelError(op string, err error) error {
	var ne *net.OpError
	if errors.As(err, &ne) {
		err = ne.Err
	}
	return fmt.Errorf("Unable to %s socket: %w", op, err)
}

// write is nbd_write.
func (c *client) write(bufs ...[]byte) error {
	nb := net.Buffers(bufs)
	if _, err := nb.WriteTo(c.conn); err != nil {
		return channelError("write to", err)
	}
	return nil
}
