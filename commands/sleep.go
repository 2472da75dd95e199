package commands

import "time"

var sleepCmd = &Command{
	Name: "sleep", ArgMin: 1, ArgMax: 1, Flags: flagNoFile,
	OneLine: "waits for the given value in milliseconds",
}

func init() { sleepCmd.Run = runSleep; register(sleepCmd) }

// runSleep waits argv[1] milliseconds, a number in C's strtol syntax.
func runSleep(s *Session, argv []string) error {
	ms, all := strtol(argv[1])
	if ms < 0 || !all {
		s.printf("%s is not a valid number\n", argv[1])
		return ErrFailed
	}
	s.sleepDrain(time.Duration(min(ms, 1<<40)) * time.Millisecond)
	return nil
}
