package differential

import (
	"fmt"
	"strings"
	"testing"
)

// jsonOver is a json: filename of a driver (with more options) over a
// child given as JSON.
func jsonOver(driver, opts, child string) string {
	if opts != "" {
		opts = "," + opts
	}
	return fmt.Sprintf("json:{'driver':'%s'%s,'file':%s}", driver, opts, child)
}

const qcowImg = "{'driver':'qcow2','file':{'driver':'file','filename':'img'}}"

// TestCompressFilter: the compress filter over qcow2 images (64k, 4k and
// 2M clusters, extended L2, zstd, over a backing file): data writes become
// compressed writes of whole clusters (unaligned ones read-modify-write
// through the filter, over an allocated cluster EIO), zero writes,
// discards, writev, aio, write -c (refused), truncate, info and map, by
// json: and --image-opts; the refusals (not a compressing child, an image
// size that is not a multiple of the cluster size, options). Output,
// data, map of the image and map through the filter (host offsets).
func TestCompressFilter(t *testing.T) {
	tl := setup(t)
	cs := []string{"write -P 1 0 64k", "write -P 2 70000 5000", "write -z 128k 64k", "write -z 200000 1000",
		"write -zu 256k 64k", "discard 320k 64k", "write -c 384k 64k", "writev -P 3 450k 1k 1k",
		"aio_write -P 4 512k 64k", "aio_flush", "write -P 5 0 1k", "read -P 1 1k 63k", "read -P 2 70000 5000",
		"read -P 0 128k 64k", "map", "info", "length"}
	var cases []Case
	for _, opts := range []string{"cluster_size=65536", "cluster_size=4096", "cluster_size=2M", "extended_l2=on",
		"compression_type=zstd", "compat=0.10"} {
		j := jsonOver("compress", "", qcowImg)
		cases = append(cases, Case{Fmt: "qcow2", CreateOpts: []string{"-o", opts}, Size: "4M", Args: withCmds(nil, append(cs, "truncate 8M", "write -P 6 6M 64k", "map")...),
			CompareCheck: true, FilterMap: []string{j}})
		cases[len(cases)-1].Args = append(cases[len(cases)-1].Args, j)
	}
	// over a backing file: the padding reads come from it
	cases = append(cases, Case{Fmt: "qcow2", Size: "4M", Backing: []string{"qcow2", "4M"}, BackingCmds: []string{"write -P 0x55 0 1M", "write -P 0x66 2M 64k"},
		Args: append(withCmds(nil, "write -P 7 100 100", "write -P 8 1M 4k", "read -P 0x55 200 60k", "read -P 0x66 2M 64k", "map"),
			"--image-opts", "driver=compress,file.driver=qcow2,file.file.filename=img"),
		FilterMap: []string{jsonOver("compress", "", qcowImg)}, CompareCheck: true})
	// detect-zeroes on the filter and on its child
	for _, dz := range []string{"'detect-zeroes':'on'", "'detect-zeroes':'unmap'"} {
		cases = append(cases, Case{Fmt: "qcow2", Size: "1M", Args: append(withCmds(nil, "write -P 0 0 64k", "write -P 0 64k 1000", "write -P 9 128k 64k", "map"),
			jsonOver("compress", dz, qcowImg))})
		cases = append(cases, Case{Fmt: "qcow2", Size: "1M", Args: append(withCmds(nil, "write -P 0 0 64k", "write -P 0 64k 1000", "map"),
			jsonOver("compress", "", "{'driver':'qcow2',"+dz+",'file':{'driver':'file','filename':'img'}}"))})
	}
	// the refusals
	for _, c := range []struct {
		size string
		args []string
	}{
		{"1052672", []string{"json:{'driver':'compress','file':" + qcowImg + "}"}},
		{"1049088", []string{"-c", "read 0 4k", "-c", "map", "-r", jsonOver("compress", "", qcowImg)}},
		{"1049088", []string{"-c", "truncate 2M", "-c", "write -P 1 1M 64k", "-r", jsonOver("compress", "", qcowImg)}},
		{"1M", []string{"json:{'driver':'compress','file':{'driver':'file','filename':'img'}}"}},
		{"1M", []string{"json:{'driver':'compress','file':{'driver':'raw','file':{'driver':'file','filename':'img'}}}"}},
		{"1M", []string{"json:{'driver':'compress','file':{'driver':'null-co'}}"}},
		{"1M", []string{"json:{'driver':'compress'}"}},
		{"1M", []string{"json:{'driver':'compress','level':9,'file':" + qcowImg + "}"}},
		{"1M", []string{"json:{'driver':'compress','file':{'driver':'qcow2','file':{'driver':'file','filename':'nonexist'}}}"}},
		{"1M", []string{"--image-opts", "driver=compress,file.filename=img"}},
	} {
		cases = append(cases, Case{Fmt: "qcow2", Size: c.size, Args: append(withCmds(nil, "write -P 1 0 64k", "read -P 1 0 64k"), c.args...)})
	}
	runCases(t, tl, cases)
}

// corChain is a json: copy-on-read filter over img whose backing file is
// base.img (node "mid"), itself given bottom.raw (node "bot") as its
// backing file, so that bottom can stop above a layer.
func corChain(opts string) string {
	return jsonOver("copy-on-read", opts, "{'driver':'qcow2','file':{'driver':'file','filename':'img'},"+
		"'backing':{'node-name':'mid','driver':'qcow2','file':{'driver':'file','filename':'base.img'},"+
		"'backing':{'node-name':'bot','driver':'raw','file':{'driver':'file','filename':'bottom.raw'}}}}")
}

// TestCopyOnReadFilter: the copy-on-read filter over qcow2 images whose
// backing file has data, zero clusters, a partly written cluster and
// unallocated areas: reads copy into the image (whole, partial,
// zero-length, readv, aio, past the backing file's end), writes pass;
// with bottom, only what the layers down to bottom hold is copied (a
// three-layer chain: bottom at the middle layer, at the bottom layer, at
// the image itself); the refusals (read-only, bottom not found, a filter,
// not a string). Then the backing file is detached and what was copied
// must be there. Output, data, map, check.
func TestCopyOnReadFilter(t *testing.T) {
	tl := setup(t)
	cs := []string{"read -P 0x55 0 512", "read 100 70000", "read -P 0 2M 1M", "read 3145628 64k",
		"read -P 0x66 1576960 4k", "read -P 0 8M 64k", "read 12581912 2000", "readv 4M 1000 2000 3000",
		"aio_read 5M 64k", "aio_flush", "read 6291457 0", "read 6291656 10", "read -P 0 15M 1M", "map",
		"write -P 7 100 100", "read -P 7 100 100", "info"}
	verify := []string{"read -P 0x55 0 512", "read -P 0x55 512 64k", "read -P 0 2M 1M", "read -P 0x66 1576960 4k",
		"read -P 0x77 5M 64k", "read -P 0 15M 1M", "read -P 7 100 100"}
	var cases []Case
	base := func(opts string, args ...string) Case {
		return Case{Fmt: "qcow2", CreateOpts: []string{"-o", opts}, Size: "16M", Backing: dzBacking, BackingCmds: dzBackingCmds,
			Args: args, Detach: true, Verify: verify, CompareCheck: true}
	}
	for _, opts := range []string{"cluster_size=65536", "cluster_size=4096", "extended_l2=on", "cluster_size=2M", "compat=0.10"} {
		cases = append(cases, base(opts, append(withCmds(nil, cs...), jsonOver("copy-on-read", "", qcowImg))...))
	}
	cases = append(cases,
		base("cluster_size=65536", append(withCmds([]string{"--image-opts"}, cs...), "driver=copy-on-read,file.driver=qcow2,file.file.filename=img")...),
		base("cluster_size=65536", append(withCmds([]string{"-t", "none"}, cs...), jsonOver("copy-on-read", "", qcowImg))...),
		base("cluster_size=65536", append(withCmds([]string{"-C"}, cs...), jsonOver("copy-on-read", "", qcowImg))...),
		base("cluster_size=65536", append(withCmds(nil, "read 0 16M", "map"), jsonOver("copy-on-read", "", qcowImg))...),
		base("cluster_size=65536", append(withCmds(nil, "write -z 4M 64k", "discard 5M 64k", "write -c 9M 64k", "read 0 16M", "map"),
			jsonOver("copy-on-read", "", qcowImg))...),
		base("cluster_size=65536", append(withCmds(nil, cs...), "json:{'driver':'raw','file':"+strings.TrimPrefix(jsonOver("copy-on-read", "", qcowImg), "json:")+"}")...),
	)
	// bottom over a three-layer chain: img, base.img (mid), bottom.raw (bot)
	bottom := ExtraImage{Name: "bottom.raw", Size: "16M", Cmds: []string{"write -P 0x44 0 16M"}}
	for _, opts := range []string{"'bottom':'mid'", "'bottom':'bot'", "", "'bottom':'mid','file.node-name':'top'"} {
		c := base("cluster_size=65536", append(withCmds(nil, "read 0 16M", "map", "read -v 12582400 16", "read -P 0x44 13M 64k"), corChain(opts))...)
		c.Extra = []ExtraImage{bottom}
		c.Verify = []string{"read -P 0x55 0 1M", "read -P 0 3M 1M", "read -P 0x77 5M 64k", "map"}
		cases = append(cases, c)
	}
	// the refusals
	for _, a := range [][]string{
		{"-r", jsonOver("copy-on-read", "", qcowImg)},
		{"-r", jsonOver("copy-on-read", "", "{'driver':'qcow2','read-only':false,'file':{'driver':'file','filename':'img'}}")},
		{corChain("'bottom':'nope'")},
		{corChain("'bottom':5")},
		{jsonOver("copy-on-read", "'bottom':'f2'", "{'driver':'copy-on-read','node-name':'f2','file':"+qcowImg+"}")},
		{jsonOver("copy-on-read", "", "{'driver':'qcow2','file':{'driver':'file','filename':'nonexist'}}")},
		{"json:{'driver':'copy-on-read'}"},
		{jsonOver("copy-on-read", "'x':1", qcowImg)},
	} {
		c := base("cluster_size=65536", append(withCmds(nil, "read 0 64k", "map"), a...)...)
		c.Extra = []ExtraImage{bottom}
		cases = append(cases, c)
	}
	runCases(t, tl, cases)
}

// TestPreallocateFilter: the preallocate filter between qcow2 and its
// file (the file grows in steps of prealloc-size rounded to prealloc-align
// when qcow2 allocates past its end, and is cut back to the data at
// close), and at the top over a raw file (no preallocation until truncate
// gives it the resize permission), with truncate in all modes, zero writes
// past the end, discards; the option errors. Output, data, map through the
// filter, file sizes.
func TestPreallocateFilter(t *testing.T) {
	tl := setup(t)
	cs := []string{"write -P 1 0 64k", "write -P 2 10M 1M", "write -z 20M 64k", "write -zu 30M 64k", "discard 10M 64k",
		"write -c 40M 64k", "read -P 1 0 64k", "map", "truncate 80M", "write -P 3 70M 4k", "length", "info"}
	var cases []Case
	for _, o := range []string{"", "'prealloc-size':1048576", "'prealloc-size':0", "'prealloc-align':65536,'prealloc-size':100000",
		"'prealloc-align':'4k','prealloc-size':'3M'"} {
		j := "json:{'driver':'qcow2','file':" + strings.TrimPrefix(jsonOver("preallocate", o, "{'driver':'file','filename':'img'}"), "json:") + "}"
		for _, opts := range []string{"cluster_size=65536", "cluster_size=4096"} {
			cases = append(cases, Case{Fmt: "qcow2", CreateOpts: []string{"-o", opts}, Size: "64M", Args: append(withCmds(nil, cs...), j),
				CompareSize: true, CompareCheck: true, FilterMap: []string{j}})
		}
	}
	cases = append(cases, Case{Fmt: "qcow2", Size: "64M", CompareSize: true, CompareCheck: true,
		Args: append(withCmds(nil, cs...), "--image-opts", "driver=qcow2,file.driver=preallocate,file.prealloc-size=2M,file.file.filename=img")})
	// at the top, over a raw file
	for _, m := range []string{"off", "falloc", "full", "metadata"} {
		top := []string{"write -P 1 0 64k", "truncate -m " + m + " 3M", "write -P 2 2M 64k", "write -z 2560k 64k", "truncate 2M",
			"truncate -m " + m + " 5M", "length", "map", "truncate 1M", "length"}
		cases = append(cases, Case{Size: "1M", Args: append(withCmds(nil, top...), jsonOver("preallocate", "'prealloc-size':65536", "{'driver':'file','filename':'img'}")),
			FilterMap: []string{jsonOver("preallocate", "", "{'driver':'file','filename':'img'}")}})
	}
	cases = append(cases, Case{Size: "1M", Args: append(withCmds(nil, "write -P 1 0 64k", "map", "info"),
		"--image-opts", "driver=raw,file.driver=preallocate,file.file.filename=img")})
	for _, o := range []string{"'prealloc-align':1000", "'prealloc-align':'abc'", "'prealloc-size':-1", "'prealloc-size':'1x'",
		"'prealloc-align':0", "'foo':1"} {
		cases = append(cases, Case{Size: "1M", Args: append(withCmds(nil, "length"), jsonOver("preallocate", o, "{'driver':'file','filename':'img'}"))})
	}
	cases = append(cases,
		Case{Size: "1M", Args: append(withCmds([]string{"-t", "none"}, "length"), jsonOver("preallocate", "'prealloc-align':512", "{'driver':'file','filename':'img'}"))},
		Case{Size: "1M", Args: append(withCmds(nil, "length"), jsonOver("preallocate", "'prealloc-align':1000", "{'driver':'file','filename':'nonexist'}"))},
		Case{Size: "1M", Args: append(withCmds(nil, "length"), "json:{'driver':'preallocate'}")},
	)
	runCases(t, tl, cases)
}

// TestBlkverify: blkverify:RAW:TEST filenames and the driver's options
// (raw and test children, x-raw/x-image): reads and writes on both,
// agreeing, then contents that differ (the mismatch report and exit 1 in
// the middle of a command list), a raw copy shorter than the image, the
// filename errors; discard (nothing), truncate (the raw copy only), write
// -c (refused), info and map (the raw copy's). Output, exit code, data of
// both images.
func TestBlkverify(t *testing.T) {
	tl := setup(t)
	same := ExtraImage{Name: "raw.img", Size: "1M", Cmds: []string{"write -P 0x11 0 64k"}}
	differ := ExtraImage{Name: "raw.img", Size: "1M", Cmds: []string{"write -P 0x11 0 64k", "write -P 0x99 300000 10"}}
	short := ExtraImage{Name: "raw.img", Size: "512k", Cmds: []string{"write -P 0x11 0 64k"}}
	cs := []string{"read -P 0x11 0 64k", "write -P 0x22 64k 64k", "writev -P 0x33 200k 1k 3k", "aio_write -P 0x44 256k 4k",
		"aio_flush", "read -P 0x22 64k 64k", "read 0 1M", "discard 0 4k", "write -c 0 64k", "info", "map", "length",
		"flush", "truncate 2M", "length", "read 0 4k"}
	var cases []Case
	for _, fmt := range []string{"raw", "qcow2"} {
		for _, a := range [][]string{
			{"-f", "raw", "blkverify:raw.img:img"},
			{"blkverify:raw.img:img"},
			{"-f", "blkverify", "blkverify:raw.img:img"},
			{"json:{'driver':'blkverify','raw':{'driver':'file','filename':'raw.img'},'test':{'driver':'" + fmt + "','file':{'driver':'file','filename':'img'}}}"},
			{"json:{'driver':'blkverify','x-raw':'raw.img','x-image':'img'}"},
			{"--image-opts", "driver=blkverify,raw.filename=raw.img,test.filename=img"},
		} {
			for _, x := range []ExtraImage{same, differ, short} {
				cases = append(cases, Case{Fmt: fmt, Size: "1M", Setup: []string{"write -P 0x11 0 64k"}, Extra: []ExtraImage{x},
					Args: append(withCmds(nil, cs...), a...)})
			}
		}
	}
	for _, a := range [][]string{
		{"blkverify:raw.img"},
		{"-f", "raw", "blkverify:raw.img:nonexist"},
		{"-f", "raw", "blkverify:nonexist:img"},
		{"json:{'driver':'blkverify','raw':{'driver':'file','filename':'raw.img'}}"},
		{"json:{'driver':'blkverify','test':{'driver':'file','filename':'img'}}"},
		{"-f", "qcow2", "blkverify:raw.img:img"},
		{"-r", "-f", "raw", "blkverify:raw.img:img"},
	} {
		cases = append(cases, Case{Size: "1M", Setup: []string{"write -P 0x11 0 64k"}, Extra: []ExtraImage{same},
			Args: append(withCmds(nil, "read -P 0x11 0 64k", "write -P 0x22 64k 4k", "map"), a...)})
	}
	runCases(t, tl, cases)
}

// TestThrottleFilter: the throttle filter with --object throttle-group
// definitions (x- properties and limits.*, small enough limits that some
// requests wait), every request kind through it, info and map; the
// group's validation (QEMU's property and throttle_is_valid messages, in
// QEMU's order) and the node's refusals.
func TestThrottleFilter(t *testing.T) {
	tl := setup(t)
	j := jsonOver("throttle", "'throttle-group':'tg0'", qcowImg)
	cs := []string{"write -P 1 0 64k", "read -P 1 0 64k", "write -z 64k 64k", "discard 128k 64k", "write -c 192k 64k",
		"aio_write -P 2 256k 4k", "aio_flush", "aio_read 0 4k", "aio_flush", "read 0 1M", "info", "map", "truncate 2M", "length"}
	var cases []Case
	for _, ob := range []string{"throttle-group,id=tg0", "throttle-group,id=tg0,x-iops-total=40", "throttle-group,id=tg0,limits.bps-total=4194304",
		"throttle-group,id=tg0,x-iops-write=20,x-iops-read=50,x-iops-size=4096",
		"throttle-group,id=tg0,x-bps-total=2097152,x-bps-total-max=4194304,x-bps-total-max-length=2"} {
		cases = append(cases, Case{Fmt: "qcow2", Size: "1M", Args: append(withCmds([]string{"--object", ob}, cs...), j),
			FilterMap: []string{"--object", ob, j}, CompareCheck: true})
	}
	cases = append(cases, Case{Fmt: "qcow2", Size: "1M", Args: append(withCmds([]string{"--object", "throttle-group,id=tg0"}, cs...),
		"--image-opts", "driver=throttle,throttle-group=tg0,file.driver=qcow2,file.file.filename=img")})
	cases = append(cases, Case{Size: "1M", Args: append(withCmds([]string{"--object", "throttle-group,id=tg0,x-iops-total=100"}, cs...),
		"json:{'driver':'raw','file':{'driver':'throttle','throttle-group':'tg0','file':{'driver':'file','filename':'img'}}}")})
	for _, ob := range []string{"throttle-group,id=tg0,limits.iops-total=10,limits.iops-read=5", "throttle-group,id=tg0,x-iops-total=-1",
		"throttle-group,id=tg0,x-iops-total=abc", "throttle-group,id=tg0,limits.iops-total=abc", "throttle-group,id=tg0,bogus=1",
		"throttle-group,id=tg0,limits.bogus=1", "throttle-group", "throttle-group,id=tg0,x-bps-total-max-length=5",
		"throttle-group,id=tg0,x-bps-total-max-length=5000000000", "throttle-group,id=tg0,limits.bps-total-max-length=5000000000",
		"throttle-group,id=0tg", "throttle-group,id=tg0,x-iops-total=0x10,x-iops-total-max=010",
		"throttle-group,id=tg0,x-iops-total=10,x-iops-read=3", "throttle-group,id=tg0,limits.iops-total=-5",
		"throttle-group,id=tg0,x-iops-size=5", "throttle-group,id=tg0,limits=5", "throttle-group,id=tg0,x-iops-total",
		"throttle-group,id=tg0,x-iops-total=10,limits.iops-read=4", "throttle-group,id=tg0,x-bps-total=100,x-bps-total-max=50",
		"throttle-group,id=tg0,x-bps-total-max=50", "throttle-group,id=tg0,x-bps-read=1000000000000001",
		"throttle-group,id=tg0,x-bps-total-max-length=0", "throttle-group,id=tg0,x-bps-total=1,x-bps-total-max=2000000000,x-bps-total-max-length=1000000",
		"throttle-group,id=tg0,id=tg1", "throttle-group,id=t,limits.iops-total=1,limits.iops-total.x=2", "throttle-group,id=tg0,x-iops-total= 7"} {
		cases = append(cases, Case{Fmt: "qcow2", Size: "1M", Args: append(withCmds([]string{"--object", ob}, "read 0 4k"), j)})
	}
	for _, a := range [][]string{
		{j},
		{"--object", "throttle-group,id=tg0", "--object", "throttle-group,id=tg0", j},
		{"--object", "secret,id=tg0,data=x", j},
		{"--object", "throttle-group,id=tg1", j},
		{"--object", "throttle-group,id=tg0", jsonOver("throttle", "", qcowImg)},
		{"--object", "throttle-group,id=tg0", jsonOver("throttle", "'throttle-group':'tg0','limits':1", qcowImg)},
		{"--object", "throttle-group,id=tg0", jsonOver("throttle", "'throttle-group':'tg0','throttling.iops-total':1", qcowImg)},
	} {
		cases = append(cases, Case{Fmt: "qcow2", Size: "1M", Args: append(withCmds(nil, "read 0 4k"), a...)})
	}
	runCases(t, tl, cases)
}

// TestRawOverNodes: the raw format over a child that is not its own file
// (a qcow2 image with a backing file, null-co), with and without offset
// and size: reads, writes and zero writes moved by the offset, the map of
// the child's own layer (QEMU's BDRV_BLOCK_RAW), info from the child,
// truncate (refused with a size), writes past the size; map through the
// node.
func TestRawOverNodes(t *testing.T) {
	tl := setup(t)
	cs := []string{"map", "read -P 0x11 0 4k", "read -P 0x33 65536 4k", "info", "write -P 9 4k 4k", "write -z 8k 4k",
		"write -zu 512k 64k", "discard 256k 64k", "write -c 320k 64k", "length", "map", "truncate 3M", "length", "read -v 0 16"}
	var cases []Case
	for _, o := range []string{"", "'offset':65536", "'offset':65536,'size':524288", "'size':1048576", "'offset':512"} {
		j := jsonOver("raw", strings.TrimPrefix(o, ","), qcowImg)
		if o == "" {
			j = "json:{'driver':'raw','file':" + qcowImg + "}"
		}
		cases = append(cases, Case{Fmt: "qcow2", Size: "2M", Setup: []string{"write -P 0x11 0 64k"},
			Backing: []string{"qcow2", "2M"}, BackingCmds: []string{"write -P 0x33 64k 64k", "write -z 1M 64k"},
			Args: append(withCmds(nil, cs...), j), FilterMap: []string{j}})
	}
	for _, j := range []string{
		"json:{'driver':'raw','file':{'driver':'null-co'}}",
		"json:{'driver':'raw','offset':512,'file':{'driver':'null-co','size':1048576}}",
		"json:{'driver':'raw','offset':4096,'size':8192,'file':{'driver':'null-co','read-zeroes':true,'size':1048576}}",
		"json:{'file':{'driver':'null-co'}}",
	} {
		cases = append(cases, Case{Size: "1M", Args: append(withCmds(nil, "read 0 4k", "write -P 1 0 4k", "write -P 1 0 512", "write -z 0 4k",
			"read 8k 4k", "write 16k 4k", "map", "info", "length", "truncate 2M", "length"), j), FilterMap: []string{j}})
	}
	runCases(t, tl, cases)
}

// TestFilterReopen: reopen through the filters: compress and
// copy-on-read cannot reopen; preallocate checks its options again;
// throttle looks its group up again; under qcow2, preallocate's options
// may change.
func TestFilterReopen(t *testing.T) {
	tl := setup(t)
	var cases []Case
	for _, a := range [][]string{
		withCmds(nil, "reopen -r", "reopen -o detect-zeroes=on", "info"),
		withCmds(nil, "reopen -r", "info"),
	} {
		for _, d := range []string{"compress", "copy-on-read"} {
			cases = append(cases, Case{Fmt: "qcow2", Size: "1M", Args: append(a, jsonOver(d, "", qcowImg))})
		}
	}
	cases = append(cases,
		Case{Size: "1M", Args: append(withCmds(nil, "reopen -o prealloc-size=1000", "reopen -o prealloc-align=1000", "reopen -o prealloc-align=4096",
			"write -P 1 0 4k", "info"), jsonOver("preallocate", "", "{'driver':'file','filename':'img'}"))},
		Case{Fmt: "qcow2", Size: "8M", CompareSize: true, Args: append(withCmds(nil, "write -P 1 0 64k", "reopen -o file.prealloc-size=65536",
			"write -P 2 4M 64k", "reopen -o file.prealloc-align=100", "write -P 3 6M 64k", "map"),
			"json:{'driver':'qcow2','file':"+strings.TrimPrefix(jsonOver("preallocate", "", "{'driver':'file','filename':'img'}"), "json:")+"}")},
		Case{Fmt: "qcow2", Size: "1M", Args: append(withCmds([]string{"--object", "throttle-group,id=tg0", "--object", "throttle-group,id=tg2"},
			"reopen -o throttle-group=tg1", "reopen -o throttle-group=tg2", "reopen -r", "write -P 1 0 4k", "info"),
			jsonOver("throttle", "'throttle-group':'tg0'", qcowImg))},
	)
	runCases(t, tl, cases)
}
