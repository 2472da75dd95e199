package commands

import "github.com/goqio/goqio/image"

// runTruncate is qemu-io's truncate: the first operand is the new size;
// extra operands are ignored and a parse error names argv[1], as in qemu-io.
func runTruncate(s *Session, argv []string) error {
	prealloc := image.PreallocOff
	g := s.getopt(argv, truncateCmd.Opts)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case 'm':
			found := false
			for p := image.PreallocOff; p <= image.PreallocFull; p++ {
				if p.String() == arg {
					prealloc, found = p, true
				}
			}
			if !found {
				s.errorf("Invalid preallocation mode '%s'", arg)
				return ErrFailed
			}
		default:
			return s.usage(truncateCmd)
		}
	}
	args := g.Operands()
	if len(args) == 0 {
		s.printCvtnumErr(errNumInvalid, argv[1])
		return ErrFailed
	}
	size, err := s.cvtnum(args[0])
	if err != nil {
		s.printCvtnumErr(err, argv[1])
		return ErrFailed
	}
	if err := s.disk.Truncate(size, prealloc); err != nil {
		s.errorf("%v", err)
		return ErrFailed
	}
	return nil
}
