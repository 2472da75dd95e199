// Package qdict is QEMU's options tree: a dictionary of typed values with
// QEMU's QDict semantics, dotted keys for nested dictionaries once
// flattened, and QEMU's deterministic iteration order, which decides, for
// example, which unknown option an error message names.
//
// The iteration order is QEMU 7.2's: the keys hash (tdb_hash) into 512
// buckets, visited in order; within a bucket the key inserted last comes
// first. Replacing the value of a key keeps its place.
//
// Values are string, int64, uint64, float64, bool, Null, *Dict or *List.
package qdict

import (
	"fmt"
	"strconv"
)

const buckets = 512

// Null is JSON's null.
type Null struct{}

// List is a list of values.
type List struct{ Items []any }

type entry struct {
	key string
	val any
}

// Dict is a QDict. The zero value is not usable; call New.
type Dict struct {
	table [buckets][]*entry // each bucket, head first
	n     int
}

// New returns an empty dictionary.
func New() *Dict { return &Dict{} }

// hash is QEMU's tdb_hash.
func hash(name string) uint32 {
	value := uint32(0x238F13AF) * uint32(len(name))
	for i := 0; i < len(name); i++ {
		value = value + uint32(name[i])<<(uint(i)*5%24)
	}
	return 1103515243*value + 12345
}

func bucket(key string) int { return int(hash(key) % buckets) }

func (d *Dict) find(key string) *entry {
	for _, e := range d.table[bucket(key)] {
		if e.key == key {
			return e
		}
	}
	return nil
}

// Put sets key to v, keeping the key's place when it exists.
func (d *Dict) Put(key string, v any) {
	if e := d.find(key); e != nil {
		e.val = v
		return
	}
	b := bucket(key)
	d.table[b] = append([]*entry{{key, v}}, d.table[b]...)
	d.n++
}

// Get returns the value of key, or nil when it is absent.
func (d *Dict) Get(key string) any {
	if d == nil {
		return nil
	}
	if e := d.find(key); e != nil {
		return e.val
	}
	return nil
}

// Has reports whether key is present.
func (d *Dict) Has(key string) bool { return d != nil && d.find(key) != nil }

// Str is qdict_get_try_str: the value of key if it is a string.
func (d *Dict) Str(key string) (string, bool) {
	s, ok := d.Get(key).(string)
	return s, ok
}

// Del removes key.
func (d *Dict) Del(key string) {
	b := bucket(key)
	for i, e := range d.table[b] {
		if e.key == key {
			d.table[b] = append(d.table[b][:i:i], d.table[b][i+1:]...)
			d.n--
			return
		}
	}
}

// Len is the number of keys.
func (d *Dict) Len() int {
	if d == nil {
		return 0
	}
	return d.n
}

// Keys returns the keys in QEMU's iteration order.
func (d *Dict) Keys() []string {
	if d == nil {
		return nil
	}
	keys := make([]string, 0, d.n)
	for b := range d.table {
		for _, e := range d.table[b] {
			keys = append(keys, e.key)
		}
	}
	return keys
}

// First returns the first key in iteration order, or "" when empty.
func (d *Dict) First() string {
	for b := range d.table {
		if len(d.table[b]) > 0 {
			return d.table[b][0].key
		}
	}
	return ""
}

// Clone is qdict_clone_shallow: a new dictionary with the same keys and
// values (nested dictionaries are shared), put in iteration order as QEMU
// puts them (so keys sharing a bucket come out reversed, as in QEMU).
func (d *Dict) Clone() *Dict {
	c := New()
	for _, k := range d.Keys() {
		c.Put(k, d.Get(k))
	}
	return c
}

// ExtractSub is qdict_extract_subqdict: the keys starting with prefix are
// moved, without it, to a new dictionary.
func (d *Dict) ExtractSub(prefix string) *Dict {
	dst := New()
	for _, k := range d.Keys() {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			dst.Put(k[len(prefix):], d.Get(k))
			d.Del(k)
		}
	}
	return dst
}

// DelSub removes every key starting with prefix.
func (d *Dict) DelSub(prefix string) { d.ExtractSub(prefix) }

// Join is qdict_join: src's keys move to d; without overwrite, keys d has
// already stay in src.
func (d *Dict) Join(src *Dict, overwrite bool) {
	for _, k := range src.Keys() {
		if overwrite || !d.Has(k) {
			d.Put(k, src.Get(k))
			src.Del(k)
		}
	}
}

// SetDefault is qdict_set_default_str.
func (d *Dict) SetDefault(key string, v any) {
	if !d.Has(key) {
		d.Put(key, v)
	}
}

// CopyDefault is qdict_copy_default: key's value in src, unless d has key.
func (d *Dict) CopyDefault(src *Dict, key string) {
	if d.Has(key) {
		return
	}
	if v := src.Get(key); v != nil {
		d.Put(key, v)
	}
}

// Flatten is qdict_flatten: nested non-empty dictionaries and lists become
// dotted keys ("file.filename", "children.0.driver").
func (d *Dict) Flatten() { d.flattenInto(d, "") }

func (d *Dict) flattenInto(target *Dict, prefix string) {
	for _, k := range d.Keys() {
		v := d.Get(k)
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		switch x := v.(type) {
		case *Dict:
			if x.Len() > 0 {
				x.flattenInto(target, key)
				if target == d {
					d.Del(k)
				}
				continue
			}
		case *List:
			if len(x.Items) > 0 {
				flattenList(x, target, key)
				if target == d {
					d.Del(k)
				}
				continue
			}
		}
		if target != d {
			target.Put(key, v)
		}
	}
}

func flattenList(l *List, target *Dict, prefix string) {
	for i, v := range l.Items {
		key := prefix + "." + strconv.Itoa(i)
		switch x := v.(type) {
		case *Dict:
			if x.Len() > 0 {
				x.flattenInto(target, key)
				continue
			}
		case *List:
			if len(x.Items) > 0 {
				flattenList(x, target, key)
				continue
			}
		}
		target.Put(key, v)
	}
}

// ScalarString is the text QEMU's QemuOpts take from a scalar value
// (qemu_opts_from_qdict_entry): strings as they are, numbers in decimal,
// booleans as "on"/"off". ok is false for dictionaries, lists and null.
func ScalarString(v any) (s string, ok bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'f', 6, 64), true
	case bool:
		if x {
			return "on", true
		}
		return "off", true
	}
	return "", false
}

// TypeName is the QAPI name of v's type, for error messages.
func TypeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64, uint64, float64:
		return "number"
	case bool:
		return "boolean"
	case Null:
		return "null"
	case *Dict:
		return "object"
	case *List:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

// Order returns keys (given in insertion order) in QDict iteration order,
// as QEMU prints a dictionary built by inserting them in that order.
func Order(keys []string) []string {
	d := New()
	for _, k := range keys {
		d.Put(k, nil)
	}
	return d.Keys()
}
