package commands

import (
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
	var optList [][2]string
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
			pairs, err := ParseOptionList(arg, "", s.warn)
			if err != nil {
				s.errorf("%v", err)
				return ErrFailed
			}
			optList = append(optList, pairs...)
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
	for _, kv := range optList {
		opts.Put(kv[0], kv[1])
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
	s.graph.KeepConnections(s.node)
	defer s.graph.DropKept()
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
			s.setNode(n2)
		} else {
			s.errorf("could not reopen '%s' as it was; no image is open", s.curName)
		}
		return ErrFailed
	}
	formats.RestoreExplicit(n, r.Explicit)
	s.setNode(n)
	s.curFlags = nf
	return nil
}
