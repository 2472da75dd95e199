package commands

import (
	"strings"

	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qdict"
)

// runReopen is qemu-io's reopen_f: the options are checked through the
// whole graph as QEMU's bdrv_reopen_prepare checks them; then goqio opens
// the graph again with them (QEMU changes the nodes in place; the image
// reaches the file in between, as at a close). On failure the image stays
// open as it was.
func runReopen(s *Session, argv []string) error {
	f := s.curFlags
	hasRW, hasCache := false, false
	var optList []string
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
			if _, err := ParseOptions(arg, "", s.warn); err != nil {
				s.errorf("%v", err)
				return ErrFailed
			}
			optList = append(optList, arg)
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
	opts := qdict.New()
	for _, arg := range optList {
		for _, kv := range parseOptionList(arg) {
			opts.Put(kv[0], kv[1])
		}
	}
	if opts.Has("read-only") {
		if hasRW {
			s.errorf("Cannot set both -r/-w and 'read-only'")
			return ErrFailed
		}
	} else {
		opts.Put("read-only", f.ReadOnly)
	}
	if opts.Has("cache.direct") || opts.Has("cache.no-flush") {
		if hasCache {
			s.errorf("Cannot set both -c and the cache options")
			return ErrFailed
		}
	} else {
		opts.Put("cache.direct", f.NoCache)
		opts.Put("cache.no-flush", f.NoFlush)
	}
	if s.curFlags.Snapshot {
		s.errorf("goqio cannot reopen a temporary snapshot overlay yet")
		return ErrFailed
	}
	r, err := s.graph.ReopenOptions(s.node, opts)
	if err != nil {
		s.errorf("%v", err)
		return ErrFailed
	}
	newRO := r.Flags&formats.FlagRDWR == 0
	// qemu-io drops its write permission for -r only: a read-only=on
	// option meets the BlockBackend's write permission (bdrv_node_refresh_perm)
	if newRO && !(hasRW && f.ReadOnly) && !s.disk.ReadOnly() {
		s.errorf("Read-only block node '%s' cannot support read-write users", s.node.NodeName)
		return ErrFailed
	}
	s.drain()
	old := s.curFlags
	nf := f
	nf.ReadOnly = newRO
	nf.NoCache = r.Flags&formats.FlagNoCache != 0
	nf.NoFlush = r.Flags&formats.FlagNoFlush != 0
	nf.Unmap = r.Flags&formats.FlagUnmap != 0
	s.node.Close()
	s.disk, s.node = nil, nil
	open := func(d *qdict.Dict, fl OpenFlags) (*formats.Node, error) {
		o := s.openOptions(fl)
		o.Dict = d
		o.ForceShare = false // in the options already
		s.graph.Reopening = true
		defer func() { s.graph.Reopening = false }()
		return formats.OpenNode("", o)
	}
	n, err := open(r.New, nf)
	if err != nil {
		s.errorf("%v", err)
		if n2, err2 := open(r.Old, old); err2 == nil {
			s.disk, s.node = n2.Disk, n2
		} else {
			s.errorf("could not reopen '%s' as it was; no image is open", s.curName)
		}
		return ErrFailed
	}
	formats.RestoreExplicit(n, r.Explicit)
	s.disk, s.node = n.Disk, n
	s.curFlags = nf
	return nil
}

// parseOptionList is ParseOptions keeping the order of the keys (QemuOpts
// keep a list; the last of a key wins).
func parseOptionList(s string) [][2]string {
	var out [][2]string
	for _, part := range splitOpts(s) {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			v = "on"
			if strings.HasPrefix(k, "no") {
				k, v = k[2:], "off"
			}
		}
		if k == "" {
			continue
		}
		out = append(out, [2]string{k, v})
	}
	return out
}

// splitOpts splits a QemuOpts string at commas (",," is a comma).
func splitOpts(s string) []string {
	var parts []string
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				b.WriteByte(',')
				i++
				continue
			}
			parts = append(parts, b.String())
			b.Reset()
			continue
		}
		b.WriteByte(s[i])
	}
	if b.Len() > 0 {
		parts = append(parts, b.String())
	}
	return parts
}
