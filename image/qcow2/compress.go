package qcow2

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Compressed clusters hold one cluster of guest data, compressed as raw
// deflate (zlib's windowBits -12, no header) or as a zstd frame, stored at
// a byte offset and padded to 512-byte sectors. Decompression stops once a
// cluster of output is produced, so the sector padding after the stream is
// never looked at.

var errDecompress = errors.New("qcow2: corrupt compressed cluster")

// deflateReaders are reused flate decompressors.
var deflateReaders = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}

// zstdDecoders are reused zstd decompressors.
var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(false))
	if err != nil {
		return nil
	}
	return d
}}

// decompress fills dst (one cluster) from the compressed bytes src.
func decompress(compressionType uint8, dst, src []byte) error {
	switch compressionType {
	case 0:
		r := deflateReaders.Get().(io.ReadCloser)
		defer deflateReaders.Put(r)
		if err := r.(flate.Resetter).Reset(bytes.NewReader(src), nil); err != nil {
			return errDecompress
		}
		if _, err := io.ReadFull(r, dst); err != nil {
			return errDecompress
		}
		return nil
	case 1:
		d, _ := zstdDecoders.Get().(*zstd.Decoder)
		if d == nil {
			return errDecompress
		}
		defer zstdDecoders.Put(d)
		if err := d.Reset(bytes.NewReader(src)); err != nil {
			return errDecompress
		}
		if _, err := io.ReadFull(d, dst); err != nil {
			return errDecompress
		}
		return nil
	}
	return errDecompress
}

var zstdEncoders = sync.Pool{New: func() any {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil
	}
	return e
}}

// compress compresses src (one cluster) as QEMU's qcow2_co_compress does
// for the image's compression type; ok is false when the result would not
// be smaller than max bytes (QEMU then writes the cluster uncompressed).
func compress(compressionType uint8, src []byte, max int) ([]byte, bool, error) {
	switch compressionType {
	case 0:
		return deflate12(src, max)
	case 1:
		e, _ := zstdEncoders.Get().(*zstd.Encoder)
		if e == nil {
			return nil, false, errors.New("qcow2: no zstd encoder")
		}
		defer zstdEncoders.Put(e)
		out := e.EncodeAll(src, nil)
		if len(out) > max {
			return nil, false, nil
		}
		return out, true, nil
	}
	return nil, false, errors.New("qcow2: unknown compression type")
}
