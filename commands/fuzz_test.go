package commands

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/raw"
)

// FuzzCommandLine runs arbitrary command lines against a small raw and a
// small qcow2 image: no input may panic the interpreter.
func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{"read 0 512", "write -P 0x41 -zu 0 1k", "readv -v 0 1 2 3", "alloc -1", "map --output=json",
		"open -o driver=raw,,x x", "truncate -m full 1M", "aio_write -z 0 4k", "discard 1M 1", "write -c 0 64k",
		"help read", "sleep 0x1", "reopen -r -o read-only=on", "write -s /dev/null 0 1", "read -P 1 -s 2 -l 3 0 8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if strings.Contains(line, "sleep") || strings.Contains(line, "sigraise") || strings.Contains(line, "abort") {
			return // these stop the process or the clock
		}
		// fresh images for every input, so that one input (a truncate to
		// 20 TiB, say) cannot change what the next one meets and every
		// failure reproduces from its own input
		dir := t.TempDir()
		rawPath := filepath.Join(dir, "f.raw")
		qPath := filepath.Join(dir, "f.qcow2")
		if err := raw.Create(rawPath, 1<<20, image.PreallocOff); err != nil {
			t.Fatal(err)
		}
		if err := qcow2.Create(qPath, qcow2.CreateOptions{Size: 1 << 20, ClusterSize: 4096, Version: 3, RefcountBits: 16}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{rawPath, qPath} {
			s := NewSession("qemu-io", NewOutput(io.Discard, 4096, false), io.Discard)
			if s.Open(p, DefaultOpenFlags(), nil) != nil {
				t.Fatal("open failed")
			}
			s.Run(line)
			s.Close()
		}
	})
}

// FuzzGetopt: glibc's getopt never loses or invents operands.
func FuzzGetopt(f *testing.F) {
	f.Add("read -vq -P0x41 0 1 -- -2")
	f.Fuzz(func(t *testing.T, line string) {
		argv := append([]string{"cmd"}, Tokenize(line)...)
		g := NewGetopt(argv, "bCl:pP:qs:v", mainLongOpts, io.Discard)
		for i := 0; i < 1000; i++ {
			if c, _ := g.Next(); c == -1 {
				break
			}
		}
		if len(g.Operands()) > len(argv)-1 {
			t.Fatalf("more operands than words: %q", argv)
		}
	})
}
