//go:build cgo && !purego

package qcow2

/*
#cgo LDFLAGS: -lz
#include <string.h>
#include <zlib.h>

// deflate12 compresses like QEMU's qcow2_zlib_compress: raw deflate,
// window 2^12, memLevel 9, default level and strategy. It returns the
// compressed size, -1 when the output does not fit, -2 on an error.
static long goqio_deflate12(unsigned char *dst, long dstlen, unsigned char *src, long srclen) {
	z_stream s;
	memset(&s, 0, sizeof(s));
	if (deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
		return -2;
	}
	s.avail_in = srclen;
	s.next_in = src;
	s.avail_out = dstlen;
	s.next_out = dst;
	int ret = deflate(&s, Z_FINISH);
	long n;
	if (ret == Z_STREAM_END) {
		n = dstlen - s.avail_out;
	} else if (ret == Z_OK || ret == Z_BUF_ERROR) {
		n = -1;
	} else {
		n = -2;
	}
	deflateEnd(&s);
	return n;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// deflate12 uses the system's zlib, so that compressed clusters are byte
// for byte what QEMU (linked to the same zlib) writes, and the clusters
// after them land at the same host offsets.
func deflate12(src []byte, max int) ([]byte, bool, error) {
	dst := make([]byte, max)
	n := C.goqio_deflate12((*C.uchar)(unsafe.Pointer(&dst[0])), C.long(max),
		(*C.uchar)(unsafe.Pointer(&src[0])), C.long(len(src)))
	switch {
	case n == -1:
		return nil, false, nil
	case n < 0:
		return nil, false, errors.New("qcow2: zlib deflate failed")
	}
	return dst[:n], true, nil
}
