package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Protocol values the raw client writes (spelled out here so that the test
// does not trust the package it tests).
const (
	optMagic      = 0x49484156454f5054
	repMagic      = 0x0003e889045565a9
	reqMagic      = 0x25609513
	simpleMagic   = 0x67446698
	structMagic   = 0x668e33ef
	optExportName = 1
	optAbort      = 2
	optList       = 3
	optStartTLS   = 5
	optInfo       = 6
	optGo         = 7
	optStructured = 8
	optListMeta   = 9
	optSetMeta    = 10
)

// rawClient speaks NBD byte by byte and writes a transcript of what the
// server answered.
type rawClient struct {
	c   net.Conn
	log strings.Builder
	eof bool
}

func dialRaw(t *testing.T, sock string) *rawClient {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{c: c}
}

func (r *rawClient) logf(format string, a ...any) { fmt.Fprintf(&r.log, format+"\n", a...) }

func (r *rawClient) send(b []byte) {
	if r.eof {
		return
	}
	// a failed write shows in what is read next; when the server has
	// already hung up is a matter of timing
	r.c.Write(b)
}

func (r *rawClient) read(n int) []byte {
	if r.eof {
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.c, b); err != nil {
		r.logf("EOF (%v)", err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "reset"))
		r.eof = true
		return nil
	}
	return b
}

// hello reads the server's greeting and sends the client flags.
func (r *rawClient) hello(flags uint32) {
	if b := r.read(18); b != nil {
		r.logf("greeting %x", b)
	}
	r.send(be32(flags))
}

func be16(v uint16) []byte       { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte       { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte       { return binary.BigEndian.AppendUint64(nil, v) }
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// nameBytes is a length-prefixed string.
func nameBytes(s string) []byte { return cat(be32(uint32(len(s))), []byte(s)) }

// option sends an option and logs its replies up to the final one.
func (r *rawClient) option(opt uint32, payload []byte) {
	r.send(cat(be64(optMagic), be32(opt), be32(uint32(len(payload))), payload))
	r.replies()
}

func (r *rawClient) replies() {
	for !r.eof {
		h := r.read(20)
		if h == nil {
			return
		}
		typ, n := binary.BigEndian.Uint32(h[12:]), binary.BigEndian.Uint32(h[16:])
		if binary.BigEndian.Uint64(h) != repMagic || n > 1<<20 {
			r.logf("bad reply %x", h)
			r.eof = true
			return
		}
		p := r.read(int(n))
		r.logf("rep opt=%d type=%#x len=%d %q", binary.BigEndian.Uint32(h[8:]), typ, n, p)
		if typ != 2 && typ != 3 && typ != 4 {
			return
		}
	}
}

// request sends a request and logs its reply (a read's data is logged as
// a checksum-free summary: length and the distinct bytes).
func (r *rawClient) request(flags, typ uint16, handle, off uint64, length uint32, payload []byte, structured bool) {
	r.send(cat(be32(reqMagic), be16(flags), be16(typ), be64(handle), be64(off), be32(length), payload))
	if typ == 2 {
		return
	}
	r.reply(typ, length, structured)
}

func summary(p []byte) string {
	seen := map[byte]bool{}
	var s []string
	for _, b := range p {
		if !seen[b] {
			seen[b] = true
			s = append(s, fmt.Sprintf("%02x", b))
		}
	}
	return fmt.Sprintf("%d bytes of %s", len(p), strings.Join(s, ","))
}

func (r *rawClient) reply(typ uint16, length uint32, structured bool) {
	for !r.eof {
		m := r.read(4)
		if m == nil {
			return
		}
		switch binary.BigEndian.Uint32(m) {
		case simpleMagic:
			h := r.read(12)
			if h == nil {
				return
			}
			errno := binary.BigEndian.Uint32(h)
			r.logf("simple errno=%d handle=%x", errno, h[4:])
			if typ == 0 && errno == 0 {
				r.logf("  data %s", summary(r.read(int(length))))
			}
			return
		case structMagic:
			h := r.read(16)
			if h == nil {
				return
			}
			flags, ctype, n := binary.BigEndian.Uint16(h), binary.BigEndian.Uint16(h[2:]), binary.BigEndian.Uint32(h[12:])
			p := r.read(int(n))
			switch ctype {
			case 1:
				r.logf("chunk flags=%d data off=%d %s", flags, binary.BigEndian.Uint64(p), summary(p[8:]))
			default:
				r.logf("chunk flags=%d type=%#x handle=%x %q", flags, ctype, h[4:12], p)
			}
			if flags&1 != 0 {
				return
			}
		default:
			r.logf("bad magic %x", m)
			r.eof = true
		}
	}
}

// finish closes the connection after reading what is left.
func (r *rawClient) finish() string {
	if !r.eof {
		r.c.(*net.UnixConn).CloseWrite()
		rest, _ := io.ReadAll(r.c)
		if len(rest) > 0 {
			r.logf("rest %x", rest)
		}
	}
	r.c.Close()
	return r.log.String()
}

// goOpt is NBD_OPT_GO/INFO's payload: name, then the info requests.
func goOpt(name string, infos ...uint16) []byte {
	b := cat(nameBytes(name), be16(uint16(len(infos))))
	for _, i := range infos {
		b = append(b, be16(i)...)
	}
	return b
}

func metaOpt(name string, queries ...string) []byte {
	b := cat(nameBytes(name), be32(uint32(len(queries))))
	for _, q := range queries {
		b = append(b, nameBytes(q)...)
	}
	return b
}

// session is one client script.
type session func(r *rawClient)

// transmission negotiates structured replies (or not) and the contexts,
// then runs f.
func transmission(structured bool, f func(r *rawClient, s bool)) session {
	return func(r *rawClient) {
		r.hello(3)
		if structured {
			r.option(optStructured, nil)
			r.option(optSetMeta, metaOpt("", "base:allocation", "qemu:allocation-depth"))
		}
		r.option(optGo, goOpt("", 3))
		f(r, structured)
	}
}

var rawSessions = map[string]session{
	"bad-flags": func(r *rawClient) { r.hello(0x80) },
	"bad-magic": func(r *rawClient) { r.hello(1); r.send(cat(be64(1), be32(3), be32(0))) },
	"huge-opt":  func(r *rawClient) { r.hello(1); r.send(cat(be64(optMagic), be32(3), be32(64<<20))) },
	"short-opt": func(r *rawClient) { r.hello(1); r.send(cat(be64(optMagic), be32(3))) },
	"unknown":   func(r *rawClient) { r.hello(1); r.option(99, []byte("xyz")); r.option(optAbort, nil) },
	"list":      func(r *rawClient) { r.hello(1); r.option(optList, []byte("x")); r.option(optList, nil) },
	"structured": func(r *rawClient) {
		r.hello(1)
		r.option(optStructured, []byte{1})
		r.option(optStructured, nil)
		r.option(optStructured, nil)
	},
	"starttls": func(r *rawClient) { r.hello(1); r.option(optStartTLS, nil); r.option(optStartTLS, []byte{1}) },
	"info": func(r *rawClient) {
		r.hello(3)
		r.option(optInfo, goOpt("", 1, 3))
		r.option(optInfo, goOpt(""))
		r.option(optInfo, goOpt("nope"))
		r.option(optInfo, goOpt(strings.Repeat("n", 100)))
		r.option(optInfo, cat(be32(5000)))
		r.option(optInfo, cat(be32(10), []byte("ab")))
		r.option(optInfo, cat(nameBytes("a\x00b"), be16(0)))
		r.option(optInfo, cat(goOpt("", 1), []byte{9}))
		r.option(optGo, goOpt("", 0, 2))
	},
	"meta": func(r *rawClient) {
		r.hello(3)
		r.option(optSetMeta, metaOpt("", "base:allocation"))
		r.option(optListMeta, metaOpt(""))
		r.option(optListMeta, metaOpt("", "base:", "qemu:", "qemu:dirty-bitmap:", "foo:bar", "qemu:nope"))
		r.option(optListMeta, metaOpt("nope", "base:"))
		r.option(optListMeta, cat(nameBytes(""), be32(1), be32(5000), bytes.Repeat([]byte{'x'}, 5000)))
		r.option(optListMeta, cat(nameBytes(""), be32(2), nameBytes("base:")))
		r.option(optStructured, nil)
		r.option(optSetMeta, metaOpt("", "qemu:allocation-depth", "base:allocation", "base:"))
		r.option(optGo, goOpt("", 3))
		r.request(0, 7, 1, 0, 4<<20, nil, true)
		r.request(8, 7, 2, 0, 4<<20, nil, true)
		r.request(0, 7, 3, 0, 0, nil, true)
	},
	"export-name": func(r *rawClient) {
		r.hello(1)
		r.send(cat(be64(optMagic), be32(1), be32(0)))
		r.logf("%x", r.read(134))
	},
	"export-name-nozero": func(r *rawClient) {
		r.hello(3)
		r.send(cat(be64(optMagic), be32(1), be32(0)))
		r.logf("%x", r.read(10))
	},
	"export-name-unknown": func(r *rawClient) { r.hello(3); r.send(cat(be64(optMagic), be32(1), be32(3), []byte("abc"))) },
	"oldstyle-list":       func(r *rawClient) { r.hello(0); r.option(optList, nil) },
	"abort":               func(r *rawClient) { r.hello(1); r.option(optAbort, nil) },
	"requests": transmission(true, func(r *rawClient, s bool) {
		r.request(0, 0, 1, 0, 4096, nil, s)
		r.request(0, 0, 2, 4<<20-100, 200, nil, s)
		r.request(0, 0, 3, 1<<40, 1, nil, s)
		r.request(0, 0, 4, 3, 5, nil, s)
		r.request(0, 0, 5, 0, 0, nil, s)
		r.request(0, 0, 6, 0, 33<<20, nil, s)
		r.request(4, 0, 7, 1<<20-512, 70000, nil, s)
		r.request(1, 0, 8, 0, 512, nil, s)
		r.request(0x80, 0, 9, 0, 512, nil, s)
		r.request(0, 42, 10, 0, 512, nil, s)
		r.request(0, 8, 11, 0, 0, nil, s)
		r.request(1, 1, 12, 8192, 4096, bytes.Repeat([]byte{0x42}, 4096), s)
		r.request(0, 1, 13, 4<<20-10, 20, make([]byte, 20), s)
		r.request(0x10, 6, 14, 64<<10, 64<<10, nil, s)
		r.request(0x2, 6, 15, 128<<10, 100, nil, s)
		r.request(0, 6, 16, 1<<20, 64<<10, nil, s)
		r.request(0x4, 6, 17, 0, 512, nil, s)
		r.request(0, 4, 18, 2<<20, 1<<20, nil, s)
		r.request(1, 4, 19, 3<<20, 4096, nil, s)
		r.request(0, 5, 20, 0, 1<<20, nil, s)
		r.request(0, 3, 21, 0, 0, nil, s)
		r.request(0x8, 7, 22, 0, 4<<20, nil, s)
		r.request(0, 7, 23, 4096, 100, nil, s)
		r.request(0, 0, 24, 0, 4<<20, nil, s)
		r.request(0, 2, 25, 0, 0, nil, s)
	}),
	"simple-requests": transmission(false, func(r *rawClient, s bool) {
		r.request(0, 0, 1, 0, 8192, nil, s)
		r.request(0, 0, 2, 1<<40, 1, nil, s)
		r.request(4, 0, 3, 0, 512, nil, s)
		r.request(0, 7, 4, 0, 512, nil, s)
		r.request(0, 99, 5, 0, 512, nil, s)
		r.request(0, 1, 6, 4<<20, 1, []byte{1}, s)
	}),
	"oversized-write": transmission(true, func(r *rawClient, s bool) {
		r.request(0, 1, 1, 0, 33<<20, nil, s)
		r.request(0, 0, 2, 0, 512, nil, s)
	}),
	"bad-request-magic": transmission(true, func(r *rawClient, s bool) {
		r.send(cat(be32(0x12345678), be16(0), be16(0), be64(7), be64(0), be32(512)))
		r.reply(0, 512, s)
	}),
	"partial-request": transmission(true, func(r *rawClient, s bool) {
		r.send(cat(be32(reqMagic), be16(0)))
	}),
	"mid-payload": transmission(true, func(r *rawClient, s bool) {
		r.send(cat(be32(reqMagic), be16(0), be16(1), be64(1), be64(0), be32(65536), bytes.Repeat([]byte{7}, 1000)))
	}),
}

// TestRawSessions runs hostile and odd clients against both servers: the
// same bytes back, the same messages, a clean image, and the server still
// serving (each session is a new connection to the same server).
func TestRawSessions(t *testing.T) {
	names := make([]string, 0, len(rawSessions))
	for n := range rawSessions {
		names = append(names, n)
	}
	sortStrings(names)
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("probed-raw=%v", raw), func(t *testing.T) {
			t.Parallel()
			args := []string{"-f", "qcow2", "-A", "-t", "--discard=unmap", "t.qcow2"}
			if raw {
				args = []string{"-A", "-t", "r.img"}
			}
			sideBySide(t, chainSetup, args, true, []string{"t.qcow2"}, func(t *testing.T, s *server, dir string) string {
				var out strings.Builder
				for _, n := range names {
					r := dialRaw(t, s.sock)
					rawSessions[n](r)
					fmt.Fprintf(&out, "== %s\n%s", n, r.finish())
				}
				r := dialRaw(t, s.sock)
				transmission(true, func(r *rawClient, st bool) { r.request(0, 0, 1, 0, 4096, nil, st) })(r)
				fmt.Fprintf(&out, "== still served\n%s", r.finish())
				return out.String()
			})
		})
	}
}

func sortStrings(s []string) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

// TestManyClients connects 100 clients at once to goqio's server (-e 0),
// each writing and reading its own range, with a few that hang up in the
// middle of a read reply; the image stays clean and a later client is
// served.
func TestManyClients(t *testing.T) {
	prog := servers(t)["goqio"]
	dir := t.TempDir()
	sh(t, dir, "qemu-img create -f qcow2 m.qcow2 8M >/dev/null")
	s := start(t, prog, dir, "-f", "qcow2", "-e", "0", "-t", "m.qcow2")
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := dialRaw(t, s.sock)
			transmission(true, func(r *rawClient, st bool) {
				off := uint64(i) * 64 << 10
				r.request(0, 1, 1, off, 4096, bytes.Repeat([]byte{byte(i)}, 4096), st)
				if i%10 == 9 {
					// hang up in the middle of the reply of a big read
					r.send(cat(be32(reqMagic), be16(4), be16(0), be64(2), be64(0), be32(8<<20)))
					r.read(100)
					r.c.Close()
					r.eof = true
					return
				}
				r.request(4, 0, 2, off, 4096, nil, st)
			})(r)
			log := r.finish()
			want := fmt.Sprintf("chunk flags=1 data off=%d 4096 bytes of %02x", uint64(i)*64<<10, byte(i))
			if i%10 != 9 && !strings.Contains(log, want) {
				errs <- fmt.Sprintf("client %d: %s", i, log)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	r := dialRaw(t, s.sock)
	transmission(true, func(r *rawClient, st bool) { r.request(4, 0, 1, 64<<10, 4096, nil, st) })(r)
	if log := r.finish(); !strings.Contains(log, "4096 bytes of 01") {
		t.Errorf("not served after the crowd: %s", log)
	}
	s.stop()
	s.wait(t)
	if out := run(dir, "qemu-img", "check", "m.qcow2"); !strings.Contains(out, "No errors") {
		t.Errorf("check: %s", out)
	}
}

// TestFlushSurvivesKill: writes acknowledged before a FLUSH reply are in
// the image after the server is killed with SIGKILL.
func TestFlushSurvivesKill(t *testing.T) {
	prog := servers(t)["goqio"]
	for _, f := range []string{"qcow2", "raw"} {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			sh(t, dir, "qemu-img create -f "+f+" k.img 4M >/dev/null")
			s := start(t, prog, dir, "-f", f, "-t", "k.img")
			r := dialRaw(t, s.sock)
			transmission(true, func(r *rawClient, st bool) {
				r.request(0, 1, 1, 1<<20, 65536, bytes.Repeat([]byte{0x5a}, 65536), st)
				r.request(0, 6, 2, 2<<20, 65536, nil, st)
				r.request(0, 3, 3, 0, 0, nil, st)
			})(r)
			s.cmd.Process.Kill()
			s.wait(t)
			r.finish()
			out := run(dir, "qemu-io", "-f", f, "-c", "read -P 0x5a 1M 64k", "-c", "read -P 0 2M 64k", "k.img")
			if strings.Contains(out, "Pattern verification failed") || !strings.Contains(out, "[rc=0]") {
				t.Errorf("after SIGKILL: %s", out)
			}
			if f == "qcow2" {
				if out := run(dir, "qemu-img", "check", "k.img"); !strings.Contains(out, "No errors") && !strings.Contains(out, "leaked") {
					t.Errorf("check: %s", out)
				}
			}
		})
	}
}
