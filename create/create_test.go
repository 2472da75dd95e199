package create

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func parseSize(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

// A qcow2 image with a backing file that cannot be opened is not created
// (qemu-img opens the backing file first); with -u it is, without opening
// the backing file, and then the size must be given.
func TestCreateBackingOpened(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "new.qcow2")
	r := Request{Format: "qcow2", File: file, Size: 1 << 20, Backing: "missing.qcow2", BackingFmt: "qcow2"}
	err := Create(r, io.Discard, parseSize)
	want := file + ": Could not open '" + dir + "/missing.qcow2': No such file or directory\nCould not open backing image."
	if err == nil || err.Error() != want {
		t.Errorf("missing backing file:\n got %v\nwant %s", err, want)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the image was created: %v", err)
	}

	r.NoBackingOpen = true
	r.Size = -1
	if err := Create(r, io.Discard, parseSize); err == nil || err.Error() != file+": Image creation needs a size parameter" {
		t.Errorf("-u without a size: %v", err)
	}
	r.Size = 1 << 20
	if err := Create(r, io.Discard, parseSize); err != nil {
		t.Fatalf("-u: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("-u: %v", err)
	}

	// a raw file is not a qcow2 backing file
	base := filepath.Join(dir, "base.raw")
	if err := Create(Request{Format: "raw", File: base, Size: 1 << 20}, io.Discard, parseSize); err != nil {
		t.Fatal(err)
	}
	r = Request{Format: "qcow2", File: filepath.Join(dir, "other.qcow2"), Size: -1, Backing: "base.raw", BackingFmt: "qcow2"}
	err = Create(r, io.Discard, parseSize)
	if want := r.File + ": Image is not in qcow2 format\nCould not open backing image."; err == nil || err.Error() != want {
		t.Errorf("wrong backing format:\n got %v\nwant %s", err, want)
	}
	r.BackingFmt = "raw"
	if err := Create(r, io.Discard, parseSize); err != nil {
		t.Errorf("raw backing file: %v", err)
	}
}
