package img_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/img"
)

// qcow2.Driver.ReadAt keeps io.ReaderAt's contract at and past the end,
// and qcow2.Open follows the backing file unless NoBacking.
func TestDriverReadAtEOFAndBacking(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base, top := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "top.qcow2")
	if err := qcow2.Create(base, qcow2.CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	b, err := img.Open(base, img.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.WriteAt(bytes.Repeat([]byte{7}, 4096), 0)
	b.Close()
	if err := qcow2.Create(top, qcow2.CreateOptions{Size: 1 << 20, BackingFile: "base.qcow2", BackingFmt: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	d, err := qcow2.Open(top, qcow2.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	buf := make([]byte, 16)
	if n, err := d.ReadAt(buf, d.Size()); n != 0 || err != io.EOF {
		t.Errorf("read at the end: %d %v", n, err)
	}
	if n, err := d.ReadAt(buf, d.Size()-4); n != 4 || err != io.EOF {
		t.Errorf("read across the end: %d %v", n, err)
	}
	if n, err := d.ReadAt(buf, 0); n != 16 || err != nil || buf[0] != 7 {
		t.Errorf("read of the backing file's data: %d %v %v", n, err, buf)
	}
	nb, err := qcow2.Open(top, qcow2.Options{ReadOnly: true, NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	if _, err := nb.ReadAt(buf, 0); err != nil || buf[0] != 0 {
		t.Errorf("NoBacking read: %v %v", err, buf)
	}
}

// A cancelled context stops a rebase before it changes anything.
func TestRebaseCancelled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	qcow2.Create(p("b.qcow2"), qcow2.CreateOptions{Size: 1 << 20})
	qcow2.Create(p("t.qcow2"), qcow2.CreateOptions{Size: 1 << 20, BackingFile: "b.qcow2", BackingFmt: "qcow2"})
	im, err := img.Open(p("t.qcow2"), img.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = img.Rebase(ctx, im, img.RebaseOptions{BackingFormat: "qcow2"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if im.Node.BackingFile != "b.qcow2" {
		t.Errorf("backing file changed to %q", im.Node.BackingFile)
	}
	var ie *img.Error
	err = img.Commit(context.Background(), im, "t.qcow2", img.CommitOptions{Base: "nothere"})
	if !errors.As(err, &ie) || !errors.Is(err, img.ErrBaseNotFound) {
		t.Errorf("commit to a missing base: %v", err)
	}
}
