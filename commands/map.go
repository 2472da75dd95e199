package commands

import (
	"fmt"

	"github.com/goqio/goqio/image"
)

var mapCmd = &Command{
	Name: "map", Args: str(""), ArgMax: -1,
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

// runMap prints every run of the top layer, allocated or not. goqio's
// extension: "map --output=json" and "map --output=human" print what
// qemu-img map prints for the image (the whole backing chain). Any other
// argument gets qemu-io's argument-count error, as map takes none there.
func runMap(s *Session, argv []string) error {
	if len(argv) == 2 && (argv[1] == "--output=json" || argv[1] == "--output=human") {
		if s.JSON {
			return s.imgMapJSON()
		}
		return s.imgMap(argv[1][len("--output="):])
	}
	if len(argv) > 1 {
		fmt.Fprintf(s.Err, "bad argument count %d to %s, expected 0 arguments\n", len(argv)-1, argv[0])
		return ErrFailed
	}
	if !s.disk.Available() {
		s.errorf("Failed to query image length: %s", Strerror(image.ErrNoMedium))
		return ErrFailed
	}
	offset, n := int64(0), s.disk.Size()
	var runs []mapRun
	defer func() {
		if s.JSON && runs != nil {
			s.emitJSON(obj{{"command", "map"}, {"runs", runs}})
		}
	}()
	if s.JSON {
		runs = []mapRun{}
	}
	for n > 0 && !s.interrupted() {
		alloc, num, err := s.mapIsAllocated(offset, n)
		if err != nil {
			s.errorf("Failed to get allocation status: %s", Strerror(err))
			return ErrFailed
		}
		if num == 0 {
			s.errorf("Unexpected end of image")
			return ErrFailed
		}
		if s.JSON {
			runs = append(runs, mapRun{Start: offset, Length: num, Allocated: alloc})
			offset += num
			n -= num
			continue
		}
		what := "not allocated"
		if alloc {
			what = "    allocated"
		}
		s.printf("%s (0x%x) bytes %s at offset %s (0x%x)\n", Cvtstr(float64(num)), num, what, Cvtstr(float64(offset)), offset)
		offset += num
		n -= num
	}
	if s.interrupted() {
		return ErrFailed
	}
	return nil
}

// imgMap prints qemu-img map's json or human output for the open image.
func (s *Session) imgMap(format string) error {
	err := PrintImgMap(s.Out, s.disk, format)
	if err != nil {
		s.errorf("%v", err)
		return ErrFailed
	}
	return nil
}

// imgMapJSON is "map --output=json" in JSON mode: map's object, its runs
// with qemu-img map's fields for the whole chain.
func (s *Session) imgMapJSON() error {
	runs := []mapRun{}
	err := image.Map(s.disk, 0, s.disk.Size(), func(e, _ *image.MapEntry) error {
		r := mapRun{Start: e.Start, Length: e.Length, Allocated: e.Depth == 0 && e.Present,
			Depth: &e.Depth, Present: boolp(e.Present), Zero: boolp(e.Zero), Data: boolp(e.Data)}
		if e.HasOffset {
			off := e.Offset
			r.Offset = &off
		}
		depth := e.Depth
		r.Depth = &depth
		runs = append(runs, r)
		if s.interrupted() {
			return errInterrupted
		}
		return nil
	})
	if err == errInterrupted {
		return ErrFailed
	}
	if err != nil {
		s.errorf("%v", err)
		return ErrFailed
	}
	s.emitJSON(obj{{"command", "map"}, {"runs", runs}})
	return nil
}
