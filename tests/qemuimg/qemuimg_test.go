// Package qemuimg runs goqio as qemu-img (argv[0] "qemu-img") and the real
// qemu-img 7.2 on the same image files, made by the real qemu-img and
// qemu-io, and requires the same stdout, stderr and exit status for each
// command line: info, map, compare, the command line itself (global
// options, usage, unknown commands) and their error cases. Running both on
// the same files makes "disk size" comparable. Skipped when QEMU is not
// installed.
package qemuimg

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/goqio/goqio/internal/testbin"
)

func TestMain(m *testing.M) {
	testbin.WidenParallel()
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

type result struct {
	out, err string
	rc       int
}

func run(t *testing.T, dir, prog string, args []string) result {
	t.Helper()
	r := run1(t, dir, prog, args)
	for try := 0; try < 5 && r.rc != 0 && testbin.QEMUFlake(r.err); try++ {
		r = run1(t, dir, prog, args)
	}
	return r
}

func run1(t *testing.T, dir, prog string, args []string) result {
	t.Helper()
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
			t.Fatalf("%s %q: %v", prog, args, err)
		}
		rc = ee.ExitCode()
	}
	return result{o.String(), e.String(), rc}
}

// images makes the test images in dir with the real tools.
func images(t *testing.T, dir string) {
	t.Helper()
	script := `set -e
qemu-img create -f qcow2 base.qcow2 64M
qemu-io -c 'write -P 1 0 1M' -c 'write -z 2M 1M' -c 'write -c 4M 64k' -c 'write -P 7 6M 128k' base.qcow2
qemu-img create -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -c 'write -P 2 512k 1M' -c 'write -z 6M 64k' -c 'discard 0 64k' top.qcow2
qemu-img snapshot -c snap1 top.qcow2
qemu-img create -f qcow2 -b top.qcow2 -F qcow2 t3.qcow2
qemu-io -c 'write -P 5 10M 4k' t3.qcow2
qemu-img convert -O raw t3.qcow2 t3.raw
qemu-img convert -O qcow2 t3.qcow2 t3c.qcow2
cp t3.raw t3m.raw
qemu-io -f raw -c 'write -P 9 3000000 1' t3m.raw
truncate -s 70M big.raw
dd if=t3.raw of=big.raw conv=notrunc status=none
cp big.raw big2.raw
qemu-io -f raw -c 'write -P 1 68M 1' big2.raw
truncate -s 20M sp.raw
qemu-io -f raw -c 'write -P 3 1M 64k' -c 'write 5M 4k' sp.raw
qemu-img create -f qcow2 -o compat=0.10 v2.qcow2 1G
qemu-img create -f qcow2 -o lazy_refcounts=on,cluster_size=16k,extended_l2=on lazy.qcow2 100M
qemu-img bitmap --add lazy.qcow2 b1
qemu-img bitmap --add -g 128k lazy.qcow2 b2
qemu-img bitmap --disable lazy.qcow2 b2
qemu-img create -f qcow2 -o compression_type=zstd zstd.qcow2 1M
mkdir sub
qemu-img create -f qcow2 -b ../base.qcow2 -F qcow2 sub/o.qcow2
qemu-img create -f qcow2 -b nothere.qcow2 -F qcow2 -u miss.qcow2 1M
qemu-img create -f qcow2 -b loop2.qcow2 -F qcow2 -u loop1.qcow2 1M
qemu-img create -f qcow2 -b loop1.qcow2 -F qcow2 -u loop2.qcow2 1M
qemu-img create -f qcow2 -b t3.raw -F raw raw-backed.qcow2
cp top.qcow2 dirty.qcow2
printf '\x01' | dd of=dirty.qcow2 bs=1 seek=79 conv=notrunc status=none
cp top.qcow2 corrupt.qcow2
printf '\x02' | dd of=corrupt.qcow2 bs=1 seek=79 conv=notrunc status=none
echo garbage > text.raw
truncate -s 65537 un.raw
qemu-img create -q -f qcow2 lsn.qcow2 1M
qemu-img snapshot -c $(printf 'n%.0s' $(seq 300)) lsn.qcow2
qemu-io -f raw -c 'write 65536 1' un.raw
`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making images: %v\n%s", err, out)
	}
}

var cases = [][]string{
	// the command line
	{}, {"-x"}, {"-T"}, {"foo"}, {"-V"}, {"--version"}, {"-h"}, {"--help"}, {"-T", "foo"},
	{"-T", "foo", "info", "sp.raw"}, {"--", "info", "sp.raw"}, {"info", "-h"}, {"map", "--help"},
	{"--hel"}, {"--vers"}, {"-Vh"},
	// info
	{"info", "top.qcow2"}, {"info", "--output=json", "top.qcow2"}, {"info", "--output", "json", "top.qcow2"},
	{"info", "--backing-chain", "t3.qcow2"}, {"info", "--backing-chain", "--output=json", "t3.qcow2"},
	{"info", "sp.raw"}, {"info", "--output=json", "sp.raw"}, {"info", "-f", "file", "--output=json", "sp.raw"},
	{"info", "-f", "raw", "top.qcow2"}, {"info", "v2.qcow2"}, {"info", "--output=json", "v2.qcow2"},
	{"info", "lazy.qcow2"}, {"info", "--output=json", "lazy.qcow2"}, {"info", "zstd.qcow2"},
	{"info", "sub/o.qcow2"}, {"info", "--backing-chain", "--output=json", "sub/o.qcow2"},
	{"info", "miss.qcow2"}, {"info", "--backing-chain", "miss.qcow2"}, {"info", "--backing-chain", "loop1.qcow2"},
	{"info", "--backing-chain", "raw-backed.qcow2"}, {"info", "dirty.qcow2"}, {"info", "--output=json", "dirty.qcow2"},
	{"info", "corrupt.qcow2"}, {"info", "--output=json", "corrupt.qcow2"}, {"info", "text.raw"},
	{"info", "null-co://"}, {"info", "--output=json", "null-co://"},
	{"info", "--image-opts", "driver=null-co,size=1M"},
	{"info", "--image-opts", "driver=raw,file.driver=file,file.filename=sp.raw,offset=4096"},
	{"info", "--image-opts", "driver=qcow2,file.filename=top.qcow2"}, {"info", "--image-opts", "top.qcow2"},
	{"info", "--image-opts", "-f", "qcow2", "top.qcow2"},
	{"info", "-U", "--image-opts", "driver=qcow2,file.filename=top.qcow2,force-share=off"},
	{"info", `json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"}}`},
	{"info", "--backing-chain", "--output=json", `json:{"driver":"qcow2","file":{"driver":"file","filename":"sub/o.qcow2"}}`},
	{"info", "-U", "top.qcow2"}, {"info", "--force-share", "top.qcow2"}, {"info", "top.qcow2", "-f", "qcow2"},
	{"info", "--", "top.qcow2"}, {"info", "--object", "secret,id=s0,data=x", "top.qcow2"},
	{"info", "--object", "foo,id=x", "top.qcow2"}, {"info", "--object", "help"},
	{"info"}, {"info", "a", "b"}, {"info", "--output=x", "sp.raw"}, {"info", "-f"}, {"info", "--foo"},
	{"info", "nope"}, {"info", "-f", "qcow2", "sp.raw"}, {"info", "-f", "foo", "top.qcow2"}, {"info", "sub"},
	{"info", "--output"}, {"info", "-t", "none", "sp.raw"},
	// map
	{"map", "base.qcow2"}, {"map", "--output=json", "base.qcow2"}, {"map", "top.qcow2"},
	{"map", "t3.qcow2"}, {"map", "--output=json", "t3.qcow2"}, {"map", "sp.raw"}, {"map", "--output=json", "sp.raw"},
	{"map", "-f", "raw", "--output=json", "sp.raw"}, {"map", "--output=json", "raw-backed.qcow2"},
	{"map", "-s", "1M", "-l", "4M", "--output=json", "t3.qcow2"}, {"map", "--start-offset=600k", "--max-length=1M", "t3.qcow2"},
	{"map", "-s", "100M", "--output=json", "t3.qcow2"}, {"map", "-s", "100M", "t3.qcow2"}, {"map", "-s", "x", "t3.qcow2"},
	{"map", "-l", "-1", "t3.qcow2"}, {"map", "-s", "9999999999999999999", "t3.qcow2"}, {"map", "-l", "1E", "t3.qcow2"},
	{"map", "-s", "7E", "-l", "7E", "--output=json", "t3.qcow2"},
	{"map", "--output=xml", "t3.qcow2"}, {"map"}, {"map", "nope"}, {"map", "-U", "--output=json", "top.qcow2"},
	{"map", "--image-opts", "driver=qcow2,file.filename=t3.qcow2"},
	{"map", "--output=json", "--image-opts", "driver=qcow2,file.filename=t3.qcow2,backing="},
	{"map", "-f", "qcow2", "sp.raw"}, {"map", "t3c.qcow2"}, {"map", "--output=json", "t3c.qcow2"},
	{"info", "lsn.qcow2"}, {"info", "--output=json", "lsn.qcow2"}, {"snapshot", "-l", "lsn.qcow2"},
	{"map", "--output=json", "un.raw"}, {"map", "un.raw"}, {"map", "-f", "raw", "--output=json", "un.raw"},
	{"map", "--output=json", "-s", "65537", "un.raw"},
	{"map", "--output=json", "v2.qcow2"}, {"map", "t3.qcow2", "--output", "json"}, {"map", "miss.qcow2"},
	// compare
	{"compare", "t3.qcow2", "t3.raw"}, {"compare", "-f", "qcow2", "-F", "raw", "t3.qcow2", "t3.raw"},
	{"compare", "-s", "t3.qcow2", "t3.raw"}, {"compare", "-s", "t3.qcow2", "t3c.qcow2"},
	{"compare", "t3.qcow2", "t3m.raw"}, {"compare", "-q", "t3.qcow2", "t3m.raw"}, {"compare", "t3.raw", "big.raw"},
	{"compare", "big.raw", "t3.raw"}, {"compare", "-s", "t3.raw", "big.raw"}, {"compare", "t3.raw", "big2.raw"},
	{"compare", "big2.raw", "t3.raw"}, {"compare", "-q", "big2.raw", "t3.raw"}, {"compare", "sp.raw", "t3.raw"},
	{"compare", "t3.qcow2"}, {"compare"}, {"compare", "a", "b", "c"}, {"compare", "nope", "t3.raw"},
	{"compare", "t3.raw", "nope"}, {"compare", "-f", "qcow2", "t3.raw", "t3.raw"}, {"compare", "-T", "foo", "t3.raw", "t3.raw"},
	{"compare", "-T", "none", "t3.raw", "t3.raw"}, {"compare", "-U", "t3.qcow2", "top.qcow2"},
	{"compare", "top.qcow2", "base.qcow2"}, {"compare", "-s", "top.qcow2", "base.qcow2"},
	{"compare", "--object", "foo,id=x", "a", "b"}, {"compare", "-x", "a", "b"}, {"compare", "t3.qcow2", "t3.raw", "-s"},
	{"compare", "--image-opts", "driver=raw,file.filename=t3.raw", "file.filename=t3.qcow2"},
	{"compare", "sp.raw", "sp.raw"}, {"compare", "miss.qcow2", "sp.raw"}, {"compare", "v2.qcow2", "zstd.qcow2"},
	// once refused as not implemented
	{"convert", "-O", "raw", "sp.raw", "x.raw"}, {"rebase", "-u", "-b", "", "top.qcow2"},
}

func compare(t *testing.T, dir, goqio, qemuImg string, args []string) {
	t.Helper()
	want := run(t, dir, qemuImg, args)
	got := run(t, dir, goqio, args)
	if want != got {
		t.Errorf("qemu-img %q:\nqemu-img: rc %d\n%s%s\ngoqio: rc %d\n%s%s", args, want.rc, want.out, want.err, got.rc, got.out, got.err)
	}
}

func TestQemuImg(t *testing.T) {
	_, qemuImg := testbin.QEMU(t)
	goqio := testbin.Goqio(t)
	dir := t.TempDir()
	images(t, dir)
	for _, args := range cases {
		compare(t, dir, goqio, qemuImg, args)
	}
}

// TestLocked: an image another process holds for writing (qemu-io) is
// refused as qemu-img refuses it, and -U opens it.
func TestLocked(t *testing.T) {
	qemuIO, qemuImg := testbin.QEMU(t)
	goqio := testbin.Goqio(t)
	dir := t.TempDir()
	images(t, dir)
	holder := exec.Command(qemuIO, "-c", "sleep 20000", "top.qcow2")
	holder.Dir = dir
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	// wait until the lock is taken
	for i := 0; i < 100; i++ {
		if r := run(t, dir, qemuImg, []string{"info", "top.qcow2"}); r.rc != 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, args := range [][]string{
		{"info", "top.qcow2"}, {"info", "-U", "top.qcow2"}, {"info", "--backing-chain", "t3.qcow2"},
		{"info", "-U", "--backing-chain", "t3.qcow2"}, {"map", "top.qcow2"}, {"map", "-U", "--output=json", "top.qcow2"},
		{"compare", "top.qcow2", "base.qcow2"}, {"compare", "-U", "top.qcow2", "t3.qcow2"},
		{"info", "--image-opts", "driver=qcow2,file.filename=top.qcow2"},
	} {
		compare(t, dir, goqio, qemuImg, args)
	}
}

// TestInterleaved: with stdout and stderr on one pipe (as the iotests run
// qemu-img) the lines come in qemu-img's order: create flushes its
// Formatting line before the error, map's buffered table comes after it.
func TestInterleaved(t *testing.T) {
	_, qemuImg := testbin.QEMU(t)
	goqio := testbin.Goqio(t)
	dir := t.TempDir()
	images(t, dir)
	for _, args := range [][]string{
		{"create", "-f", "qcow2", "-o", "compat=0.42", "x.qcow2", "64M"},
		{"create", "-f", "qcow2", "-o", "preallocation=1234", "x.qcow2", "64M"},
		{"create", "-f", "raw", "-o", "preallocation=xx", "x.qcow2", "1M"},
		{"create", "-f", "qcow2", "file:x.qcow2", "1M"}, {"create", "-f", "raw", "file:nodir/x.raw", "1M"},
		{"create", "-f", "raw", "nodir/x.raw", "1M"}, {"create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "file:x.qcow2"},
		{"create", "-f", "qcow2", "-o", "extent_size_hint=0,nocow=on,preallocation=off", "x.qcow2", "128k"},
		{"create", "-f", "raw", "-o", "extent_size_hint=0x10,nocow=off,preallocation=off", "x.qcow2", "128k"},
		{"create", "-f", "qcow2", "-o", "extent_size_hint=5G", "x.qcow2", "128k"}, {"create", "-f", "raw", "-o", "nocow=x", "x.qcow2", "1M"},
		{"create", "-f", "raw", "-o", "extent_size_hint=-1", "x.qcow2", "1M"}, {"create", "-f", "file", "-o", "extent_size_hint=5G", "x.qcow2", "1M"},
		{"create", "-f", "raw", "-o", "preallocation=off,,x", "x.qcow2", "1M"},
		{"create", "-f", "qcow2", "-u", "-F", "qcow2", "-b", "json:{'driver': 'qcow2', 'file': {'driver': 'file', 'filename': 'b,c'}}", "x.qcow2", "1M"},
		{"map", "base.qcow2"}, {"compare", "-s", "t3.raw", "big.raw"}, {"info", "--backing-chain", "loop1.qcow2"},
	} {
		var outs [2]string
		for i, prog := range []string{qemuImg, goqio} {
			cmd := exec.Command(prog, args...)
			cmd.Args[0] = "qemu-img"
			cmd.Dir = dir
			out, _ := cmd.CombinedOutput()
			outs[i] = string(out)
			os.Remove(dir + "/x.qcow2")
		}
		if outs[0] != outs[1] {
			t.Errorf("qemu-img %q:\nqemu-img:\n%s\ngoqio:\n%s", args, outs[0], outs[1])
		}
	}
}

// TestInfoDataFile: qemu-img info of images with an external data file
// shows the data file and data-file-raw members, and opens no data file
// (QEMU 7.2.x's fix of CVE-2024-4467): its disk size is not counted, a
// missing one is no error, data-file options are dropped.
func TestInfoDataFile(t *testing.T) {
	_, qemuImg := testbin.QEMU(t)
	goqio := testbin.Goqio(t)
	dir := t.TempDir()
	script := `set -e
qemu-img create -q -f qcow2 -o data_file=df.data df.qcow2 1M
qemu-img create -q -f qcow2 -o data_file=dr.data,data_file_raw=on dr.qcow2 1M
qemu-img create -q -f qcow2 -o data_file=dn.data dn.qcow2 1M
qemu-img amend -o data_file= --image-opts data-file.filename=dn.data,file.filename=dn.qcow2
qemu-io -c 'write 0 512k' df.qcow2
qemu-img create -q -f qcow2 -o data_file=gone.data gone.qcow2 1M
rm gone.data
qemu-img create -q -f qcow2 plain.qcow2 1M
`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making images: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"info", "df.qcow2"}, {"info", "--output=json", "df.qcow2"}, {"info", "dr.qcow2"},
		{"info", "--output=json", "dr.qcow2"}, {"info", "--image-opts", "data-file.filename=dn.data,file.filename=dn.qcow2"},
		{"info", "--output=json", "--image-opts", "data-file.filename=dn.data,file.filename=dn.qcow2"},
		{"info", "gone.qcow2"}, {"info", "--output=json", "--image-opts", "data-file.filename=nothere,file.filename=gone.qcow2"},
		{"info", "--image-opts", "data-file.driver=foo,file.filename=df.qcow2"}, {"info", "--image-opts", "data-file.filename=df.data,file.filename=plain.qcow2"},
	} {
		want, got := run(t, dir, qemuImg, args), run(t, dir, goqio, args)
		if want != got {
			t.Errorf("qemu-img %q:\nqemu-img: rc %d\n%s%s\ngoqio: rc %d\n%s%s", args, want.rc, want.out, want.err, got.rc, got.out, got.err)
		}
	}
}
