package differential

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLUKSFormat covers, in a few seconds, what QEMU's qemu-iotests of
// the luks format that goqio passes (tests/iotests/pass-luks.txt: 001
// 002 003 008 011 021 025 032 033 052 174 282 288 294) check, which take
// minutes as a suite: each qemu-io or qemu-img command line runs with
// the real tool on one copy of a LUKS volume and with goqio on another,
// and must print the same, exit the same and leave the same bytes (the
// sectors' encryption is deterministic: the same master key, the guest
// offset as IV).
func TestLUKSFormat(t *testing.T) {
	tl := cryptoSetup(t)
	t.Parallel()
	var dirs [2]string
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	if out, rc := cryptoRun(t, dirs[0], tl.gimg, "create", "-q", "-f", "luks", "--object", sec0, "-o", "key-secret=sec0,iter-time=10", "img", "4M"); rc != 0 {
		t.Fatal(out)
	}
	copySparse(t, filepath.Join(dirs[0], "img"), filepath.Join(dirs[1], "img"))
	if err := os.WriteFile(filepath.Join(dirs[0], "raw"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirs[1], "raw"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// run one command line on both sides (stdin, when not empty, is the
	// script) and compare output, exit code and the files
	run := func(real, goqio, stdin string, args ...string) {
		t.Helper()
		var outs [2]string
		for i, prog := range []string{real, goqio} {
			out, rc := cryptoRunStdin(t, dirs[i], prog, stdin, args...)
			outs[i] = fmt.Sprintf("exit %d\n%s", rc, out)
		}
		if outs[0] != outs[1] {
			t.Errorf("%s %q:\nQEMU:\n%s\ngoqio:\n%s", filepath.Base(real), args, outs[0], outs[1])
		}
		for _, f := range []string{"img", "raw", "new"} {
			x, ex := os.ReadFile(filepath.Join(dirs[0], f))
			y, ey := os.ReadFile(filepath.Join(dirs[1], f))
			if (ex == nil) != (ey == nil) || !bytes.Equal(x, y) {
				t.Fatalf("%s %q: %s differs afterwards (QEMU: %v, goqio: %v)", filepath.Base(real), args, f, ex, ey)
			}
		}
	}
	spec := []string{"--object", sec0, "--image-opts", "driver=luks,key-secret=sec0,file.filename=img"}
	io := func(cmds ...string) []string {
		var a []string
		for _, c := range cmds {
			a = append(a, "-c", c)
		}
		return append(a, spec...)
	}
	// 001, 002, 003, 021: patterns through read/write/readv/writev, aligned
	// and not (read-modify-write of sectors)
	run(tl.io, tl.gio, "", io("write -P 0xc5 0 128k", "read -P 0xc5 0 128k", "readv -P 0xc5 0 4k 8k 4k",
		"writev -P 0x11 128k 512 1536 2048", "read -P 0x11 128k 4k", "write -P 0x12 300000 7000",
		"read -P 0x12 300000 7000", "read -v 299990 20", "write -P 0x13 1 1", "read -v 0 4")...)
	// 002, 008, 011, 032: aio requests
	// (one request in flight at a time: QEMU's thread pool completes
	// concurrent ones in any order)
	run(tl.io, tl.gio, "", io("aio_write -P 0x22 256k 64k", "aio_flush", "aio_write -P 0x23 320k 64k", "aio_flush",
		"aio_read -P 0x22 256k 64k", "aio_flush", "aio_read -P 0x23 320k 64k", "aio_flush", "aio_write 1M 1M", "close")...)
	// 032: many writes on stdin
	var script strings.Builder
	for i := 0; i <= 1024; i += 128 {
		fmt.Fprintf(&script, "write %dk 64k\n", i)
	}
	run(tl.io, tl.gio, script.String(), spec...)
	// 033: zero writes, aligned and not; discard; block status
	run(tl.io, tl.gio, "", io("write -z 400k 8k", "write -z 1000 3000", "read -P 0 1000 3000", "read -P 0 400k 8k",
		"write -z -u 2M 64k", "discard 512k 64k", "alloc 0 4M", "map", "length", "info")...)
	// 025: growing the volume, zeroing what it gained
	run(tl.io, tl.gio, "length\ntruncate 6M\nlength\n", spec...)
	run(tl.io, tl.gio, "", io("write -z 4M 2M", "read -P 0 4M 2M", "read -P 0xc5 0 64k", "length")...)
	// 052: a temporary overlay (-s) takes the writes
	run(tl.io, tl.gio, "", append([]string{"-s"}, io("write -P 0xa 0 64k", "read -P 0xa 0 64k")...)...)
	run(tl.io, tl.gio, "", io("read -P 0xc5 0 64k")...)
	// 174: the volume read as raw; a missing file
	run(tl.io, tl.gio, "", "-f", "raw", "-c", "read 0 4M", "img")
	run(tl.io, tl.gio, "", "-c", "read 0 4M", "missing")
	// without the key, with a wrong one, with -f and no key option
	run(tl.io, tl.gio, "", "-c", "read 0 512", "img")
	run(tl.io, tl.gio, "", "--object", sec0, "-f", "luks", "-c", "read 0 512", "img")
	run(tl.io, tl.gio, "", "--object", "secret,id=sec0,data=wrong", "-c", "read 0 512", "--image-opts", "driver=luks,key-secret=sec0,file.filename=img")
	run(tl.io, tl.gio, "", "--object", sec0, "-c", "read 0 512", "--image-opts", "driver=luks,key-secret=sec9,file.filename=img")
	// qemu-img: resize, info, check, map, compare
	run(tl.img, tl.gimg, "", append([]string{"resize"}, append(spec, "+1M")...)...)
	run(tl.img, tl.gimg, "", "info", "img")
	run(tl.img, tl.gimg, "", append([]string{"info", "--output=json"}, spec...)...)
	run(tl.img, tl.gimg, "", append([]string{"check"}, spec...)...)
	run(tl.img, tl.gimg, "", append([]string{"map", "--output=json"}, spec...)...)
	run(tl.img, tl.gimg, "", "compare", "--object", sec0, "--image-opts", "driver=luks,key-secret=sec0,file.filename=img",
		"driver=luks,key-secret=sec0,file.filename=img")
	// 282: a secret that is not UTF-8 fails creation, and no file is left
	// (nor one that was there before)
	for i := range dirs {
		if err := os.WriteFile(filepath.Join(dirs[i], "nonutf8"), []byte{0x3a, 0x3c, 0x3b, 0xff}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	create := []string{"create", "-f", "luks", "--object", "secret,id=sec0,file=nonutf8", "-o", "key-secret=sec0", "new", "4M"}
	run(tl.img, tl.gimg, "", create...)
	for i := range dirs {
		if err := os.WriteFile(filepath.Join(dirs[i], "new"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(tl.img, tl.gimg, "", create...)
	// 288: measure, of a size and of an image
	// (each of QEMU's runs benchmarks PBKDF2 twice: one of each kind)
	run(tl.img, tl.gimg, "", "measure", "--object", sec0, "-O", "luks", "-o", "key-secret=sec0,iter-time=10,preallocation=falloc", "-f", "raw", "raw")
	run(tl.img, tl.gimg, "", "measure", "--object", sec0, "-O", "luks", "-o", "key-secret=sec9", "--size", "1G")
}

// TestLUKSAmend is iotest 294's key management and more: qemu-img amend
// on a luks volume, its refusals and messages, as the real one, on two
// copies; the key slots each side leaves unlock with the same secrets.
func TestLUKSAmend(t *testing.T) {
	tl := cryptoSetup(t)
	t.Parallel()
	const sec1, sec2 = "secret,id=sec1,data=hadron", "secret,id=sec2,data=boson"
	var dirs [2]string
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	if out, rc := cryptoRun(t, dirs[0], tl.gimg, "create", "-q", "-f", "luks", "--object", sec0, "-o", "key-secret=sec0,iter-time=10", "img", "1M"); rc != 0 {
		t.Fatal(out)
	}
	copySparse(t, filepath.Join(dirs[0], "img"), filepath.Join(dirs[1], "img"))
	secs := []string{"--object", sec0, "--object", sec1, "--object", sec2}
	open := "driver=luks,key-secret=sec0,file.filename=img"
	for _, args := range [][]string{
		{"-f", "luks", "-o", "help"},
		{"-o", "help", "--image-opts", open},
		{"-o", "state=active,new-secret=sec1,keyslot=1,iter-time=10", "--image-opts", open},
		{"-o", "state=active,new-secret=sec2,iter-time=10", "--image-opts", open},
		{"-o", "state=active,new-secret=sec1,keyslot=1,iter-time=10", "--image-opts", open},
		{"-o", "state=active,new-secret=sec1,keyslot=8", "--image-opts", open},
		{"-o", "state=active,keyslot=3", "--image-opts", open},
		{"-o", "state=active,new-secret=sec1,old-secret=sec0", "--image-opts", open},
		{"-o", "state=active,new-secret=sec9", "--image-opts", open},
		{"-o", "state=inactive,new-secret=sec1", "--image-opts", open},
		{"-o", "state=inactive,iter-time=10", "--image-opts", open},
		{"-o", "state=bogus", "--image-opts", open},
		{"-o", "keyslot=1", "--image-opts", open},
		{"-o", "keyslot=x,state=active", "--image-opts", open},
		{"-o", "encrypt.state=active", "--image-opts", open},
		{"-o", "cipher-alg=aes-128", "--image-opts", open},
		{"-o", "size=2M,foo=bar", "--image-opts", open},
		{"-o", "state=inactive,keyslot=2", "--image-opts", open},
		{"-o", "state=inactive,old-secret=sec2", "--image-opts", open},
		{"-o", "state=inactive,keyslot=1", "--image-opts", "driver=luks,key-secret=sec1,file.filename=img"},
		{"-o", "state=inactive,keyslot=0", "--image-opts", open},
		{"-o", "state=inactive,old-secret=sec0", "--image-opts", open},
		{"-o", "state=active,new-secret=sec1", "-f", "luks", "img"},
		{"-o", "state=active,new-secret=sec1", "img"},
	} {
		var outs [2]string
		for i, prog := range []string{tl.img, tl.gimg} {
			out, rc := cryptoRun(t, dirs[i], prog, append(append([]string{"amend"}, secs...), args...)...)
			outs[i] = fmt.Sprintf("exit %d\n%s", rc, out)
		}
		if outs[0] != outs[1] {
			t.Errorf("amend %q:\nqemu-img:\n%s\ngoqio:\n%s", args, outs[0], outs[1])
		}
	}
	// the slots: the same ones active (their iteration counts are each
	// benchmark's), the same secrets unlocking, read by the real qemu-io
	var infos [2]string
	for i := range dirs {
		out, _ := cryptoRun(t, dirs[i], tl.img, "info", "img")
		var keep []string
		for _, l := range strings.Split(out, "\n") {
			if !strings.Contains(l, "iters:") {
				keep = append(keep, l)
			}
		}
		infos[i] = strings.Join(keep, "\n")
	}
	if infos[0] != infos[1] {
		t.Errorf("key slots differ:\nQEMU:\n%s\ngoqio:\n%s", infos[0], infos[1])
	}
	for _, s := range []string{"sec0", "sec1", "sec2"} {
		var outs [2]string
		for i := range dirs {
			outs[i], _ = cryptoRun(t, dirs[i], tl.io, append(secs, "-c", "read -P 0 0 0", "--image-opts", "driver=luks,key-secret="+s+",file.filename=img")...)
		}
		if outs[0] != outs[1] {
			t.Errorf("%s: QEMU's volume:\n%s\ngoqio's:\n%s", s, outs[0], outs[1])
		}
	}
}

// copySparse copies a file leaving its zero blocks unallocated, so that
// the copy takes the disk space the original takes (qemu-img info's
// disk size).
func copySparse(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zero := make([]byte, 4096)
	for off := 0; off < len(b); off += 4096 {
		blk := b[off:min(off+4096, len(b))]
		if !bytes.Equal(blk, zero[:len(blk)]) {
			if _, err := f.WriteAt(blk, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Truncate(int64(len(b))); err != nil {
		t.Fatal(err)
	}
}
