package server

import "github.com/goqio/goqio/nbd"

// optName is QEMU's nbd_opt_lookup: the name messages give an option.
func optName(opt uint32) string {
	switch opt {
	case nbd.OptExportName:
		return "export name"
	case nbd.OptAbort:
		return "abort"
	case nbd.OptList:
		return "list"
	case nbd.OptStartTLS:
		return "starttls"
	case nbd.OptInfo:
		return "info"
	case nbd.OptGo:
		return "go"
	case nbd.OptStructuredReply:
		return "structured reply"
	case nbd.OptListMetaContext:
		return "list meta context"
	case nbd.OptSetMetaContext:
		return "set meta context"
	}
	return "<unknown>"
}

// cmdName is QEMU's nbd_cmd_lookup.
func cmdName(cmd uint16) string {
	switch cmd {
	case nbd.CmdRead:
		return "read"
	case nbd.CmdWrite:
		return "write"
	case nbd.CmdDisc:
		return "disconnect"
	case nbd.CmdFlush:
		return "flush"
	case nbd.CmdTrim:
		return "trim"
	case nbd.CmdCache:
		return "cache"
	case nbd.CmdWriteZeroes:
		return "write zeroes"
	case nbd.CmdBlockStatus:
		return "block status"
	}
	return "<unknown>"
}
