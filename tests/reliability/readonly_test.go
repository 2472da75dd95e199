package reliability

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/goqio/goqio/internal/testbin"
)

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestReadOnlyLeavesImageUntouched: read-only verbs, and any verb under -r,
// leave the image file byte-identical, including images with the dirty bit
// or unknown autoclear bits (which a read-write open would change).
func TestReadOnlyLeavesImageUntouched(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	bin := testbin.Goqio(t)
	dir := t.TempDir()
	mk := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		if out, err := exec.Command(qemuImg, append([]string{"create", "-q"}, append(args, p, "4M")...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		return p
	}
	base := mk("base.qcow2", "-f", "qcow2")
	exec.Command(bin, "-c", "write -P 3 0 1M", base).Run()
	images := map[string][]string{
		mk("t.qcow2", "-f", "qcow2", "-b", base, "-F", "qcow2"): {"-f", "qcow2"},
		mk("t.raw", "-f", "raw"):                                {"-f", "raw"},
		mk("v2.qcow2", "-f", "qcow2", "-o", "compat=0.10"):      {"-f", "qcow2"},
	}
	dirty := mk("dirty.qcow2", "-f", "qcow2")
	patch(t, dirty, 79, 1) // incompatible feature: dirty bit
	images[dirty] = []string{"-f", "qcow2"}
	autoclear := mk("autoclear.qcow2", "-f", "qcow2")
	patch(t, autoclear, 94, 1) // an unknown autoclear bit
	images[autoclear] = []string{"-f", "qcow2"}
	readVerbs := []string{"read -v 0 64", "readv 0 512 512", "map", "alloc 0 4M", "info", "length", "aio_read 0 4k", "aio_flush", "read -b 0 512", "flush", "map --output=json", "sleep 1"}
	for img, fmtArgs := range images {
		before := sum(t, img)
		// read-only verbs on a read-only open
		args := append([]string{}, fmtArgs...)
		args = append(args, "-r")
		for _, v := range readVerbs {
			args = append(args, "-c", v)
		}
		exec.Command(bin, append(args, "-c", "write 0 1", "-c", "discard 0 64k", "-c", "truncate 1M", img)...).Run()
		if sum(t, img) != before {
			t.Errorf("%s changed under -r", filepath.Base(img))
		}
		// read-only verbs on a read-write open of a clean image change nothing either
		if img != dirty && img != autoclear {
			args = append([]string{}, fmtArgs...)
			for _, v := range readVerbs {
				args = append(args, "-c", v)
			}
			out, _ := exec.Command(bin, append(args, img)...).CombinedOutput()
			if sum(t, img) != before {
				t.Errorf("%s changed by read-only verbs:\n%s", filepath.Base(img), out)
			}
		}
		// -s (snapshot) writes go elsewhere
		out, _ := exec.Command(bin, append(append([]string{}, fmtArgs...), "-s", "-c", "write -P 9 0 1M", "-c", "discard 0 4M", img)...).CombinedOutput()
		if sum(t, img) != before {
			t.Errorf("%s changed under -s:\n%s", filepath.Base(img), out)
		}
	}
}

func patch(t *testing.T, path string, off int64, b byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{b}, off); err != nil {
		t.Fatal(err)
	}
}
