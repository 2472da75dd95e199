package commands

import (
	"bytes"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/internal/bufpool"
)

var readCmd = &Command{
	Name: "read", Alias: "r", Opts: "bCl:pP:qs:v", ArgMin: 2, ArgMax: -1,
	Args:    str("[-abCqv] [-P pattern [-s off] [-l len]] off len"),
	OneLine: "reads a number of bytes at a specified offset",
	Help: `
 reads a range of bytes from the given offset

 Example:
 'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 -b, -- read from the VM state rather than the virtual disk
 -C, -- report statistics in a machine parsable format
 -l, -- length for pattern verification (only with -P)
 -p, -- ignored for backwards compatibility
 -P, -- use a pattern to verify read data
 -q, -- quiet mode, do not show I/O statistics
 -s, -- start offset for pattern verification (only with -P)
 -v, -- dump buffer to standard output

`,
}

func init() { readCmd.Run = runRead; register(readCmd) }

// newBuf is qemu_io_alloc: a buffer filled with pattern.
func newBuf(n int64, pattern byte) []byte {
	b := make([]byte, n)
	if pattern != 0 {
		fillBuf(b, pattern)
	}
	return b
}

func fillBuf(b []byte, pattern byte) {
	if len(b) == 0 {
		return
	}
	b[0] = pattern
	for i := 1; i < len(b); i *= 2 {
		copy(b[i:], b[:i])
	}
}

// getAioBuf is newBuf for an aio request, from bufpool (scripts issue
// them by the thousand); putAioBuf gives it back once nothing uses it.
func getAioBuf(n int64, pattern byte) []byte {
	b := bufpool.Get(int(n))
	fillBuf(b, pattern)
	return b
}

func putAioBuf(b []byte) { bufpool.Put(b) }

func runRead(s *Session, argv []string) error {
	var machine, quiet, verbose, pflag, sflag, lflag, bflag bool
	var pattern byte
	var patOff, patCount int64
	g := s.getopt(argv, readCmd.Opts)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case 'b':
			bflag = true
		case 'C':
			machine = true
		case 'l':
			lflag = true
			v, err := s.cvtnum(arg)
			if err != nil {
				s.printCvtnumErr(err, arg)
				return ErrFailed
			}
			patCount = v
		case 'p':
		case 'P':
			pflag = true
			p, ok := s.parsePattern(arg)
			if !ok {
				return ErrFailed
			}
			pattern = p
		case 'q':
			quiet = true
		case 's':
			sflag = true
			v, err := s.cvtnum(arg)
			if err != nil {
				s.printCvtnumErr(err, arg)
				return ErrFailed
			}
			patOff = v
		case 'v':
			verbose = true
		default:
			return s.usage(readCmd)
		}
	}
	args := g.Operands()
	if len(args) != 2 {
		return s.usage(readCmd)
	}
	offset, err := s.cvtnum(args[0])
	if err != nil {
		s.printCvtnumErr(err, args[0])
		return ErrFailed
	}
	count, err := s.cvtnum(args[1])
	if err != nil {
		s.printCvtnumErr(err, args[1])
		return ErrFailed
	}
	if count > image.MaxRequest {
		s.printf("length cannot exceed %d, given %s\n", image.MaxRequest, args[1])
		return ErrFailed
	}
	if !pflag && (lflag || sflag) {
		return s.usage(readCmd)
	}
	if !lflag {
		patCount = count - patOff
	}
	if patCount < 0 || patCount+patOff > count {
		s.printf("pattern verification range exceeds end of read data\n")
		return ErrFailed
	}
	if bflag {
		if !s.sectorAligned(offset, count) {
			return ErrFailed
		}
	}
	if count >= streamMin && !bflag && !verbose {
		start := s.Now()
		ok, err := streamRead(s.disk, offset, count, pattern, patOff, patCount, s.interrupted)
		d := s.elapsed(start)
		if s.reportInterrupted("read", "read", err, offset, count) {
			return ErrFailed
		}
		if err != nil {
			s.printf("read failed: %s\n", Strerror(err))
			return ErrFailed
		}
		return s.readDone(readOutcome{op: "read", d: d, offset: offset, count: count,
			pflag: pflag, match: ok, patOff: patOff, patCount: patCount, quiet: quiet, machine: machine})
	}
	buf := newBuf(count, 0xab)
	start := s.Now()
	if bflag {
		err = s.disk.ReadVMState(buf, offset)
	} else {
		err = s.disk.ReadAt(buf, offset)
	}
	d := s.elapsed(start)
	if err != nil {
		s.printf("read failed: %s\n", Strerror(err))
		return ErrFailed
	}
	return s.readDone(readOutcome{op: "read", d: d, offset: offset, count: count,
		pflag: pflag, match: pflag && allBytes(buf[patOff:patOff+patCount], pattern), patOff: patOff, patCount: patCount,
		quiet: quiet, machine: machine, verbose: verbose, buf: buf})
}

// readOutcome is what a read verb (read, readv, aio_read) has once its
// data is in.
type readOutcome struct {
	op               string // the verb, as the JSON report names it
	d                time.Duration
	offset, count    int64
	pflag, match     bool // -P given; the pattern matched
	patOff, patCount int64
	quiet, machine   bool
	verbose          bool
	buf              []byte // the data, dumped with -v
}

// writeDone prints what qemu-io prints when a write, writev, discard or
// aio_write (op) ends: the failure, or, unless quiet, the JSON or text
// report (verb "wrote" or "discard"). It returns ErrFailed on failure.
func (s *Session) writeDone(op, verb string, err error, d time.Duration, offset, count int64, quiet, machine bool) error {
	if err != nil {
		s.printf("%s failed: %s\n", op, Strerror(err))
		return ErrFailed
	}
	if !quiet && s.JSON {
		s.reportJSON(op, d, offset, count, nil, nil)
	} else if !quiet {
		s.printReport(verb, d, offset, count, count, 1, machine)
	}
	return nil
}

// readDone prints what qemu-io prints after a read: the pattern verdict,
// then, unless quiet, the report (JSON, or the -v dump and the text
// report). It returns ErrFailed when the pattern did not match.
func (s *Session) readDone(r readOutcome) error {
	var ret error
	if r.pflag && !r.match {
		s.printf("Pattern verification failed at offset %d, %d bytes\n", r.offset+r.patOff, r.patCount)
		ret = ErrFailed
	}
	if r.quiet {
		return ret
	}
	if s.JSON {
		var ok *bool
		if r.pflag {
			ok = boolp(r.match)
		}
		var dump []byte
		if r.verbose {
			dump = r.buf
		}
		s.reportJSON(r.op, r.d, r.offset, r.count, ok, dump)
		return ret
	}
	if r.verbose {
		s.dumpBuffer(r.buf, r.offset)
	}
	s.printReport("read", r.d, r.offset, r.count, r.count, 1, r.machine)
	return ret
}

// allBytes reports whether every byte of b is c.
func allBytes(b []byte, c byte) bool {
	var chunk [4096]byte
	if c != 0 {
		for i := range chunk {
			chunk[i] = c
		}
	}
	for len(b) > 0 {
		n := min(len(b), len(chunk))
		if !bytes.Equal(b[:n], chunk[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// sectorAligned checks the -b/-c alignment rule, printing qemu-io's message.
func (s *Session) sectorAligned(offset, count int64) bool {
	if offset%512 != 0 {
		s.printf("%d is not a sector-aligned value for 'offset'\n", offset)
		return false
	}
	if count%512 != 0 {
		s.printf("%d is not a sector-aligned value for 'count'\n", count)
		return false
	}
	return true
}
