package img_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/img"
)

// Create a qcow2 image with QEMU's defaults, write to it, and read at its
// end as io.ReaderAt reads: the bytes before the end, then io.EOF.
func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "disk.qcow2")
	// only the size: 64 KiB clusters, version 3, 16-bit refcounts
	if err := qcow2.Create(path, qcow2.CreateOptions{Size: 1 << 20}); err != nil {
		fmt.Println(err)
		return
	}
	im, err := img.Open(path, img.OpenOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer im.Close()
	im.WriteAt([]byte("hello"), im.Size()-5)
	buf := make([]byte, 16)
	n, err := im.ReadAt(buf, im.Size()-5)
	fmt.Printf("%d %q %v\n", n, buf[:n], err)
	n, err = im.ReadAt(buf, im.Size())
	fmt.Println(n, err)
	// Output:
	// 5 "hello" EOF
	// 0 EOF
}

// Opening an overlay follows its backing file: what the overlay does not
// store reads from the base.
func ExampleOpen_backing() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	base, top := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "top.qcow2")
	qcow2.Create(base, qcow2.CreateOptions{Size: 1 << 20})
	b, _ := img.Open(base, img.OpenOptions{})
	b.WriteAt([]byte("base data"), 0)
	b.Close()
	qcow2.Create(top, qcow2.CreateOptions{Size: 1 << 20, BackingFile: "base.qcow2", BackingFmt: "qcow2"})
	t, err := img.Open(top, img.OpenOptions{ReadOnly: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer t.Close()
	buf := make([]byte, 9)
	t.ReadAt(buf, 0)
	fmt.Printf("%s\n", buf)
	// Output: base data
}

// Rebase an overlay onto another base, keeping what the guest sees: the
// overlay's zero clusters over the old base stay zero, and where the old
// and the new base differ the old data is copied into the overlay.
func ExampleRebase() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	p := func(n string) string { return filepath.Join(dir, n) }
	for _, n := range []string{"old.qcow2", "new.qcow2"} {
		qcow2.Create(p(n), qcow2.CreateOptions{Size: 1 << 20})
	}
	old, _ := img.Open(p("old.qcow2"), img.OpenOptions{})
	old.WriteAt([]byte("old data, old data"), 0)
	old.Close()
	qcow2.Create(p("top.qcow2"), qcow2.CreateOptions{Size: 1 << 20, BackingFile: "old.qcow2", BackingFmt: "qcow2"})
	top, _ := img.Open(p("top.qcow2"), img.OpenOptions{})
	top.WriteZeroes(0, 3) // zeroes over the old base's data
	err := img.Rebase(context.Background(), top, img.RebaseOptions{Backing: "new.qcow2", BackingFormat: "qcow2"})
	top.Close()
	if err != nil {
		fmt.Println(err)
		return
	}
	top, _ = img.Open(p("top.qcow2"), img.OpenOptions{ReadOnly: true})
	defer top.Close()
	buf := make([]byte, 18)
	top.ReadAt(buf, 0)
	fmt.Printf("%q %s\n", buf, top.Node.BackingFile)
	// without a format for the new backing file, QEMU refuses
	err = img.Rebase(context.Background(), top, img.RebaseOptions{Backing: "old.qcow2", Unsafe: true})
	fmt.Println(errors.Is(err, img.ErrBackingFormatRequired))
	// Output:
	// "\x00\x00\x00 data, old data" new.qcow2
	// true
}

// Resize grows an image; shrinking needs Shrink, as qemu-img's --shrink.
func ExampleResize() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "disk.qcow2")
	qcow2.Create(path, qcow2.CreateOptions{Size: 1 << 20})
	im, _ := img.Open(path, img.OpenOptions{})
	defer im.Close()
	size, err := img.Resize(context.Background(), im, img.ResizeOptions{Size: 1 << 20, Relative: 1})
	fmt.Println(size, err)
	_, err = img.Resize(context.Background(), im, img.ResizeOptions{Size: 4096})
	fmt.Println(errors.Is(err, img.ErrShrinkNotAllowed))
	// Output:
	// 2097152 <nil>
	// true
}

var _ io.ReaderAt = (*img.Image)(nil)
