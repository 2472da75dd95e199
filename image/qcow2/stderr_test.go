package qcow2

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// openCorpus opens a copy of the crafted image name read-write with opts.
func openCorpus(t *testing.T, name string, opts Options) (*Driver, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "t.qcow2")
	if err := os.WriteFile(p, corpusImage(t, name), 0o644); err != nil {
		t.Fatal(err)
	}
	return Open(p, opts)
}

// The driver prints what QEMU's qcow2 driver prints on stderr through
// Options.Stderr, byte for byte, with the program name from Options.Prog.
func TestStderrOption(t *testing.T) {
	var buf bytes.Buffer
	d, err := openCorpus(t, "bitmap_autoclear_cleared", Options{Stderr: &buf, Prog: "qemu-io"})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	want := "qemu-io: warning: a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent\n" +
		"Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix."
	if buf.String() != want {
		t.Errorf("bitmap warning:\n got %q\nwant %q", buf.String(), want)
	}

	buf.Reset()
	d, err = openCorpus(t, "l1_entry_unaligned", Options{Stderr: &buf, Prog: "qemu-io"})
	if err != nil {
		t.Fatal(err)
	}
	d.ReadAt(make([]byte, 512), 0)
	d.Close()
	want = "qcow2: Marking image as corrupt: L2 table offset 0x40200 unaligned (L1 index: 0); further corruption events will be suppressed\n"
	if buf.String() != want {
		t.Errorf("corruption:\n got %q\nwant %q", buf.String(), want)
	}
}

// Without Options.Stderr the messages are dropped: the driver never writes
// to the process's stderr.
func TestNoProcessStderr(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = f
	func() {
		defer func() { os.Stderr = saved }()
		for _, name := range []string{"bitmap_autoclear_cleared", "l1_entry_unaligned"} {
			d, err := openCorpus(t, name, Options{})
			if err != nil {
				t.Error(err)
				continue
			}
			d.ReadAt(make([]byte, 512), 0)
			d.Close()
		}
	}()
	f.Close()
	if b, _ := os.ReadFile(f.Name()); len(b) != 0 {
		t.Errorf("the driver wrote to os.Stderr: %q", b)
	}
}
