package formats_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/image/raw"
)

// fuzzDir holds the images the fuzzed options may name (relative names
// only: inputs with a '/' are skipped, so nothing outside it is touched).
func fuzzDir(f *testing.F) string {
	dir := f.TempDir()
	if err := qcow2.Create(filepath.Join(dir, "img"), qcow2.CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
		f.Fatal(err)
	}
	if err := qcow2.Create(filepath.Join(dir, "top"), qcow2.CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16,
		BackingFile: "img", BackingFmt: "qcow2"}); err != nil {
		f.Fatal(err)
	}
	if err := raw.Create(filepath.Join(dir, "raw"), 1<<20, 0); err != nil {
		f.Fatal(err)
	}
	return dir
}

// FuzzOptions: any json: filename or --image-opts string is parsed and
// opened (and the graph reopened with a second string) without a panic, a
// hang or a leaked node: errors are QEMU's messages.
func FuzzOptions(f *testing.F) {
	dir := fuzzDir(f)
	for _, s := range []string{
		`json:{"driver":"qcow2","file":{"driver":"file","filename":"img"}}`,
		`json:{'driver':'qcow2','file':{'filename':'top'},'backing':null}`,
		`json:{'driver':'qcow2','file':{'filename':'top'},'backing':{'driver':'raw','file':{'filename':'raw'}}}`,
		`json:{'driver':'raw','offset':4096,'size':8192,'file':{'driver':'null-co','size':'1M'}}`,
		`json:{'driver':'qcow2','file':{'filename':'img'},'node-name':'a','file.node-name':'a'}`,
		`json:{'driver':'qcow2','file':'nosuch'}`,
		`json:{'driver':'qcow2','file':{'filename':'img'},'l2-cache-size':'1M','cache-size':'512k'}`,
		`json:{"a":[1,{"b":[]}],"c":{}}`,
		`driver=qcow2,file.filename=img,overlap-check=none,lazy-refcounts=on`,
		`driver=raw,file.driver=null-co,file.size=1M,detect-zeroes=unmap`,
		`file.filename=top,backing.file.filename=raw,backing.driver=raw`,
		`null-co://`, `json:{`, `json:[`, `json:{'x':'\u0000'}`,
	} {
		f.Add(s, "cache.direct=off")
	}
	f.Fuzz(func(t *testing.T, spec, reopen string) {
		if strings.Contains(spec, "/") || strings.Contains(reopen, "/") || len(spec) > 4096 {
			t.Skip()
		}
		cwd, _ := os.Getwd()
		if err := os.Chdir(dir); err != nil {
			t.Fatal(err)
		}
		defer os.Chdir(cwd)
		done := make(chan struct{})
		go func() {
			defer close(done)
			g := formats.NewGraph(formats.Env{})
			o := formats.Options{ReadOnly: true, Graph: g}
			name := spec
			if !strings.HasPrefix(spec, "json:") && strings.Contains(spec, "=") {
				d := qdict.New()
				for _, kv := range strings.Split(spec, ",") {
					k, v, _ := strings.Cut(kv, "=")
					d.Put(k, v)
				}
				d.Put("read-only", "on")
				o.Dict, name = d, ""
			}
			n, err := formats.OpenNode(name, o)
			if err != nil {
				if err.Error() == "" {
					t.Errorf("empty error message for %q", spec)
				}
				return
			}
			ro := qdict.New()
			for _, kv := range strings.Split(reopen, ",") {
				if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
					ro.Put(k, v)
				}
			}
			ro.Put("read-only", true)
			g.ReopenOptions(n, ro)
			buf := make([]byte, 512)
			if n.Disk.Size() >= 512 {
				n.Disk.ReadAt(buf, 0)
			}
			n.Close()
			if g.Lookup("a") != nil {
				t.Errorf("node left in the graph after close")
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("open of %q did not finish in 10 s", spec)
		}
	})
}
