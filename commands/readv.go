package commands

import "github.com/goqio/goqio/image"

var readvCmd = &Command{
	Name: "readv", Opts: "CP:qv", ArgMin: 2, ArgMax: -1,
	Args:    str("[-Cqv] [-P pattern] off len [len..]"),
	OneLine: "reads a number of bytes at a specified offset",
	Help: `
 reads a range of bytes from the given offset into multiple buffers

 Example:
 'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 Uses multiple iovec buffers if more than one byte range is specified.
 -C, -- report statistics in a machine parsable format
 -P, -- use a pattern to verify read data
 -v, -- dump buffer to standard output
 -q, -- quiet mode, do not show I/O statistics

`,
}

func init() { readvCmd.Run = runReadv; register(readvCmd) }

// iovecTotal is create_iovec's size check: every length parsed and bounded,
// and their sum bounded. It prints qemu-io's messages and returns -1 on error.
func (s *Session) iovecTotal(lens []string) int64 {
	var total int64
	for _, a := range lens {
		n, err := s.cvtnum(a)
		if err != nil {
			s.printCvtnumErr(err, a)
			return -1
		}
		if n > image.MaxRequest {
			s.printf("Argument '%s' exceeds maximum size %d\n", a, image.MaxRequest)
			return -1
		}
		if total > image.MaxRequest-n {
			s.printf("The total number of bytes exceed the maximum size %d\n", image.MaxRequest)
			return -1
		}
		total += n
	}
	return total
}

func runReadv(s *Session, argv []string) error {
	var machine, quiet, verbose, pflag bool
	var pattern byte
	g := s.getopt(argv, readvCmd.Opts)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case 'C':
			machine = true
		case 'P':
			pflag = true
			p, ok := s.parsePattern(arg)
			if !ok {
				return ErrFailed
			}
			pattern = p
		case 'q':
			quiet = true
		case 'v':
			verbose = true
		default:
			return s.usage(readvCmd)
		}
	}
	args := g.Operands()
	if len(args) < 2 {
		return s.usage(readvCmd)
	}
	offset, err := s.cvtnum(args[0])
	if err != nil {
		s.printCvtnumErr(err, args[0])
		return ErrFailed
	}
	total := s.iovecTotal(args[1:])
	if total < 0 {
		return ErrFailed
	}
	buf := newBuf(total, 0xab)
	start := s.Now()
	err = s.disk.ReadAt(buf, offset)
	d := s.elapsed(start)
	if err != nil {
		s.printf("readv failed: %s\n", Strerror(err))
		return ErrFailed
	}
	return s.readDone(readOutcome{op: "readv", d: d, offset: offset, count: total,
		pflag: pflag, match: pflag && allBytes(buf, pattern), patCount: total,
		quiet: quiet, machine: machine, verbose: verbose, buf: buf})
}
