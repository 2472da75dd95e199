package server

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
	"github.com/goqio/goqio/nbd"
)

// socketPair returns two connected unix stream sockets.
func socketPair(t testing.TB) (net.Conn, net.Conn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// testServer exports a 1 MiB in-memory image.
func testServer(readOnly bool) *Server {
	d := image.New(imagetest.NewMem(1<<20, image.Limits{}, true), "mem", image.Options{ReadOnly: readOnly})
	e := &Export{Name: "", Description: "fuzz", Disk: d, AllocationDepth: true}
	e.Init()
	return &Server{Exports: []*Export{e, func() *Export {
		x := &Export{Name: "other", Disk: d, ReadOnly: true, RequestAlignment: 512}
		x.Init()
		return x
	}()}}
}

// session runs the server on one connection fed with in, the client's
// bytes, and returns what the server sent.
func session(t testing.TB, srv *Server, in []byte) []byte {
	c, s := socketPair(t)
	done := make(chan bool)
	go func() { done <- srv.Serve(s) }()
	go func() {
		c.Write(in)
		c.(*net.UnixConn).CloseWrite()
	}()
	out := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(c)
		out <- b
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("server hangs on %q", in)
	}
	b := <-out
	c.Close()
	return b
}

func opt(o uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, nbd.OptMagic)
	b = binary.BigEndian.AppendUint32(b, o)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func req(flags, typ uint16, off uint64, n uint32, data []byte) []byte {
	b := make([]byte, nbd.RequestSize)
	nbd.Request{Flags: flags, Type: typ, Handle: 7, Offset: off, Length: n}.Encode(b)
	return append(b, data...)
}

// FuzzSession feeds any byte stream to the server as a client's: it must
// neither panic nor hang, whatever the handshake and requests say. Seeds:
// sessions of qemu-io, qemu-img and nbdinfo recorded against qemu-nbd
// (testdata/fuzz/FuzzSession), and a few built here.
func FuzzSession(f *testing.F) {
	goOpt := []byte{0, 0, 0, 0, 0, 1, 0, 3}
	meta := append([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 15}, "base:allocation"...)
	hs := append([]byte{0, 0, 0, 3}, opt(nbd.OptStructuredReply, nil)...)
	hs = append(hs, opt(nbd.OptSetMetaContext, meta)...)
	hs = append(hs, opt(nbd.OptGo, goOpt)...)
	f.Add(append(append(append([]byte{}, hs...), req(0, nbd.CmdRead, 0, 4096, nil)...), req(0, nbd.CmdBlockStatus, 0, 1<<20, nil)...))
	f.Add(append(append([]byte{}, hs...), req(1, nbd.CmdWrite, 512, 8, []byte("12345678"))...))
	f.Add(append([]byte{0, 0, 0, 1}, opt(nbd.OptList, nil)...))
	f.Add(append([]byte{0, 0, 0, 3}, opt(nbd.OptExportName, nil)...))
	srv := testServer(false)
	f.Fuzz(func(t *testing.T, in []byte) {
		session(t, srv, in)
	})
}

// TestSeeds runs the recorded sessions and checks a few answers.
func TestSession(t *testing.T) {
	srv := testServer(false)
	in := append([]byte{0, 0, 0, 3}, opt(nbd.OptList, nil)...)
	in = append(in, opt(nbd.OptAbort, nil)...)
	out := session(t, srv, in)
	// greeting, two servers, ack of the list, ack of the abort
	if want := 18 + 2*20 + 4 + 0 + 4 + 4 + 5 + 20 + 20; len(out) != want {
		t.Errorf("got %d bytes, want %d: %q", len(out), want, out)
	}
	hs := append([]byte{0, 0, 0, 3}, opt(nbd.OptGo, []byte{0, 0, 0, 0, 0, 0})...)
	out = session(t, srv, append(hs, req(0, nbd.CmdRead, 1<<20-4, 8, nil)...))
	if n := len(out); n < 16 || binary.BigEndian.Uint32(out[n-12:]) != nbd.EINVAL {
		t.Errorf("read past the end: %q", out)
	}
}

// TestClosedHere: a connection the server closes itself (qemu-nbd ending
// on SIGTERM) while a client is negotiating ends without a message; a
// client that hangs up mid-negotiation gets qemu-nbd's.
func TestClosedHere(t *testing.T) {
	var msgs []string
	srv := testServer(false)
	srv.Report = func(m string) { msgs = append(msgs, m) }
	c, s := socketPair(t)
	done := make(chan bool)
	go func() { done <- srv.Serve(s) }()
	greeting := make([]byte, 18)
	if _, err := io.ReadFull(c, greeting); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0, 0, 0, 3})
	time.Sleep(50 * time.Millisecond) // the server waits for an option
	s.Close()
	<-done
	c.Close()
	if len(msgs) != 0 {
		t.Errorf("closed by the server: %q", msgs)
	}
	session(t, srv, []byte{0, 0, 0, 3})
	if want := "option negotiation failed: Failed to read opts magic: Unexpected end-of-file before all data were read"; len(msgs) != 1 || msgs[0] != want {
		t.Errorf("client hung up: %q, want %q", msgs, want)
	}
}
