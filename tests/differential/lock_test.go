package differential

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLocking: a qemu-io and a goqio process on the same image exclude each
// other both ways, with QEMU's messages, and share where QEMU shares.
func TestLocking(t *testing.T) {
	tl := setup(t)
	dir := t.TempDir()
	for _, f := range [][]string{{"qcow2", "L.qcow2"}, {"raw", "L.raw"}} {
		if _, e, rc := sh(t, dir, "", tl.qemuImg, "create", "-q", "-f", f[0], f[1], "1M"); rc != 0 {
			t.Fatal(e)
		}
	}
	progs := map[string]string{"qemu-io": tl.qemuIO, "goqio": tl.goqio}
	type key struct{ first, second, img string }
	results := map[string]map[key]string{}
	for _, a := range []string{"qemu-io", "goqio"} {
		for _, b := range []string{"qemu-io", "goqio"} {
			pair := a + "/" + b
			results[pair] = map[key]string{}
			for _, first := range []string{"", "-r", "-U -r"} {
				for _, img := range []string{"L.qcow2", "-f raw L.raw"} {
					holder := exec.Command(progs[a], append(strings.Fields(first), append([]string{"-c", "sleep 2000"}, strings.Fields(img)...)...)...)
					holder.Dir = dir
					if err := holder.Start(); err != nil {
						t.Fatal(err)
					}
					time.Sleep(300 * time.Millisecond)
					for _, second := range []string{"", "-r", "-U -r"} {
						args := append(strings.Fields(second), append([]string{"-c", "length"}, strings.Fields(img)...)...)
						o, e, rc := sh(t, dir, "", progs[b], args...)
						e = strings.ReplaceAll(e, filepath.Base(progs[b])+":", "PROG:")
						results[pair][key{first, second, img}] = fmt.Sprintf("%s%s[%d]", o, e, rc)
					}
					holder.Process.Kill()
					holder.Wait()
				}
			}
		}
	}
	want := results["qemu-io/qemu-io"]
	if !strings.Contains(want[key{"", "", "L.qcow2"}], `Failed to get "write" lock`) {
		t.Fatalf("qemu-io itself did not lock: %q", want[key{"", "", "L.qcow2"}])
	}
	for pair, got := range results {
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s first %q second %q on %s: got %q, qemu-io/qemu-io gives %q", pair, k.first, k.second, k.img, got[k], w)
			}
		}
	}
}
