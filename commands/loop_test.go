package commands

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goqio/goqio/image/qcow2"
)

// TestStdinLoopPolls: with its input all there, the stdin loop does not
// run the event loop between commands (an aio_write has not linked its
// cluster when the next line reads it: old data, as in every qemu-io run);
// waiting for a line that has not come, it runs it (the write completes,
// its report prints before the next command's, and the read sees it).
func TestStdinLoopPolls(t *testing.T) {
	for _, wait := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "t.qcow2")
		if err := qcow2.Create(path, qcow2.CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
			t.Fatal(err)
		}
		h := &harness{dir: dir}
		h.s = NewSession("/usr/bin/qemu-io", NewOutput(&h.out, 4096, false), &h.err)
		h.s.Now = (&tclock{}).now
		if err := h.s.Open(path, DefaultOpenFlags(), map[string]string{"driver": "qcow2"}); err != nil {
			t.Fatalf("open: %s", h.err.String())
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if !wait {
			pw.WriteString("aio_write -P 2 0 4k\nread -P 0 0 4k\n")
			pw.Close()
		} else {
			go func() {
				pw.WriteString("aio_write -P 2 0 4k\n")
				time.Sleep(100 * time.Millisecond)
				pw.WriteString("read -P 0 0 4k\n")
				pw.Close()
			}()
		}
		h.s.stdinLoop(pr)
		h.s.Close()
		h.s.Out.Flush()
		pr.Close()
		out := h.out.String()
		wrote := strings.Index(out, "wrote 4096/4096")
		read := strings.Index(out, "read 4096/4096")
		failed := strings.Contains(out, "Pattern verification failed")
		if wrote < 0 || read < 0 || failed != wait || (wrote < read) != wait {
			t.Errorf("input waited for %v:\n%s", wait, out)
		}
	}
}
