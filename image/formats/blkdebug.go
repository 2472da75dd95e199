package formats

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strings"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/blkdebug"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/image/raw"
)

func init() {
	Register(&BlockDriver{Name: "blkdebug", Protocol: "blkdebug", FileOpen: true, IsFilter: true,
		ParseFilename: parseBlkdebugFilename, Open: openBlkdebug,
		ReopenPrepare: func(*Node, *qdict.Dict, Flags) error { return nil }})
}

// parseBlkdebugFilename is blkdebug_parse_filename:
// blkdebug:[CONFIG]:IMAGE.
func parseBlkdebugFilename(filename string, opts *qdict.Dict) error {
	rest, ok := strings.CutPrefix(filename, "blkdebug:")
	if !ok {
		opts.Put("x-image", filename)
		return nil
	}
	i := strings.IndexByte(rest, ':')
	if i < 0 {
		return errorf(nil, "blkdebug requires both config file and image path")
	}
	if i > 0 {
		opts.Put("config", rest[:i])
	}
	opts.Put("x-image", rest[i+1:])
	return nil
}

var blkdebugOpts = []OptDesc{
	{"config", OptString}, {"x-image", OptString}, {"align", OptSize}, {"max-transfer", OptSize},
	{"opt-write-zero", OptSize}, {"max-write-zero", OptSize}, {"opt-discard", OptSize}, {"max-discard", OptSize},
}

var injectErrorOpts = []OptDesc{
	{"event", OptString}, {"state", OptNumber}, {"iotype", OptString}, {"errno", OptNumber},
	{"sector", OptNumber}, {"once", OptBool}, {"immediately", OptBool},
}

var setStateOpts = []OptDesc{{"event", OptString}, {"state", OptNumber}, {"new_state", OptNumber}}

// blkdebugNode is the blkdebug driver with the permissions it takes from
// and refuses to share with its image (take-child-perms,
// unshare-child-perms).
type blkdebugNode struct {
	*blkdebug.Driver
	take, unshare uint
}

// openBlkdebug is blkdebug_open.
func openBlkdebug(g *Graph, n *Node, opts *qdict.Dict) error {
	o, err := Absorb(blkdebugOpts, opts)
	if err != nil {
		return err
	}
	config, hasConfig := o.Str("config")
	var ie, ss []*Opts
	if hasConfig {
		if ie, ss, err = readBlkdebugConfig(config); err != nil {
			return err
		}
	}
	for _, sec := range []struct {
		name  string
		descs []OptDesc
		out   *[]*Opts
	}{{"inject-error", injectErrorOpts, &ie}, {"set-state", setStateOpts, &ss}} {
		l, err := blkdebugSections(opts, sec.name, sec.descs)
		if err != nil {
			return err
		}
		*sec.out = append(*sec.out, l...)
	}
	var rules []*blkdebug.Rule
	for _, s := range ie {
		r, err := blkdebugRule(s, blkdebug.ActionInjectError)
		if err != nil {
			return err
		}
		rules = append(rules, r)
	}
	for _, s := range ss {
		r, err := blkdebugRule(s, blkdebug.ActionSetState)
		if err != nil {
			return err
		}
		rules = append(rules, r)
	}
	take, err := blkdebugPerms(opts, "take-child-perms.")
	if err != nil {
		return err
	}
	unshare, err := blkdebugPerms(opts, "unshare-child-perms.")
	if err != nil {
		return err
	}
	xImage, hasImage := o.Str("x-image")
	file, err := g.openChildNode(xImage, hasImage, opts, "image", n, RoleFiltered|RolePrimary, false)
	if err != nil {
		return err
	}
	n.Children = append(n.Children, &Child{Name: "image", Role: RoleFiltered | RolePrimary, Node: file})
	var lim image.Limits
	lim.RequestAlignment = int64(o.Num("align", 0))
	if a := o.Num("align", 0); a != 0 && (a >= math.MaxInt32 || a&(a-1) != 0) {
		return errorf(nil, "Cannot meet constraints with align %d", a)
	}
	align := max(uint64(lim.RequestAlignment), uint64(file.Disk.Limits().RequestAlignment))
	check := func(name string, v, al uint64) error {
		if v != 0 && (v >= math.MaxInt32 || v%al != 0) {
			return errorf(nil, "Cannot meet constraints with %s %d", name, v)
		}
		return nil
	}
	mt, owz, mwz, od, md := o.Num("max-transfer", 0), o.Num("opt-write-zero", 0), o.Num("max-write-zero", 0), o.Num("opt-discard", 0), o.Num("max-discard", 0)
	for _, c := range []struct {
		name  string
		v, al uint64
	}{{"max-transfer", mt, align}, {"opt-write-zero", owz, align}, {"max-write-zero", mwz, max(owz, align)},
		{"opt-discard", od, align}, {"max-discard", md, max(od, align)}} {
		if err := check(c.name, c.v, c.al); err != nil {
			return err
		}
	}
	lim.MaxTransfer, lim.ZeroAlignment, lim.MaxZero = int64(mt), int64(owz), int64(mwz)
	lim.DiscardAlignment, lim.MaxDiscard = int64(od), int64(md)
	if hasImage && !hasConfig {
		n.Filename = file.Filename
	} else if file.Filename != "" {
		n.Filename = "blkdebug:" + config + ":" + file.Filename
	}
	n.Impl = blkdebugNode{Driver: blkdebug.New(file.Disk, rules, lim), take: take, unshare: unshare}
	return nil
}

// blkdebugChild is the image of a blkdebug node, or nil for another node.
func blkdebugChild(n *Node) (*Node, raw.Lock) {
	b, ok := n.Impl.(blkdebugNode)
	if !ok {
		return nil, raw.Lock{}
	}
	return n.Child("image"), raw.Lock{Perm: b.take, Unshared: b.unshare}
}

var permByName = map[string]uint{"consistent-read": raw.PermConsistentRead, "write": raw.PermWrite,
	"write-unchanged": raw.PermWriteUnchanged, "resize": raw.PermResize, "graph-mod": 0}

// blkdebugPerms is blkdebug_parse_perm_list.
func blkdebugPerms(opts *qdict.Dict, prefix string) (uint, error) {
	sub := opts.ExtractSub(prefix)
	var p uint
	for i := 0; sub.Len() > 0; i++ {
		k := fmt.Sprint(i)
		v, ok := qdict.ScalarString(sub.Get(k))
		if !sub.Has(k) {
			return 0, errorf(nil, "Parameter '%s%s' is unexpected", prefix, sub.First())
		}
		bit, known := permByName[v]
		if !ok || !known {
			return 0, errorf(nil, "Parameter 'null' does not accept value '%s'", v)
		}
		p |= bit
		sub.Del(k)
	}
	return p, nil
}

// blkdebugRule is add_rule.
func blkdebugRule(o *Opts, action int) (*blkdebug.Rule, error) {
	ev, ok := o.Str("event")
	if !ok {
		return nil, errorf(nil, "Missing event name for rule")
	}
	e := blkdebug.EventIndex(ev)
	if e < 0 {
		return nil, errorf(nil, "invalid parameter value: %s", ev)
	}
	r := &blkdebug.Rule{Event: e, Action: action, State: int(int32(o.Num("state", 0)))}
	switch action {
	case blkdebug.ActionInjectError:
		r.Errno = int(int32(o.Num("errno", uint64(syscall.EIO))))
		r.Once = o.Bool("once", false)
		r.Immediately = o.Bool("immediately", false)
		r.Offset = -1
		if s := int64(o.Num("sector", math.MaxUint64)); s != -1 {
			r.Offset = s * 512
		}
		r.IOMask = blkdebug.DefaultIOMask
		if t, ok := o.Str("iotype"); ok {
			i := -1
			for j, n := range blkdebug.IOTypes {
				if n == t {
					i = j
				}
			}
			if i < 0 {
				return nil, errorf(nil, "invalid parameter value: %s", t)
			}
			r.IOMask = 1 << i
		}
	case blkdebug.ActionSetState:
		r.NewState = int(int32(o.Num("new_state", 0)))
	}
	return r, nil
}

// blkdebugSections is config_parse_qdict_section: the NAME.* options as
// one section or as sections NAME.0.*, NAME.1.*, ...
func blkdebugSections(opts *qdict.Dict, name string, descs []OptDesc) ([]*Opts, error) {
	sub := opts.ExtractSub(name + ".")
	orig := sub.Len()
	if orig == 0 {
		return nil, nil
	}
	o, err := Absorb(descs, sub)
	if err != nil {
		return nil, err
	}
	left := sub.Len()
	if left < orig && left > 0 {
		return nil, errorf(nil, "Unknown option '%s' for [%s]", sub.First(), name)
	}
	if left == 0 {
		return []*Opts{o}, nil
	}
	var out []*Opts
	var secs []*qdict.Dict
	for i := 0; ; i++ {
		k := fmt.Sprint(i)
		s := sub.ExtractSub(k + ".")
		if sub.Has(k) {
			return nil, errorf(nil, "[%s] section (index %d) does not consist of keys", name, i)
		}
		if s.Len() == 0 {
			break
		}
		secs = append(secs, s)
	}
	if sub.Len() > 0 {
		return nil, errorf(nil, "Unused option '%s' for [%s]", sub.First(), name)
	}
	for _, s := range secs {
		o, err := Absorb(descs, s)
		if err != nil {
			return nil, err
		}
		if s.Len() > 0 {
			return nil, errorf(nil, "[%s] section doesn't support the option '%s'", name, s.First())
		}
		out = append(out, o)
	}
	return out, nil
}

// readBlkdebugConfig is qemu_config_parse with blkdebug's two groups: the
// inject-error and set-state sections of a rules file, in file order.
func readBlkdebugConfig(path string) (ie, ss []*Opts, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, errorf(err, "Could not read blkdebug config file: %s", Strerror(image.Errno(err)))
	}
	defer f.Close()
	var cur *qdict.Dict
	var group string
	ids := map[string]bool{}
	flush := func() error {
		if cur == nil {
			return nil
		}
		var descs []OptDesc
		var out *[]*Opts
		switch group {
		case "inject-error":
			descs, out = injectErrorOpts, &ie
		case "set-state":
			descs, out = setStateOpts, &ss
		default:
			return errorf(nil, "There is no option group '%s'", group)
		}
		if id, ok := cur.Str("id"); ok {
			if ids[group+"\x00"+id] {
				return errorf(nil, "Duplicate ID '%s' for %s", id, group)
			}
			ids[group+"\x00"+id] = true
		}
		o := &Opts{vals: map[string]string{}, num: map[string]uint64{}, bool: map[string]bool{}}
		for _, k := range cur.Keys() {
			if k == "id" {
				continue
			}
			var desc *OptDesc
			for i := range descs {
				if descs[i].Name == k {
					desc = &descs[i]
				}
			}
			if desc == nil {
				return errorf(nil, "Invalid parameter '%s'", k)
			}
			v, _ := cur.Str(k)
			if err := o.set(desc, v); err != nil {
				return err
			}
		}
		*out = append(*out, o)
		return nil
	}
	r := bufio.NewReader(f)
	for {
		line, rerr := r.ReadString('\n')
		if line == "" && rerr != nil {
			break
		}
		if line[0] == '\n' || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			if g, id, ok := parseGroupLine(line); ok {
				if err := flush(); err != nil {
					return nil, nil, err
				}
				cur, group = qdict.New(), g
				if id != "" {
					cur.Put("id", id)
				}
				continue
			}
		}
		k, v, ok := parseConfigLine(line)
		if !ok {
			return nil, nil, errorf(nil, "parse error")
		}
		if cur == nil {
			return nil, nil, errorf(nil, "no group defined")
		}
		cur.Put(k, v)
	}
	if err := flush(); err != nil {
		return nil, nil, err
	}
	return ie, ss, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// parseGroupLine is the sscanf of '[%63s "%63[^"]"]' or '[%63[^]]]'.
func parseGroupLine(line string) (group, id string, ok bool) {
	s := line[1:]
	// [%63s "%63[^"]"]
	i := 0
	for i < len(s) && !isSpace(s[i]) {
		i++
	}
	if i > 0 {
		tok := s[:i]
		rest := strings.TrimLeft(s[i:], " \t\n\r\v\f")
		if strings.HasPrefix(rest, "\"") {
			rest = rest[1:]
			j := strings.IndexByte(rest, '"')
			if j != 0 && len(rest) > 0 {
				if j < 0 {
					j = len(rest)
				}
				return tok, rest[:j], true
			}
		}
	}
	// [%63[^]]]
	j := strings.IndexByte(s, ']')
	if j == 0 || len(s) == 0 {
		return "", "", false
	}
	if j < 0 {
		j = len(s)
	}
	return s[:j], "", true
}

// parseConfigLine is the sscanf of ' %63s = "%1023[^"]"' (or ' %63s = ""'):
// any line with a word is accepted, the value empty when the rest does not
// match.
func parseConfigLine(line string) (key, value string, ok bool) {
	s := strings.TrimLeft(line, " \t\n\r\v\f")
	i := 0
	for i < len(s) && !isSpace(s[i]) {
		i++
	}
	if i == 0 {
		return "", "", false
	}
	key, s = s[:i], strings.TrimLeft(s[i:], " \t\n\r\v\f")
	if !strings.HasPrefix(s, "=") {
		return key, "", true
	}
	s = strings.TrimLeft(s[1:], " \t\n\r\v\f")
	if !strings.HasPrefix(s, "\"") {
		return key, "", true
	}
	s = s[1:]
	j := strings.IndexByte(s, '"')
	if j < 0 {
		j = len(s)
	}
	return key, s[:j], true
}
