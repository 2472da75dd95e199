package client

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/goqio/goqio/nbd"
)

// serverBytes is what a server sends for a session: the fixed newstyle
// greeting, answers to the client's options in the order the client asks
// them (structured reply, set meta context, go), then the replies.
func serverBytes(replies ...[]byte) []byte {
	var b bytes.Buffer
	w := func(v ...any) {
		for _, x := range v {
			binary.Write(&b, binary.BigEndian, x)
		}
	}
	w(nbd.Magic, nbd.OptMagic, nbd.FlagFixedNewstyle|nbd.FlagNoZeroes)
	w(nbd.RepMagic, nbd.OptStructuredReply, nbd.RepAck, uint32(0))
	w(nbd.RepMagic, nbd.OptSetMetaContext, nbd.RepMetaContext, uint32(4+15), uint32(1), []byte("base:allocation"))
	w(nbd.RepMagic, nbd.OptSetMetaContext, nbd.RepAck, uint32(0))
	w(nbd.RepMagic, nbd.OptGo, nbd.RepInfo, uint32(14), nbd.InfoBlockSize, uint32(1), uint32(4096), uint32(1<<25))
	w(nbd.RepMagic, nbd.OptGo, nbd.RepInfo, uint32(12), nbd.InfoExport, uint64(1<<20), nbd.FlagHasFlags|nbd.FlagSendFlush)
	w(nbd.RepMagic, nbd.OptGo, nbd.RepAck, uint32(0))
	for _, r := range replies {
		b.Write(r)
	}
	return b.Bytes()
}

func chunkBytes(flags, typ uint16, h uint64, payload ...any) []byte {
	var p bytes.Buffer
	for _, x := range payload {
		binary.Write(&p, binary.BigEndian, x)
	}
	hdr := make([]byte, nbd.ChunkHeaderSize)
	nbd.Chunk{Flags: flags, Type: typ, Handle: h, Length: uint32(p.Len())}.Encode(hdr)
	return append(hdr, p.Bytes()...)
}

// FuzzSession plays any bytes as the server of a session (handshake and
// replies to a read, a block status and a flush): the client must
// neither panic nor hang, whatever the server says.
func FuzzSession(f *testing.F) {
	f.Add(serverBytes(
		chunkBytes(0, nbd.ReplyTypeOffsetData, 1, uint64(0), make([]byte, 2048)),
		chunkBytes(nbd.ReplyFlagDone, nbd.ReplyTypeOffsetHole, 1, uint64(2048), uint32(2048)),
		chunkBytes(nbd.ReplyFlagDone, nbd.ReplyTypeBlockStatus, 2, uint32(1), uint32(4096), uint32(3)),
		func() []byte { b := make([]byte, 16); nbd.EncodeSimpleReply(b, 0, 3); return b }()))
	f.Add(serverBytes(chunkBytes(nbd.ReplyFlagDone, nbd.ReplyTypeError, 1, nbd.EIO, uint16(0))))
	f.Add([]byte("NBDMAGIC\x00\x00\x42\x02\x81\x86\x12\x53"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		go io.Copy(io.Discard, b)
		go func() {
			b.Write(data)
			b.Close()
		}()
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := Negotiate(a, Options{})
			if err != nil {
				a.Close()
				return
			}
			c.Read(make([]byte, 4096), 0)
			c.BlockStatus(0, 1<<20)
			c.Flush()
			c.Close()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("client hangs")
		}
	})
}
