package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goqio/goqio/nbd"
)

// serve starts qemu-nbd on a UNIX socket in a temporary directory.
func serve(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("qemu-nbd"); err != nil {
		t.Skip("qemu-nbd not installed")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	pid := filepath.Join(dir, "pid")
	cmd := exec.Command("qemu-nbd", append([]string{"-k", sock, "--fork", "--pid-file", pid}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-nbd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(pid); err == nil {
			var p int
			for _, c := range bytes.TrimSpace(b) {
				p = p*10 + int(c-'0')
			}
			syscall.Kill(p, syscall.SIGTERM)
		}
	})
	return sock
}

func newImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img.raw")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestQemuNBD(t *testing.T) {
	img := newImage(t, 1<<20)
	sock := serve(t, "-f", "raw", "-x", "exp", "-t", img)
	c, err := Dial(context.Background(), "unix", sock, Options{Export: "exp"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info := c.Info()
	if info.Size != 1<<20 || !info.StructuredReply || !info.BaseAllocation || info.MinBlock != 1 {
		t.Fatalf("info %+v", info)
	}
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := bytes.Repeat([]byte{byte(i + 1)}, 4096)
			if err := c.Write(p, uint64(i)*8192, 0); err != nil {
				t.Error(err)
			}
			q := make([]byte, 8192)
			if err := c.Read(q, uint64(i)*8192); err != nil {
				t.Error(err)
			}
			if !bytes.Equal(q[:4096], p) || !bytes.Equal(q[4096:], make([]byte, 4096)) {
				t.Errorf("read %d differs", i)
			}
		}(i)
	}
	wg.Wait()
	if err := c.WriteZeroes(0, 4096, nbd.CmdFlagNoHole); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	e, err := c.BlockStatus(512<<10, 1<<20-512<<10)
	if err != nil || e.Flags != nbd.StateHole|nbd.StateZero || e.Length != 512<<10 {
		t.Fatalf("block status %+v %v", e, err)
	}
	// past the end: the server's EINVAL
	if err := c.Read(make([]byte, 512), 1<<20); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("read past end: %v", err)
	}
}

func TestUnknownExport(t *testing.T) {
	img := newImage(t, 1<<20)
	sock := serve(t, "-f", "raw", "-x", "exp", "-t", img)
	_, err := Dial(context.Background(), "unix", sock, Options{Export: "nope"})
	var e *Error
	if !errors.As(err, &e) || e.Msg != "Requested export not available" || e.Hint != "server reported: export 'nope' not present\n" {
		t.Fatalf("%#v", err)
	}
	none := filepath.Join(t.TempDir(), "none")
	_, err = Dial(context.Background(), "unix", none, Options{})
	if err == nil || err.Error() != "Failed to connect to '"+none+"': No such file or directory" {
		t.Fatal(err)
	}
}

// fakeServer runs handshake and then script on the server side of a pipe.
func fakeServer(t *testing.T, script func(c net.Conn, hdr func() nbd.Request)) *Conn {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		defer b.Close()
		w := func(v ...any) {
			for _, x := range v {
				binary.Write(b, binary.BigEndian, x)
			}
		}
		w(nbd.Magic, nbd.OptMagic, nbd.FlagFixedNewstyle|nbd.FlagNoZeroes)
		var cf uint32
		binary.Read(b, binary.BigEndian, &cf)
		for {
			var h struct {
				Magic    uint64
				Opt, Len uint32
			}
			if binary.Read(b, binary.BigEndian, &h) != nil {
				return
			}
			p := make([]byte, h.Len)
			if _, err := readFull(b, p); err != nil {
				return
			}
			switch h.Opt {
			case nbd.OptStructuredReply:
				w(nbd.RepMagic, h.Opt, nbd.RepAck, uint32(0))
			case nbd.OptSetMetaContext:
				w(nbd.RepMagic, h.Opt, nbd.RepMetaContext, uint32(4+15), uint32(1), []byte("base:allocation"))
				w(nbd.RepMagic, h.Opt, nbd.RepAck, uint32(0))
			case nbd.OptGo:
				w(nbd.RepMagic, h.Opt, nbd.RepInfo, uint32(12), nbd.InfoExport, uint64(1<<20), nbd.FlagHasFlags|nbd.FlagSendFlush)
				w(nbd.RepMagic, h.Opt, nbd.RepAck, uint32(0))
				script(b, func() nbd.Request {
					var rb [nbd.RequestSize]byte
					if _, err := readFull(b, rb[:]); err != nil {
						return nbd.Request{Type: 0xffff}
					}
					r, _ := nbd.DecodeRequest(rb[:])
					return r
				})
				return
			}
		}
	}()
	c, err := Negotiate(a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readFull(c net.Conn, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := c.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func chunk(c net.Conn, flags, typ uint16, h uint64, payload ...any) {
	var buf bytes.Buffer
	for _, x := range payload {
		binary.Write(&buf, binary.BigEndian, x)
	}
	hdr := make([]byte, nbd.ChunkHeaderSize)
	nbd.Chunk{Flags: flags, Type: typ, Handle: h, Length: uint32(buf.Len())}.Encode(hdr)
	c.Write(append(hdr, buf.Bytes()...))
}

// A hostile server: a data chunk outside the request, a huge payload, a
// connection dropped mid-request. Each fails the request, never hangs,
// and later requests fail with EIO.
func TestHostileServer(t *testing.T) {
	t.Run("outside", func(t *testing.T) {
		c := fakeServer(t, func(s net.Conn, next func() nbd.Request) {
			r := next()
			chunk(s, nbd.ReplyFlagDone, nbd.ReplyTypeOffsetData, r.Handle, uint64(r.Offset+512), make([]byte, 512))
			next()
		})
		err := c.Read(make([]byte, 512), 0)
		if !errors.Is(err, syscall.EINVAL) || err.Error() != "Protocol error: server sent chunk exceeding requested region" {
			t.Fatal(err)
		}
		if err := c.Flush(); !errors.Is(err, syscall.EIO) {
			t.Fatal(err)
		}
	})
	t.Run("huge", func(t *testing.T) {
		c := fakeServer(t, func(s net.Conn, next func() nbd.Request) {
			r := next()
			hdr := make([]byte, nbd.ChunkHeaderSize)
			nbd.Chunk{Flags: nbd.ReplyFlagDone, Type: nbd.ReplyTypeBlockStatus, Handle: r.Handle, Length: 0xffffffff}.Encode(hdr)
			s.Write(hdr)
			next()
		})
		if _, err := c.BlockStatus(0, 512); err == nil || err.Error() != "Payload too large" {
			t.Fatal(err)
		}
	})
	t.Run("drop", func(t *testing.T) {
		c := fakeServer(t, func(s net.Conn, next func() nbd.Request) {
			r := next()
			chunk(s, 0, nbd.ReplyTypeOffsetData, r.Handle, uint64(0), make([]byte, 100))
		})
		done := make(chan error)
		go func() { done <- c.Read(make([]byte, 4096), 0) }()
		select {
		case err := <-done:
			if !errors.Is(err, syscall.EIO) {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("hang")
		}
	})
	t.Run("unknown handle", func(t *testing.T) {
		c := fakeServer(t, func(s net.Conn, next func() nbd.Request) {
			r := next()
			chunk(s, nbd.ReplyFlagDone, nbd.ReplyTypeNone, r.Handle+7)
			next()
		})
		if err := c.Flush(); !errors.Is(err, syscall.EIO) {
			t.Fatal(err)
		}
	})
	t.Run("error chunk", func(t *testing.T) {
		c := fakeServer(t, func(s net.Conn, next func() nbd.Request) {
			r := next()
			chunk(s, nbd.ReplyFlagDone, nbd.ReplyTypeError, r.Handle, nbd.ENOSPC, uint16(2), []byte("no"))
			r = next()
			chunk(s, nbd.ReplyFlagDone, nbd.ReplyTypeNone, r.Handle)
			next()
		})
		if err := c.Read(make([]byte, 10), 0); !errors.Is(err, syscall.ENOSPC) {
			t.Fatal(err)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
}
