// Package nbd holds the Network Block Device protocol's wire format, as the
// NBD protocol specification (github.com/NetworkBlockDevice/nbd,
// doc/proto.md) defines it and qemu-nbd 7.2 speaks it: the fixed newstyle
// handshake's magics, options and option replies, the transmission
// phase's requests, simple and structured replies, and the protocol's
// errno values. The server (goqio nbd, qemu-nbd) and the client driver of
// the block graph both encode and decode through it, so the two cannot
// disagree on a field.
package nbd

import (
	"encoding/binary"
	"errors"
	"io"
	"syscall"
)

// Handshake magics.
const (
	Magic       uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	OptMagic    uint64 = 0x49484156454f5054 // "IHAVEOPT"
	OldMagic    uint64 = 0x00420281861253   // oldstyle negotiation
	RepMagic    uint64 = 0x0003e889045565a9 // option reply
	DefaultPort        = 10809
)

// Handshake flags sent by the server (16 bits) and by the client (32 bits).
const (
	FlagFixedNewstyle  uint16 = 1 << 0
	FlagNoZeroes       uint16 = 1 << 1
	FlagCFixedNewstyle uint32 = 1 << 0
	FlagCNoZeroes      uint32 = 1 << 1
)

// Transmission flags (per export, 16 bits).
const (
	FlagHasFlags        uint16 = 1 << 0
	FlagReadOnly        uint16 = 1 << 1
	FlagSendFlush       uint16 = 1 << 2
	FlagSendFUA         uint16 = 1 << 3
	FlagRotational      uint16 = 1 << 4
	FlagSendTrim        uint16 = 1 << 5
	FlagSendWriteZeroes uint16 = 1 << 6
	FlagSendDF          uint16 = 1 << 7
	FlagCanMultiConn    uint16 = 1 << 8
	FlagSendResize      uint16 = 1 << 9
	FlagSendCache       uint16 = 1 << 10
	FlagSendFastZero    uint16 = 1 << 11
)

// Options (NBD_OPT_*).
const (
	OptExportName      uint32 = 1
	OptAbort           uint32 = 2
	OptList            uint32 = 3
	OptStartTLS        uint32 = 5
	OptInfo            uint32 = 6
	OptGo              uint32 = 7
	OptStructuredReply uint32 = 8
	OptListMetaContext uint32 = 9
	OptSetMetaContext  uint32 = 10
)

// Option reply types (NBD_REP_*); errors have bit 31 set.
const (
	RepAck         uint32 = 1
	RepServer      uint32 = 2
	RepInfo        uint32 = 3
	RepMetaContext uint32 = 4

	RepFlagError        uint32 = 1 << 31
	RepErrUnsup                = RepFlagError | 1
	RepErrPolicy               = RepFlagError | 2
	RepErrInvalid              = RepFlagError | 3
	RepErrPlatform             = RepFlagError | 4
	RepErrTLSReqd              = RepFlagError | 5
	RepErrUnknown              = RepFlagError | 6
	RepErrShutdown             = RepFlagError | 7
	RepErrBlockSizeReqd        = RepFlagError | 8
	RepErrTooBig               = RepFlagError | 9
)

// NBD_INFO_* items of NBD_OPT_INFO and NBD_OPT_GO.
const (
	InfoExport      uint16 = 0
	InfoName        uint16 = 1
	InfoDescription uint16 = 2
	InfoBlockSize   uint16 = 3
)

// Commands (NBD_CMD_*).
const (
	CmdRead        uint16 = 0
	CmdWrite       uint16 = 1
	CmdDisc        uint16 = 2
	CmdFlush       uint16 = 3
	CmdTrim        uint16 = 4
	CmdCache       uint16 = 5
	CmdWriteZeroes uint16 = 6
	CmdBlockStatus uint16 = 7
	CmdResize      uint16 = 8
)

// Command flags (NBD_CMD_FLAG_*).
const (
	CmdFlagFUA      uint16 = 1 << 0
	CmdFlagNoHole   uint16 = 1 << 1
	CmdFlagDF       uint16 = 1 << 2
	CmdFlagReqOne   uint16 = 1 << 3
	CmdFlagFastZero uint16 = 1 << 4
)

// Request and reply magics of the transmission phase.
const (
	RequestMagic         uint32 = 0x25609513
	SimpleReplyMagic     uint32 = 0x67446698
	StructuredReplyMagic uint32 = 0x668e33ef
)

// Structured reply chunk flags and types (NBD_REPLY_*); error types have
// bit 15 set.
const (
	ReplyFlagDone uint16 = 1 << 0

	ReplyTypeNone        uint16 = 0
	ReplyTypeOffsetData  uint16 = 1
	ReplyTypeOffsetHole  uint16 = 2
	ReplyTypeBlockStatus uint16 = 5
	ReplyTypeError       uint16 = 1<<15 | 1
	ReplyTypeErrorOffset uint16 = 1<<15 | 2
)

// Block status flags of base:allocation (NBD_STATE_*) and of
// qemu:dirty-bitmap:NAME.
const (
	StateHole  uint32 = 1 << 0
	StateZero  uint32 = 1 << 1
	StateDirty uint32 = 1 << 0
)

// Meta contexts qemu-nbd offers.
const (
	ContextBaseAllocation   = "base:allocation"
	ContextAllocationDepth  = "qemu:allocation-depth"
	ContextDirtyBitmapPrefx = "qemu:dirty-bitmap:"
)

// Limits as qemu-nbd has them.
const (
	MaxBufferSize = 32 << 20 // largest READ/WRITE payload qemu-nbd accepts
	MaxStringSize = 4096     // export names, descriptions, context names
	MaxOptionSize = 64 << 10 // the largest option payload a server reads
)

// Errors of the protocol (NBD_E*): the values on the wire.
const (
	ESuccess  uint32 = 0
	EPERM     uint32 = 1
	EIO       uint32 = 5
	ENOMEM    uint32 = 12
	EINVAL    uint32 = 22
	ENOSPC    uint32 = 28
	EOVERFLOW uint32 = 75
	ENOTSUP   uint32 = 95
	ESHUTDOWN uint32 = 108
)

// ErrnoToWire maps a host errno to the protocol's value, as qemu-nbd's
// system_errno_to_nbd_errno does (anything else becomes EINVAL).
func ErrnoToWire(e syscall.Errno) uint32 {
	switch e {
	case 0:
		return ESuccess
	case syscall.EPERM, syscall.EROFS:
		return EPERM
	case syscall.EIO:
		return EIO
	case syscall.ENOMEM:
		return ENOMEM
	case syscall.EDQUOT, syscall.EFBIG, syscall.ENOSPC:
		return ENOSPC
	case syscall.EOVERFLOW:
		return EOVERFLOW
	case syscall.ENOTSUP:
		return ENOTSUP
	case syscall.ESHUTDOWN:
		return ESHUTDOWN
	default:
		return EINVAL
	}
}

// WireToErrno maps the protocol's value back to a host errno, as QEMU's
// nbd_errno_to_system_errno does (an unknown value becomes EINVAL).
func WireToErrno(v uint32) syscall.Errno {
	switch v {
	case ESuccess:
		return 0
	case EPERM:
		return syscall.EPERM
	case EIO:
		return syscall.EIO
	case ENOMEM:
		return syscall.ENOMEM
	case ENOSPC:
		return syscall.ENOSPC
	case EOVERFLOW:
		return syscall.EOVERFLOW
	case ENOTSUP:
		return syscall.ENOTSUP
	case ESHUTDOWN:
		return syscall.ESHUTDOWN
	default:
		return syscall.EINVAL
	}
}

// Request is a transmission-phase request header (28 bytes on the wire).
type Request struct {
	Flags  uint16
	Type   uint16
	Handle uint64
	Offset uint64
	Length uint32
}

// RequestSize is the length of an encoded Request.
const RequestSize = 28

// Encode writes r into b[:RequestSize].
func (r Request) Encode(b []byte) {
	binary.BigEndian.PutUint32(b[0:], RequestMagic)
	binary.BigEndian.PutUint16(b[4:], r.Flags)
	binary.BigEndian.PutUint16(b[6:], r.Type)
	binary.BigEndian.PutUint64(b[8:], r.Handle)
	binary.BigEndian.PutUint64(b[16:], r.Offset)
	binary.BigEndian.PutUint32(b[24:], r.Length)
}

// ErrBadMagic is returned when a header does not start with its magic.
var ErrBadMagic = errors.New("nbd: invalid magic")

// DecodeRequest parses b[:RequestSize].
func DecodeRequest(b []byte) (Request, error) {
	if binary.BigEndian.Uint32(b[0:]) != RequestMagic {
		return Request{}, ErrBadMagic
	}
	return Request{
		Flags:  binary.BigEndian.Uint16(b[4:]),
		Type:   binary.BigEndian.Uint16(b[6:]),
		Handle: binary.BigEndian.Uint64(b[8:]),
		Offset: binary.BigEndian.Uint64(b[16:]),
		Length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// SimpleReplySize and ChunkHeaderSize are the lengths of a simple reply
// and of a structured reply chunk's header.
const (
	SimpleReplySize = 16
	ChunkHeaderSize = 20
)

// EncodeSimpleReply writes a simple reply header into b[:SimpleReplySize].
func EncodeSimpleReply(b []byte, errno uint32, handle uint64) {
	binary.BigEndian.PutUint32(b[0:], SimpleReplyMagic)
	binary.BigEndian.PutUint32(b[4:], errno)
	binary.BigEndian.PutUint64(b[8:], handle)
}

// Chunk is a structured reply chunk's header.
type Chunk struct {
	Flags  uint16
	Type   uint16
	Handle uint64
	Length uint32 // of the payload that follows
}

// Encode writes c into b[:ChunkHeaderSize].
func (c Chunk) Encode(b []byte) {
	binary.BigEndian.PutUint32(b[0:], StructuredReplyMagic)
	binary.BigEndian.PutUint16(b[4:], c.Flags)
	binary.BigEndian.PutUint16(b[6:], c.Type)
	binary.BigEndian.PutUint64(b[8:], c.Handle)
	binary.BigEndian.PutUint32(b[16:], c.Length)
}

// ReadFull reads exactly len(b) bytes, turning a short read into
// io.ErrUnexpectedEOF (and a read of nothing into io.EOF).
func ReadFull(r io.Reader, b []byte) error {
	_, err := io.ReadFull(r, b)
	return err
}
