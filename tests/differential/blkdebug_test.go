package differential

import (
	"fmt"
	"testing"
)

// TestBlkdebug: errors injected at qcow2 events through a blkdebug node,
// and requests suspended at breakpoints, as under qemu-io.
func TestBlkdebug(t *testing.T) {
	tl := setup(t)
	bd := func(extra string) string {
		return "driver=qcow2,file.driver=blkdebug,file.image.filename=img" + extra
	}
	var cases []Case
	// every qcow2 metadata event qemu-iotests 026 covers, once and
	// repeatedly: the failed request, the cache flushes at close, and
	// the leaks check finds must be qemu-io's
	for _, ev := range []string{"l1_update", "cluster_alloc", "l2_load", "l2_update", "l2_alloc_write", "write_aio",
		"refblock_load", "refblock_update_part", "refblock_alloc"} {
		for _, once := range []string{"on", "off"} {
			cases = append(cases, Case{Fmt: "qcow2", Size: "1M", CompareCheck: true,
				Args: []string{"--image-opts", "-c", "write -P 1 0 128k", "-c", "read -P 1 0 64k", "-c", "write -P 2 512k 4k",
					bd(",file.inject-error.0.event=" + ev + ",file.inject-error.0.once=" + once)}})
		}
	}
	// L1 growth (1 KiB clusters, a write past what the L1 covers) and
	// refcount table growth (512-byte clusters, 16 MiB written)
	for _, ev := range []string{"l1_grow_alloc_table", "l1_grow_write_table", "l1_grow_activate_table"} {
		for _, once := range []string{"on", "off"} {
			cases = append(cases, Case{Fmt: "qcow2", Size: "1G", CreateOpts: []string{"-o", "cluster_size=1024"}, CompareCheck: true,
				Args: []string{"--image-opts", "-c", "write -P 1 0 64k", "-c", "write -P 2 512M 4k",
					bd(",file.inject-error.0.event=" + ev + ",file.inject-error.0.once=" + once + ",file.inject-error.0.errno=28")}})
		}
	}
	for _, ev := range []string{"refblock_alloc_hookup", "refblock_alloc_write", "refblock_alloc_write_blocks",
		"refblock_alloc_write_table", "refblock_alloc_switch_table"} {
		cases = append(cases, Case{Fmt: "qcow2", Size: "1G", CreateOpts: []string{"-o", "cluster_size=512"}, CompareCheck: true,
			Args: []string{"--image-opts", "-c", "write -P 1 0 16M",
				bd(",file.inject-error.0.event=" + ev + ",file.inject-error.0.once=on,file.inject-error.0.errno=28")}})
	}
	// the other qcow2 events: compressed clusters, the VM state, reads
	// from the backing file, L1 shrinking, the refcount table at open
	for _, c := range []struct {
		ev   string
		cmds []string
	}{
		// (the cluster the failed compressed write mapped reads as an
		// error in both, so a plain write replaces it before the compare)
		{"write_compressed", []string{"write -c -P 1 0 64k", "read -P 1 0 64k", "write -P 2 0 64k"}},
		{"l2_update_compressed", []string{"write -c -P 1 0 64k", "read -P 1 0 64k", "write -P 2 0 64k"}},
		{"read_compressed", []string{"write -c -P 1 0 64k", "read -P 1 0 64k", "read -P 1 0 64k"}},
		{"vmstate_save", []string{"write -b -P 1 0 4k", "read -b -P 1 0 4k"}},
		{"vmstate_load", []string{"write -b -P 1 0 4k", "read -b -P 1 0 4k", "read -b -P 1 0 4k"}},
		{"l1_shrink_write_table", []string{"write -P 1 900M 4k", "truncate 512M", "read -P 0 0 4k"}},
		{"l1_shrink_free_l2_clusters", []string{"write -P 1 900M 4k", "truncate 512M", "read -P 0 0 4k"}},
		{"reftable_load", []string{"read 0 4k"}},
	} {
		for _, once := range []string{"on", "off"} {
			args := []string{"--image-opts"}
			for _, cmd := range c.cmds {
				args = append(args, "-c", cmd)
			}
			cases = append(cases, Case{Fmt: "qcow2", Size: "1G", CompareCheck: true,
				Args: append(args, bd(",file.inject-error.0.event="+c.ev+",file.inject-error.0.once="+once))})
		}
	}
	for _, once := range []string{"on", "off"} {
		cases = append(cases, Case{Fmt: "qcow2", Size: "1M", CompareCheck: true,
			Backing: []string{"qcow2", "1M"}, BackingCmds: []string{"write -P 7 0 128k"},
			Args: []string{"--image-opts", "-c", "read -P 7 0 64k", "-c", "write -P 1 64k 4k", "-c", "read -P 7 0 4k",
				bd(",file.inject-error.0.event=read_backing_aio,file.inject-error.0.once=" + once)}})
	}
	// A failed data write gives its clusters back, so the next write
	// reuses them and check finds no leak (qemu-iotests 026 checks that,
	// with a 1 MiB write over 1 KiB clusters). Not a case here: QEMU runs
	// such a write as parallel tasks, one per L2 slice, and the host
	// offsets the second write gets depend on that (issue 16).
	cases = append(cases,
		// (-q: which of the two completes first varies under QEMU too,
		// 6 runs in 10 the first)
		Case{Fmt: "qcow2", Size: "1M", CompareCheck: true, Args: []string{"-c", "break write_aio A", "-c", "aio_write -q -P 3 0 512",
			"-c", "aio_write -q -P 4 0x10000 512", "-c", "wait_break A", "-c", "resume A", "-c", "aio_flush", "-c", "resume A",
			"-c", "remove_break A", "-c", "break nope B", "blkdebug::img"}},
		Case{Size: "1M", Args: []string{"-c", "write 0 4k", "-c", "resume A", "-c", "remove_break A", "-f", "raw", "img"}},
		Case{Fmt: "qcow2", Size: "1M", Args: []string{"--image-opts", "-c", "read 0 512", bd(",file.align=3")}},
		Case{Fmt: "qcow2", Size: "1M", Args: []string{"--image-opts", "-c", "read 0 512", bd(",file.inject-error.0.event=nope")}},
		Case{Fmt: "qcow2", Size: "1M", Args: []string{"--image-opts", "-c", "read 0 512", bd(",file.inject-error.0.bogus=1")}},
		Case{Fmt: "qcow2", Size: "1M", Args: []string{"--image-opts", "-c", "read 0 512", bd(",file.inject-error.x=1")}},
		Case{Fmt: "qcow2", Size: "1M", Args: []string{"-c", "read 0 512", "blkdebug:img"}},
	)
	for i, c := range cases {
		c := c
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			tl.run(t, c)
		})
	}
}
