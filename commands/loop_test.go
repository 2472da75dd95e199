package commands

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestStdinLoopPolls: with its input all there, the stdin loop does not
// run the event loop between commands (an aio_write has not linked its
// cluster when the next line reads it: old data, as in every qemu-io run);
// waiting for a line that has not come, it runs it (the write completes,
// its report prints before the next command's, and the read sees it).
func TestStdinLoopPolls(t *testing.T) {
	for _, wait := range []bool{false, true} {
		h := newQcow2Harness(t)
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
