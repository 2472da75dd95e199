package commands

var mapCmd = &Command{
	Name: "map", Args: str(""),
	OneLine: "prints the allocated areas of a file",
}

func init() { mapCmd.Run = runMap; register(mapCmd) }

// mapIsAllocated is qemu-io's map_is_allocated: the run at offset with the
// same allocated/unallocated answer, merged over block status calls.
func (s *Session) mapIsAllocated(offset, n int64) (bool, int64, error) {
	first, num, err := s.disk.IsAllocated(offset, n)
	if err != nil {
		return false, 0, err
	}
	total := num
	for n > 0 {
		offset += num
		n -= num
		var alloc bool
		alloc, num, err = s.disk.IsAllocated(offset, n)
		if err != nil || alloc != first || num == 0 {
			break
		}
		total += num
	}
	return first, total, nil
}

// runMap prints every run of the top layer, allocated or not.
func runMap(s *Session, argv []string) error {
	offset, n := int64(0), s.disk.Size()
	for n > 0 {
		alloc, num, err := s.mapIsAllocated(offset, n)
		if err != nil {
			s.errorf("Failed to get allocation status: %s", Strerror(err))
			return ErrFailed
		}
		if num == 0 {
			s.errorf("Unexpected end of image")
			return ErrFailed
		}
		what := "not allocated"
		if alloc {
			what = "    allocated"
		}
		s.printf("%s (0x%x) bytes %s at offset %s (0x%x)\n", Cvtstr(float64(num)), num, what, Cvtstr(float64(offset)), offset)
		offset += num
		n -= num
	}
	return nil
}
