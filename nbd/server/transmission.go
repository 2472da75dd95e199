package server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/internal/bufpool"
	"github.com/goqio/goqio/nbd"
	"golang.org/x/sys/unix"
)

// maxExtents is QEMU's NBD_MAX_BLOCK_STATUS_EXTENTS: 1 MiB of extents.
const maxExtents = (1 << 20) / 8

// request is one received request (QEMU's NBDRequestData).
type request struct {
	nbd.Request
	data     []byte
	complete bool // the payload was read
	// tk is the request's place in the export's submission order, drawn
	// when it was received: QEMU's coroutine takes the driver lock (and
	// allocates) in that order, a goroutine per request would race
	tk  *image.Ticket
	err error // a request refused by the checks of nbd_co_receive_request
}

// budget bounds the bytes of the buffers in flight.
type budget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	avail int64
}

func newBudget(n int64) *budget {
	b := &budget{avail: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *budget) acquire(n int64) int64 {
	n = min(n, MaxBufferedBytes)
	b.mu.Lock()
	for b.avail < n {
		b.cond.Wait()
	}
	b.avail -= n
	b.mu.Unlock()
	return n
}

func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.avail += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// transmit is the transmission phase: nbd_trip for every request.
func (c *client) transmit() {
	r := bufio.NewReaderSize(c.conn, 256<<10)
	slots := make(chan struct{}, MaxRequests)
	mem := newBudget(MaxBufferedBytes)
	var wg sync.WaitGroup
	var closing atomic.Bool
	var reportOnce sync.Once
	disconnect := func(err error) {
		if closing.Swap(true) {
			return
		}
		if err != nil {
			reportOnce.Do(func() { c.srv.report("Disconnect client, due to: %v", err) })
		}
		c.conn.Close()
	}
	for !closing.Load() {
		slots <- struct{}{}
		if closing.Load() {
			break
		}
		req, held, fatal := c.receive(r, mem)
		if fatal != nil || req == nil {
			<-slots
			mem.release(held)
			// on NBD_CMD_DISC or EOF the requests in flight still get
			// their replies; a broken connection ends them all
			if fatal != errDisc {
				disconnect(fatal)
			}
			break
		}
		req.tk = c.exp.Disk.Ticket()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer req.tk.Drop()
			defer func() { <-slots }()
			var err error
			if req.err != nil {
				err = c.sendGeneric(req.Handle, syscall.EINVAL, req.err.Error())
			} else {
				err = c.handle(req)
			}
			if req.data != nil {
				bufpool.Put(req.data)
			}
			mem.release(held)
			if err != nil {
				disconnect(fmt.Errorf("Failed to send reply: %w", err))
			} else if !req.complete {
				disconnect(errors.New("Request handling failed in intermediate state"))
			}
		}()
		if !req.complete {
			break
		}
	}
	wg.Wait()
	closing.Store(true)
	c.conn.Close()
}

// errDisc ends the connection on NBD_CMD_DISC, without a message.
var errDisc = errors.New("disconnect")

// receive is nbd_co_receive_request. It returns the request (with err set
// when the checks refused it: the caller replies EINVAL with its message),
// the bytes of budget it holds, or a fatal error that ends the connection
// (errDisc: without a message).
func (c *client) receive(r *bufio.Reader, mem *budget) (*request, int64, error) {
	var h [nbd.RequestSize]byte
	n, err := io.ReadFull(r, h[:])
	if err != nil {
		switch {
		case n == 0 && errors.Is(err, io.EOF):
			return nil, 0, errDisc
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, 0, errors.New("Unexpected end-of-file before all bytes were read")
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, 0, errDisc // closed here: the server is ending
		}
		return nil, 0, channelError("read from", err)
	}
	req := &request{}
	req.Flags = binary.BigEndian.Uint16(h[4:])
	req.Type = binary.BigEndian.Uint16(h[6:])
	req.Handle = binary.BigEndian.Uint64(h[8:])
	req.Offset = binary.BigEndian.Uint64(h[16:])
	req.Length = binary.BigEndian.Uint32(h[24:])
	if magic := binary.BigEndian.Uint32(h[0:]); magic != nbd.RequestMagic {
		req.err = fmt.Errorf("invalid magic (got 0x%x)", magic)
		return req, 0, nil
	}
	if req.Type != nbd.CmdWrite {
		req.complete = true
	}
	if req.Type == nbd.CmdDisc {
		return nil, 0, errDisc
	}
	var held int64
	if req.Type == nbd.CmdRead || req.Type == nbd.CmdWrite || req.Type == nbd.CmdCache {
		if req.Length > nbd.MaxBufferSize {
			req.err = fmt.Errorf("len (%d ) is larger than max len (%d)", req.Length, nbd.MaxBufferSize)
			return req, 0, nil
		}
		if req.Type != nbd.CmdCache {
			held = mem.acquire(int64(req.Length))
			req.data = bufpool.Get(int(req.Length))
		}
	}
	if req.Type == nbd.CmdWrite {
		if _, err := io.ReadFull(r, req.data); err != nil {
			bufpool.Put(req.data)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = errShortRead
			} else {
				err = channelError("read from", err)
			}
			return nil, held, fmt.Errorf("Failed to read CMD_WRITE data: %w", err)
		}
		req.complete = true
	}
	exp := c.exp
	if exp.ReadOnly && (req.Type == nbd.CmdWrite || req.Type == nbd.CmdWriteZeroes || req.Type == nbd.CmdTrim) {
		req.err = errors.New("Export is read-only")
		return req, held, nil
	}
	if req.Offset > exp.size || uint64(req.Length) > exp.size-req.Offset {
		req.err = fmt.Errorf("operation past EOF; From: %d, Len: %d, Size: %d", req.Offset, req.Length, exp.size)
		return req, held, nil
	}
	valid := nbd.CmdFlagFUA
	switch {
	case req.Type == nbd.CmdRead && c.structured:
		valid |= nbd.CmdFlagDF
	case req.Type == nbd.CmdWriteZeroes:
		valid |= nbd.CmdFlagNoHole | nbd.CmdFlagFastZero
	case req.Type == nbd.CmdBlockStatus:
		valid |= nbd.CmdFlagReqOne
	}
	if req.Flags&^valid != 0 {
		req.err = fmt.Errorf("unsupported flags for command %s (got 0x%x)", nbd.CmdName(req.Type), req.Flags)
		return req, held, nil
	}
	return req, held, nil
}

// send writes one reply (all of bufs) under the send lock.
func (c *client) send(bufs ...[]byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.write(bufs...)
}

// errnoOf is the errno a block layer error stands for.
func errnoOf(err error) syscall.Errno {
	e := image.Errno(err)
	if e == 0 {
		e = syscall.EIO
	}
	return e
}

// sendSimple is nbd_co_send_simple_reply.
func (c *client) sendSimple(handle uint64, errno syscall.Errno, data []byte) error {
	var h [nbd.SimpleReplySize]byte
	nbd.EncodeSimpleReply(h[:], nbd.ErrnoToWire(errno), handle)
	if len(data) > 0 {
		return c.send(h[:], data)
	}
	return c.send(h[:])
}

func chunk(flags, typ uint16, handle uint64, length int) []byte {
	b := make([]byte, nbd.ChunkHeaderSize, nbd.ChunkHeaderSize+16)
	nbd.Chunk{Flags: flags, Type: typ, Handle: handle, Length: uint32(length)}.Encode(b)
	return b
}

// sendStructuredError is nbd_co_send_structured_error.
func (c *client) sendStructuredError(handle uint64, errno syscall.Errno, msg string) error {
	h := chunk(nbd.ReplyFlagDone, nbd.ReplyTypeError, handle, 6+len(msg))
	h = binary.BigEndian.AppendUint32(h, nbd.ErrnoToWire(errno))
	h = binary.BigEndian.AppendUint16(h, uint16(len(msg)))
	return c.send(h, []byte(msg))
}

// sendGeneric is nbd_send_generic_reply: errno 0 is success.
func (c *client) sendGeneric(handle uint64, errno syscall.Errno, msg string) error {
	if c.structured && errno != 0 {
		return c.sendStructuredError(handle, errno, msg)
	}
	return c.sendSimple(handle, errno, nil)
}

func (c *client) replyErr(handle uint64, err error, msg string) error {
	if err == nil {
		return c.sendGeneric(handle, 0, "")
	}
	return c.sendGeneric(handle, errnoOf(err), msg)
}

// sendReadChunk is nbd_co_send_structured_read.
func (c *client) sendReadChunk(handle, off uint64, data []byte, final bool) error {
	return c.send(dataChunkHeader(handle, off, len(data), final), data)
}

// dataChunkHeader is the header of an OFFSET_DATA chunk of n bytes at off.
func dataChunkHeader(handle, off uint64, n int, final bool) []byte {
	var f uint16
	if final {
		f = nbd.ReplyFlagDone
	}
	h := chunk(f, nbd.ReplyTypeOffsetData, handle, 8+n)
	return binary.BigEndian.AppendUint64(h, off)
}

// hostData is the host file that holds a data run as it is, when the
// reply can be sent from it by the kernel (sendfile): not through TLS.
func (c *client) hostData(d *image.Disk, depth int, e image.Extent, n int64) (*os.File, int64, bool) {
	if _, ok := c.conn.(syscall.Conn); !ok || c.noSendfile {
		return nil, 0, false
	}
	return image.HostFile(d, depth, e, n)
}

// sendReadChunkFile is sendReadChunk with the n bytes of data at off in f,
// copied by the kernel from the page cache to the socket.
func (c *client) sendReadChunkFile(handle, goff uint64, f *os.File, off, n int64, final bool) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := c.write(dataChunkHeader(handle, goff, int(n), final)); err != nil {
		return err
	}
	rc, err := c.conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return channelError("write to", err)
	}
	src := int(f.Fd())
	left := n
	var serr error
	werr := rc.Write(func(fd uintptr) bool {
		for left > 0 {
			k, err := unix.Sendfile(int(fd), src, &off, int(min(left, 1<<30)))
			if err == unix.EAGAIN {
				return false
			}
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				serr = err
				return true
			}
			if k == 0 {
				return true // the file ended meanwhile: zeroes below
			}
			left -= int64(k)
		}
		return true
	})
	if werr != nil {
		return channelError("write to", werr)
	}
	if serr != nil {
		return channelError("write to", serr)
	}
	for left > 0 {
		// a file truncated under the read reads as zeroes, as pread's
		// short read does in the file driver
		z := bufpool.Get(int(min(left, 1<<20)))
		clear(z)
		err := c.write(z)
		left -= int64(len(z))
		bufpool.Put(z)
		if err != nil {
			return err
		}
	}
	return nil
}

// handle is nbd_handle_request.
func (c *client) handle(req *request) error {
	d := c.exp.Disk
	off, n := int64(req.Offset), int64(req.Length)
	fua := req.Flags&nbd.CmdFlagFUA != 0
	switch req.Type {
	case nbd.CmdCache:
		return c.replyErr(req.Handle, req.tk.Prefetch(off, n), "caching data failed")
	case nbd.CmdRead:
		return c.read(req)
	case nbd.CmdWrite:
		return c.replyErr(req.Handle, req.tk.WriteAt(req.data, off, fua), "writing to file failed")
	case nbd.CmdWriteZeroes:
		var f image.ZeroFlags
		if req.Flags&nbd.CmdFlagNoHole == 0 {
			f |= image.ZeroMayUnmap
		}
		if req.Flags&nbd.CmdFlagFastZero != 0 {
			f |= image.ZeroNoFallback
		}
		return c.replyErr(req.Handle, req.tk.WriteZeroes(off, n, f, fua), "writing to file failed")
	case nbd.CmdFlush:
		return c.replyErr(req.Handle, d.Flush(), "flush failed")
	case nbd.CmdTrim:
		err := req.tk.Discard(off, n)
		if err == nil && fua {
			err = d.Flush()
		}
		return c.replyErr(req.Handle, err, "discard failed")
	case nbd.CmdBlockStatus:
		return c.blockStatus(req)
	}
	return c.sendGeneric(req.Handle, syscall.EINVAL, fmt.Sprintf("invalid request type (%d) received", req.Type))
}

// read is nbd_do_cmd_read.
func (c *client) read(req *request) error {
	d := c.exp.Disk
	off, n := int64(req.Offset), int64(req.Length)
	if req.Flags&nbd.CmdFlagFUA != 0 {
		if err := d.Flush(); err != nil {
			return c.replyErr(req.Handle, err, "flush failed")
		}
	}
	if c.structured && req.Flags&nbd.CmdFlagDF == 0 && n > 0 {
		return c.sparseRead(req)
	}
	if err := req.tk.ReadAt(req.data, off); err != nil {
		return c.replyErr(req.Handle, err, "reading from file failed")
	}
	if c.structured {
		if n > 0 {
			return c.sendReadChunk(req.Handle, req.Offset, req.data, true)
		}
		return c.send(chunk(nbd.ReplyFlagDone, nbd.ReplyTypeNone, req.Handle, 0))
	}
	return c.sendSimple(req.Handle, 0, req.data)
}

// sparseRead is nbd_co_send_sparse_read: a chunk per block status run,
// holes for the runs that read as zeroes.
func (c *client) sparseRead(req *request) error {
	d := c.exp.Disk
	off, size := int64(req.Offset), int64(req.Length)
	for progress := int64(0); progress < size; {
		e, depth, err := image.BlockStatusAbove(d, off+progress, size-progress, true)
		if err == nil && e.Len <= 0 {
			err = image.ErrInvalid
		}
		if err != nil {
			errno := errnoOf(err)
			return c.sendStructuredError(req.Handle, errno, "unable to check for holes: "+image.Strerror(errno))
		}
		pnum := min(e.Len, size-progress)
		final := progress+pnum == size
		if e.Status&image.StatusZero != 0 {
			var f uint16
			if final {
				f = nbd.ReplyFlagDone
			}
			h := chunk(f, nbd.ReplyTypeOffsetHole, req.Handle, 12)
			h = binary.BigEndian.AppendUint64(h, uint64(off+progress))
			h = binary.BigEndian.AppendUint32(h, uint32(pnum))
			if err := c.send(h); err != nil {
				return err
			}
		} else if f, hoff, ok := c.hostData(d, depth, e, pnum); ok {
			req.tk.Drop() // the data is read outside the Disk's order
			if err := c.sendReadChunkFile(req.Handle, uint64(off+progress), f, hoff, pnum, final); err != nil {
				return err
			}
		} else {
			p := req.data[progress : progress+pnum]
			if err := req.tk.ReadAt(p, off+progress); err != nil {
				// QEMU drops the connection here ("reading from file
				// failed"), the reply being half sent
				return fmt.Errorf("reading from file failed: %s", image.StrerrorOf(err))
			}
			if err := c.sendReadChunk(req.Handle, uint64(off+progress), p, final); err != nil {
				return err
			}
		}
		progress += pnum
	}
	return nil
}

// extents is QEMU's NBDExtentArray.
type extents struct {
	b      []byte // length, flags pairs, big-endian when sent
	count  int
	max    int
	last   [2]uint32
	canAdd bool
}

func newExtents(max int) *extents { return &extents{max: max, canAdd: true} }

// add is nbd_extent_array_add: false when the array is full.
func (ea *extents) add(length uint64, flags uint32) bool {
	if length == 0 {
		return true
	}
	if ea.count > 0 && flags == ea.last[1] {
		if sum := length + uint64(ea.last[0]); sum <= 1<<32-1 {
			ea.last[0] = uint32(sum)
			binary.BigEndian.PutUint32(ea.b[len(ea.b)-8:], ea.last[0])
			return true
		}
	}
	if ea.count >= ea.max {
		ea.canAdd = false
		return false
	}
	ea.last = [2]uint32{uint32(length), flags}
	ea.b = binary.BigEndian.AppendUint32(ea.b, uint32(length))
	ea.b = binary.BigEndian.AppendUint32(ea.b, flags)
	ea.count++
	return true
}

// blockStatus is NBD_CMD_BLOCK_STATUS of nbd_handle_request.
func (c *client) blockStatus(req *request) error {
	if req.Length == 0 {
		return c.sendGeneric(req.Handle, syscall.EINVAL, "need non-zero length")
	}
	m := &c.meta
	if m.count == 0 {
		return c.sendGeneric(req.Handle, syscall.EINVAL, "CMD_BLOCK_STATUS not negotiated")
	}
	max := maxExtents
	if req.Flags&nbd.CmdFlagReqOne != 0 {
		max = 1
	}
	remaining := m.count
	d := c.exp.Disk
	off, n := int64(req.Offset), int64(req.Length)
	sendStatus := func(id uint32, depth bool) error {
		remaining--
		ea := newExtents(max)
		for o, left := off, n; left > 0; {
			e, dp, err := image.BlockStatusAbove(d, o, left, !depth)
			if err == nil && e.Len <= 0 {
				err = image.ErrInvalid
			}
			if err != nil {
				return c.sendStructuredError(req.Handle, errnoOf(err), "can't get block status")
			}
			num := min(e.Len, left)
			var flags uint32
			if depth {
				if e.Status&image.StatusAllocated != 0 {
					flags = uint32(dp)
				}
			} else {
				if e.Status&image.StatusData == 0 {
					flags |= nbd.StateHole
				}
				if e.Status&image.StatusZero != 0 {
					flags |= nbd.StateZero
				}
			}
			if !ea.add(uint64(num), flags) {
				break
			}
			o += num
			left -= num
		}
		return c.sendExtents(req.Handle, ea, remaining == 0, id)
	}
	if m.baseAllocation {
		if err := sendStatus(metaIDBaseAllocation, false); err != nil {
			return err
		}
	}
	if m.allocationDepth {
		if err := sendStatus(metaIDAllocationDepth, true); err != nil {
			return err
		}
	}
	for i, on := range m.bitmaps {
		if !on {
			continue
		}
		remaining--
		ea := newExtents(max)
		bm := c.exp.Bitmaps[i]
		end := off + n
		start := off
		full := false
		for {
			ds, dn, ok := bm.NextDirty(start, end, 1<<31-1)
			if !ok {
				break
			}
			if !ea.add(uint64(ds-start), 0) || !ea.add(uint64(dn), nbd.StateDirty) {
				full = true
				break
			}
			start = ds + dn
		}
		if !full {
			ea.add(uint64(end-start), 0)
		}
		if err := c.sendExtents(req.Handle, ea, remaining == 0, uint32(metaIDDirtyBitmap+i)); err != nil {
			return err
		}
	}
	return nil
}

// sendExtents is nbd_co_send_extents.
func (c *client) sendExtents(handle uint64, ea *extents, last bool, id uint32) error {
	var f uint16
	if last {
		f = nbd.ReplyFlagDone
	}
	h := chunk(f, nbd.ReplyTypeBlockStatus, handle, 4+len(ea.b))
	h = binary.BigEndian.AppendUint32(h, id)
	return c.send(h, ea.b)
}
