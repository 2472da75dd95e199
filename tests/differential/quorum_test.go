package differential

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// quorumOf is a json: filename of a quorum node (with more options) over
// children given as JSON.
func quorumOf(opts string, children ...string) string {
	if opts != "" {
		opts = "," + opts
	}
	return fmt.Sprintf("json:{'driver':'quorum'%s,'children':[%s]}", opts, strings.Join(children, ","))
}

// fileChild is a file node's JSON.
func fileChild(name string) string { return fmt.Sprintf("{'driver':'file','filename':'%s'}", name) }

// failingChild is a raw node over blkdebug over the file name whose
// requests fail with errno once event has happened (the raw format
// signals read_aio and write_aio).
func failingChild(name string, errno int, event string) string {
	return fmt.Sprintf("{'driver':'raw','file':{'driver':'blkdebug','inject-error':[{'event':'%s','errno':%d}],'image':%s}}",
		event, errno, fileChild(name))
}

// The raw children of the quorum tests: img and b.raw hold 0xab in their
// first 64k; c.raw too, but 0xcd at 4k; d.raw holds 0xef at 4k.
var (
	quorumB = ExtraImage{Name: "b.raw", Size: "1M", Cmds: []string{"write -P 0xab 0 64k"}}
	quorumC = ExtraImage{Name: "c.raw", Size: "1M", Cmds: []string{"write -P 0xab 0 64k", "write -P 0xcd 4k 4k"}}
	quorumD = ExtraImage{Name: "d.raw", Size: "1M", Cmds: []string{"write -P 0xab 0 64k", "write -P 0xef 4k 4k"}}
)

// TestQuorum: the quorum driver over raw files (qemu-io as the oracle):
// children that agree (every request kind: reads, writes, zero writes,
// discards, flush, map, info, truncate, compressed writes), a child that
// differs (the vote wins, or no version reaches the threshold: EIO),
// ties (the version counted last wins), rewrite-corrupted (the loser is
// rewritten), the fifo pattern, children that fail (blkdebug: the error
// vote), blkverify mode (the mismatch report and exit 1), the ways the
// children are given (json:, --image-opts, open -o, node-name
// references, probed children) and the open errors (the options'
// validation, children that are no array, lengths that differ, locks, a
// read-only child, a node that is two children). Output, exit code, the
// data and size of every child.
func TestQuorum(t *testing.T) {
	tl := setup(t)
	img, b, c, d := fileChild("img"), fileChild("b.raw"), fileChild("c.raw"), fileChild("d.raw")
	extra := []ExtraImage{quorumB, quorumC, quorumD}
	q := func(args ...string) Case {
		return Case{Size: "1M", Setup: []string{"write -P 0xab 0 64k"}, Extra: extra, Args: args}
	}
	all := []string{"read -P 0xab 0 4k", "read -v 4k 16", "write -P 1 64k 4k", "read -P 1 64k 4k", "writev -P 2 100k 1000 3000",
		"write -z 200k 64k", "write -zu 300k 4k", "write -zn 400k 4k", "write -P 3 1000 10", "read -v 990 30", "discard 0 64k",
		"read -P 0xab 8k 4k", "write -c 512k 64k", "aio_write -P 4 600k 4k", "aio_flush", "aio_read -P 4 600k 4k", "aio_flush",
		"flush", "write -f -P 5 700k 4k", "map", "alloc 0 1M", "info", "length", "truncate 2M", "length", "read 1M 1", "write 1M 1"}
	var cases []Case
	// children that agree, and one that differs
	for _, a := range [][]string{
		{quorumOf("'vote-threshold':2", img, b)},
		{quorumOf("'vote-threshold':2", img, b, c)},
		{quorumOf("'vote-threshold':3", img, b, c)},
		{quorumOf("'vote-threshold':2", img, c, d)},
		{quorumOf("'vote-threshold':1", img, c, d)},
		{quorumOf("'vote-threshold':1", img, d, c)},
		{quorumOf("'vote-threshold':1", c, d, img)},
		{quorumOf("'vote-threshold':2,'read-pattern':'quorum'", c, img, b)},
		{quorumOf("'vote-threshold':2,'rewrite-corrupted':true", img, c, b)},
		{quorumOf("'vote-threshold':1,'rewrite-corrupted':'on'", img, c, d)},
		{quorumOf("'vote-threshold':1,'read-pattern':'fifo'", c, img, d)},
		{quorumOf("'vote-threshold':3,'read-pattern':'fifo','rewrite-corrupted':true", d, img, c)},
		{"-t", "none", quorumOf("'vote-threshold':2", img, b, c)},
		{"--image-opts", "driver=quorum,vote-threshold=2,children.0.driver=file,children.0.filename=img,children.1.driver=file,children.1.filename=b.raw,children.2.file.filename=c.raw"},
	} {
		cases = append(cases, q(append(withCmds(nil, all...), a...)...))
	}
	// children that fail: the error most of them returned, the newest
	// among equals; fifo goes on to the next child
	reads := []string{"read -v 4k 16", "write -P 6 0 4k", "read -P 6 0 4k", "write -z 8k 4k", "flush", "map"}
	for _, a := range [][]string{
		{quorumOf("'vote-threshold':2", failingChild("img", 5, "read_aio"), b, c)},
		{quorumOf("'vote-threshold':2", failingChild("img", 5, "read_aio"), failingChild("b.raw", 28, "read_aio"), c)},
		{quorumOf("'vote-threshold':1", failingChild("img", 5, "read_aio"), failingChild("b.raw", 28, "read_aio"))},
		{quorumOf("'vote-threshold':1", failingChild("img", 28, "read_aio"), failingChild("b.raw", 5, "read_aio"))},
		{quorumOf("'vote-threshold':2", failingChild("img", 28, "write_aio"), failingChild("b.raw", 5, "write_aio"), c)},
		{quorumOf("'vote-threshold':2", c, failingChild("img", 5, "write_aio"), b)},
		{quorumOf("'vote-threshold':1,'read-pattern':'fifo'", failingChild("img", 28, "read_aio"), failingChild("b.raw", 5, "read_aio"), c)},
		{quorumOf("'vote-threshold':1,'read-pattern':'fifo'", failingChild("img", 28, "read_aio"), failingChild("b.raw", 5, "read_aio"))},
		{quorumOf("'vote-threshold':2,'rewrite-corrupted':true", d, failingChild("img", 5, "read_aio"), c, b)},
	} {
		cases = append(cases, q(append(withCmds(nil, reads...), a...)...))
	}
	// blkverify mode: agreement, then a mismatch ends the process
	for _, a := range [][]string{
		{quorumOf("'vote-threshold':2,'blkverify':true", img, b)},
		{quorumOf("'vote-threshold':2,'blkverify':'on'", img, c)},
		{quorumOf("'vote-threshold':2,'blkverify':true", failingChild("img", 5, "read_aio"), b)},
	} {
		cases = append(cases, q(append(withCmds(nil, "read -P 0xab 0 4k", "write -P 7 8k 4k", "read 4097 100", "read 0 4k"), a...)...))
	}
	// the ways to give the children, and the open errors
	for _, a := range [][]string{
		{"open -o driver=quorum,vote-threshold=1,children.0.driver=file,children.0.filename=c.raw", "read -v 4k 16", "info", "close",
			"open -o driver=quorum,children.0.driver=file,children.0.filename=img"},
		{"open -o driver=quorum,vote-threshold=1,children.0.node-name=x,children.0.driver=file,children.0.filename=img,children.1=x"},
	} {
		cases = append(cases, q(withCmds(nil, a...)...))
	}
	for _, j := range []string{
		"'vote-threshold':1,'children':[{'file':" + img + "}]",
		"'vote-threshold':1,'children.0':" + img + ",'children.0.driver':'file'",
		"'vote-threshold':1,'children':[{'driver':'file','filename':'b.raw','node-name':'x'},'x']",
		"'vote-threshold':1,'node-name':'q','children':[{'driver':'file','filename':'b.raw','node-name':'x'}," + img + ",'x']",
		"'vote-threshold':1", "'vote-threshold':1,'children':[]", "'vote-threshold':1,'children':5",
		"'vote-threshold':1,'children':{'0':" + img + ",'2':" + b + "}", "'vote-threshold':1,'children':{'1':" + img + "}",
		"'vote-threshold':1,'children':['nope']", "'vote-threshold':1,'children':[{'filename':'img'}]",
		"'vote-threshold':1,'children':[" + img + ",{'driver':'file','filename':'big.raw'}]",
		"'vote-threshold':1,'children':[" + img + ",{'driver':'file','filename':'nonexist'}]",
		"'vote-threshold':1,'children':[" + img + "," + img + "]",
		"'vote-threshold':1,'children':[" + img + ",{'driver':'file','filename':'b.raw','read-only':true}]",
		"'children':[" + img + "," + b + "]", "'vote-threshold':0,'children':[" + img + "," + b + "]",
		"'vote-threshold':3,'children':[" + img + "," + b + "]", "'vote-threshold':-1,'children':[" + img + "," + b + "]",
		"'vote-threshold':4294967297,'children':[" + img + "," + b + "]", "'vote-threshold':'x','children':[" + img + "," + b + "]",
		"'vote-threshold':1.5,'children':[" + img + "," + b + "]", "'vote-threshold':'0x2','children':[" + img + "," + b + "]",
		"'vote-threshold':1,'blkverify':true,'children':[" + img + "," + b + "]",
		"'vote-threshold':2,'blkverify':true,'rewrite-corrupted':true,'children':[" + img + "," + b + "]",
		"'vote-threshold':1,'read-pattern':'fifo','rewrite-corrupted':true,'blkverify':true,'children':[" + img + "," + b + "]",
		"'vote-threshold':1,'read-pattern':'FIFO','children':[" + img + "," + b + "]",
		"'vote-threshold':1,'read-pattern':'fifo','blkverify':'x','children':[" + img + "," + b + "]",
		"'vote-threshold':1,'foo':1,'children':[" + img + "," + b + "]",
	} {
		cq := q(append(withCmds(nil, "read -P 0xab 0 4k", "write -P 8 0 512", "length"), "json:{'driver':'quorum',"+j+"}")...)
		cq.Extra = append(cq.Extra, ExtraImage{Name: "big.raw", Size: "2M"})
		cases = append(cases, cq)
	}
	for _, a := range [][]string{
		{"-r", quorumOf("'vote-threshold':1,'rewrite-corrupted':true", img, b)},
		{"-r", quorumOf("'vote-threshold':1", img, img)},
		{"-r", "-U", quorumOf("'vote-threshold':2", img, c, b)},
		{"-r", quorumOf("'vote-threshold':1,'read-pattern':'fifo','rewrite-corrupted':true", c, b)},
	} {
		cases = append(cases, q(append(withCmds(nil, "read -v 4k 16", "write -P 8 0 512", "map"), a...)...))
	}
	// the lengths count in sectors
	cases = append(cases, Case{Size: "1000", Extra: []ExtraImage{{Name: "b.raw", Size: "1001"}},
		Args: append(withCmds(nil, "length", "read -v 990 30", "write -P 1 1000 24", "read -v 990 30", "length"), quorumOf("'vote-threshold':2", img, b))})
	runCases(t, tl, cases)
}

// TestQuorumQcow2: the quorum driver over qcow2 children (one with a
// backing file: their block status comes through the whole chain), and
// a qcow2 image over a quorum of two copies of its file (as iotest 110).
// Output, data, map and check of every image, maps through the node.
func TestQuorumQcow2(t *testing.T) {
	tl := setup(t)
	qc := func(name string) string {
		return fmt.Sprintf("{'driver':'qcow2','file':{'driver':'file','filename':'%s'}}", name)
	}
	same := []string{"write -P 0xab 0 64k", "write -z 128k 64k", "write -P 0x22 1M 4k"}
	b := ExtraImage{Name: "b.qcow2", Fmt: "qcow2", Size: "2M", Cmds: same}
	c := ExtraImage{Name: "c.qcow2", Fmt: "qcow2", Size: "2M", Cmds: append(same, "write -P 0x55 1536k 64k")}
	cs := []string{"map", "read -P 0xab 0 64k", "read -P 0 128k 64k", "read 1536k 64k", "write -P 3 1000 3000", "write -zu 300k 64k",
		"write -zn 400k 64k", "write -z 1M 4k", "discard 0 64k", "aio_write -P 4 768k 64k", "aio_flush", "read -P 4 768k 64k", "map"}
	var cases []Case
	for _, j := range []string{
		quorumOf("'vote-threshold':2", qc("img"), qc("b.qcow2"), qc("c.qcow2")),
		quorumOf("'vote-threshold':3", qc("img"), qc("b.qcow2"), qc("c.qcow2")),
		quorumOf("'vote-threshold':1,'read-pattern':'fifo'", qc("c.qcow2"), qc("img")),
		quorumOf("'vote-threshold':2,'rewrite-corrupted':true", qc("img"), qc("c.qcow2"), qc("b.qcow2")),
	} {
		c := Case{Fmt: "qcow2", Size: "2M", Setup: same, Extra: []ExtraImage{b, c}, Args: append(withCmds(nil, cs...), j)}
		if !strings.Contains(j, "rewrite") { // a read-only map cannot rewrite
			c.FilterMap = []string{j}
		}
		cases = append(cases, c)
	}
	// a child with a backing file: its chain's status and data
	cases = append(cases, Case{Fmt: "qcow2", Size: "2M", Backing: []string{"qcow2", "2M"}, BackingCmds: same, Extra: []ExtraImage{b},
		Args:      append(withCmds(nil, cs...), quorumOf("'vote-threshold':2", qc("img"), qc("b.qcow2"))),
		FilterMap: []string{quorumOf("'vote-threshold':2", qc("img"), qc("b.qcow2"))}})
	// qcow2 over a quorum of two copies of its file
	// one node as two children: a conflict on write (and resize, under qcow2)
	for _, flags := range [][]string{nil, {"-r"}} {
		dup := "json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':1,'children':[{'driver':'file','filename':'img','node-name':'x'},'x']}}"
		cases = append(cases, Case{Fmt: "qcow2", Size: "2M", Args: append(withCmds(flags, "read 0 4k"), dup)})
	}
	copyOf := ExtraImage{Name: "copy.img", Fmt: "qcow2", Size: "2M"}
	over := "json:{'driver':'qcow2','file':" + strings.TrimPrefix(quorumOf("'vote-threshold':2", fileChild("img"), fileChild("copy.img")), "json:") + "}"
	cases = append(cases, Case{Fmt: "qcow2", Size: "2M", Extra: []ExtraImage{copyOf},
		Args: append(withCmds(nil, "write -P 1 0 64k", "write -P 2 1M 64k", "read -P 1 0 64k", "write -z 128k 64k", "discard 0 64k",
			"write -c 640k 64k", "map", "info", "truncate 4M", "write -P 3 3M 64k", "length", "map"), over),
		FilterMap: []string{over}})
	runCases(t, tl, cases)
}

// TestQuorumQemuImg: goqio as qemu-img against the real one on quorum
// nodes: info (human and JSON; the json: filename with the children as a
// list and the strong options as given), map (JSON; the human map fails
// without offsets), compare, check (not supported), and qemu-img info of
// a qcow2 image over a quorum, whose backing file's path cannot be
// determined (iotest 110's last case).
func TestQuorumQemuImg(t *testing.T) {
	tl := setup(t)
	qemuImg, goqio := tl.qemuImg, tl.goqio
	dir := t.TempDir()
	script := `set -e
for x in a b c; do qemu-img create -q -f raw $x.raw 1M; qemu-io -f raw -c 'write -P 0xab 0 64k' $x.raw >/dev/null; done
qemu-io -f raw -c 'write -P 0xcd 4k 4k' c.raw >/dev/null
qemu-img create -q -f qcow2 t.base 1M
qemu-img create -q -f qcow2 -b t.base -F qcow2 t.qcow2
qemu-io -c 'write -P 1 0 64k' t.qcow2 >/dev/null
cp t.qcow2 t.copy
`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making images: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	link := filepath.Join(bin, "qemu-img")
	if err := os.Symlink(goqio, link); err != nil {
		t.Fatal(err)
	}
	q2 := quorumOf("'vote-threshold':2", fileChild("a.raw"), fileChild("b.raw"), fileChild("c.raw"))
	typed := "json:{'driver':'quorum','vote-threshold':'1','blkverify':'off','read-pattern':'quorum','rewrite-corrupted':false," +
		"'children':[" + fileChild("a.raw") + ",{'driver':'raw','file':" + fileChild("b.raw") + "}]}"
	over := func(t int) string {
		return "json:{'driver':'qcow2','file':" + strings.TrimPrefix(quorumOf(fmt.Sprintf("'vote-threshold':%d", t), fileChild("t.qcow2"), fileChild("t.copy")), "json:") + "}"
	}
	for _, args := range [][]string{
		{"info", q2}, {"info", "--output=json", q2}, {"info", typed}, {"map", q2}, {"map", "--output=json", q2},
		{"check", q2}, {"compare", q2, "a.raw"}, {"compare", "-f", "raw", "a.raw", q2},
		{"compare", quorumOf("'vote-threshold':1", fileChild("c.raw"), fileChild("a.raw")), "c.raw"},
		{"info", over(1)}, {"info", "--output=json", over(2)}, {"info", "--backing-chain", over(1)},
		{"map", "--output=json", over(2)}, {"info", "--image-opts", "driver=quorum,vote-threshold=1,children.0.driver=file,children.0.filename=c.raw"},
		{"info", quorumOf("'vote-threshold':1,'rewrite-corrupted':true", fileChild("a.raw"))},
		{"info", quorumOf("'vote-threshold':2", fileChild("a.raw"))},
	} {
		var res [2]string
		for i, prog := range []string{qemuImg, link} {
			o, e, rc := sh(t, dir, "", prog, args...)
			res[i] = fmt.Sprintf("%s%s[exit %d]", o, e, rc)
		}
		if res[0] != res[1] {
			t.Errorf("qemu-img %q:\nqemu-img:\n%s\ngoqio:\n%s", args, res[0], res[1])
		}
	}
}
