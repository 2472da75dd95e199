package qdict

import (
	"reflect"
	"testing"
)

// TestFirstKey: the key QEMU names in "does not support the option"
// (qdict_first), checked against qemu-io 7.2.
func TestFirstKey(t *testing.T) {
	d := New()
	for _, k := range []string{"aa", "bb", "cc"} {
		d.Put(k, "1")
	}
	if got := d.First(); got != "cc" {
		t.Errorf("first of aa,bb,cc = %q, QEMU names cc", got)
	}
}

func TestFlattenExtract(t *testing.T) {
	v, err := ParseJSON(`{"driver":"qcow2","file":{"driver":"file","filename":"x","aio":{"a":[1,{"b":true}]}},"e":{},"l":[]}`)
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*Dict)
	d.Flatten()
	want := map[string]any{"driver": "qcow2", "file.driver": "file", "file.filename": "x",
		"file.aio.a.0": int64(1), "file.aio.a.1.b": true}
	for k, w := range want {
		if g := d.Get(k); !reflect.DeepEqual(g, w) {
			t.Errorf("%s = %#v, want %#v", k, g, w)
		}
	}
	if _, ok := d.Get("e").(*Dict); !ok {
		t.Errorf("empty dict not kept: %#v", d.Get("e"))
	}
	if _, ok := d.Get("l").(*List); !ok {
		t.Errorf("empty list not kept: %#v", d.Get("l"))
	}
	sub := d.ExtractSub("file.")
	if d.Has("file.driver") || sub.Get("driver") != "file" || sub.Len() != 4 {
		t.Errorf("ExtractSub: %v / %v", d.Keys(), sub.Keys())
	}
	c := sub.Clone()
	c.Put("driver", "raw")
	if sub.Get("driver") != "file" {
		t.Error("Clone shares its table")
	}
	j := New()
	j.Put("driver", "raw")
	j.Join(sub, false)
	if j.Get("driver") != "raw" || !sub.Has("driver") || sub.Has("filename") {
		t.Errorf("Join without overwrite: %v %v", j.Keys(), sub.Keys())
	}
}

// TestJSONErrors: QEMU's messages for malformed json: options (each
// checked against qemu-io 7.2's "Could not parse the JSON options: ...").
func TestJSONErrors(t *testing.T) {
	for in, want := range map[string]string{
		`{`:              "JSON parse error, premature EOI",
		`}`:              "JSON parse error, expecting value",
		`{"a":}`:         "JSON parse error, expecting value",
		`{a:1}`:          "JSON parse error, invalid keyword 'a'",
		`{"a":1}}`:       "Expecting at most one JSON value",
		`{"a":1}{}`:      "Expecting at most one JSON value",
		`{"a" 1}`:        "JSON parse error, missing : in object pair",
		`{"a":1 "b":2}`:  "JSON parse error, expected separator in dict",
		`{"a":'x\q'}`:    "JSON parse error, invalid escape sequence in string",
		`{"a":01}`:       "JSON parse error, stray '01'",
		`{"a":-}`:        "JSON parse error, stray '-}'",
		`{"a":1.}`:       "JSON parse error, stray '1.}'",
		`{"a":tru}`:      "JSON parse error, invalid keyword 'tru'",
		` `:              "Expecting a JSON value",
		``:               "Expecting a JSON value",
		`{"a":[1,]}`:     "JSON parse error, expecting value",
		`{"a":[1 2]}`:    "JSON parse error, expected separator in list",
		`{"a":1,"a":2}`:  "JSON parse error, duplicate key",
		`{"a":"x`:        `JSON parse error, stray '"x'`,
		`{"a":@}`:        "JSON parse error, stray '@'",
		`[`:              "JSON parse error, premature EOI",
		`{"a":{"b":[}}`:  "JSON parse error, expecting value",
		`{"a":"\ud800"}`: `JSON parse error, \ud800 is not a valid Unicode character`,
	} {
		_, err := ParseJSON(in)
		if err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
	deep := ""
	for i := 0; i < 1100; i++ {
		deep += "["
	}
	if _, err := ParseJSON(deep); err == nil || err.Error() != "JSON nesting depth limit exceeded" {
		t.Errorf("deep nesting: %v", err)
	}
	v, err := ParseJSON(`{'a':18446744073709551615,'b':-9223372036854775808,'c':1e3,'d':"\u00e9\n",'e':null}`)
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*Dict)
	if d.Get("a") != uint64(18446744073709551615) || d.Get("b") != int64(-9223372036854775808) ||
		d.Get("c") != 1000.0 || d.Get("d") != "é\n" || d.Get("e") != (Null{}) {
		t.Errorf("values: %#v %#v %#v %#v %#v", d.Get("a"), d.Get("b"), d.Get("c"), d.Get("d"), d.Get("e"))
	}
}
