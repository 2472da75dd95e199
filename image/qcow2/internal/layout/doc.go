// Package layout is the on-disk format of qcow2 (docs/interop/qcow2.txt
// of QEMU 7.2) as pure values: bytes in, Go values out, and back. It does
// no file I/O, holds no state and knows nothing of the driver (caches,
// the refcount allocator, locking); the driver in package qcow2 reads and
// writes the bytes and decides what they mean for an open image.
//
// What it holds:
//
//   - Header: the fixed header with a named offset for every field
//     (OffSize, OffL1Size, ...), DecodeHeader and Encode for the whole of it,
//     and EncodeFields for a run of fields, the partial header writes QEMU
//     makes (the size on resize, the L1 table pointer, the refcount table
//     pointer, the snapshot table pointer, the feature bits).
//   - Header extensions: WalkExtensions over the extension area in file
//     order, PutExtension and EncodeExtensions to build it, the feature name
//     table, and the bitmaps and crypto extensions' fields.
//   - Table entries as typed words: L1Entry, L2Entry (standard entries,
//     including the compressed cluster descriptor, which depends on the
//     cluster size) and L2Bitmap (the second word of an extended L2 entry:
//     allocation bits 0-31, zero bits 32-63), with ClusterType, QEMU's
//     qcow2_get_cluster_type for a standard entry.
//   - Refcount blocks at every refcount width (1 to 64 bits, order 0 to 6):
//     RefcountGet and RefcountSet on the block's bytes.
//   - The snapshot table entry (SnapshotEntry: the fixed 40 bytes, the
//     known extra data fields, unknown extra data, id and name), decoded
//     whole from memory (DecodeSnapshot) or piece by piece as the driver
//     reads it from the file (DecodeSnapshotHeader, DecodeKnownExtra: its
//     bounds checks and repairs come between the reads), and encoded as
//     QEMU's qcow2_write_snapshots does; the bitmap directory entry
//     (BitmapDirEntry).
//
// The decoders validate nothing beyond what they need to decode (the
// magic, that an entry fits in the bytes given): what makes a value
// acceptable for an open image (alignment, bounds against the file and the
// image, QEMU's limits) is the driver's to judge, with QEMU's messages. Nor
// do they allocate more than the bytes they are given.
//
// Every decoder is fuzzed here without a file, round trips included
// (fuzz_test.go: FuzzHeader, FuzzExtensions, FuzzSnapshotTable,
// FuzzBitmapDirectory, FuzzEntries, FuzzRefcounts; for example
// go test -run XXX -fuzz '^FuzzHeader$' ./image/qcow2/internal/layout);
// the driver's fuzz targets (image/qcow2/fuzz_parsers_test.go) put the
// same structures into an image and open, use and check it.
package layout
