package qemunbd

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/goqio/goqio/nbd"
)

// export is what -L learns of one export (QEMU's NBDExportInfo).
type export struct {
	name, desc                   string
	size                         uint64
	flags                        uint16
	minBlock, optBlock, maxBlock uint32
	contexts                     []string
}

// listClient is the handshake of nbd_receive_export_list.
type listClient struct {
	c   net.Conn
	opt uint32
}

var errListEOF = errors.New("Unexpected end-of-file before all data were read")

func (l *listClient) read(b []byte, desc string) error {
	if _, err := io.ReadFull(l.c, b); err != nil {
		if desc != "" {
			return fmt.Errorf("Failed to read %s: %w", desc, errListEOF)
		}
		return errListEOF
	}
	return nil
}

func (l *listClient) sendOpt(opt uint32, payload []byte) error {
	l.opt = opt
	b := binary.BigEndian.AppendUint64(nil, nbd.OptMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	_, err := l.c.Write(append(b, payload...))
	return err
}

// reply reads one option reply: its type and payload.
func (l *listClient) reply() (uint32, []byte, error) {
	var h [20]byte
	if err := l.read(h[:], "option reply"); err != nil {
		return 0, nil, err
	}
	if binary.BigEndian.Uint64(h[:]) != nbd.RepMagic {
		return 0, nil, errors.New("Unexpected option reply magic")
	}
	n := binary.BigEndian.Uint32(h[16:])
	if n > nbd.MaxBufferSize {
		return 0, nil, fmt.Errorf("server's reply length %d is too long", n)
	}
	p := make([]byte, n)
	if err := l.read(p, ""); err != nil {
		return 0, nil, err
	}
	return binary.BigEndian.Uint32(h[12:]), p, nil
}

// list is -L: qemu_nbd_client_list.
func (e *env) list(cfg *config, t *tlsSetup) int {
	var c net.Conn
	var err error
	if cfg.sockpath != "" {
		c, err = net.Dial("unix", cfg.sockpath)
		if err != nil {
			return e.fail("Failed to connect to '%s': %s", cfg.sockpath, sysErr(err))
		}
	} else {
		c, err = net.Dial("tcp", net.JoinHostPort(cfg.bind, cfg.port))
		if err != nil {
			return e.fail("Failed to connect to '%s:%s': %s", cfg.bind, cfg.port, sysErr(err))
		}
	}
	defer c.Close()
	host := cfg.tlsHostname
	if host == "" {
		host = cfg.bind
	}
	exports, err := e.listExports(&listClient{c: c}, t, host)
	if err != nil {
		return e.fail("%v", err)
	}
	w := e.stdout
	fmt.Fprintf(w, "exports available: %d\n", len(exports))
	names := []string{"", "readonly", "flush", "fua", "rotational", "trim", "zeroes", "df", "multi", "resize", "cache", "fast-zero"}
	for _, x := range exports {
		fmt.Fprintf(w, " export: '%s'\n", x.name)
		if x.desc != "" {
			fmt.Fprintf(w, "  description: %s\n", x.desc)
		}
		if x.flags&nbd.FlagHasFlags != 0 {
			fmt.Fprintf(w, "  size:  %d\n", x.size)
			fmt.Fprintf(w, "  flags: 0x%x (", x.flags)
			for bit := 1; bit < len(names); bit++ {
				if x.flags&(1<<bit) != 0 {
					fmt.Fprintf(w, " %s", names[bit])
				}
			}
			fmt.Fprint(w, " )\n")
		}
		if x.minBlock != 0 {
			fmt.Fprintf(w, "  min block: %d\n  opt block: %d\n  max block: %d\n", x.minBlock, x.optBlock, x.maxBlock)
		}
		if len(x.contexts) > 0 {
			fmt.Fprintf(w, "  available meta contexts: %d\n", len(x.contexts))
			for _, ctx := range x.contexts {
				fmt.Fprintf(w, "   %s\n", ctx)
			}
		}
	}
	return 0
}

func (e *env) listExports(l *listClient, t *tlsSetup, host string) ([]*export, error) {
	var g [18]byte
	if err := l.read(g[:16], "initial magic"); err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint64(g[:]) != nbd.Magic {
		return nil, errors.New("Bad initial magic received: 0x" + fmt.Sprintf("%x", binary.BigEndian.Uint64(g[:])))
	}
	if binary.BigEndian.Uint64(g[8:]) != nbd.OptMagic {
		return nil, errors.New("Server does not support export lists")
	}
	if err := l.read(g[16:], "server flags"); err != nil {
		return nil, err
	}
	sflags := binary.BigEndian.Uint16(g[16:])
	var cflags uint32
	if sflags&nbd.FlagFixedNewstyle != 0 {
		cflags |= nbd.FlagCFixedNewstyle
	}
	if sflags&nbd.FlagNoZeroes != 0 {
		cflags |= nbd.FlagCNoZeroes
	}
	if _, err := l.c.Write(binary.BigEndian.AppendUint32(nil, cflags)); err != nil {
		return nil, err
	}
	if sflags&nbd.FlagFixedNewstyle == 0 {
		return nil, errors.New("Server does not support export lists")
	}
	if t != nil {
		if err := l.sendOpt(nbd.OptStartTLS, nil); err != nil {
			return nil, err
		}
		typ, p, err := l.reply()
		if err != nil {
			return nil, err
		}
		if typ != nbd.RepAck {
			return nil, fmt.Errorf("Server rejected request to start TLS %s", p)
		}
		cfg := t.config.Clone()
		cfg.ServerName = host
		tc := tls.Client(l.c, cfg)
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("TLS handshake failed: %v", err)
		}
		l.c = tc
	}
	structured := false
	if err := l.sendOpt(nbd.OptStructuredReply, nil); err != nil {
		return nil, err
	}
	if typ, _, err := l.reply(); err != nil {
		return nil, err
	} else if typ == nbd.RepAck {
		structured = true
	}
	if err := l.sendOpt(nbd.OptList, nil); err != nil {
		return nil, err
	}
	var out []*export
	for {
		typ, p, err := l.reply()
		if err != nil {
			return nil, err
		}
		if typ == nbd.RepAck {
			break
		}
		if typ != nbd.RepServer {
			return nil, fmt.Errorf("Server replied %#x to the export list request: %s", typ, p)
		}
		if len(p) < 4 || binary.BigEndian.Uint32(p) > uint32(len(p)-4) {
			return nil, errors.New("incorrect option name length")
		}
		n := binary.BigEndian.Uint32(p)
		out = append(out, &export{name: string(p[4 : 4+n]), desc: string(p[4+n:])})
	}
	for _, x := range out {
		q := binary.BigEndian.AppendUint32(nil, uint32(len(x.name)))
		q = append(q, x.name...)
		q = append(q, 0, 1, 0, byte(nbd.InfoBlockSize))
		if err := l.sendOpt(nbd.OptInfo, q); err != nil {
			return nil, err
		}
		ok := true
		for {
			typ, p, err := l.reply()
			if err != nil {
				return nil, err
			}
			if typ == nbd.RepAck {
				break
			}
			if typ&nbd.RepFlagError != 0 {
				ok = false
				break
			}
			if typ == nbd.RepInfo && len(p) >= 2 {
				switch binary.BigEndian.Uint16(p) {
				case nbd.InfoExport:
					if len(p) >= 12 {
						x.size, x.flags = binary.BigEndian.Uint64(p[2:]), binary.BigEndian.Uint16(p[10:])
					}
				case nbd.InfoBlockSize:
					if len(p) >= 14 {
						x.minBlock, x.optBlock, x.maxBlock = binary.BigEndian.Uint32(p[2:]), binary.BigEndian.Uint32(p[6:]), binary.BigEndian.Uint32(p[10:])
					}
				}
			}
		}
		if !ok {
			break
		}
		if structured {
			seenAny, seenQemu := false, false
			query := func(qs ...string) error {
				b := binary.BigEndian.AppendUint32(nil, uint32(len(x.name)))
				b = append(b, x.name...)
				b = binary.BigEndian.AppendUint32(b, uint32(len(qs)))
				for _, s := range qs {
					b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
					b = append(b, s...)
				}
				return l.sendOpt(nbd.OptListMetaContext, b)
			}
			if err := query(); err != nil {
				return nil, err
			}
			for {
				typ, p, err := l.reply()
				if err != nil {
					return nil, err
				}
				if typ == nbd.RepAck && seenAny && !seenQemu {
					seenQemu = true
					if err := query("qemu:"); err != nil {
						return nil, err
					}
					continue
				}
				if typ != nbd.RepMetaContext || len(p) < 4 {
					break
				}
				ctx := string(p[4:])
				seenAny = true
				seenQemu = seenQemu || strings.HasPrefix(ctx, "qemu:")
				x.contexts = append(x.contexts, ctx)
			}
		}
	}
	l.sendOpt(nbd.OptAbort, nil)
	return out, nil
}
