package commands

import "github.com/goqio/goqio/image"

var lengthCmd = &Command{
	Name: "length", Alias: "l",
	OneLine: "gets the length of the current file",
}

func init() { lengthCmd.Run = runLength; register(lengthCmd) }

func runLength(s *Session, argv []string) error {
	if !s.disk.Available() {
		s.printf("getlength: %s\n", Strerror(image.ErrNoMedium))
		return ErrFailed
	}
	if s.JSON {
		s.emitJSON(obj{{"command", "length"}, {"bytes", s.disk.Size()}})
		return nil
	}
	s.printf("%s\n", Cvtstr(float64(s.disk.Size())))
	return nil
}
