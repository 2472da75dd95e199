package commands

var helpCmd = &Command{
	Name: "help", Alias: "?", ArgMin: 0, ArgMax: 1, Flags: flagGlobal,
	Args:    str("[command]"),
	OneLine: "help for one or all commands",
}

var quitCmd = &Command{
	Name: "quit", Alias: "q", ArgMin: -1, ArgMax: -1, Flags: flagGlobal,
	OneLine: "exit the program",
}

func init() {
	helpCmd.Run = runHelp
	quitCmd.Run = func(s *Session, argv []string) error { s.quit = true; return nil }
	register(helpCmd)
	register(quitCmd)
}

func runHelp(s *Session, argv []string) error {
	if len(argv) < 2 {
		for _, c := range Table {
			s.printf("%s", c.helpLine(c.Name))
		}
		s.printf("\nUse 'help commandname' for extended help.\n")
		return nil
	}
	c := Lookup(argv[1])
	if c == nil {
		s.printf("command %s not found\n", argv[1])
		return ErrFailed
	}
	s.printf("%s", c.helpLine(argv[1]))
	s.printf("%s", c.Help)
	return nil
}

// VerbHelp is what "help NAME" prints for the verb (or alias) name.
func VerbHelp(name string) (string, bool) {
	c := Lookup(name)
	if c == nil {
		return "", false
	}
	return c.helpLine(name) + c.Help, true
}
