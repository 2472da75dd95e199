package differential

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestCreateBacking: goqio create handles a backing file as qemu-img
// create does — it opens it (with the format -F names) before creating
// anything, so that a missing backing file or one of another format fails
// with qemu-img's messages and exit code and leaves no file (nor touches
// an existing one); -u records the backing file without opening it, and
// the size must then be given. Output, exit code, the files left and the
// bytes of the new image must be qemu-img's.
func TestCreateBacking(t *testing.T) {
	tl := setup(t)
	cases := [][]string{
		{"-f", "qcow2", "-b", "missing.qcow2", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "missing.qcow2", "-F", "qcow2", "new.qcow2"},
		{"-f", "qcow2", "-b", "missing.qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-q", "-b", "missing.qcow2", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "missing.qcow2", "-F", "qcow2", "exist.qcow2", "1M"},
		{"-f", "qcow2", "-b", "sub/missing.qcow2", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "base.raw", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "base.raw", "-F", "qcow2", "new.qcow2"},
		{"-f", "qcow2", "-b", "base.qcow2", "-F", "raw", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "new.qcow2"},
		{"-f", "qcow2", "-b", "base.raw", "-F", "raw", "new.qcow2"},
		{"-f", "qcow2", "-b", "odd.raw", "-F", "raw", "new.qcow2"},
		{"-f", "qcow2", "-b", "base.qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "base.raw", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "broken.qcow2", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "base.qcow2", "-F", "bogus", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "d/new.qcow2"},
		{"-f", "qcow2", "-b", "../base.qcow2", "-F", "qcow2", "d/new.qcow2"},
		{"-f", "qcow2", "-b", "new.qcow2", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "-o", "backing_file=other.qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-o", "backing_file=missing.qcow2,backing_fmt=qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "-o", "size=1M", "new.qcow2"},
		{"-f", "qcow2", "-b", "missing.qcow2", "-F", "qcow2", "-o", "size=1M", "new.qcow2", "2M"},
		{"-f", "qcow2", "-b", "missing.qcow2", "-F", "qcow2", "-o", "cluster_size=3", "new.qcow2", "1M"},
		{"-f", "qcow2", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "-o", "preallocation=metadata", "new.qcow2", "1M"},
		{"-f", "qcow2", "-u", "-b", "missing.qcow2", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-u", "-q", "-b", "missing.qcow2", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-u", "-b", "missing.qcow2", "-F", "qcow2", "new.qcow2"},
		{"-f", "qcow2", "-u", "-b", "missing.qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-u", "-b", "base.qcow2", "-F", "qcow2", "new.qcow2"},
		{"-f", "qcow2", "-u", "-b", "base.raw", "-F", "qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-u", "-o", "backing_file=missing.qcow2,backing_fmt=qcow2", "new.qcow2", "1M"},
		{"-f", "qcow2", "-u", "new.qcow2", "1M"},
		{"-f", "raw", "-u", "new.raw", "1M"},
		{"-f", "raw", "-b", "base.raw", "-F", "raw", "new.raw", "1M"},
		{"-f", "raw", "-F", "raw", "new.raw", "1M"},
		{"-f", "raw", "-o", "size=1M", "new.raw", "1M"},
		// qcow2_co_create's checks, in its order
		{"-f", "qcow2", "-o", "compat=0.10,extended_l2=on,cluster_size=3", "new.qcow2", "1M"},
		{"-f", "qcow2", "-o", "compat=0.10,lazy_refcounts=on,refcount_bits=3", "new.qcow2", "1M"},
		{"-f", "qcow2", "-o", "compat=0.10,backing_fmt=qcow2,lazy_refcounts=on", "new.qcow2", "1M"},
		{"-f", "qcow2", "-o", "compat=0.10,compression_type=zstd,refcount_bits=8", "new.qcow2", "1M"},
		{"-f", "qcow2", "-o", "extended_l2=on,preallocation=metadata", "-b", "base.qcow2", "-F", "qcow2", "new.qcow2", "1M"},
	}
	fixtures := func(dir string) {
		t.Helper()
		os.Mkdir(filepath.Join(dir, "d"), 0o755)
		for _, a := range [][]string{
			{"create", "-q", "-f", "qcow2", "base.qcow2", "2M"},
			{"create", "-q", "-f", "raw", "base.raw", "3M"},
			{"create", "-q", "-f", "qcow2", "exist.qcow2", "5M"},
			{"create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", "broken.qcow2", "1M"},
		} {
			if _, e, rc := sh(t, dir, "", tl.qemuImg, a...); rc != 0 {
				t.Fatal(e)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "odd.raw"), make([]byte, 1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range cases {
		var outs [2]string
		var trees [2]map[string][]byte
		for i, prog := range []string{tl.qemuImg, tl.goqio} {
			dir := t.TempDir()
			fixtures(dir)
			o, e, rc := sh(t, dir, "", prog, append([]string{"create"}, args...)...)
			outs[i] = strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", o, e, rc), filepath.Base(prog)+":", "PROG:")
			trees[i] = files(t, dir)
		}
		if outs[0] != outs[1] {
			t.Errorf("create %q:\nqemu-img:\n%s\ngoqio:\n%s", args, outs[0], outs[1])
		}
		if a, b := names(trees[0]), names(trees[1]); a != b {
			t.Errorf("create %q: files left:\nqemu-img: %s\ngoqio:    %s", args, a, b)
			continue
		}
		for name, q := range trees[0] {
			if !bytes.Equal(q, trees[1][name]) {
				t.Errorf("create %q: %s differs", args, name)
			}
		}
	}
}

// files reads every regular file under dir.
func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			m[rel] = b
		}
		return nil
	})
	return m
}

func names(m map[string][]byte) string {
	var n []string
	for k := range m {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, " ")
}
