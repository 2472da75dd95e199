package differential

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBitmaps: on images with persistent dirty bitmaps (made by qemu-img
// bitmap), a goqio session leaves the file byte for byte as a qemu-io
// session does: bitmaps marked in use while open, the granules every write,
// zero write and discard touches set in the enabled bitmaps, new bitmap
// tables and directory stored at close. Also: read-only opens, a bitmap
// left in use by a killed process, the bitmaps extension of an image whose
// autoclear bit a program without bitmap support cleared, check and
// check -r all, and info.
func TestBitmaps(t *testing.T) {
	tl := setup(t)
	dir := t.TempDir()
	// goqio runs as qemu-io (a link), so its messages carry that name
	link := filepath.Join(dir, "bin", "qemu-io")
	os.Mkdir(filepath.Dir(link), 0o755)
	if err := os.Symlink(tl.goqio, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		create  string // qemu-img create -o
		bitmaps [][]string
		prep    func(p string)
		steps   [][]string // qemu-io argument lists, run in turn
	}{
		{name: "open-close", create: "cluster_size=65536", bitmaps: [][]string{{"b0"}, {"-g", "512k", "b1"}, {"--disable", "b2"}},
			steps: [][]string{{"-c", "read 0 512", "-c", "info"}}},
		{name: "writes", create: "cluster_size=65536", bitmaps: [][]string{{"b0"}, {"-g", "512k", "b1"}, {"--disable", "b2"}},
			steps: [][]string{{"-c", "write -P 1 100k 1", "-c", "write -z 1M 3M", "-c", "discard 5M 2M", "-c", "write -c -P 3 12M 64k", "-c", "info"},
				{"-c", "write -zu 0 16M", "-c", "write 8M 1"}}},
		{name: "small-clusters", create: "cluster_size=512", bitmaps: [][]string{{"-g", "512", "small"}, {"big"}},
			steps: [][]string{{"-c", "write -P 1 1000 100000", "-c", "write -z 10M 2M", "-c", "discard 12M 1M", "-c", "write -P 2 15M 1M", "-c", "truncate 8M", "-c", "write -P 3 0 1"}}},
		{name: "read-only", create: "cluster_size=4096", bitmaps: [][]string{{"b"}},
			steps: [][]string{{"-r", "-c", "read 0 4k", "-c", "info"}}},
		{name: "killed", create: "cluster_size=65536", bitmaps: [][]string{{"b0"}, {"--disable", "b1"}},
			steps: [][]string{{"-c", "write -P 1 0 1M", "-c", "sigraise 9"}, {"-c", "write -P 2 2M 1M", "-c", "info"}}},
		{name: "reopen", create: "cluster_size=65536", bitmaps: [][]string{{"b0"}},
			steps: [][]string{{"-c", "write -P 1 0 64k", "-c", "reopen -r", "-c", "info"}, {"-r", "-c", "reopen -w", "-c", "write -P 1 1M 64k"}}},
		{name: "autoclear-cleared", create: "cluster_size=65536", bitmaps: [][]string{{"b0"}},
			prep:  func(p string) { patch(t, p, 95, 0) },
			steps: [][]string{{"-r", "-c", "read 0 1"}, {"-c", "write -P 1 0 64k", "-c", "info"}}},
	}
	for _, c := range cases {
		c := c
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			base := filepath.Join(dir, c.name+".qcow2")
			if _, e, rc := sh(t, dir, "", tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", c.create, base, "16M"); rc != 0 {
				t.Fatal(e)
			}
			for _, b := range c.bitmaps {
				if _, e, rc := sh(t, dir, "", tl.qemuImg, append(append([]string{"bitmap", "--add"}, b[:len(b)-1]...), base, b[len(b)-1])...); rc != 0 {
					t.Fatal(e)
				}
			}
			if c.prep != nil {
				c.prep(base)
			}
			orig, _ := os.ReadFile(base)
			var outs [2]string
			var files [2][]byte
			for i, prog := range []string{tl.qemuIO, link} {
				d := filepath.Join(dir, fmt.Sprintf("%s-%d", c.name, i))
				os.Mkdir(d, 0o755)
				p := filepath.Join(d, "t.qcow2")
				os.WriteFile(p, orig, 0o644)
				var b strings.Builder
				for _, args := range c.steps {
					o, e, rc := sh(t, d, "", prog, append(args, "t.qcow2")...)
					fmt.Fprintf(&b, "%s%s[%d]\n", o, e, rc)
				}
				for _, args := range [][]string{{"check", "t.qcow2"}, {"info", "t.qcow2"}} {
					o, e, rc := sh(t, d, "", tl.qemuImg, args...)
					fmt.Fprintf(&b, "%s%s[%d]\n", o, e, rc)
				}
				// (the disk size of a file varies from run to run, qemu-io's too)
				outs[i] = diskSize.ReplaceAllString(timing.ReplaceAllString(b.String(), "OPS"), "disk size: N")
				files[i], _ = os.ReadFile(p)
			}
			if outs[0] != outs[1] {
				t.Errorf("qemu-io:\n%s\ngoqio:\n%s", outs[0], outs[1])
			}
			if !bytes.Equal(files[0], files[1]) {
				t.Errorf("the image files differ after the sessions")
			}
			// goqio check, and check -r all, agree with qemu-img's
			for _, args := range [][]string{{"check"}, {"check", "-r", "all"}} {
				var res [2]string
				var after [2][]byte
				for i, prog := range []string{tl.qemuImg, tl.goqio} {
					p := filepath.Join(dir, fmt.Sprintf("%s-check-%d.qcow2", c.name, i))
					os.WriteFile(p, files[0], 0o644)
					o, e, rc := sh(t, dir, "", prog, append(args, p)...)
					res[i] = strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", o, e, rc), filepath.Base(prog)+":", "PROG:")
					after[i], _ = os.ReadFile(p)
				}
				if res[0] != res[1] || !bytes.Equal(after[0], after[1]) {
					t.Errorf("%v: qemu-img:\n%s\ngoqio:\n%s\n(files equal: %v)", args, res[0], res[1], bytes.Equal(after[0], after[1]))
				}
			}
		})
	}
}

// patch sets one byte of a file.
func patch(t *testing.T, p string, off int64, v byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{v}, off); err != nil {
		t.Fatal(err)
	}
}

var diskSize = regexp.MustCompile(`disk size: .*`)
