package commands

import "github.com/goqio/goqio/image"

var discardCmd = &Command{
	Name: "discard", Alias: "d", Opts: "Cq", ArgMin: 2, ArgMax: -1, Perm: permWrite,
	Args:    str("[-Cq] off len"),
	OneLine: "discards a number of bytes at a specified offset",
	Help: `
 discards a range of bytes from the given offset

 Example:
 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file

 Discards a segment of the currently open file.
 -C, -- report statistics in a machine parsable format
 -q, -- quiet mode, do not show I/O statistics

`,
}

func init() { discardCmd.Run = runDiscard; register(discardCmd) }

func runDiscard(s *Session, argv []string) error {
	var machine, quiet bool
	g := s.getopt(argv, discardCmd.Opts)
	for {
		c, _ := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case 'C':
			machine = true
		case 'q':
			quiet = true
		default:
			return s.usage(discardCmd)
		}
	}
	args := g.Operands()
	if len(args) != 2 {
		return s.usage(discardCmd)
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
	start := s.Now()
	err = s.disk.Discard(offset, count)
	return s.writeDone("discard", "discard", err, s.elapsed(start), offset, count, quiet, machine)
}
