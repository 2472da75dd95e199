package server

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/raw"
	"github.com/goqio/goqio/nbd"
)

// TestSendfile: read replies sent from the host file by the kernel are the
// bytes the buffered path sends, over a qcow2 chain (data in the overlay,
// in the backing file, zeroes, unallocated) and over a raw file whose end
// is not sector-aligned (that tail reads as zeroes: not from the file).
func TestSendfile(t *testing.T) {
	dir := t.TempDir()
	base, top := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "top.qcow2")
	if err := qcow2.Create(base, qcow2.CreateOptions{Size: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := qcow2.Create(top, qcow2.CreateOptions{Size: 4 << 20, BackingFile: base, BackingFmt: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	fill := func(path string, off, n int64, b byte) {
		drv, err := qcow2.Open(path, qcow2.Options{NoBacking: true})
		if err != nil {
			t.Fatal(err)
		}
		d := image.New(drv, path, image.Options{})
		if b == 0 {
			err = d.WriteZeroes(off, n, 0, false)
		} else {
			err = d.WriteAt(bytes.Repeat([]byte{b}, int(n)), off, false)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	fill(base, 0, 1<<20, 0x55)
	fill(base, 3<<20, 64<<10, 0x33)
	fill(top, 512<<10, 1<<20, 0x66)
	fill(top, 2<<20, 64<<10, 0)
	fill(top, 3<<20+4096, 512, 0x77) // a partial cluster over backing data
	rawPath := filepath.Join(dir, "short.img")
	if err := os.WriteFile(rawPath, bytes.Repeat([]byte{0x99}, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	open := func(t *testing.T, path string) *image.Disk {
		var drv image.Driver
		var err error
		if path == rawPath {
			drv, err = raw.Open(path, raw.Options{ReadOnly: true})
		} else {
			drv, err = qcow2.Open(path, qcow2.Options{ReadOnly: true})
		}
		if err != nil {
			t.Fatal(err)
		}
		d := image.New(drv, path, image.Options{ReadOnly: true})
		t.Cleanup(func() { d.Close() })
		return d
	}
	reads := [][2]int64{{0, 4 << 20}, {100 << 10, 777 << 10}, {3 << 20, 64 << 10}, {1<<20 - 512, 1024}, {3<<20 + 4096, 512}}
	for _, path := range []string{top, rawPath} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			hs := append([]byte{0, 0, 0, 3}, opt(nbd.OptStructuredReply, nil)...)
			hs = append(hs, opt(nbd.OptGo, []byte{0, 0, 0, 0, 0, 0})...)
			size := int64(4 << 20)
			if path == rawPath {
				size = 1024
				reads = [][2]int64{{0, 1024}, {512, 512}, {0, 512}}
			}
			// one read per session: replies to requests in flight
			// together come in any order
			for _, r := range reads {
				if r[0]+r[1] > size {
					continue
				}
				in := append(bytes.Clone(hs), req(0, nbd.CmdRead, uint64(r[0]), uint32(r[1]), nil)...)
				var outs [2][]byte
				for i, no := range []bool{true, false} {
					e := &Export{Disk: open(t, path)}
					e.Init()
					outs[i] = session(t, &Server{Exports: []*Export{e}, NoSendfile: no}, in)
				}
				if len(outs[0]) < 18+16+int(min(r[1], 512)) || !bytes.Equal(outs[0], outs[1]) {
					i := 0
					for i < len(outs[0]) && i < len(outs[1]) && outs[0][i] == outs[1][i] {
						i++
					}
					t.Errorf("read %#x+%#x: sendfile replies differ at byte %d: %d bytes buffered, %d sent from the file", r[0], r[1], i, len(outs[0]), len(outs[1]))
				}
			}
		})
	}
}
