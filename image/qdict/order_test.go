package qdict

import (
	"reflect"
	"testing"
)

func TestOrder(t *testing.T) {
	// qemu-io info's format-specific block (reference §1.4)
	got := Order([]string{"compat", "data-file", "data-file-raw", "extended-l2", "lazy-refcounts", "corrupt", "refcount-bits", "encrypt", "bitmaps", "compression-type"})
	want := []string{"compat", "compression-type", "lazy-refcounts", "bitmaps", "refcount-bits", "data-file", "encrypt", "data-file-raw", "corrupt", "extended-l2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("info order %v", got)
	}
	// qemu-img check --output=json, as qemu-img 7.2 prints it
	got = Order([]string{"filename", "format", "check-errors", "image-end-offset", "corruptions", "total-clusters", "allocated-clusters"})
	want = []string{"image-end-offset", "total-clusters", "corruptions", "check-errors", "allocated-clusters", "filename", "format"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("check order %v", got)
	}
}
