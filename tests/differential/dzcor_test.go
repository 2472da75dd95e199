package differential

import (
	"fmt"
	"strings"
	"testing"
)

// ksplitData is ksplit sent as data writes of zeroes (write -P 0): what a
// guest's zeroing of a disk looks like to a node with detect-zeroes.
func ksplitData(off, n int64) []string {
	var out []string
	for _, c := range ksplit(off, n) {
		out = append(out, strings.Replace(c, "write -z ", "write -P 0 ", 1))
	}
	return out
}

// withCmds appends -c CMD for each command to args.
func withCmds(args []string, cs ...string) []string {
	args = append([]string{}, args...)
	for _, c := range cs {
		args = append(args, "-c", c)
	}
	return args
}

// dzBacking is a backing file with data, zero clusters, a partly written
// cluster and unallocated areas; it is 12M, the images over it 16M.
var (
	dzBacking     = []string{"qcow2", "12M"}
	dzBackingCmds = []string{"write -P 0x55 0 1M", "write -P 0x66 1536k 512k", "write -z 3M 1M",
		"write -P 0x77 5M 64k", "write -P 0x88 6291556 5000", "write -P 0x99 12578816 4k"}
)

// TestDetectZeroes: the kernel's split of 1 MiB-aligned and unaligned
// O_DIRECT writes of zeroes, sent as data writes, and other zero data
// writes (unaligned, FUA, vectored, aio, past the backing file's end)
// on qcow2 images opened with detect-zeroes=on and =unmap over a backing
// file, by --image-opts and by open -o; then the backing file is detached
// and the zeroes must still read as zeroes. Output, map (host offsets),
// check and data are compared.
func TestDetectZeroes(t *testing.T) {
	tl := setup(t)
	i := 0
	for _, opts := range []string{"cluster_size=65536", "cluster_size=4096", "compat=0.10", "extended_l2=on", "cluster_size=2M"} {
		for _, mode := range []string{"on", "unmap"} {
			for j, off := range []int64{0, 1536, 65024} {
				c := Case{Fmt: "qcow2", CreateOpts: []string{"-o", opts}, Size: "16M",
					Backing: dzBacking, BackingCmds: dzBackingCmds, Detach: true, CompareCheck: true}
				cs := append(ksplitData(off, 2<<20), ksplitData(4<<20+off, 2<<20)...)
				cs = append(cs, "write -P 0 7340132 1000", "write -P 0 13M 64k", "write -P 0x11 9M 4k",
					"write -f -P 0 10M 128k", "writev -P 0 11M 4k 60k", "aio_write -P 0 14M 64k", "aio_flush",
					"write -z 15M 64k", "write -P 0 12574720 12k", "write -P 0 6M 4k", "read -P 0 0 2M", "map")
				var args []string
				if j%2 == 0 {
					args = withCmds([]string{"--image-opts"}, cs...)
					args = append(args, "driver=qcow2,file.filename=img,detect-zeroes="+mode)
				} else {
					args = withCmds(nil, append([]string{"open -o detect-zeroes=" + mode + " img"}, cs...)...)
				}
				c.Args = args
				c.Verify = []string{fmt.Sprintf("read -P 0 %d 2M", off), fmt.Sprintf("read -P 0 %d 2M", 4<<20+off),
					"read -P 0 7340132 1000", "read -P 0 10M 6M", "read -P 0x11 9M 4k"}
				i++
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					t.Parallel()
					tl.run(t, c)
				})
			}
		}
	}
}

// TestDetectZeroesRaw: detect-zeroes on raw images, buffered and O_DIRECT
// (where unaligned writes are padded and the padded block is what is
// tested for zeroes, for data writes and for the head and tail blocks of
// write -z), and the option's errors.
func TestDetectZeroesRaw(t *testing.T) {
	tl := setup(t)
	cs := []string{"write -P 0 64k 64k", "write -P 0 600k 1000", "write -P 0 100 1000", "write -z 716900 5000",
		"write -zu 819300 5000", "write -P 0 307207 3", "write -f -P 0 900k 4k", "read -P 0 600k 1000", "map"}
	var cases []Case
	for _, mode := range []string{"on", "unmap"} {
		for _, flags := range [][]string{nil, {"-n"}} {
			args := withCmds(append([]string{"--image-opts"}, flags...), cs...)
			args = append(args, "driver=raw,file.filename=img,detect-zeroes="+mode)
			cases = append(cases, Case{Size: "1M", Setup: []string{"write -P 0x11 0 512k"}, Args: args})
		}
	}
	errs := [][]string{
		{"-d", "ignore", "--image-opts", "-c", "length", "driver=qcow2,file.filename=img,detect-zeroes=unmap"},
		{"-c", "open -d ignore -o detect-zeroes=unmap img", "-c", "length"},
		{"-c", "open -o detect-zeroes=bad img", "-c", "length"},
		{"-c", "open -o detect-zeroes= img"},
		{"-c", "open -o detect-zeroes=ON img"},
		{"-c", "open -o detect-zeroes=off img", "-c", "write -P 0 0 64k", "-c", "map"},
		{"-c", "open -o detect-zeroes=bad nonexist"},
		{"-c", "open -o detect-zeroes=bad,driver=file,filename=nonexist"},
		{"-s", "-d", "ignore", "--image-opts", "-c", "write -P 0 0 64k", "driver=qcow2,file.filename=img,detect-zeroes=unmap"},
		{"-c", "open -C -r -o detect-zeroes=bad img"},
	}
	for _, a := range errs {
		cases = append(cases, Case{Fmt: "qcow2", Size: "1M", Args: a})
	}
	// compressed writes: zeroes become zero writes before the driver sees
	// them (so a misaligned one succeeds, and raw accepts them)
	cc := []string{"write -c -P 0 0 64k", "write -c -P 0 512 64k", "write -c -P 1 128k 64k", "write -c 0 0", "map"}
	for _, mode := range []string{"on", "off"} {
		cases = append(cases, Case{Fmt: "qcow2", Size: "1M", Args: append(withCmds([]string{"--image-opts"}, cc...),
			"driver=qcow2,file.filename=img,detect-zeroes="+mode)})
		cases = append(cases, Case{Size: "1M", Args: append(withCmds([]string{"--image-opts"}, cc...),
			"driver=raw,file.filename=img,detect-zeroes="+mode)})
	}
	// detect-zeroes on the file protocol node itself: with O_DIRECT the
	// padded blocks are tested
	for _, flags := range [][]string{nil, {"-n"}} {
		for _, mode := range []string{"on", "unmap"} {
			args := withCmds(append([]string{"--image-opts"}, flags...), cs...)
			args = append(args, "driver=file,filename=img,detect-zeroes="+mode)
			cases = append(cases, Case{Size: "1M", Setup: []string{"write -P 0x11 0 512k"}, Args: args})
		}
	}
	for i, c := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			tl.run(t, c)
		})
	}
}

// TestCopyOnRead: reads with qemu-io -C (and open -C) over a backing file
// with data, zero clusters, a partly written cluster, unallocated areas and
// an end before the image's: whole, partial and zero-length reads, readv,
// aio_read, reads past the backing file's end; then the backing file is
// detached and what was read must still be there. Output, map (host
// offsets), check and data are compared.
func TestCopyOnRead(t *testing.T) {
	tl := setup(t)
	cs := []string{"read -P 0x55 0 512", "read 100 70000", "read -P 0 2M 1M", "read 3145628 64k",
		"read -P 0x66 1576960 4k", "read -P 0 8M 64k", "read 12581912 2000", "readv 4M 1000 2000 3000",
		"aio_read 5M 64k", "aio_flush", "read 6291457 0", "read 7M 0", "read 6291656 10", "read -P 0 15M 1M",
		"read -P 0x55 200k 1", "map", "write -P 7 100 100", "read -P 7 100 100", "alloc 0 16M"}
	verify := []string{"read -P 0x55 0 512", "read -P 0x55 512 64k", "read -P 0 2M 1M", "read -P 0x66 1576960 4k",
		"read -P 0x77 5M 64k", "read -P 0 15M 1M", "read -P 7 100 100"}
	var cases []Case
	for _, opts := range []string{"cluster_size=65536", "cluster_size=4096", "compat=0.10", "extended_l2=on", "cluster_size=2M", "cluster_size=512"} {
		c := Case{Fmt: "qcow2", CreateOpts: []string{"-o", opts}, Size: "16M", Backing: dzBacking, BackingCmds: dzBackingCmds,
			Args: cmds([]string{"-C", "-f", "qcow2"}, cs...), Detach: true, Verify: verify, CompareCheck: true}
		cases = append(cases, c)
	}
	for _, args := range [][]string{
		withCmds(nil, append([]string{"open -C img"}, cs...)...),
		append(withCmds([]string{"-C", "--image-opts"}, cs...), "driver=qcow2,file.filename=img,detect-zeroes=on"),
		append(withCmds([]string{"-C", "--image-opts"}, cs...), "driver=qcow2,file.filename=img,detect-zeroes=unmap"),
		cmds([]string{"-C", "-t", "none", "-f", "qcow2"}, cs...),
		cmds([]string{"-C", "-t", "writeback", "-f", "qcow2"}, cs...),
		cmds([]string{"-C", "-s", "-f", "qcow2"}, cs...),
		cmds([]string{"-C", "-f", "qcow2"}, "read 0 16M", "map"),
		cmds([]string{"-C", "-f", "qcow2"}, "write -P 3 65636 100", "write -z 4M 64k", "discard 5M 64k", "read 0 16M", "map"),
	} {
		cases = append(cases, Case{Fmt: "qcow2", Size: "16M", Backing: dzBacking, BackingCmds: dzBackingCmds,
			Args: args, Detach: true, Verify: verify, CompareCheck: true})
	}
	// a read of more than goqio streams (64 MiB) over scattered data: the
	// runs copied must be QEMU's, not the streaming's chunks
	big := Case{Fmt: "qcow2", Size: "96M", Backing: []string{"qcow2", "90M"},
		BackingCmds: []string{"write -P 1 1M 64k", "write -P 2 17891328 64k", "write -P 3 40M 1M", "write -z 50M 20M", "write -P 4 89M 1M"},
		Args:        cmds([]string{"-C", "-f", "qcow2"}, "read 512k 80M", "map"), Detach: true, CompareCheck: true}
	cases = append(cases, big)
	// raw images: copy-on-read has nothing to copy
	cases = append(cases, Case{Size: "1M", Setup: []string{"write -P 5 0 64k"}, Args: cmds([]string{"-C", "-f", "raw"}, "read -P 5 0 64k", "read 100 0", "map")})
	// the refusals
	for _, a := range [][]string{
		{"-C", "-r", "-c", "read 0 512", "img"},
		{"-C", "-r", "-f", "raw", "-c", "read 0 512", "img"},
		{"-C", "-r", "-c", "read 0 512", "nonexist"},
		{"-C", "-r", "-f", "file", "-c", "read 0 512", "nonexist"},
		{"-C", "-r", "-s", "-c", "read 0 512", "img"},
		{"-C", "-r", "-s", "-c", "read 0 512", "nonexist"},
		{"-c", "open -C -r img", "-c", "read 0 512"},
		{"-c", "open -r -C -o driver=file,filename=nonexist"},
	} {
		cases = append(cases, Case{Fmt: "qcow2", Size: "1M", Args: a})
	}
	for i, c := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			tl.run(t, c)
		})
	}
}
