package qemuimg

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/goqio/goqio/internal/testbin"
)

// convertImages are the sources of the convert, dd and measure cases,
// made by the real tools: qcow2 of several cluster sizes, extended L2,
// compressed (zlib, zstd), a chain with zero clusters over backing data,
// raw files with holes, written zeroes and a size that is not whole
// sectors.
const convertImages = `set -e
exec >/dev/null
qemu-img create -q -f qcow2 base.qcow2 8M
qemu-io -c 'write -P 1 0 1M' -c 'write -z 2M 1M' -c 'write -c -P 3 4M 64k' -c 'write -P 7 6M 128k' -c 'write -P 0 7M 64k' base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -c 'write -P 2 512k 1M' -c 'write -z 6M 64k' -c 'write -z 0 64k' -c 'write -P 9 7M 4k' top.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 short.qcow2 12M
qemu-io -c 'write -P 4 9M 64k' -c 'write -z 10M 64k' short.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4k c4k.qcow2 4M
qemu-io -c 'write -P 1 0 6k' -c 'write -P 2 1M 512' -c 'write -z 1536k 64k' -c 'write -P 0 2M 64k' c4k.qcow2
qemu-img create -q -f qcow2 -o cluster_size=2M c2m.qcow2 8M
qemu-io -c 'write -P 1 1M 4k' -c 'write -P 2 5M 1M' c2m.qcow2
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=32k ext.qcow2 4M
qemu-io -c 'write -P 1 4k 4k' -c 'write -P 2 100k 1k' -c 'write -z 1M 8k' -c 'write -P 3 2M 64k' ext.qcow2
qemu-img create -q -f qcow2 comp.qcow2 4M
qemu-io -c 'write -c -P 5 0 64k' -c 'write -c -P 6 1M 1M' -c 'write -P 7 3M 64k' comp.qcow2
qemu-img create -q -f qcow2 -o compression_type=zstd zstd.qcow2 4M
qemu-io -c 'write -c -P 5 0 128k' -c 'write -c 2M 64k' zstd.qcow2
truncate -s 8M sp.raw
qemu-io -f raw -c 'write -P 3 1M 64k' -c 'write 5M 4k' -c 'write -P 1 6M 3k' -c 'write -P 2 6148k 512' -c 'write -P 8 6160k 20k' sp.raw
dd if=/dev/urandom of=rnd.raw bs=64k count=8 status=none
truncate -s 1000001 odd.raw
qemu-io -f raw -c 'write -P 5 0 4k' -c 'write -P 6 976k 1' odd.raw
truncate -s 2M zero.raw
qemu-img create -q -f qcow2 empty.qcow2 8M
qemu-img create -q -f raw small.raw 1M
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
qemu-io -c 'write -P 1 0 64k' -c 'write -z 1M 64k' v2.qcow2
cp sp.raw exist.raw
qemu-img create -q -f qcow2 exist.qcow2 8M
qemu-io -c 'write -P 0xaa 0 8M' exist.qcow2
qemu-img create -q -f qcow2 existzero.qcow2 8M
echo garbage > text.raw
truncate -s 2M zd.raw
qemu-io -f raw -c 'write -P 0 0 1M' -c 'write -P 1 1M 4k' zd.raw
qemu-img create -q -f qcow2 sn.qcow2 4M
qemu-io -c 'write -P 1 0 64k' -c 'write -P 4 2M 64k' sn.qcow2
qemu-img snapshot -c s1 sn.qcow2
qemu-io -c 'write -P 2 0 64k' -c 'write -P 3 1M 64k' -c 'write -z 2M 64k' sn.qcow2
qemu-img snapshot -c s2 sn.qcow2
qemu-io -c 'write -P 5 3M 64k' sn.qcow2
qemu-img create -q -f qcow2 bm.qcow2 4M
qemu-img bitmap --add bm.qcow2 b1
qemu-img bitmap --add -g 4k bm.qcow2 b2
qemu-io -c 'write 0 100k' -c 'write 1M 1M' bm.qcow2
qemu-img bitmap --add --disable bm.qcow2 b3
qemu-img bitmap --add -g 512 bm.qcow2 b4
qemu-io -c 'write 3M 4k' -c 'write 2047k 2k' bm.qcow2
cp bm.qcow2 bmbroken.qcow2
qemu-io -c 'sigraise 9' bmbroken.qcow2 || true
`

// convertCase is a command line whose results are compared: out, err
// and exit status; then, for each of files made, qemu-img map (host
// offsets included unless noOffsets), check and compare between
// qemu-img's and goqio's.
type convertCase struct {
	args      []string
	files     []string
	noOffsets bool
	// tries: where qemu-img's own outcome depends on its timing (its
	// job sees a failure before or after it issues the next
	// operation), the case runs again, both tools on fresh copies, up to
	// tries times in all until they agree: goqio's outcome must be one
	// that qemu-img gives (0: once)
	tries int
}

func cc(files string, args ...string) convertCase {
	var f []string
	if files != "" {
		f = strings.Split(files, ",")
	}
	return convertCase{args: args, files: f}
}

var convertCases = []convertCase{
	// raw and qcow2 targets from every source
	cc("o.raw", "convert", "base.qcow2", "o.raw"),
	cc("o.qcow2", "convert", "-O", "qcow2", "base.qcow2", "o.qcow2"),
	cc("o.raw", "convert", "top.qcow2", "o.raw"),
	cc("o.qcow2", "convert", "-O", "qcow2", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "short.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "c4k.qcow2", "o.qcow2"),
	cc("o.raw", "convert", "-O", "raw", "c4k.qcow2", "o.raw"),
	cc("o.qcow2", "convert", "-O", "qcow2", "c2m.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "ext.qcow2", "o.qcow2"),
	cc("o.raw", "convert", "ext.qcow2", "o.raw"),
	cc("o.qcow2", "convert", "-O", "qcow2", "comp.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "zstd.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "sp.raw", "o.qcow2"),
	cc("o.raw", "convert", "sp.raw", "o.raw"),
	cc("o.qcow2", "convert", "-f", "raw", "-O", "qcow2", "odd.raw", "o.qcow2"),
	cc("o.raw", "convert", "odd.raw", "o.raw"),
	cc("o.qcow2", "convert", "-O", "qcow2", "zero.raw", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "empty.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "v2.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "rnd.raw", "o.qcow2"),
	// target options
	cc("o.qcow2", "convert", "-O", "qcow2", "-o", "cluster_size=4k", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-o", "cluster_size=512", "sp.raw", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-o", "cluster_size=2M", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-o", "extended_l2=on", "sp.raw", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-o", "extended_l2=on,cluster_size=16k", "c4k.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-o", "compat=0.10", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-o", "preallocation=metadata", "sp.raw", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-o", "refcount_bits=1", "-o", "lazy_refcounts=on", "top.qcow2", "o.qcow2"),
	cc("o.raw", "convert", "-O", "raw", "-o", "preallocation=falloc", "sp.raw", "o.raw"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-o", "size=1M", "sp.raw", "o.qcow2"),
	// sparse detection
	cc("o.raw", "convert", "-S", "0", "sp.raw", "o.raw"),
	cc("o.qcow2", "convert", "-S", "0", "-O", "qcow2", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-S", "64k", "-O", "qcow2", "sp.raw", "o.qcow2"),
	cc("o.raw", "convert", "-S", "64k", "sp.raw", "o.raw"),
	cc("o.qcow2", "convert", "-S", "512", "-O", "qcow2", "sp.raw", "o.qcow2"),
	cc("o.qcow2", "convert", "-S", "1k", "-O", "qcow2", "-o", "cluster_size=4k", "sp.raw", "o.qcow2"),
	cc("o.qcow2", "convert", "-S", "16M", "-O", "qcow2", "base.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-S", "0", "-O", "qcow2", "-o", "cluster_size=4k", "c4k.qcow2", "o.qcow2"),
	// compressed output
	cc("o.qcow2", "convert", "-c", "-O", "qcow2", "base.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-c", "-O", "qcow2", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-c", "-O", "qcow2", "rnd.raw", "o.qcow2"),
	cc("o.qcow2", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", "sp.raw", "o.qcow2"),
	cc("o.qcow2", "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4k", "odd.raw", "o.qcow2"),
	cc("o.qcow2", "convert", "-c", "-S", "0", "-O", "qcow2", "comp.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-c", "-m", "1", "-O", "qcow2", "zstd.qcow2", "o.qcow2"),
	// backing files
	cc("o.qcow2", "convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "short.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-o", "backing_file=base.qcow2,backing_fmt=qcow2", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "-S", "0", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "-c", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "-B", "sp.raw", "-F", "raw", "base.qcow2", "o.qcow2"),
	// existing targets
	cc("exist.raw", "convert", "-n", "top.qcow2", "exist.raw"),
	cc("exist.qcow2", "convert", "-n", "-O", "qcow2", "top.qcow2", "exist.qcow2"),
	cc("exist.qcow2", "convert", "-n", "-O", "qcow2", "sp.raw", "exist.qcow2"),
	cc("exist.qcow2", "convert", "-n", "-S", "0", "-O", "qcow2", "sp.raw", "exist.qcow2"),
	cc("existzero.qcow2", "convert", "-n", "--target-is-zero", "-O", "qcow2", "top.qcow2", "existzero.qcow2"),
	cc("existzero.qcow2", "convert", "-n", "-O", "qcow2", "top.qcow2", "existzero.qcow2"),
	cc("exist.raw", "convert", "-n", "--target-is-zero", "base.qcow2", "exist.raw"),
	cc("exist.qcow2", "convert", "-n", "exist.qcow2", "small.raw"),
	cc("exist.qcow2", "convert", "-n", "--target-image-opts", "base.qcow2", "driver=qcow2,file.filename=exist.qcow2"),
	// parallelism, order, several sources, cache modes, quiet, progress
	cc("o.qcow2", "convert", "-m", "1", "-O", "qcow2", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-m", "16", "-O", "qcow2", "sp.raw", "o.qcow2"),
	cc("o.raw", "convert", "-m", "4", "-W", "top.qcow2", "o.raw"),
	cc("o.qcow2", "convert", "-O", "qcow2", "sp.raw", "odd.raw", "base.qcow2", "o.qcow2"),
	cc("o.raw", "convert", "c4k.qcow2", "zero.raw", "comp.qcow2", "o.raw"),
	cc("o.qcow2", "convert", "-c", "-O", "qcow2", "odd.raw", "sp.raw", "o.qcow2"),
	cc("o.qcow2", "convert", "-t", "writeback", "-T", "none", "-O", "qcow2", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-q", "-p", "-O", "qcow2", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-p", "-O", "qcow2", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-p", "-O", "qcow2", "empty.qcow2", "o.qcow2"),
	cc("o.raw", "convert", "-p", "-S", "0", "sp.raw", "o.raw"),
	cc("o.qcow2", "convert", "-U", "-r", "100M", "-O", "qcow2", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "--image-opts", "-O", "qcow2", "driver=qcow2,file.filename=top.qcow2", "o.qcow2"),
	cc("o.raw", "convert", "--salvage", "top.qcow2", "o.raw"),
	cc("o.raw", "convert", "-C", "sp.raw", "o.raw"), cc("o.raw", "convert", "-C", "zd.raw", "o.raw"),
	cc("o.qcow2", "convert", "-C", "-O", "qcow2", "zd.raw", "o.qcow2"), cc("o.raw", "convert", "-C", "top.qcow2", "o.raw"),
	cc("o.qcow2", "convert", "--bitmaps", "-O", "qcow2", "top.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "top.qcow2", "-f", "qcow2", "o.qcow2"),
	// bitmaps
	cc("o.qcow2", "convert", "--bitmaps", "-O", "qcow2", "bm.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "--bitmaps", "-O", "qcow2", "-o", "cluster_size=4k", "bm.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "--bitmaps", "-c", "-O", "qcow2", "-o", "cluster_size=2M", "bm.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "--bitmaps", "-O", "qcow2", "-o", "compat=0.10", "bm.qcow2", "o.qcow2"),
	cc("o.raw", "convert", "--bitmaps", "bm.qcow2", "o.raw"),
	cc("o.qcow2", "convert", "--bitmaps", "-O", "qcow2", "bmbroken.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "--bitmaps", "--skip-broken-bitmaps", "-O", "qcow2", "bmbroken.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "-O", "qcow2", "bm.qcow2", "o.qcow2"),
	cc("o.qcow2", "convert", "--bitmaps", "-O", "qcow2", "v2.qcow2", "o.qcow2"),
	cc("exist.qcow2", "convert", "--bitmaps", "-n", "-O", "qcow2", "bm.qcow2", "exist.qcow2"),
	// -o help
	cc("", "convert", "-O", "qcow2", "-o", "help", "a", "b"), cc("", "convert", "-O", "raw", "-o", "help", "a", "b"),
	cc("", "convert", "-O", "qcow2", "-o", "help"), cc("", "convert", "-o", "help"), cc("", "convert", "-o", "help", "a"),
	cc("", "convert", "-O", "foo", "-o", "help", "a", "b"), cc("", "convert", "-O", "qcow2", "-o", "help", "a", "null-co://"),
	cc("", "convert", "-O", "qcow2", "-o", "help,cluster_size=4k", "a", "b"), cc("", "convert", "-O", "qcow2", "-o", "?", "a", "b"),
	cc("", "convert", "--target-image-opts", "-n", "-o", "help", "a", "b"),
	// internal snapshots
	cc("o.qcow2", "convert", "-l", "s1", "-O", "qcow2", "sn.qcow2", "o.qcow2"),
	cc("o.raw", "convert", "-l", "2", "sn.qcow2", "o.raw"), cc("o.raw", "convert", "-l", "s2", "sn.qcow2", "o.raw"),
	cc("o.raw", "convert", "-l", "snapshot.name=s1", "sn.qcow2", "o.raw"),
	cc("o.raw", "convert", "-l", "snapshot.id=2,snapshot.name=s2", "sn.qcow2", "o.raw"),
	cc("o.raw", "convert", "-l", "snapshot.id=1", "sn.qcow2", "top.qcow2", "o.raw"),
	cc("", "convert", "-l", "nope", "sn.qcow2", "o.raw"), cc("", "convert", "-l", "snapshot.name=nope", "sn.qcow2", "o.raw"),
	cc("", "convert", "-l", "snapshot.foo=1", "sn.qcow2", "o.raw"), cc("", "convert", "-l", "s1", "sp.raw", "o.raw"),
	cc("", "convert", "-l", "s1", "sn.qcow2", "top.qcow2", "o.raw"), cc("", "convert", "-l", "snapshot.id=1,snapshot.name=s2", "sn.qcow2", "o.raw"),
	cc("", "convert", "-l", "snapshot.id=", "sn.qcow2", "o.raw"), cc("", "convert", "-l", "snapshot.id=1,bogus", "sn.qcow2", "o.raw"),
	cc("", "measure", "-l", "snapshot.id=1,bogus", "-O", "raw", "sn.qcow2"),
	// bad input
	cc("", "convert"), cc("", "convert", "o.raw"), cc("", "convert", "nope.qcow2", "o.raw"),
	cc("", "convert", "-f", "qcow2", "sp.raw", "o.raw"), cc("", "convert", "-O", "foo", "sp.raw", "o.raw"),
	cc("", "convert", "-c", "sp.raw", "o.raw"), cc("", "convert", "-n", "-o", "cluster_size=4k", "sp.raw", "exist.raw"),
	cc("", "convert", "--target-is-zero", "sp.raw", "o.raw"), cc("", "convert", "-m", "0", "sp.raw", "o.raw"),
	cc("", "convert", "-m", "17", "sp.raw", "o.raw"), cc("", "convert", "-m", "x", "sp.raw", "o.raw"),
	cc("", "convert", "-S", "100", "sp.raw", "o.raw"), cc("", "convert", "-S", "32M", "sp.raw", "o.raw"),
	cc("", "convert", "-S", "x", "sp.raw", "o.raw"), cc("", "convert", "-S", "-1", "sp.raw", "o.raw"),
	cc("sp.raw", "convert", "sp.raw", "sp.raw"), cc("top.qcow2", "convert", "-O", "qcow2", "top.qcow2", "top.qcow2"),
	cc("small.raw", "convert", "-n", "sp.raw", "small.raw"),
	cc("", "convert", "-O", "qcow2", "-B", "base.qcow2", "top.qcow2", "o.qcow2"),
	cc("", "convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "top.qcow2", "sp.raw", "o.qcow2"),
	cc("", "convert", "-O", "raw", "-B", "base.qcow2", "-F", "qcow2", "top.qcow2", "o.raw"),
	cc("", "convert", "--skip-broken-bitmaps", "sp.raw", "o.raw"), cc("", "convert", "-C", "-c", "sp.raw", "o.raw"),
	cc("", "convert", "-C", "-S", "4k", "sp.raw", "o.raw"), cc("", "convert", "-C", "--salvage", "sp.raw", "o.raw"),
	cc("", "convert", "--target-image-opts", "sp.raw", "o.raw"), cc("", "convert", "-o", ",x", "sp.raw", "o.raw"),
	cc("", "convert", "-O", "qcow2", "-o", "foo=1", "sp.raw", "o.qcow2"),
	cc("", "convert", "-O", "qcow2", "-o", "cluster_size=1000", "sp.raw", "o.qcow2"),
	cc("", "convert", "-O", "qcow2", "-o", "cluster_size=abc", "sp.raw", "o.qcow2"),
	cc("", "convert", "-O", "qcow2", "-o", "compat=0.9", "sp.raw", "o.qcow2"),
	cc("", "convert", "-O", "qcow2", "-o", "lazy_refcounts=maybe", "sp.raw", "o.qcow2"),
	cc("", "convert", "-O", "qcow2", "-c", "-o", "preallocation=metadata", "sp.raw", "o.qcow2"),
	cc("", "convert", "-O", "qcow2", "-o", "compat=0.10,extended_l2=on", "sp.raw", "o.qcow2"),
	cc("", "convert", "-O", "raw", "-o", "cluster_size=4k", "sp.raw", "o.raw"),
	cc("", "convert", "-T", "foo", "sp.raw", "o.raw"), cc("", "convert", "-t", "foo", "sp.raw", "o.raw"),
	cc("", "convert", "-x", "sp.raw", "o.raw"), cc("", "convert", "-O"), cc("", "convert", "-r", "x", "sp.raw", "o.raw"),
	cc("", "convert", "--bitmaps", "sp.raw", "o.raw"), cc("", "convert", "--bitmaps", "sp.raw", "top.qcow2", "o.raw"),
	cc("", "convert", "-n", "sp.raw", "nope.raw"), cc("", "convert", "-p", "nope.raw", "o.raw"),
	cc("", "convert", "-n", "-O", "qcow2", "sp.raw", "exist.raw"),
	cc("", "convert", "-f", "raw", "-O", "qcow2", "text.raw", "o.qcow2"),
	cc("", "convert", "-O", "qcow2", "-B", "nope.qcow2", "-F", "qcow2", "top.qcow2", "o.qcow2"),
	cc("", "convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "--target-is-zero", "-n", "top.qcow2", "exist.qcow2"),
}

// prepare copies the images of tmpl into a new directory under root.
func prepare(root, tmpl string) (string, error) {
	dir, err := os.MkdirTemp(root, "case-")
	if err != nil {
		return "", err
	}
	if out, err := exec.Command("cp", "-a", tmpl+"/.", dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("cp: %v %s", err, out)
	}
	return dir, nil
}

func makeImages(t *testing.T, script string) string {
	t.Helper()
	for try := 0; ; try++ {
		dir := t.TempDir()
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err == nil {
			return dir
		}
		// the oracle's flake: the script runs again, in a fresh directory
		if try < 5 && testbin.QEMUFlake(string(out)) {
			continue
		}
		t.Fatalf("making images: %v\n%s", err, out)
	}
}

// runQuiet is run for goroutines: a failure to start is an rc of -1.
func runQuiet(dir, prog string, args []string) result {
	cmd := exec.Command(prog, args...)
	cmd.Args[0] = "qemu-img"
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	rc := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			return result{"", err.Error(), -1}
		}
		rc = ee.ExitCode()
	}
	return result{o.String(), e.String(), rc}
}

// sameImages compares what qemu-img says of file in the two directories
// and returns the differences.
func sameImages(qemuImg, dq, dg, file string, offsets bool) []string {
	var diffs []string
	pq, pg := filepath.Join(dq, file), filepath.Join(dg, file)
	_, eq := os.Stat(pq)
	_, eg := os.Stat(pg)
	if (eq == nil) != (eg == nil) {
		return []string{fmt.Sprintf("%s: exists after qemu-img: %v, after goqio: %v", file, eq == nil, eg == nil)}
	}
	if eq != nil {
		return nil
	}
	info := runQuiet(dq, qemuImg, []string{"info", "-U", "--output=json", file})
	fmtName := "raw"
	if strings.Contains(info.out, `"format": "qcow2"`) {
		fmtName = "qcow2"
	}
	for _, args := range [][]string{
		{"map", "-U", "-f", fmtName, "--output=json", file},
		{"check", "-U", "-f", fmtName, file},
		{"info", "-U", "-f", fmtName, file},
	} {
		if args[0] == "check" && fmtName == "raw" {
			continue
		}
		a, b := runQuiet(dq, qemuImg, args), runQuiet(dg, qemuImg, args)
		if !offsets && args[0] == "map" {
			a.out, b.out = dropOffsets(a.out), dropOffsets(b.out)
		}
		if args[0] == "info" {
			a.out, b.out = dropDiskSize(a.out), dropDiskSize(b.out)
		}
		if a != b {
			diffs = append(diffs, fmt.Sprintf("%s: qemu-img %q differs:\nafter qemu-img:\n%s%s\nafter goqio:\n%s%s", file, args, a.out, a.err, b.out, b.err))
		}
	}
	r := runQuiet(dq, qemuImg, []string{"compare", "-U", "-f", fmtName, "-F", fmtName, pq, pg})
	if r.rc != 0 {
		diffs = append(diffs, fmt.Sprintf("%s: qemu-img compare: %s%s", file, r.out, r.err))
	}
	return diffs
}

func dropOffsets(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, `, "offset"`); i >= 0 {
			l = l[:i] + "}"
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

func dropDiskSize(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "disk size:") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// runCases runs every case with both programs, several at a time (the
// work is mostly waiting for processes, so more than t.Parallel's
// GOMAXPROCS), then reports each as a subtest.
func runCases(t *testing.T, script string, cases []convertCase) {
	_, qemuImg := testbin.QEMU(t)
	goqio := testbin.Goqio(t)
	tmpl := makeImages(t, script)
	root := t.TempDir()
	diffs := make([][]string, len(cases))
	sem := make(chan struct{}, 6)
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			for try := 1; ; try++ {
				diffs[i] = runCase(root, tmpl, qemuImg, goqio, c)
				if len(diffs[i]) == 0 || try >= c.tries {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for _, d := range diffs[i] {
				t.Error(d)
			}
		})
	}
}

// runCase runs c once with each tool, on fresh copies of tmpl, and
// returns the differences.
func runCase(root, tmpl, qemuImg, goqio string, c convertCase) []string {
	dq, err := prepare(root, tmpl)
	if err != nil {
		return []string{err.Error()}
	}
	defer os.RemoveAll(dq)
	dg, err := prepare(root, tmpl)
	if err != nil {
		return []string{err.Error()}
	}
	defer os.RemoveAll(dg)
	var diffs []string
	want := runQuiet(dq, qemuImg, c.args)
	got := runQuiet(dg, goqio, c.args)
	want.out, got.out = benchTime.ReplaceAllString(want.out, "X"), benchTime.ReplaceAllString(got.out, "X")
	if want != got {
		diffs = append(diffs, fmt.Sprintf("qemu-img %q:\nqemu-img: rc %d\n%q\n%s\ngoqio: rc %d\n%q\n%s", c.args, want.rc, want.out, want.err, got.rc, got.out, got.err))
	}
	for _, f := range c.files {
		diffs = append(diffs, sameImages(qemuImg, dq, dg, f, !c.noOffsets)...)
	}
	return diffs
}

func TestConvert(t *testing.T) { runCases(t, convertImages, convertCases) }

var measureCases = []convertCase{
	cc("", "measure", "--size", "1G"), cc("", "measure", "--size", "1G", "-O", "qcow2"),
	cc("", "measure", "--size", "1000", "-O", "raw"), cc("", "measure", "--output=json", "--size", "1T", "-O", "qcow2"),
	cc("", "measure", "--size", "100G", "-O", "qcow2", "-o", "cluster_size=4k,extended_l2=on"),
	cc("", "measure", "--size", "100G", "-O", "qcow2", "-o", "cluster_size=2M,refcount_bits=64"),
	cc("", "measure", "--size", "10G", "-O", "qcow2", "-o", "preallocation=full"),
	cc("", "measure", "--size", "10G", "-O", "qcow2", "-o", "preallocation=metadata"),
	cc("", "measure", "--size", "10G", "-O", "qcow2", "-o", "compat=0.10"),
	cc("", "measure", "--size", "10G", "-O", "qcow2", "-o", "compat=0.10,refcount_bits=8"),
	cc("", "measure", "--size", "0", "-O", "qcow2"), cc("", "measure", "--size", "1E", "-O", "qcow2"),
	cc("", "measure", "-O", "qcow2", "top.qcow2"), cc("", "measure", "--output=json", "-O", "qcow2", "base.qcow2"),
	cc("", "measure", "-O", "qcow2", "sp.raw"), cc("", "measure", "-O", "raw", "odd.raw"),
	cc("", "measure", "-O", "qcow2", "-o", "cluster_size=4k", "ext.qcow2"), cc("", "measure", "-O", "qcow2", "comp.qcow2"),
	cc("", "measure", "-O", "qcow2", "-o", "backing_file=base.qcow2", "top.qcow2"),
	cc("", "measure", "-O", "qcow2", "bm.qcow2"), cc("", "measure", "--output=json", "-O", "qcow2", "bm2.qcow2"),
	cc("", "measure", "-O", "qcow2", "-o", "compat=0.10", "bm2.qcow2"), cc("", "measure", "-O", "qcow2", "bmbroken.qcow2"),
	cc("", "measure", "-O", "qcow2", "v2.qcow2"), cc("", "measure", "top.qcow2"),
	cc("", "measure", "--image-opts", "-O", "qcow2", "driver=qcow2,file.filename=top.qcow2"),
	cc("", "measure"), cc("", "measure", "--size", "1G", "top.qcow2"), cc("", "measure", "a", "b"),
	cc("", "measure", "-f", "raw", "--size", "1G"), cc("", "measure", "--size", "x"), cc("", "measure", "--size", "-1"),
	cc("", "measure", "--output=xml", "--size", "1G"), cc("", "measure", "--size", "1G", "-O", "foo"),
	cc("", "measure", "--size", "1G", "-O", "qcow2", "-o", "foo=bar"), cc("", "measure", "--size", "1G", "-O", "qcow2", "-o", "cluster_size=3"),
	cc("", "measure", "--size", "1G", "-O", "qcow2", "-o", "compat=2"), cc("", "measure", "--size", "1G", "-O", "qcow2", "-o", "refcount_bits=3"),
	cc("", "measure", "--size", "1G", "-O", "qcow2", "-o", "preallocation=xx"), cc("", "measure", "--size", "1G", "-O", "qcow2", "-o", "help"),
	cc("", "measure", "--size", "1G", "-O", "qcow2", "-o", "lazy_refcounts=x"), cc("", "measure", "nope.qcow2"),
	cc("", "measure", "-x"), cc("", "measure", "-f"), cc("", "measure", "-f", "qcow2", "sp.raw"),
	cc("", "measure", "--size", "1G", "-O", "qcow2", "-o", "extended_l2=on,cluster_size=8k"),
	cc("", "measure", "-l", "s1", "-O", "qcow2", "sn.qcow2"), cc("", "measure", "-l", "snapshot.name=s2", "-O", "qcow2", "sn.qcow2"),
	cc("", "measure", "-l", "nope", "sn.qcow2"), cc("", "measure", "-l", "s1", "--size", "1G"), cc("", "measure", "-l", "snapshot.x=1", "sn.qcow2"),
}

var ddCases = []convertCase{
	cc("d.raw", "dd", "if=top.qcow2", "of=d.raw"), cc("d.raw", "dd", "if=sp.raw", "of=d.raw", "bs=64k"),
	cc("d.qcow2", "dd", "-O", "qcow2", "if=top.qcow2", "of=d.qcow2", "bs=1M"),
	cc("d.qcow2", "dd", "-O", "qcow2", "if=sp.raw", "of=d.qcow2", "bs=4k", "count=300", "skip=200"),
	cc("d.raw", "dd", "if=odd.raw", "of=d.raw", "bs=3000"), cc("d.raw", "dd", "if=base.qcow2", "of=d.raw", "count=0"),
	cc("d.raw", "dd", "if=base.qcow2", "of=d.raw", "skip=100000"), cc("d.raw", "dd", "if=base.qcow2", "of=d.raw", "skip=9E", "bs=2"),
	cc("d.raw", "dd", "if=base.qcow2", "of=d.raw", "count=99999999", "bs=1M"),
	cc("d.raw", "dd", "-f", "qcow2", "if=top.qcow2", "of=d.raw", "bs=1k", "count=1k"),
	cc("d.raw", "dd", "--image-opts", "if=driver=qcow2,file.filename=top.qcow2", "of=d.raw"),
	cc("", "dd"), cc("", "dd", "if=top.qcow2"), cc("", "dd", "foo"), cc("", "dd", "if=top.qcow2", "of=d.raw", "x=1"),
	cc("", "dd", "if=top.qcow2", "of=d.raw", "bs=0"), cc("", "dd", "if=top.qcow2", "of=d.raw", "bs=3G"),
	cc("", "dd", "if=top.qcow2", "of=d.raw", "bs=x"), cc("", "dd", "if=top.qcow2", "of=d.raw", "count=x"),
	cc("", "dd", "if=top.qcow2", "of=d.raw", "skip=-1"), cc("", "dd", "-O", "foo", "if=top.qcow2", "of=d.raw"),
	cc("", "dd", "if=nope.qcow2", "of=d.raw"), cc("", "dd", "-f", "qcow2", "if=sp.raw", "of=d.raw"),
	// (dd if=sp.raw of=sp.raw: qemu-img truncates its own raw input and
	// succeeds; goqio refuses as for a qcow2 input, keeping the data)
	cc("top.qcow2", "dd", "if=top.qcow2", "of=top.qcow2"), cc("", "dd", "-x", "if=sp.raw", "of=d.raw"),
	cc("", "dd", "-O", "qcow2", "if=sp.raw", "of=sub/d.qcow2"),
}

func TestMeasure(t *testing.T) {
	runCases(t, convertImages+"qemu-img create -q -f qcow2 bm2.qcow2 10M\nqemu-img bitmap --add bm2.qcow2 b0\nqemu-img bitmap --add -g 4k bm2.qcow2 a-longer-name\n", measureCases)
}

func TestDd(t *testing.T) { runCases(t, convertImages, ddCases) }

// benchTime is the timing line of qemu-img bench.
var benchTime = regexp.MustCompile(`Run completed in [0-9.]+ seconds`)

var benchCases = []convertCase{
	cc("", "bench", "-c", "100", "top.qcow2"), cc("", "bench", "-c", "1000", "-d", "4", "-s", "512", "sp.raw"),
	cc("sp.raw", "bench", "-w", "-c", "500", "--pattern=0x55", "-S", "8k", "-o", "1M", "sp.raw"),
	cc("top.qcow2", "bench", "-w", "-c", "300", "-d", "8", "--flush-interval=16", "-t", "none", "top.qcow2"),
	cc("top.qcow2", "bench", "-w", "-c", "300", "-d", "8", "--flush-interval=16", "--no-drain", "top.qcow2"),
	cc("", "bench", "-c", "0", "top.qcow2"), cc("", "bench", "-s", "0", "-c", "3", "top.qcow2"),
	cc("", "bench", "-o", "8M", "-c", "10", "top.qcow2"), cc("", "bench", "-U", "-f", "qcow2", "-i", "threads", "-c", "10", "top.qcow2"),
	cc("", "bench", "-c", "x", "top.qcow2"), cc("", "bench", "-c", "-1", "top.qcow2"), cc("", "bench", "-d", "3000000000", "top.qcow2"),
	cc("", "bench", "--pattern=256", "top.qcow2"), cc("", "bench", "--flush-interval=10", "top.qcow2"),
	cc("", "bench", "-w", "--flush-interval=10", "top.qcow2"), cc("", "bench", "-s", "3G", "top.qcow2"),
	cc("", "bench", "-S", "x", "top.qcow2"), cc("", "bench", "-t", "foo", "top.qcow2"), cc("", "bench", "-i", "foo", "top.qcow2"),
	cc("", "bench", "-o", "x", "top.qcow2"), cc("", "bench"), cc("", "bench", "a", "b"), cc("", "bench", "nope.qcow2"),
	cc("", "bench", "-f", "qcow2", "sp.raw"), cc("", "bench", "-x", "top.qcow2"),
}

func TestBench(t *testing.T) { runCases(t, convertImages, benchCases) }

// TestConvertENOSPC: a target on a full file system (a 2 MiB tmpfs,
// mounted when the test runs as root) gets qemu-img's error and exit
// status, and the qcow2 target it leaves is clean, as qemu-img's.
func TestConvertENOSPC(t *testing.T) {
	_, qemuImg := testbin.QEMU(t)
	goqio := testbin.Goqio(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	tmpl := makeImages(t, "set -e\nexec >/dev/null\nqemu-img create -q -f qcow2 src.qcow2 16M\nqemu-io -c 'write -P 3 0 6M' -c 'write -P 4 8M 1M' src.qcow2\n")
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	for _, args := range [][]string{
		{"convert", "-O", "qcow2", "src.qcow2", mnt + "/o.qcow2"},
		{"convert", "-O", "raw", "src.qcow2", mnt + "/o.raw"},
		{"convert", "-c", "-O", "qcow2", "src.qcow2", mnt + "/o.qcow2"},
	} {
		var res [2]result
		var checks [2]result
		for i, prog := range []string{qemuImg, goqio} {
			res[i] = run(t, tmpl, prog, args)
			target := args[len(args)-1]
			if strings.HasSuffix(target, ".qcow2") {
				checks[i] = run(t, tmpl, qemuImg, []string{"check", target})
			}
			os.Remove(target)
		}
		if res[0] != res[1] || checks[0] != checks[1] {
			t.Errorf("qemu-img %q:\nqemu-img: %+v\n%+v\ngoqio: %+v\n%+v", args, res[0], checks[0], res[1], checks[1])
		}
	}
}

// TestConvertEncrypted: convert to an encrypted qcow2 target takes the
// --object secret named by -o encrypt.key-secret, opens the target with
// it, and writes the zeroes of a preallocated encrypted target (which
// does not read as zeroes); create with an encrypted backing file opens
// it without its key. The result is compared with the source by guest
// data (the LUKS headers are random).
func TestConvertEncrypted(t *testing.T) {
	t.Parallel()
	_, qemuImg := testbin.QEMU(t)
	goqio := testbin.Goqio(t)
	dir := makeImages(t, `set -e
qemu-img create -q -f qcow2 --object secret,id=s0,data=pw -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 enc.qcow2 1M
qemu-img create -q -f qcow2 src.qcow2 1M
qemu-io -c 'write -P 7 64k 64k' src.qcow2
`)
	sec := "secret,id=s0,data=pw"
	open := "driver=qcow2,encrypt.key-secret=s0,file.filename="
	for i, c := range [][]string{
		{"convert", "-O", "qcow2", "--object", sec, "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,preallocation=metadata", "src.qcow2", "OUT"},
		{"convert", "-O", "qcow2", "--object", sec, "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", "--image-opts", open + "enc.qcow2", "OUT"},
		{"create", "-q", "-f", "qcow2", "--object", "secret,id=s1,data=x", "-o", "encrypt.format=luks,encrypt.key-secret=s1,encrypt.iter-time=10", "-b", "enc.qcow2", "-F", "qcow2", "OUT"},
	} {
		var res [2]result
		for j, prog := range []string{qemuImg, goqio} {
			out := fmt.Sprintf("o%d-%d.qcow2", i, j)
			args := append([]string(nil), c...)
			args[len(args)-1] = out
			res[j] = run(t, dir, prog, args)
		}
		if res[0] != res[1] {
			t.Errorf("%q:\nqemu-img: %+v\ngoqio: %+v", c, res[0], res[1])
			continue
		}
		if c[0] != "convert" {
			continue
		}
		r := run(t, dir, qemuImg, []string{"compare", "--object", sec, "--object", "secret,id=s1,data=x", "--image-opts",
			fmt.Sprintf("%so%d-0.qcow2", open, i), fmt.Sprintf("%so%d-1.qcow2", open, i)})
		if r.rc != 0 {
			t.Errorf("%q: targets differ: %s%s", c, r.out, r.err)
		}
	}
}
