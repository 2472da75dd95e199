package differential

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSnapshots: on images with internal snapshots made by qemu-img,
// goqio's writes keep every snapshot intact (applying it with qemu-img
// afterwards gives the snapshot's data back), goqio snapshot -l lists what
// qemu-img snapshot -l lists, and goqio check agrees with qemu-img check.
func TestSnapshots(t *testing.T) {
	tl := setup(t)
	dir := t.TempDir()
	var imgs [2]string
	for i, prog := range []string{tl.qemuIO, tl.goqio} {
		p := filepath.Join(dir, fmt.Sprintf("s%d.qcow2", i))
		imgs[i] = p
		run := func(name string, args ...string) string {
			o, e, rc := sh(t, dir, "", name, args...)
			if rc != 0 {
				t.Fatalf("%s %v: %s%s", name, args, o, e)
			}
			return o
		}
		run(tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", p, "4M")
		run(prog, "-c", "write -P 1 0 64k", "-c", "write -P 2 1M 16k", p)
		run(tl.qemuImg, "snapshot", "-c", "first", p)
		run(prog, "-c", "write -P 3 0 8k", "-c", "write -z 1M 4k", "-c", "discard 1028k 4k", "-c", "write -P 4 2M 4k", p)
		run(tl.qemuImg, "snapshot", "-c", "a rather long snapshot name", p)
		run(prog, "-c", "write -P 5 60k 8k", "-c", "write -zu 0 4k", p)
	}
	for _, args := range [][]string{{"snapshot", "-l"}, {"check"}} {
		var outs [2]string
		for i, prog := range []string{tl.qemuImg, tl.goqio} {
			o, e, rc := sh(t, dir, "", prog, append(args, imgs[1])...)
			outs[i] = strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", o, e, rc), filepath.Base(prog)+":", "PROG:")
		}
		if outs[0] != outs[1] {
			t.Errorf("%v:\nqemu-img:\n%s\ngoqio:\n%s", args, outs[0], outs[1])
		}
	}
	// the dates differ, everything else must not
	l0, _, _ := sh(t, dir, "", tl.qemuImg, "snapshot", "-l", imgs[0])
	l1, _, _ := sh(t, dir, "", tl.qemuImg, "snapshot", "-l", imgs[1])
	if len(strings.Split(l0, "\n")) != len(strings.Split(l1, "\n")) {
		t.Errorf("snapshot lists differ:\n%s\n%s", l0, l1)
	}
	// every snapshot's content, and the current one, equal to QEMU's
	for _, snap := range []string{"", "a rather long snapshot name", "first"} {
		var data [2][]byte
		for i, p := range imgs {
			q := filepath.Join(dir, fmt.Sprintf("apply%d.qcow2", i))
			b, _ := os.ReadFile(p)
			os.WriteFile(q, b, 0o644)
			if snap != "" {
				if o, e, rc := sh(t, dir, "", tl.qemuImg, "snapshot", "-a", snap, q); rc != 0 {
					t.Fatalf("apply %q: %s%s", snap, o, e)
				}
			}
			r := filepath.Join(dir, fmt.Sprintf("apply%d.raw", i))
			if o, e, rc := sh(t, dir, "", tl.qemuImg, "convert", "-O", "raw", q, r); rc != 0 {
				t.Fatalf("convert: %s%s", o, e)
			}
			data[i], _ = os.ReadFile(r)
		}
		if !bytes.Equal(data[0], data[1]) {
			t.Errorf("snapshot %q: content differs between the image qemu-io wrote and the one goqio wrote", snap)
		}
	}
}
