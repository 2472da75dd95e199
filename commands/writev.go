package commands

var writevCmd = &Command{
	Name: "writev", Opts: "CfqP:", ArgMin: 2, ArgMax: -1, Perm: permWrite,
	Args:    str("[-Cfq] [-P pattern] off len [len..]"),
	OneLine: "writes a number of bytes at a specified offset",
	Help: `
 writes a range of bytes from the given offset source from multiple buffers

 Example:
 'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 -P, -- use different pattern to fill file
 -C, -- report statistics in a machine parsable format
 -f, -- use Force Unit Access semantics
 -q, -- quiet mode, do not show I/O statistics

`,
}

func init() { writevCmd.Run = runWritev; register(writevCmd) }

func runWritev(s *Session, argv []string) error {
	var machine, quiet, fua bool
	pattern := byte(0xcd)
	g := s.getopt(argv, writevCmd.Opts)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case 'C':
			machine = true
		case 'f':
			fua = true
		case 'q':
			quiet = true
		case 'P':
			p, ok := s.parsePattern(arg)
			if !ok {
				return ErrFailed
			}
			pattern = p
		default:
			return s.usage(writevCmd)
		}
	}
	args := g.Operands()
	if len(args) < 2 {
		return s.usage(writevCmd)
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
	buf := newBuf(total, pattern)
	start := s.Now()
	err = s.disk.WriteAt(buf, offset, fua)
	return s.writeDone("writev", "wrote", err, s.elapsed(start), offset, total, quiet, machine)
}
