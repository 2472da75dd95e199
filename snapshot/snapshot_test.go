package snapshot

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// TestSizeMatchesQemuImg: Size prints sizes as qemu-img info prints the
// virtual size (both are QEMU's size_to_str).
func TestSizeMatchesQemuImg(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	re := regexp.MustCompile(`virtual size: (.*) \(`)
	for _, n := range []uint64{0, 512, 1024, 1536, 999424, 1023488, 1048064, 1048576, 10 << 20, 1000 << 20, 1023 << 20, 1 << 30, 3 << 40, 7<<40 + 1<<30} {
		p := filepath.Join(dir, "x.raw")
		if out, err := exec.Command(qemuImg, "create", "-q", "-f", "raw", p, strconv.FormatUint(n, 10)).CombinedOutput(); err != nil {
			t.Fatalf("%s", out)
		}
		out, _ := exec.Command(qemuImg, "info", "-f", "raw", p).Output()
		m := re.FindSubmatch(out)
		if m == nil {
			t.Fatalf("no virtual size in %s", out)
		}
		if got := Size(n); got != string(m[1]) {
			t.Errorf("Size(%d) = %q, qemu-img says %q", n, got, m[1])
		}
	}
}
