package commands

var flushCmd = &Command{
	Name: "flush", Alias: "f",
	OneLine: "flush all in-core file state to disk",
}

func init() { flushCmd.Run = runFlush; register(flushCmd) }

// runFlush flushes; like qemu-io it prints nothing, even on failure.
func runFlush(s *Session, argv []string) error {
	if err := s.disk.Flush(); err != nil {
		return ErrFailed
	}
	return nil
}
