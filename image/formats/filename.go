package formats

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goqio/goqio/image/qdict"
)

// strongOptions are each driver's strong_runtime_opts: options that change
// what a node reads, so that a plain filename cannot stand for it (a name
// ending in '.' covers every key under it).
var strongOptions = map[string][]string{
	"raw":      {"offset", "size"},
	"null-co":  {"size", "read-zeroes"},
	"null-aio": {"size", "read-zeroes"},
	"qcow2":    {"encrypt.key-secret"},
	"luks":     {"key-secret"},
	"quorum":   {"vote-threshold", "blkverify", "rewrite-corrupted", "read-pattern"},
	"blkdebug": {"config", "inject-error.", "set-state.", "align", "max-transfer", "opt-write-zero",
		"max-write-zero", "opt-discard", "max-discard"},
}

// refreshFilename is bdrv_refresh_filename: the node's filename is its
// exact filename when one opens the same tree, else json:{...} of the
// options that do (full_open_options).
func (n *Node) refreshFilename() {
	if n.Drv == nil {
		return
	}
	for _, c := range n.Children {
		c.Node.refreshFilename()
	}
	backingOverridden := false
	if b := n.Child("backing"); b != nil {
		backingOverridden = n.autoBackingFile != b.Filename
	} else {
		backingOverridden = n.autoBackingFile != ""
	}
	if n.Flags&FlagNoIO != 0 {
		// without I/O the backing file changes nothing (qemu-img info)
		backingOverridden = false
	}
	opts := qdict.New()
	gen := n.appendStrong(opts) || backingOverridden
	if n.Drv.Name == "quorum" {
		// quorum_gather_child_options: the children as a list
		l := &qdict.List{}
		for _, c := range n.Children {
			l.Items = append(l.Items, c.Node.FullOptions)
		}
		opts.Put("children", l)
	} else {
		for _, c := range n.Children {
			if c.Name == "backing" && !backingOverridden {
				continue
			}
			opts.Put(c.Name, c.Node.FullOptions)
		}
	}
	if backingOverridden && n.Child("backing") == nil {
		opts.Put("backing", qdict.Null{})
	}
	n.FullOptions = opts
	var primary *Node
	for _, c := range n.Children {
		if c.Role&RolePrimary != 0 || (c.Name == "file" && c.Role&(RoleFiltered|RoleData) != 0) {
			primary = c.Node
			break
		}
	}
	switch {
	case n.Drv.Name == "null-co" || n.Drv.Name == "null-aio":
		n.exactFilename = ""
		plain := true
		for _, k := range opts.Keys() {
			if k != "filename" && k != "driver" && k != "latency-ns" {
				plain = false
			}
		}
		if plain {
			n.exactFilename = n.Drv.Name + "://"
		}
	case n.Drv.Name == "nbd":
		n.exactFilename = ""
		if d, ok := n.Impl.(*nbdNode); ok {
			n.exactFilename = d.exact
		}
	case n.Drv.Name == "quorum":
		// no bdrv_refresh_filename, no primary child: never a plain
		// name (and no directory, bdrv_dirname fails)
		n.exactFilename = ""
	case n.Drv.Name == "blkverify":
		// blkverify_refresh_filename
		n.exactFilename = ""
		r, t := n.Child("raw"), n.Child("test")
		if r != nil && t != nil && r.exactFilename != "" && t.exactFilename != "" {
			n.exactFilename = "blkverify:" + r.exactFilename + ":" + t.exactFilename
		}
	case n.Drv.Name == "blkdebug":
		// blkdebug_refresh_filename
		n.exactFilename = ""
		img := n.Child("image")
		plain := img != nil && img.exactFilename != ""
		for _, k := range opts.Keys() {
			if k != "config" && k != "image" && k != "x-image" && k != "driver" {
				plain = false
			}
		}
		if plain {
			cfg, _ := n.Options.Str("config")
			n.exactFilename = "blkdebug:" + cfg + ":" + img.exactFilename
		}
	case primary != nil:
		n.exactFilename = ""
		if primary.exactFilename != "" && primary.Drv.FileOpen && !n.Drv.IsFilter && !gen {
			n.exactFilename = primary.exactFilename
		}
	}
	if n.exactFilename != "" {
		n.Filename = n.exactFilename
	} else {
		n.Filename = "json:" + ToJSON(opts)
	}
}

// appendStrong is append_strong_runtime_options: driver, filename and
// the driver's strong options, and whether any but the first two is set.
func (n *Node) appendStrong(d *qdict.Dict) bool {
	found := false
	names := append([]string{"driver", "filename"}, strongOptions[n.Drv.Name]...)
	for _, name := range names {
		given := false
		if !strings.HasSuffix(name, ".") {
			v := n.Options.Get(name)
			if v == nil {
				continue
			}
			d.Put(name, v)
			given = true
		} else {
			for _, k := range n.Options.Keys() {
				if strings.HasPrefix(k, name) {
					d.Put(k, n.Options.Get(k))
					given = true
				}
			}
		}
		if given && name != "driver" && name != "filename" {
			found = true
		}
	}
	if !d.Has("driver") {
		d.Put("driver", n.Drv.Name)
	}
	return found
}

// ToJSON is qobject_to_json: a dictionary in its iteration order, with
// QEMU's separators and escapes.
func ToJSON(v any) string {
	var b strings.Builder
	writeJSON(&b, v, false, 0)
	return b.String()
}

// writeJSON is json-writer.c: compact (", " and ": ") or, pretty, each
// member on its own line indented four spaces a level, an empty container
// still split over two lines.
func writeJSON(b *strings.Builder, v any, pretty bool, level int) {
	sep := func(i int) {
		switch {
		case pretty:
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString("\n" + strings.Repeat("    ", level+1))
		case i > 0:
			b.WriteString(", ")
		}
	}
	end := func(c string) {
		if pretty {
			b.WriteString("\n" + strings.Repeat("    ", level))
		}
		b.WriteString(c)
	}
	switch x := v.(type) {
	case *qdict.Dict:
		b.WriteString("{")
		for i, k := range x.Keys() {
			sep(i)
			writeJSONString(b, k)
			b.WriteString(": ")
			writeJSON(b, x.Get(k), pretty, level+1)
		}
		end("}")
	case *qdict.List:
		b.WriteString("[")
		for i, e := range x.Items {
			sep(i)
			writeJSON(b, e, pretty, level+1)
		}
		end("]")
	case string:
		writeJSONString(b, x)
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case uint64:
		b.WriteString(strconv.FormatUint(x, 10))
	case float64:
		b.WriteString(strconv.FormatFloat(x, 'g', 17, 64))
	case qdict.Null, nil:
		b.WriteString("null")
	default:
		fmt.Fprintf(b, "%v", x)
	}
}

// writeJSONString is json-writer.c's quoted_str: short escapes, \uXXXX
// for control and non-ASCII characters (surrogate pairs beyond the BMP).
func writeJSONString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		s = s[n:]
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			switch {
			case r > 0xFFFF:
				fmt.Fprintf(b, `\u%04X\u%04X`, 0xD800+((r-0x10000)>>10), 0xDC00+((r-0x10000)&0x3FF))
			case r < 0x20 || r >= 0x7F:
				fmt.Fprintf(b, `\u%04X`, r)
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// ToJSONPretty is qobject_to_json_pretty(v, true): QEMU's JSON writer in
// pretty mode (each member on its own line, four spaces a level, an empty
// container still split over two lines).
func ToJSONPretty(v any) string {
	var b strings.Builder
	writeJSON(&b, v, true, 0)
	return b.String()
}

// RefreshFilename is bdrv_refresh_filename: it sets n.Filename (and its
// children's) from the graph as it is now.
func (n *Node) RefreshFilename() { n.refreshFilename() }
