package commands

import (
	"bytes"
	"strings"
	"testing"
)

type recorder struct{ writes []int }

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, len(p))
	return len(p), nil
}

// TestOutputBuffering: like glibc, small writes are flushed in whole
// buffers, a large write fills the buffer, flushes it, writes whole blocks
// and keeps the rest.
func TestOutputBuffering(t *testing.T) {
	r := &recorder{}
	o := NewOutput(r, 16, false)
	o.Write([]byte("0123456789"))
	o.Write([]byte("0123456789"))
	if len(r.writes) != 1 || r.writes[0] != 16 {
		t.Fatalf("writes %v, want [16]", r.writes)
	}
	o.Write(bytes.Repeat([]byte("x"), 40)) // 4 buffered + 40: fill 12, flush, 16 direct, 12 kept
	if got := r.writes; len(got) != 3 || got[1] != 16 || got[2] != 16 {
		t.Fatalf("writes %v, want [16 16 16]", got)
	}
	o.Flush()
	if got := r.writes; got[len(got)-1] != 12 {
		t.Fatalf("writes %v, want 12 last", got)
	}
	o.Write([]byte("lost"))
	o.Discard()
	o.Flush()
	if got := r.writes; len(got) != 4 {
		t.Fatalf("discarded bytes were written: %v", got)
	}
}

func TestOutputLineBuffered(t *testing.T) {
	var b strings.Builder
	o := NewOutput(&b, 4096, true)
	o.Write([]byte("abc"))
	if b.Len() != 0 {
		t.Fatal("line-buffered output wrote a partial line")
	}
	o.Write([]byte("\ndef"))
	if b.String() != "abc\n" {
		t.Fatalf("got %q", b.String())
	}
}
