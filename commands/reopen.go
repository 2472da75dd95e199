package commands

import (
	"fmt"
	"strings"
)

// reopenable are the options reopen -o may change, per format; any other
// is QEMU's "Cannot change the option".
var reopenable = map[string]bool{
	"read-only": true, "cache.direct": true, "cache.no-flush": true, "discard": true,
	"detect-zeroes": true, "auto-read-only": true,
}

var reopenableQcow2 = map[string]bool{
	"lazy-refcounts": true, "pass-discard-request": true, "pass-discard-snapshot": true,
	"pass-discard-other": true, "overlap-check": true, "cache-size": true, "l2-cache-size": true,
	"l2-cache-entry-size": true, "refcount-cache-size": true, "cache-clean-interval": true,
}

func onOff(v string) (bool, bool) {
	switch v {
	case "on", "true", "yes":
		return true, true
	case "off", "false", "no":
		return false, true
	}
	return false, false
}

// runReopen is qemu-io's reopen: the open image is opened again with new
// flags. Like qemu-io it reports a failed reopen but does not fail; the
// image stays open as it was.
func runReopen(s *Session, argv []string) error {
	f := s.curFlags
	hasRW, hasCache := false, false
	opts := map[string]string{}
	g := s.getopt(argv, reopenCmd.Opts)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case 'c':
			if !ParseCacheMode(arg, &f) {
				s.errorf("Invalid cache option: %s", arg)
				return ErrFailed
			}
			hasCache = true
		case 'o':
			o, err := ParseOptions(arg, "", s.warn)
			if err != nil {
				s.errorf("%v", err)
				return ErrFailed
			}
			for k, v := range o {
				opts[k] = v
			}
		case 'r', 'w':
			if hasRW {
				s.errorf("Only one -r/-w option may be given")
				return ErrFailed
			}
			f.ReadOnly = c == 'r'
			hasRW = true
		default:
			return s.usage(reopenCmd)
		}
	}
	if len(g.Operands()) != 0 {
		return s.usage(reopenCmd)
	}
	if v, ok := opts["read-only"]; ok {
		if hasRW {
			s.errorf("Cannot set both -r/-w and 'read-only'")
			return ErrFailed
		}
		if b, ok := onOff(v); ok {
			f.ReadOnly = b
		}
	}
	_, direct := opts["cache.direct"]
	_, noflush := opts["cache.no-flush"]
	if direct || noflush {
		if hasCache {
			s.errorf("Cannot set both -c and the cache options")
			return ErrFailed
		}
		if b, ok := onOff(opts["cache.direct"]); ok {
			f.NoCache = b
		}
		if b, ok := onOff(opts["cache.no-flush"]); ok {
			f.NoFlush = b
		}
	}
	info, _ := s.disk.Info()
	for k := range opts {
		if !reopenable[k] && !(info.FormatName == "qcow2" && reopenableQcow2[k]) {
			s.errorf("Cannot change the option '%s'", k)
			return nil
		}
	}
	if v, ok := opts["discard"]; ok && !ParseDiscard(v, &f) {
		s.errorf("Invalid discard option: %s", v)
		return nil
	}
	if s.curFlags.Snapshot {
		s.errorf("goqio cannot reopen a temporary snapshot overlay yet")
		return nil
	}
	s.drain()
	old, oldFlags := s.disk, s.curFlags
	name, curOpts := s.curName, s.curOpts
	old.Close()
	s.disk = nil
	var errs strings.Builder
	saved := s.Err
	s.Err = &errs
	err := s.Open(name, f, curOpts)
	s.Err = saved
	if err != nil {
		// report QEMU's reason without the "can't open device" part, and
		// go back to the image as it was
		msg := errs.String()
		if i := strings.Index(msg, ": "+"can't open device "); i >= 0 {
			msg = msg[i+2:]
		}
		if j := strings.Index(msg, name+": "); j >= 0 {
			msg = msg[j+len(name)+2:]
		}
		fmt.Fprintf(s.Err, "%s: %s", s.Prog, msg)
		if s.Open(name, oldFlags, curOpts) != nil {
			s.errorf("could not reopen '%s' as it was; no image is open", name)
		}
	}
	return nil
}
