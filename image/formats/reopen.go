package formats

import (
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/qdict"
)

// reopenEntry is a BlockReopenQueueEntry: the new options and flags of
// one node.
type reopenEntry struct {
	n                 *Node
	options, explicit *qdict.Dict
	flags             Flags
}

// reopenQueueChild is bdrv_reopen_queue_child (keep_old_opts as qemu-io
// passes it: true at the top).
func reopenQueueChild(q []*reopenEntry, bs *Node, options *qdict.Dict, role Role, parentIsFormat bool,
	parentOptions *qdict.Dict, parentFlags Flags, keepOld bool) []*reopenEntry {
	if options == nil {
		options = qdict.New()
	}
	var e *reopenEntry
	for _, x := range q {
		if x.n == bs {
			e = x
		}
	}
	if e != nil || keepOld {
		old := bs.Explicit
		if e != nil {
			old = e.explicit
		}
		joinOptions(bs, options, old.Clone())
	}
	explicit := options.Clone()
	var flags Flags
	if parentOptions != nil {
		inheritOptions(role, parentIsFormat, &flags, options, parentFlags, parentOptions)
	} else {
		flags = bs.Flags
	}
	if keepOld {
		joinOptions(bs, options, bs.Options.Clone())
	}
	if o, err := Absorb(runtimeOpts, options.Clone()); err == nil {
		updateFlags(&flags, o)
	}
	flags &^= FlagProtocol
	if flags&FlagRDWR != 0 {
		flags |= FlagAllowRDWR
	}
	if e == nil {
		e = &reopenEntry{n: bs}
		q = append(q, e)
	}
	e.options, e.explicit, e.flags = options, explicit, flags
	for _, c := range bs.Children {
		if c.Node.parent != bs {
			continue
		}
		var childOpts *qdict.Dict
		childKeepOld := keepOld
		if options.Has(c.Name) {
			ref, _ := options.Str(c.Name)
			if ref != c.Node.NodeName {
				continue
			}
			childKeepOld = true
		} else {
			explicit.DelSub(c.Name + ".")
			childOpts = options.ExtractSub(c.Name + ".")
		}
		q = reopenQueueChild(q, c.Node, childOpts, c.Role, bs.Drv.IsFormat, options, flags, childKeepOld)
	}
	return q
}

// joinOptions is bdrv_join_options: old options where options has none.
func joinOptions(bs *Node, options, old *qdict.Dict) {
	if bs.Drv.JoinOptions != nil {
		bs.Drv.JoinOptions(options, old)
		return
	}
	options.Join(old, false)
}

// joinQcow2 is qcow2_join_options: a new overlap template replaces every
// old overlap option, a new total cache size the old partial ones.
func joinQcow2(options, old *qdict.Dict) {
	newTemplate := options.Has("overlap-check") || options.Has("overlap-check.template")
	newTotal := options.Has("cache-size")
	if newTemplate {
		old.Del("overlap-check")
		old.Del("overlap-check.template")
		for _, n := range qcow2.OverlapNames {
			if n != "bitmap-directory" { // QEMU 7.2 keeps this one
				old.Del("overlap-check." + n)
			}
		}
	}
	if newTotal {
		old.Del("l2-cache-size")
		old.Del("refcount-cache-size")
	}
	options.Join(old, false)
	// QEMU tests "any" where its comment says "all"
	if (options.Has("cache-size") || options.Has("l2-cache-size") || options.Has("refcount-cache-size")) && !newTotal {
		options.Del("cache-size")
	}
}

// updateFlags is update_flags_from_options.
func updateFlags(f *Flags, o *Opts) {
	*f &^= FlagNoCache | FlagNoFlush | FlagRDWR | FlagAutoRdonly
	if o.Bool("cache.no-flush", false) {
		*f |= FlagNoFlush
	}
	if o.Bool("cache.direct", false) {
		*f |= FlagNoCache
	}
	if !o.Bool("read-only", false) {
		*f |= FlagRDWR
	}
	if o.Bool("auto-read-only", false) {
		*f |= FlagAutoRdonly
	}
}

// equalValues is qobject_is_equal for the scalars options hold.
func equalValues(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case int64:
		switch y := b.(type) {
		case int64:
			return x == y
		case uint64:
			return x >= 0 && uint64(x) == y
		}
	case uint64:
		switch y := b.(type) {
		case uint64:
			return x == y
		case int64:
			return y >= 0 && uint64(y) == x
		}
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	case qdict.Null:
		_, ok := b.(qdict.Null)
		return ok
	}
	return false
}

// reopenPrepare is bdrv_reopen_prepare for one entry.
func (g *Graph) reopenPrepare(e *reopenEntry) error {
	bs := e.n
	options := e.options.Clone()
	o, err := Absorb(runtimeOpts, options)
	if err != nil {
		return err
	}
	flags := e.flags
	updateFlags(&flags, o)
	if d, ok := o.Str("discard"); ok {
		switch d {
		case "off", "ignore", "on", "unmap":
		default:
			return errorf(nil, "Invalid discard option")
		}
		if d == "on" || d == "unmap" {
			flags |= FlagUnmap
		} else {
			flags &^= FlagUnmap
		}
	}
	if dz, ok := o.Str("detect-zeroes"); ok {
		if _, err := image.ParseDetectZeroes(dz, flags&FlagUnmap != 0); err != nil {
			return errorf(nil, "%v", err)
		}
	}
	// node-name, driver and force-share must stay as they are: back into
	// the dictionary, as texts, to be compared with the old values
	for _, k := range []string{"node-name", "driver", "force-share"} {
		if v, ok := o.Str(k); ok {
			options.Put(k, v)
		}
	}
	ro := flags&FlagRDWR == 0
	if bs.CopyOnRead && ro {
		return errorf(nil, "Can't set node '%s' to r/o with copy-on-read enabled", bs.NodeName)
	}
	if bs.Drv.ReopenPrepare == nil {
		return errorf(nil, "Block format '%s' used by node '%s' does not support reopening files", bs.Drv.Name, bs.NodeName)
	}
	if err := bs.Drv.ReopenPrepare(bs, options, flags); err != nil {
		return err
	}
	options.Del("backing")
	options.Del("file")
	for _, k := range options.Keys() {
		nv := options.Get(k)
		if s, ok := nv.(string); ok {
			if c := bs.childNamed(k); c != nil && c.NodeName == s {
				continue
			}
		}
		if !equalValues(nv, bs.Options.Get(k)) {
			return errorf(nil, "Cannot change the option '%s'", k)
		}
	}
	return nil
}

func (n *Node) childNamed(name string) *Node { return n.Child(name) }

// Reopen is what ReopenOptions found: the options trees that open the
// graph again with the new options (and as it was), the explicit options
// of each node by path ("", "file", "backing.file", ...) and the new flags
// of the top node.
type Reopen struct {
	New, Old *qdict.Dict
	Explicit map[string]*qdict.Dict
	Flags    Flags
}

// ReopenOptions is the first part of bdrv_reopen for qemu-io's reopen:
// it checks, as QEMU's bdrv_reopen_prepare does for every node of the
// tree, that opts may be applied to top. goqio then opens the graph again
// from r.New (RestoreExplicit keeps what was explicit).
func (g *Graph) ReopenOptions(top *Node, opts *qdict.Dict) (*Reopen, error) {
	q := reopenQueueChild(nil, top, opts, 0, false, nil, 0, true)
	for _, e := range q {
		if err := g.reopenPrepare(e); err != nil {
			return nil, err
		}
	}
	entry := func(n *Node) *reopenEntry {
		for _, e := range q {
			if e.n == n {
				return e
			}
		}
		return nil
	}
	r := &Reopen{Explicit: map[string]*qdict.Dict{}, Flags: q[0].flags}
	var build func(n *Node, path string, useQueue bool) *qdict.Dict
	build = func(n *Node, path string, useQueue bool) *qdict.Dict {
		e := entry(n)
		d := qdict.New()
		src := n.Options
		if useQueue {
			exp := n.Explicit
			if e != nil {
				src, exp = e.options, e.explicit
			}
			r.Explicit[path] = exp
		}
		for _, k := range src.Keys() {
			d.Put(k, src.Get(k))
		}
		if n.Flags&FlagNoBacking != 0 && n.Drv.SupportsBacking && n.Child("backing") == nil {
			d.Put("backing", qdict.Null{})
		}
		for _, c := range n.Children {
			if c.Node.parent != n {
				continue
			}
			p := c.Name
			if path != "" {
				p = path + "." + c.Name
			}
			cd := build(c.Node, p, useQueue)
			for _, k := range cd.Keys() {
				d.Put(c.Name+"."+k, cd.Get(k))
			}
		}
		return d
	}
	r.New = build(top, "", true)
	r.Old = build(top, "", false)
	return r, nil
}

// RestoreExplicit gives the nodes of a graph opened again from
// Reopen.New the explicit options they had (an option inherited stays
// inherited).
func RestoreExplicit(top *Node, explicit map[string]*qdict.Dict) {
	var walk func(n *Node, path string)
	walk = func(n *Node, path string) {
		if e, ok := explicit[path]; ok {
			n.Explicit = e.Clone()
		}
		for _, c := range n.Children {
			if c.Node.parent != n {
				continue
			}
			p := c.Name
			if path != "" {
				p = path + "." + c.Name
			}
			walk(c.Node, p)
		}
	}
	walk(top, "")
}

// putBack is qemu_opts_to_qdict: the options a driver cannot change go
// back into the dictionary, as strings, to be compared with the old ones.
func putBack(o *Opts, d *qdict.Dict, names ...string) {
	for _, k := range names {
		if v, ok := o.Str(k); ok {
			d.Put(k, v)
		}
	}
}

// reopenFile is file-posix's raw_reopen_prepare.
func reopenFile(n *Node, opts *qdict.Dict, flags Flags) error {
	o, err := Absorb(fileOpts, opts)
	if err != nil {
		return err
	}
	putBack(o, opts, "filename", "aio", "aio-max-batch", "locking", "pr-manager")
	return nil
}

// reopenRaw is raw-format's raw_reopen_prepare: offset and size may change.
func reopenRaw(n *Node, opts *qdict.Dict, flags Flags) error {
	_, err := Absorb(rawOpts, opts)
	return err
}

// reopenQcow2 is qcow2_reopen_prepare: the runtime options are checked
// again and may change.
func reopenQcow2(n *Node, opts *qdict.Dict, flags Flags) error {
	_, err := qcow2RuntimeOptions(n, opts, flags)
	return err
}

// reopenNull is null_reopen_prepare: nothing to do.
func reopenNull(n *Node, opts *qdict.Dict, flags Flags) error { return nil }
