package commands

var allocCmd = &Command{
	Name: "alloc", Alias: "a", ArgMin: 1, ArgMax: 2,
	Args:    str("offset [count]"),
	OneLine: "checks if offset is allocated in the file",
}

func init() { allocCmd.Run = runAlloc; register(allocCmd) }

// runAlloc is qemu-io's alloc: how much of [offset, offset+count) is
// allocated in the top layer, clamped at the end of the image. It takes no
// options, so "-1" is a number that fails to parse.
func runAlloc(s *Session, argv []string) error {
	offset, err := s.cvtnum(argv[1])
	if err != nil {
		s.printCvtnumErr(err, argv[1])
		return ErrFailed
	}
	start := offset
	count := int64(512)
	if len(argv) == 3 {
		count, err = s.cvtnum(argv[2])
		if err != nil {
			s.printCvtnumErr(err, argv[2])
			return ErrFailed
		}
	}
	remaining := count
	var sum int64
	for remaining > 0 {
		if s.interrupted() {
			return ErrFailed
		}
		alloc, num, err := s.disk.IsAllocated(offset, remaining)
		if err != nil {
			s.printf("is_allocated failed: %s\n", Strerror(err))
			return ErrFailed
		}
		offset += num
		remaining -= num
		if alloc {
			sum += num
		}
		if num == 0 {
			count -= remaining
			remaining = 0
		}
	}
	if s.JSON {
		s.emitJSON(obj{{"command", "alloc"}, {"offset", start}, {"bytes", count}, {"allocated", sum}})
		return nil
	}
	s.printf("%d/%d bytes allocated at offset %s\n", sum, count, Cvtstr(float64(start)))
	return nil
}
