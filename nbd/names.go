package nbd

// The names QEMU's messages give the protocol's values (nbd/common.c's
// nbd_opt_lookup, nbd_rep_lookup, nbd_cmd_lookup, nbd_reply_type_lookup),
// for the client and the server alike.

// OptName is QEMU's nbd_opt_lookup.
func OptName(opt uint32) string {
	switch opt {
	case OptExportName:
		return "export name"
	case OptAbort:
		return "abort"
	case OptList:
		return "list"
	case OptStartTLS:
		return "starttls"
	case OptInfo:
		return "info"
	case OptGo:
		return "go"
	case OptStructuredReply:
		return "structured reply"
	case OptListMetaContext:
		return "list meta context"
	case OptSetMetaContext:
		return "set meta context"
	}
	return "<unknown>"
}

// RepName is QEMU's nbd_rep_lookup.
func RepName(rep uint32) string {
	switch rep {
	case RepAck:
		return "ack"
	case RepServer:
		return "server"
	case RepInfo:
		return "info"
	case RepMetaContext:
		return "meta context"
	case RepErrUnsup:
		return "unsupported"
	case RepErrPolicy:
		return "denied by policy"
	case RepErrInvalid:
		return "invalid"
	case RepErrPlatform:
		return "platform lacks support"
	case RepErrTLSReqd:
		return "TLS required"
	case RepErrUnknown:
		return "export unknown"
	case RepErrShutdown:
		return "server shutting down"
	case RepErrBlockSizeReqd:
		return "block size required"
	}
	return "<unknown>"
}

// CmdName is QEMU's nbd_cmd_lookup.
func CmdName(cmd uint16) string {
	switch cmd {
	case CmdRead:
		return "read"
	case CmdWrite:
		return "write"
	case CmdDisc:
		return "disconnect"
	case CmdFlush:
		return "flush"
	case CmdTrim:
		return "trim"
	case CmdCache:
		return "cache"
	case CmdWriteZeroes:
		return "write zeroes"
	case CmdBlockStatus:
		return "block status"
	}
	return "<unknown>"
}

// ReplyTypeName is QEMU's nbd_reply_type_lookup.
func ReplyTypeName(t uint16) string {
	switch t {
	case ReplyTypeNone:
		return "none"
	case ReplyTypeOffsetData:
		return "data"
	case ReplyTypeOffsetHole:
		return "hole"
	case ReplyTypeBlockStatus:
		return "block status"
	case ReplyTypeError:
		return "generic error"
	case ReplyTypeErrorOffset:
		return "error at offset"
	}
	if t&(1<<15) != 0 {
		return "<unknown error>"
	}
	return "<unknown>"
}
