package qcow2

import (
	"reflect"
	"testing"
)

// TestDecodeShortFeatureTable: a feature table entry cut short (iotest
// 036 writes 14 bytes) is read zero-padded, as QEMU reads it, and the
// table ends at an empty name.
func TestDecodeShortFeatureTable(t *testing.T) {
	got := decodeFeatures(append([]byte{0, 63}, "Test feature"...))
	want := []feature{{Type: 0, Bit: 63, Name: "Test feature"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("short entry: %+v, want %+v", got, want)
	}
	b := encodeFeatures([]feature{{Type: 0, Bit: 1, Name: "a"}, {Type: 0, Bit: 2}, {Type: 0, Bit: 3, Name: "c"}})
	if got := decodeFeatures(b); len(got) != 1 || got[0].Name != "a" {
		t.Errorf("empty name: %+v, want the table to end there", got)
	}
}

// TestSpecificInfoOrder: qemu-img info's format-specific data comes out in
// QEMU's QDict order.
func TestSpecificInfoOrder(t *testing.T) {
	path := create(t, CreateOptions{Size: 1 << 20})
	d, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got := d.SpecificInfo().Keys()
	want := []string{"compat", "compression-type", "lazy-refcounts", "refcount-bits", "corrupt", "extended-l2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keys %q, want %q", got, want)
	}
}
