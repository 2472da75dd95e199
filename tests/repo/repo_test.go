// Package repo checks the repository itself.
package repo

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestNoCompiledBinaries: no tracked file is a compiled program or test
// binary (go test -c leaves NAME.test behind; .gitignore has *.test), and
// no qcow2 image is tracked outside a testdata directory.
func TestNoCompiledBinaries(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Skip("not a git checkout:", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if strings.HasSuffix(name, ".test") {
			t.Errorf("%s: a test binary is tracked", name)
			continue
		}
		f, err := os.Open(filepath.Join(root, name))
		if err != nil {
			continue // deleted in the work tree
		}
		head := make([]byte, 4)
		n, _ := f.Read(head)
		f.Close()
		if bytes.Equal(head[:n], []byte("\x7fELF")) {
			t.Errorf("%s: a compiled binary is tracked", name)
		}
		// A qcow2 image belongs in a testdata directory, where a test
		// names it; one elsewhere is a scratch image left behind.
		if bytes.Equal(head[:n], []byte("QFI\xfb")) && !strings.Contains("/"+name, "/testdata/") {
			t.Errorf("%s: a qcow2 image is tracked outside testdata", name)
		}
	}
}
