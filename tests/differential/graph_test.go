package differential

import "testing"

// TestGraphOptions: the ways qemu-io opens a node tree — json: filenames,
// --image-opts, open -o with dotted keys, -f, protocol prefixes,
// node-names and references, backing=null, the raw format's offset and
// size, null-co — and their errors, each compared with the real qemu-io
// (output, exit code, image data and map).
func TestGraphOptions(t *testing.T) {
	tl := setup(t)
	rw := []string{"read -P 0x11 0 4k", "write -P 0x22 4k 4k", "read -v 0 16", "map", "info"}
	q := func(args ...string) Case {
		return Case{Fmt: "qcow2", Size: "1M", Setup: []string{"write -P 0x11 0 64k"},
			Backing: []string{"qcow2", "1M"}, BackingCmds: []string{"write -P 0x33 64k 64k"}, Args: args}
	}
	r := func(args ...string) Case { return Case{Size: "1M", Setup: []string{"write -P 0x11 0 64k"}, Args: args} }
	var cases []Case
	for _, opener := range [][]string{
		{"json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"img\"}}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'}}"},
		{"json:{'file':{'filename':'img'}}"},
		{"json:{'driver':'qcow2','file.filename':'img','backing':null}"},
		{"json:{'driver':'qcow2','file.filename':'img','backing':''}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'backing':{'driver':'qcow2','file':{'filename':'base.img'}}}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'backing':{'driver':'raw','file':{'filename':'base.img'}}}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'node-name':'top','file.node-name':'proto'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'node-name':'1bad'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'node-name':'same','file.node-name':'same'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'lazy-refcounts':'maybe'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'l2-cache-size':'1M','cache-size':'512k'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'l2-cache-entry-size':1000}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'overlap-check':'none'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'overlap-check':'all','overlap-check.template':'none'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'overlap-check':'sometimes'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'cache-clean-interval':'x'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'aa':1,'bb':2,'cc':3}"},
		{"json:{'driver':'qcow2','file':{'filename':'img','aa':1}}"},
		{"json:{'driver':'qcow2','file':{'filename':'img','locking':'sometimes'}}"},
		{"json:{'driver':'qcow2','file':{'filename':'img','aio':'fast'}}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'encrypt.format':'luks'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'read-only':'maybe'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'discard':'sometimes'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'detect-zeroes':'always'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'detect-zeroes':'unmap','discard':'ignore'}"},
		{"json:{'driver':'qcow2','file':'nosuchnode'}"},
		{"json:{'driver':'qcow2','node-name':'t','file':{'filename':'img'},'backing':'t'}"},
		{"-r", "json:{'driver':'qcow2','node-name':'t','file':{'filename':'img'},'backing':{'driver':'qcow2','file':{'filename':'base.img'},'backing':'t'}}"},
		{"-r", "json:{'driver':'qcow2','file':{'filename':'img','node-name':'f'},'backing':'f'}"},
		{"json:{'driver':'qcow2','node-name':'a','file':'a'}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'file.filename':'img'}"},
		{"json:{'driver':'nosuch','file':{'filename':'img'}}"},
		{"json:{'driver':'qcow2','file':{'driver':'nosuch','filename':'img'}}"},
		{"json:{'driver':'qcow2','file':{'driver':'qcow2','filename':'img'}}"},
		{"json:{'driver':'qcow2'}"},
		{"json:{'driver':'qcow2','file':{'filename':'missing.img'}}"},
		{"json:{'driver':'qcow2','file':{'driver':'file'}}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'}"},
		{"json:[1]"},
		{"json:{\"driver\": \"qcow2\", \"file\": {\"filename\": \"img\"}, \"force-share\": true}"},
		{"-r", "json:{'driver':'qcow2','file':{'filename':'img'},'force-share':true}"},
		{"-f", "qcow2", "json:{'file':{'filename':'img'}}"},
		{"-f", "raw", "img"},
		{"-f", "qcow2", "file:img"},
		{"nosuchproto:img"},
		{"file:img"},
		{"--image-opts", "driver=qcow2,file.filename=img"},
		{"--image-opts", "driver=qcow2,file.driver=file,file.filename=img,backing.driver=qcow2,backing.file.filename=base.img"},
		{"--image-opts", "driver=qcow2,file.filename=img,backing=null"},
		{"--image-opts", "driver=qcow2,file.filename=img,bogus=1"},
		{"--image-opts", "driver=raw,file.filename=img,offset=65536"},
		{"--image-opts", "file.filename=img"},
		{"--image-opts", "img"},
		{"-U", "--image-opts", "driver=qcow2,file.filename=img,force-share=off"},
		// read-only nodes under a writable image: "Block node is read-only"
		// where the write permission goes (file, filters), not backing files
		{"json:{'driver':'qcow2','read-only':true,'file':{'filename':'img'}}"},
		{"json:{'driver':'qcow2','file':{'filename':'img','read-only':true}}"},
		{"json:{'driver':'qcow2','file':{'filename':'img','read-only':true,'auto-read-only':true}}"},
		{"json:{'driver':'qcow2','file':{'driver':'blkdebug','image':{'driver':'file','filename':'img','read-only':true}}}"},
		{"json:{'driver':'qcow2','file':{'filename':'img'},'backing':{'driver':'qcow2','read-only':true,'file':{'filename':'base.img','read-only':true}}}"},
		{"-r", "json:{'driver':'qcow2','file':{'filename':'img','read-only':true}}"},
		{"--image-opts", "driver=qcow2,file.filename=img,file.read-only=on"},
	} {
		args := append(cmds(nil, rw...), opener...)
		cases = append(cases, q(args...))
	}
	for _, o := range []string{
		"driver=raw,aa=1,bb=2,cc=3", "driver=raw,offset=4096", "driver=raw,offset=4096,size=8192",
		"driver=raw,offset=4096,size=8000", "driver=raw,offset=2M", "driver=raw,size=2M",
		"driver=raw,offset=1k,size=4k", "driver=raw,offset=x", "driver=file", "driver=file,locking=off",
		"file.locking=off", "driver=raw,file.driver=file", "driver=qcow2", "node-name=n1",
		"driver=raw,size=1M",
	} {
		for _, c := range [][]string{rw, {"write -P 0x44 0 4k", "read -P 0x44 0 4k", "map", "length", "write -z 8k 8k", "discard 16k 8k", "truncate 512k", "length"}} {
			cases = append(cases, r(cmds(nil, append([]string{"open -o " + o + " img"}, c...)...)...))
		}
	}
	for _, n := range []string{
		"null-co://", "null-aio://", "null-co://x", "json:{'driver':'null-co','size':65536}",
		"json:{'driver':'null-co','size':'64k','read-zeroes':true}",
		"json:{'driver':'raw','file':{'driver':'null-co','size':'1M'}}",
		"json:{'driver':'raw','offset':4096,'size':8192,'file':{'driver':'null-co','size':'1M'}}",
		"json:{'driver':'null-co','latency-ns':1000}",
		"json:{'file':{'driver':'null-co','size':'1M'}}", "json:{'file':{'driver':'null-co','read-zeroes':true,'size':1048576}}",
		"json:{'file':{'driver':'null-co','latency-ns':5}}", "json:{'file':{'driver':'raw','offset':512,'file':{'driver':'null-co'}}}",
		"json:{'file':{'driver':'file','filename':'img','locking':'off'}}", "json:{'file':{'filename':'img','x':'\\u00e9\\n'}}",
	} {
		cases = append(cases, r(append(cmds(nil, "read 0 4k", "write 0 4k", "map", "info", "length", "write -z 0 4k", "truncate 1G", "length"), n)...),
			r(append(cmds(nil, "read -v 0 16", "alloc 0 64k", "discard 0 64k", "flush"), n)...))
	}
	runCases(t, tl, cases)
}

// TestReopenOptions: qemu-io's reopen through the graph: options that may
// and may not change, their errors, read-only transitions, cache modes,
// qcow2's runtime options, node-names of children, after writes too.
func TestReopenOptions(t *testing.T) {
	tl := setup(t)
	q := func(cs ...string) Case {
		return Case{Fmt: "qcow2", Size: "1M", Setup: []string{"write -P 0x11 0 64k"},
			Backing: []string{"qcow2", "1M"}, BackingCmds: []string{"write -P 0x33 64k 64k"},
			Args: append(cmds(nil, cs...), "img")}
	}
	var cases []Case
	for _, ro := range []string{
		"reopen -o node-name=foo", "reopen -o file.node-name=foo", "reopen -o backing.node-name=foo",
		"reopen -o driver=raw", "reopen -o file.driver=qcow2", "reopen -o backing.driver=file",
		"reopen -o driver=qcow2", "reopen -o file.driver=file", "reopen -o backing.driver=qcow2",
		"reopen -r -o read-only=on", "reopen -w -o read-only=on", "reopen -c none -o cache.direct=on",
		"reopen -o read-only=foo", "reopen -o cache.no-flush=bar", "reopen -o cache.direct=baz",
		"reopen -o auto-read-only=qux", "reopen -o read-only=on", "reopen -o file.locking=off",
		"reopen -o file.filename=other", "reopen -o l2-cache-size=1M,cache-size=512k",
		"reopen -o overlap-check=foo", "reopen -o lazy-refcounts=on", "reopen -o lazy-refcounts=maybe",
		"reopen -o backing=null", "reopen -o aa=1,bb=2,cc=3", "reopen -o discard=sometimes",
		"reopen -o detect-zeroes=unmap", "reopen -o detect-zeroes=always", "reopen -o backing.file.aio=native",
		"reopen -c writeback", "reopen -c bogus", "reopen -r -w", "reopen -x", "reopen extra",
		"reopen -o l2-cache-entry-size=1000", "reopen -o pass-discard-request=off",
	} {
		cases = append(cases, q(ro, "write -P 0x22 4k 4k", "read -P 0x22 4k 4k", "read -P 0x33 64k 4k", "map"))
	}
	cases = append(cases,
		q("reopen -r", "write 0 4k", "reopen -w", "write -P 0x55 0 4k", "read -P 0x55 0 4k", "map"),
		q("write -P 0x66 8k 4k", "reopen -r", "read -P 0x66 8k 4k", "reopen", "write 0 4k"),
		q("reopen -o detect-zeroes=on", "write -P 0 0 64k", "map"),
		q("reopen -c none", "write -P 0x77 0 4k", "reopen -c unsafe", "read -P 0x77 0 4k"),
		Case{Fmt: "qcow2", Size: "1M", Args: cmds(nil, "open -o node-name=foo img", "reopen -o node-name=foo", "reopen -o node-name=bar")},
		Case{Fmt: "qcow2", Size: "1M", Args: cmds(nil, "open -o file.node-name=foo img", "reopen -o file.node-name=foo", "reopen")},
		Case{Fmt: "qcow2", Size: "1M", Args: append(cmds(nil, "reopen -o read-only=on", "info"), "img")},
		Case{Fmt: "qcow2", Size: "1M", Args: append(cmds(nil, "reopen -o read-only=on", "info"), "-r", "img")},
		Case{Fmt: "qcow2", Size: "1M", Args: cmds(nil, "open -o backing=null img", "reopen", "map")},
		Case{Size: "1M", Args: cmds(nil, "open -o driver=raw,offset=4096 img", "reopen -o offset=8192", "write -P 1 0 4k", "reopen -o size=4k", "length")},
		Case{Size: "1M", Args: []string{"-f", "null-co", "-c", "reopen", "-c", "info", "json:{'driver': 'null-co', 'size': 65536}"}},
	)
	runCases(t, tl, cases)
}

// TestObjectsAndTrace: --object definitions (their errors, help texts,
// secrets from data and files) and -T with an event that does not exist,
// compared with the real qemu-io.
func TestObjectsAndTrace(t *testing.T) {
	tl := setup(t)
	var cases []Case
	for _, o := range []string{
		"help", "secret", "secret,id=s0", "secret,id=s0,data=x,format=base64", "secret,id=s0,data=x,format=hex",
		"secret,id=s0,file=nonexist", "secret,id=s0,data=x,file=img", "secret,id=s0,file=img", "secret,id=s0,data=x,iv=abc",
		"secret,id=s0,data=x,keyid=k", "secret,id=s0,data=x,bogus=1", "secret,id=0bad,data=x",
		"throttle-group,id=t0,x-iops-total=abc", "throttle-group,id=t0,x-iops-total=100", "throttle-group",
		"secret,help", "throttle-group,help", "qom-type=secret,id=s1,data=y", "id=s1", "main-loop,id=m", "bogus",
		"tls-creds-x509,id=t",
	} {
		cases = append(cases, Case{Size: "1M", Args: []string{"--object", o, "-c", "length", "img"}})
	}
	cases = append(cases,
		Case{Size: "1M", Args: []string{"--object", "secret,id=a,data=x", "--object", "secret,id=a,data=y", "-c", "length", "img"}},
		Case{Size: "1M", Args: []string{"--object", "secret,id=a,data=x", "--object", "secret,id=b,data=y,keyid=a", "-c", "length", "img"}},
		Case{Size: "1M", Args: []string{"-T", "bogus", "-c", "length", "img"}},
		Case{Size: "1M", Args: []string{"-T", "enable=nothing_here", "-c", "length", "img"}},
		Case{Size: "1M", Args: []string{"-T", "-nothing", "-c", "length", "img"}},
	)
	runCases(t, tl, cases)
}
