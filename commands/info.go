package commands

var infoCmd = &Command{
	Name: "info", Alias: "i",
	OneLine: "prints information about the current file",
}

func init() { infoCmd.Run = runInfo; register(infoCmd) }

func runInfo(s *Session, argv []string) error {
	info, err := s.disk.Info()
	if s.JSON && err == nil {
		s.emitJSON(infoJSON(info))
		return nil
	}
	if info.FormatName != "" {
		s.printf("format name: %s\n", info.FormatName)
	}
	if info.ProtocolName != "" {
		s.printf("format name: %s\n", info.ProtocolName)
	}
	if err != nil {
		return ErrFailed
	}
	s.printf("cluster size: %s\n", Cvtstr(float64(info.ClusterSize)))
	s.printf("vm state offset: %s\n", Cvtstr(float64(info.VMStateOffset)))
	if info.Specific != nil {
		s.printf("Format specific information:\n")
		for _, kv := range info.Specific {
			if kv.Sub != nil {
				s.printf("    %s:\n", kv.Key)
				for _, l := range kv.Sub {
					s.printf("        %s\n", l)
				}
				continue
			}
			s.printf("    %s: %s\n", kv.Key, kv.Value)
		}
	}
	return nil
}
