package formats

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/goqio/goqio/image/qdict"
)

// addThrottleGroup is user_creatable_add_from_str for a throttle-group
// definition, in QEMU's order: keyval_parse, the QAPI visitor over
// ObjectOptions (qom-type, id, ThrottleGroupProperties, unexpected
// members), user_creatable_add_type (the id's form, each property set in
// the output visitor's dictionary order by throttle_group_set and
// throttle_group_set_limits, the duplicate id) and
// throttle_group_obj_complete (throttle_is_valid).
func (o *Objects) addThrottleGroup(def string) error {
	args, err := keyvalParse(def, "qom-type")
	if err != nil {
		return err
	}
	v := &qapiVisitor{keyval: true}
	id, err := v.str(args, "id", "id")
	if err != nil {
		return err
	}
	props, err := v.throttleGroupProperties(args)
	if err != nil {
		return err
	}
	if !idWellformed(id) {
		return &Error{Msg: "Parameter 'id' expects an identifier",
			Hint: "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n"}
	}
	tg := newThrottleGroup(id)
	for _, k := range props.Keys() {
		if err := tg.setProperty(k, props.Get(k)); err != nil {
			return err
		}
	}
	if o.byID[id] != nil {
		return objErr("attempt to add duplicate property '%s' to object (type 'container')", id)
	}
	if err := tg.cfg.valid(); err != nil {
		return err
	}
	tg.config(tg.cfg)
	o.byID[id] = &Object{Type: "throttle-group", ID: id, Props: map[string]string{}, Throttle: tg}
	return nil
}

// ThrottleGroup returns the throttle group named name (throttle_group_by_name:
// a throttle-group object with that id), or nil.
func (o *Objects) ThrottleGroup(name string) *ThrottleGroup {
	if obj := o.Get(name); obj != nil {
		return obj.Throttle
	}
	return nil
}

func objErr(format string, a ...any) error { return &Error{Msg: fmt.Sprintf(format, a...)} }

// keyvalParse is keyval_parse (without lists and help): a key=value list
// whose first item may omit its key (impliedKey), dotted keys making nested
// dictionaries, ",," standing for a comma in a value.
func keyvalParse(params, impliedKey string) (*qdict.Dict, error) {
	root := qdict.New()
	s := params
	for s != "" {
		var err error
		s, err = keyvalParseOne(root, s, impliedKey)
		if err != nil {
			return nil, err
		}
		impliedKey = ""
	}
	return root, nil
}

// qapiNameLen is parse_qapi_name(s, false): the length of the QAPI name
// at the start of s, or 0.
func qapiNameLen(s string) int {
	p := 0
	if p < len(s) && s[p] == '_' {
		p++
		if p >= len(s) || s[p] != '_' {
			return 0
		}
		p++
		for p < len(s) && (isAlnum(s[p]) || s[p] == '-' || s[p] == '.') {
			p++
		}
		if p >= len(s) || s[p] != '_' {
			return 0
		}
		p++
	}
	if p >= len(s) || !isAlpha(s[p]) {
		return 0
	}
	p++
	for p < len(s) && (isAlnum(s[p]) || s[p] == '-' || s[p] == '_') {
		p++
	}
	return p
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isAlpha(c) || c >= '0' && c <= '9' }

// keyvalParseOne is keyval_parse_one.
func keyvalParseOne(root *qdict.Dict, params, impliedKey string) (string, error) {
	key := params
	implied := false
	n := strings.IndexAny(params, "=,")
	if n < 0 {
		n = len(params)
	}
	valEnd := 0
	if n > 0 && (n == len(params) || params[n] != '=') && impliedKey != "" {
		key, implied, valEnd = impliedKey, true, n
		n = len(impliedKey)
	}
	keyEnd := n
	cur := root
	s := 0
	var keyInCur string
	for {
		l := qapiNameLen(key[s:keyEnd])
		if s != 0 {
			if il := indexLen(key[s:keyEnd]); il > 0 {
				l = il
			}
		}
		if l == 0 || (s+l < keyEnd && key[s+l] != '.') {
			return "", objErr("Invalid parameter '%s'", key[:keyEnd])
		}
		if l >= 128 {
			frag := ""
			if s != 0 || s+l != keyEnd {
				frag = " fragment"
			}
			return "", objErr("Parameter%s '%s' is too long", frag, key[s:s+l])
		}
		if s != 0 {
			next, err := keyvalPut(cur, keyInCur, nil, key[:s-1])
			if err != nil {
				return "", err
			}
			cur = next.(*qdict.Dict)
		}
		keyInCur = key[s : s+l]
		s += l
		if s >= keyEnd || key[s] != '.' {
			break
		}
		s++
	}
	var val string
	var rest string
	if implied {
		val = params[:valEnd]
		rest = params[valEnd:]
		rest = strings.TrimPrefix(rest, ",")
	} else {
		if s >= len(params) || params[s] != '=' {
			return "", objErr("Expected '=' after parameter '%s'", key[:s])
		}
		i := s + 1
		var b strings.Builder
		for i < len(params) {
			if params[i] == ',' {
				i++
				if i >= len(params) || params[i] != ',' {
					break
				}
			}
			b.WriteByte(params[i])
			i++
		}
		val = b.String()
		rest = params[i:]
	}
	if _, err := keyvalPut(cur, keyInCur, val, key[:keyEnd]); err != nil {
		return "", err
	}
	return rest, nil
}

// indexLen is key_to_index's length: a decimal list index.
func indexLen(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || (i < len(s) && s[i] != '.') {
		return 0
	}
	return i
}

// keyvalPut is keyval_parse_put: value nil puts (or finds) a dictionary.
func keyvalPut(cur *qdict.Dict, key string, value any, full string) (any, error) {
	old := cur.Get(key)
	if old != nil {
		_, oldIsStr := old.(string)
		if oldIsStr != (value != nil) {
			return nil, objErr("Parameters '%s.*' used inconsistently", full)
		}
		if value == nil {
			return old, nil
		}
	}
	if value == nil {
		value = qdict.New()
	}
	cur.Put(key, value)
	return value, nil
}

// qapiVisitor is the part of QEMU's QObject input visitor the object
// options need: keyval (every scalar a string) or JSON (typed) input.
type qapiVisitor struct{ keyval bool }

func (v *qapiVisitor) str(d *qdict.Dict, key, full string) (string, error) {
	x := d.Get(key)
	if x == nil {
		return "", objErr("Parameter '%s' is missing", full)
	}
	s, ok := x.(string)
	if !ok {
		return "", objErr("Invalid parameter type for '%s', expected: string", full)
	}
	return s, nil
}

// int64 is visit_type_int64 on an optional member: ok is false when the
// member is absent.
func (v *qapiVisitor) int64(d *qdict.Dict, key, full string) (int64, bool, error) {
	x := d.Get(key)
	if x == nil {
		return 0, false, nil
	}
	if v.keyval {
		s, ok := x.(string)
		if !ok {
			return 0, false, objErr("Invalid parameter type for '%s', expected: integer", full)
		}
		n, err := strtoi64(s)
		if err != nil {
			return 0, false, objErr("Parameter '%s' expects integer", full)
		}
		return n, true, nil
	}
	switch n := x.(type) {
	case int64:
		return n, true, nil
	case uint64:
		return 0, false, objErr("Parameter '%s' expects integer", full)
	}
	return 0, false, objErr("Invalid parameter type for '%s', expected: integer", full)
}

// strtoi64 is qemu_strtoi64(s, NULL, 0): the whole string, any base C
// knows (0x hex, 0 octal), an optional sign and leading white space.
func strtoi64(s string) (int64, error) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if strings.HasPrefix(t, "-") || strings.HasPrefix(t, "+") {
		neg = t[0] == '-'
		t = t[1:]
	}
	base := 10
	switch {
	case strings.HasPrefix(t, "0x") || strings.HasPrefix(t, "0X"):
		base, t = 16, t[2:]
	case len(t) > 1 && t[0] == '0':
		base, t = 8, t[1:]
	}
	if t == "" || t[0] == '+' || t[0] == '-' {
		return 0, strconv.ErrSyntax
	}
	u, err := strconv.ParseUint(t, base, 64)
	if err != nil {
		return 0, err
	}
	if neg {
		if u > 1<<63 {
			return 0, strconv.ErrRange
		}
		return -int64(u), nil
	}
	if u > 1<<63-1 {
		return 0, strconv.ErrRange
	}
	return int64(u), nil
}

// checkStruct is visit_check_struct: a member nobody visited is
// unexpected (the first in the dictionary's order).
func (v *qapiVisitor) checkStruct(d *qdict.Dict, prefix string, visited ...string) error {
	for _, k := range d.Keys() {
		seen := false
		for _, x := range visited {
			if x == k {
				seen = true
			}
		}
		if !seen {
			return objErr("Parameter '%s%s' is unexpected", prefix, k)
		}
	}
	return nil
}

// throttleLimitNames are ThrottleLimits' members in QAPI order.
var throttleLimitNames = []string{
	"iops-total", "iops-total-max", "iops-total-max-length", "iops-read", "iops-read-max",
	"iops-read-max-length", "iops-write", "iops-write-max", "iops-write-max-length", "bps-total",
	"bps-total-max", "bps-total-max-length", "bps-read", "bps-read-max", "bps-read-max-length",
	"bps-write", "bps-write-max", "bps-write-max-length", "iops-size",
}

// throttleGroupProperties visits ThrottleGroupProperties' members of
// args and returns what QEMU's output visitor makes of them: a dictionary
// of the members given (limits a dictionary itself), in QAPI order.
func (v *qapiVisitor) throttleGroupProperties(args *qdict.Dict) (*qdict.Dict, error) {
	props := qdict.New()
	visited := []string{"qom-type", "id"}
	if x := args.Get("limits"); x != nil {
		ld, ok := x.(*qdict.Dict)
		if !ok {
			return nil, objErr("Invalid parameter type for 'limits', expected: object")
		}
		out := qdict.New()
		for _, name := range throttleLimitNames {
			n, ok, err := v.int64(ld, name, "limits."+name)
			if err != nil {
				return nil, err
			}
			if ok {
				out.Put(name, n)
			}
		}
		if err := v.checkStruct(ld, "limits.", throttleLimitNames...); err != nil {
			return nil, err
		}
		props.Put("limits", out)
		visited = append(visited, "limits")
	}
	for _, name := range throttleLimitNames {
		n, ok, err := v.int64(args, "x-"+name, "x-"+name)
		if err != nil {
			return nil, err
		}
		if ok {
			props.Put("x-"+name, n)
		}
		visited = append(visited, "x-"+name)
	}
	if err := v.checkStruct(args, "", visited...); err != nil {
		return nil, err
	}
	return props, nil
}
