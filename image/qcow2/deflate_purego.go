//go:build !cgo || purego

package qcow2

import (
	"bytes"

	"github.com/klauspost/compress/flate"
)

// deflate12 without cgo: a valid raw deflate stream, but not zlib's exact
// bytes, so compressed clusters written by goqio may be sized differently
// from QEMU's (and later clusters placed elsewhere).
func deflate12(src []byte, max int) ([]byte, bool, error) {
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, 6)
	if err != nil {
		return nil, false, err
	}
	w.Write(src)
	w.Close()
	if b.Len() > max {
		return nil, false, nil
	}
	return b.Bytes(), true, nil
}
