package commands

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Output is stdout as C's stdio keeps it: fully buffered when it is not a
// terminal (flushed when the buffer fills, at prompts and at exit), line
// buffered when it is. qemu-io's golden transcripts depend on this: text
// written to the unbuffered stderr appears before stdout text that is still
// in the buffer. The buffer follows glibc's _IO_new_file_xsputn: a write that
// does not fit fills the buffer, flushes it, writes whole blocks directly and
// buffers the remainder.
type Output struct {
	w    io.Writer
	buf  []byte
	size int
	line bool // line buffered (a terminal)
	err  error
}

// NewOutput buffers w with a buffer of size bytes (glibc uses st_blksize),
// line-buffered if line is set.
func NewOutput(w io.Writer, size int, line bool) *Output {
	if size <= 0 {
		size = 4096
	}
	return &Output{w: w, size: size, line: line}
}

// StdoutOutput returns the Output for f as glibc would set it up for stdout.
func StdoutOutput(f *os.File) *Output {
	size := 4096
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err == nil && st.Blksize > 0 {
		size = int(st.Blksize)
	}
	return NewOutput(f, size, IsTerminal(f))
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Write buffers p.
func (o *Output) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n := len(p)
	if o.line {
		o.buf = append(o.buf, p...)
		if i := lastNewline(o.buf); i >= 0 || len(o.buf) >= o.size {
			if len(o.buf) >= o.size {
				i = len(o.buf) - 1
			}
			o.write(o.buf[:i+1])
			o.buf = append(o.buf[:0], o.buf[i+1:]...)
		}
		return n, o.err
	}
	if o.buf == nil {
		o.buf = make([]byte, 0, o.size)
	}
	room := o.size - len(o.buf)
	if len(p) <= room {
		o.buf = append(o.buf, p...)
		if len(o.buf) == o.size {
			o.Flush()
		}
		return n, o.err
	}
	o.buf = append(o.buf, p[:room]...)
	p = p[room:]
	o.Flush()
	if direct := len(p) - len(p)%o.size; direct > 0 {
		o.write(p[:direct])
		p = p[direct:]
	}
	o.buf = append(o.buf, p...)
	return n, o.err
}

func lastNewline(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			return i
		}
	}
	return -1
}

func (o *Output) write(p []byte) {
	if o.err != nil || len(p) == 0 {
		return
	}
	_, o.err = o.w.Write(p)
}

// Flush writes out what is buffered.
func (o *Output) Flush() error {
	o.write(o.buf)
	o.buf = o.buf[:0]
	return o.err
}

// Discard drops what is buffered, as abort(3) loses a stdio buffer.
func (o *Output) Discard() { o.buf = o.buf[:0] }
