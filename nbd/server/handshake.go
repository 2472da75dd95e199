package server

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/goqio/goqio/nbd"
)

// errHandled is returned by the option readers when they already answered
// the option with an error reply (QEMU's return value 0 of nbd_opt_read):
// the negotiation goes on with the next option.
var errHandled = errors.New("option handled")

// negotiate is nbd_negotiate: 0 when the client reached the transmission
// phase, 1 when it sent NBD_OPT_ABORT (err nil), -1 on error (err set, or
// nil when the connection was just lost without QEMU printing anything).
func (c *client) negotiate() (int, error) {
	var hdr [18]byte
	binary.BigEndian.PutUint64(hdr[0:], nbd.Magic)
	binary.BigEndian.PutUint64(hdr[8:], nbd.OptMagic)
	binary.BigEndian.PutUint16(hdr[16:], nbd.FlagFixedNewstyle|nbd.FlagNoZeroes)
	if err := c.write(hdr[:]); err != nil {
		return -1, fmt.Errorf("write failed: %w", err)
	}
	return c.options()
}

func (c *client) read32(desc string) (uint32, error) {
	var b [4]byte
	if err := c.readAll(b[:], desc); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

// options is nbd_negotiate_options.
func (c *client) options() (int, error) {
	flags, err := c.read32("flags")
	if err != nil {
		return -1, err
	}
	fixed := flags&nbd.FlagCFixedNewstyle != 0
	noZeroes := flags&nbd.FlagCNoZeroes != 0
	flags &^= nbd.FlagCFixedNewstyle | nbd.FlagCNoZeroes
	if flags != 0 {
		return -1, fmt.Errorf("Unknown client flags 0x%x received", flags)
	}
	for {
		var h [16]byte
		if err := c.readAll(h[:8], "opts magic"); err != nil {
			return -1, err
		}
		if binary.BigEndian.Uint64(h[:8]) != nbd.OptMagic {
			return -1, errors.New("Bad magic received")
		}
		if err := c.readAll(h[8:12], "option"); err != nil {
			return -1, err
		}
		option := binary.BigEndian.Uint32(h[8:12])
		c.opt = option
		if err := c.readAll(h[12:16], "option length"); err != nil {
			return -1, err
		}
		length := binary.BigEndian.Uint32(h[12:16])
		c.optlen = length
		if length > nbd.MaxBufferSize {
			return -1, fmt.Errorf("len (%d ) is larger than max len (%d)", length, nbd.MaxBufferSize)
		}
		var err error
		switch {
		case c.srv.TLS != nil && c.conn == c.raw:
			if !fixed {
				return -1, fmt.Errorf("Unsupported option 0x%x", option)
			}
			switch option {
			case nbd.OptStartTLS:
				if length != 0 {
					if err := c.rejectLength(); err != errHandled {
						return -1, err
					}
					return -1, fmt.Errorf("option '%s' has unexpected length", nbd.OptName(c.opt))
				}
				if err := c.startTLS(); err != nil {
					return -1, err
				}
			case nbd.OptExportName:
				return -1, fmt.Errorf("Option 0x%x not permitted before TLS", option)
			default:
				err = c.optDrop(nbd.RepErrTLSReqd, "Option 0x%x not permitted before TLS", option)
				if option == nbd.OptAbort {
					return 1, nil
				}
			}
		case fixed:
			switch option {
			case nbd.OptList:
				if length != 0 {
					err = c.rejectLength()
				} else {
					err = c.handleList()
				}
			case nbd.OptAbort:
				c.sendRep(nbd.RepAck)
				return 1, nil
			case nbd.OptExportName:
				return c.handleExportName(noZeroes)
			case nbd.OptInfo, nbd.OptGo:
				var done bool
				done, err = c.handleInfo()
				if done && err == nil {
					return 0, nil
				}
			case nbd.OptStartTLS:
				switch {
				case length != 0:
					err = c.rejectLength()
				case c.srv.TLS != nil:
					err = c.sendRepErr(nbd.RepErrInvalid, "TLS already enabled")
				default:
					err = c.sendRepErr(nbd.RepErrPolicy, "TLS not configured")
				}
			case nbd.OptStructuredReply:
				switch {
				case length != 0:
					err = c.rejectLength()
				case c.structured:
					err = c.sendRepErr(nbd.RepErrInvalid, "structured reply already negotiated")
				default:
					err = c.sendRep(nbd.RepAck)
					c.structured = true
				}
			case nbd.OptListMetaContext, nbd.OptSetMetaContext:
				err = c.metaQueries()
			default:
				err = c.optDrop(nbd.RepErrUnsup, "Unsupported option %d (%s)", option, nbd.OptName(option))
			}
		default:
			if option == nbd.OptExportName {
				return c.handleExportName(noZeroes)
			}
			return -1, fmt.Errorf("Unsupported option %d (%s)", option, nbd.OptName(option))
		}
		if err != nil && err != errHandled {
			return -1, err
		}
	}
}

// sendRepLen is nbd_negotiate_send_rep_len: a reply header.
func (c *client) repHeader(typ, length uint32) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint64(b[0:], nbd.RepMagic)
	binary.BigEndian.PutUint32(b[8:], c.opt)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], length)
	return b
}

func (c *client) sendRep(typ uint32) error { return c.write(c.repHeader(typ, 0)) }

// sendRepErr is nbd_negotiate_send_rep_err.
func (c *client) sendRepErr(typ uint32, format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	if err := c.write(c.repHeader(typ, uint32(len(msg)))); err != nil {
		return err
	}
	if err := c.write([]byte(msg)); err != nil {
		return fmt.Errorf("write failed (error message): %w", err)
	}
	return nil
}

// drop is nbd_drop: read and forget n bytes.
func (c *client) drop(n uint32) error {
	if n == 0 {
		return nil
	}
	if _, err := io.CopyN(io.Discard, c.conn, int64(n)); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errShortRead
		}
		return channelError("read from", err)
	}
	return nil
}

// optDrop is nbd_opt_drop: the rest of the option is dropped and an error
// reply sent; errHandled when the connection is still good.
func (c *client) optDrop(typ uint32, format string, a ...any) error {
	err := c.drop(c.optlen)
	c.optlen = 0
	if err != nil {
		return err
	}
	if err := c.sendRepErr(typ, format, a...); err != nil {
		return err
	}
	return errHandled
}

func (c *client) optInvalid(format string, a ...any) error {
	return c.optDrop(nbd.RepErrInvalid, format, a...)
}

// rejectLength is nbd_reject_length (not fatal).
func (c *client) rejectLength() error {
	return c.optInvalid("option '%s' has unexpected length", nbd.OptName(c.opt))
}

// optRead is nbd_opt_read.
func (c *client) optRead(b []byte, checkNUL bool) error {
	if uint32(len(b)) > c.optlen {
		return c.optInvalid("Inconsistent lengths in option %s", nbd.OptName(c.opt))
	}
	c.optlen -= uint32(len(b))
	if err := c.readAll(b, ""); err != nil {
		return err
	}
	if checkNUL {
		for _, x := range b {
			if x == 0 {
				return c.optInvalid("Unexpected embedded NUL in option %s", nbd.OptName(c.opt))
			}
		}
	}
	return nil
}

// optSkip is nbd_opt_skip.
func (c *client) optSkip(n uint32) error {
	if n > c.optlen {
		return c.optInvalid("Inconsistent lengths in option %s", nbd.OptName(c.opt))
	}
	c.optlen -= n
	return c.drop(n)
}

func (c *client) optRead32() (uint32, error) {
	var b [4]byte
	if err := c.optRead(b[:], false); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

func (c *client) optRead16() (uint16, error) {
	var b [2]byte
	if err := c.optRead(b[:], false); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(b[:]), nil
}

// optReadName is nbd_opt_read_name.
func (c *client) optReadName() (string, error) {
	n, err := c.optRead32()
	if err != nil {
		return "", err
	}
	if n > nbd.MaxStringSize {
		return "", c.optInvalid("Invalid name length: %d", n)
	}
	b := make([]byte, n)
	if err := c.optRead(b, true); err != nil {
		return "", err
	}
	return string(b), nil
}

// handleList is nbd_negotiate_handle_list.
func (c *client) handleList() error {
	for _, e := range c.srv.Exports {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(e.Name)))
		if err := c.write(c.repHeader(nbd.RepServer, uint32(4+len(e.Name)+len(e.Description))), l[:],
			[]byte(e.Name), []byte(e.Description)); err != nil {
			return err
		}
	}
	return c.sendRep(nbd.RepAck)
}

// checkMetaExport is nbd_check_meta_export.
func (c *client) checkMetaExport() {
	if c.exp != c.meta.exp {
		c.meta.count = 0
	}
}

// handleExportName is nbd_negotiate_handle_export_name.
func (c *client) handleExportName(noZeroes bool) (int, error) {
	if c.optlen > nbd.MaxStringSize {
		return -1, errors.New("Bad length received")
	}
	name := make([]byte, c.optlen)
	if err := c.readAll(name, "export name"); err != nil {
		return -1, err
	}
	c.optlen = 0
	c.exp = c.srv.find(string(name))
	if c.exp == nil {
		return -1, errors.New("export not found")
	}
	flags := c.exp.flags
	if c.structured {
		flags |= nbd.FlagSendDF
	}
	buf := make([]byte, 10+124)
	binary.BigEndian.PutUint64(buf, c.exp.size)
	binary.BigEndian.PutUint16(buf[8:], flags)
	if noZeroes {
		buf = buf[:10]
	}
	if err := c.write(buf); err != nil {
		return -1, fmt.Errorf("write failed: %w", err)
	}
	c.checkMetaExport()
	return 0, nil
}

// sendInfo is nbd_negotiate_send_info.
func (c *client) sendInfo(info uint16, data []byte) error {
	var t [2]byte
	binary.BigEndian.PutUint16(t[:], info)
	return c.write(c.repHeader(nbd.RepInfo, uint32(2+len(data))), t[:], data)
}

// sanitizeName is nbd_sanitize_name.
func sanitizeName(name string) string {
	if len(name) < 80 {
		return name
	}
	return name[:80] + "..."
}

// handleInfo is nbd_negotiate_handle_info: done is true when NBD_OPT_GO
// succeeded.
func (c *client) handleInfo() (done bool, err error) {
	name, err := c.optReadName()
	if err != nil {
		return false, err
	}
	requests, err := c.optRead16()
	if err != nil {
		return false, err
	}
	sendName, blockSize := false, false
	for ; requests > 0; requests-- {
		r, err := c.optRead16()
		if err != nil {
			return false, err
		}
		switch r {
		case nbd.InfoName:
			sendName = true
		case nbd.InfoBlockSize:
			blockSize = true
		}
	}
	if c.optlen != 0 {
		return false, c.rejectLength()
	}
	exp := c.srv.find(name)
	if exp == nil {
		return false, c.sendRepErrHandled(nbd.RepErrUnknown, "export '%s' not present", sanitizeName(name))
	}
	if sendName {
		if err := c.sendInfo(nbd.InfoName, []byte(name)); err != nil {
			return false, err
		}
	}
	if exp.Description != "" {
		if err := c.sendInfo(nbd.InfoDescription, []byte(exp.Description)); err != nil {
			return false, err
		}
	}
	var sizes [12]byte
	var checkAlign, minSize uint32 = 0, 1
	if c.opt == nbd.OptInfo || blockSize {
		minSize = exp.RequestAlignment
		checkAlign = minSize
	}
	binary.BigEndian.PutUint32(sizes[0:], minSize)
	binary.BigEndian.PutUint32(sizes[4:], max(4096, minSize))
	binary.BigEndian.PutUint32(sizes[8:], nbd.MaxBufferSize)
	if err := c.sendInfo(nbd.InfoBlockSize, sizes[:]); err != nil {
		return false, err
	}
	flags := exp.flags
	if c.structured {
		flags |= nbd.FlagSendDF
	}
	var info [10]byte
	binary.BigEndian.PutUint64(info[:], exp.size)
	binary.BigEndian.PutUint16(info[8:], flags)
	if err := c.sendInfo(nbd.InfoExport, info[:]); err != nil {
		return false, err
	}
	if c.opt == nbd.OptInfo && !blockSize && exp.RequestAlignment > 1 {
		return false, c.sendRepErrHandled(nbd.RepErrBlockSizeReqd, "request NBD_INFO_BLOCK_SIZE to use this export")
	}
	if err := c.sendRep(nbd.RepAck); err != nil {
		return false, err
	}
	if c.opt == nbd.OptGo {
		c.exp = exp
		c.checkAlign = checkAlign
		c.checkMetaExport()
		return true, nil
	}
	return false, nil
}

// sendRepErrHandled is sendRepErr for a reply after which the negotiation
// goes on.
func (c *client) sendRepErrHandled(typ uint32, format string, a ...any) error {
	if err := c.sendRepErr(typ, format, a...); err != nil {
		return err
	}
	return errHandled
}

// startTLS is nbd_negotiate_handle_starttls.
func (c *client) startTLS() error {
	if err := c.sendRep(nbd.RepAck); err != nil {
		return err
	}
	t := tls.Server(c.raw, c.srv.TLS)
	if err := t.Handshake(); err != nil {
		return tlsError(err)
	}
	// QEMU checks the client's certificate once the handshake is done
	// (qcrypto_tls_session_check_credentials): the client then sees the
	// connection close after a successful handshake
	// (and closes the socket with no TLS close_notify, as QEMU drops the
	// session: the client reads a broken channel, not a clean end)
	if err := nbd.VerifyClient(c.srv.TLS, t.ConnectionState()); err != nil {
		return err
	}
	c.conn = t
	return nil
}

// metaQueries is nbd_negotiate_meta_queries.
func (c *client) metaQueries() error {
	if c.opt == nbd.OptSetMetaContext && !c.structured {
		return c.optInvalid("request option '%s' when structured reply is not negotiated", nbd.OptName(c.opt))
	}
	meta := &c.meta
	var local metaContexts
	if c.opt == nbd.OptListMetaContext {
		meta = &local
	}
	*meta = metaContexts{}
	name, err := c.optReadName()
	if err != nil {
		return err
	}
	meta.exp = c.srv.find(name)
	if meta.exp == nil {
		return c.optDrop(nbd.RepErrUnknown, "export '%s' not present", sanitizeName(name))
	}
	exp := meta.exp
	meta.bitmaps = make([]bool, len(exp.Bitmaps))
	n, err := c.optRead32()
	if err != nil {
		return err
	}
	if c.opt == nbd.OptListMetaContext && n == 0 {
		meta.baseAllocation = true
		meta.allocationDepth = exp.AllocationDepth
		for i := range meta.bitmaps {
			meta.bitmaps[i] = true
		}
	} else {
		for ; n > 0; n-- {
			if err := c.metaQuery(meta); err != nil {
				return err
			}
		}
	}
	count := 0
	send := func(ctx string, id uint32) error {
		if c.opt == nbd.OptListMetaContext {
			id = 0
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], id)
		count++
		return c.write(c.repHeader(nbd.RepMetaContext, uint32(4+len(ctx))), b[:], []byte(ctx))
	}
	if meta.baseAllocation {
		if err := send(nbd.ContextBaseAllocation, metaIDBaseAllocation); err != nil {
			return err
		}
	}
	if meta.allocationDepth {
		if err := send(nbd.ContextAllocationDepth, metaIDAllocationDepth); err != nil {
			return err
		}
	}
	for i, on := range meta.bitmaps {
		if on {
			if err := send(nbd.ContextDirtyBitmapPrefx+exp.Bitmaps[i].Name(), uint32(metaIDDirtyBitmap+i)); err != nil {
				return err
			}
		}
	}
	if err := c.sendRep(nbd.RepAck); err != nil {
		return err
	}
	meta.count = count
	return nil
}

// metaQuery is nbd_negotiate_meta_query with nbd_meta_base_query and
// nbd_meta_qemu_query.
func (c *client) metaQuery(meta *metaContexts) error {
	n, err := c.optRead32()
	if err != nil {
		return err
	}
	if n > nbd.MaxStringSize {
		return c.optSkip(n)
	}
	b := make([]byte, n)
	if err := c.optRead(b, true); err != nil {
		return err
	}
	q := string(b)
	list := c.opt == nbd.OptListMetaContext
	emptyOr := func(pattern, query string) bool {
		if query == "" {
			return list
		}
		return query == pattern
	}
	exp := meta.exp
	switch {
	case len(q) >= 5 && q[:5] == "base:":
		if emptyOr("allocation", q[5:]) {
			meta.baseAllocation = true
		}
	case len(q) >= 5 && q[:5] == "qemu:":
		q = q[5:]
		switch {
		case q == "":
			if list {
				meta.allocationDepth = exp.AllocationDepth
				for i := range meta.bitmaps {
					meta.bitmaps[i] = true
				}
			}
		case q == "allocation-depth":
			meta.allocationDepth = exp.AllocationDepth
		case len(q) >= 13 && q[:13] == "dirty-bitmap:":
			q = q[13:]
			if q == "" {
				if list {
					for i := range meta.bitmaps {
						meta.bitmaps[i] = true
					}
				}
				break
			}
			for i, bm := range exp.Bitmaps {
				if bm.Name() == q {
					meta.bitmaps[i] = true
					break
				}
			}
		}
	}
	return nil
}

// tlsError is the message of a failed TLS handshake.
func tlsError(err error) error {
	return fmt.Errorf("TLS handshake failed: %v", err)
}
