package img_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/img"
)

// Convert a qcow2 image with some data into a compressed qcow2 image,
// then read the data back.
func ExampleConvert() {
	dir, err := os.MkdirTemp("", "img-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "src.qcow2")
	if err := qcow2.Create(src, qcow2.CreateOptions{Size: 4 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
		log.Fatal(err)
	}
	d, err := formats.Open(src, formats.Options{})
	if err != nil {
		log.Fatal(err)
	}
	data := make([]byte, 65536)
	for i := range data {
		data[i] = byte(i % 7)
	}
	if err := d.WriteAt(data, 1<<20, false); err != nil {
		log.Fatal(err)
	}
	d.Close()

	dst := filepath.Join(dir, "dst.qcow2")
	err = img.Convert(context.Background(), img.ConvertOptions{
		Sources: []string{src}, Target: dst, TargetFormat: "qcow2", Compress: true})
	if err != nil {
		log.Fatal(err)
	}
	out, err := formats.Open(dst, formats.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer out.Close()
	buf := make([]byte, 8)
	if err := out.ReadAt(buf, 1<<20); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Size(), buf)
	// Output: 4194304 [0 1 2 3 4 5 6 0]
}

// Measure how large a 1 GiB qcow2 image is when empty and when fully
// allocated.
func ExampleMeasure() {
	r, err := img.Measure(context.Background(), img.MeasureOptions{Size: 1 << 30, TargetFormat: "qcow2"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Required, r.FullyAllocated)
	// Output: 393216 1074135040
}

// Errors carry qemu-img's message and wrap a sentinel.
func ExampleError() {
	err := img.Convert(context.Background(), img.ConvertOptions{
		Sources: []string{"/nonexistent.qcow2"}, Target: "/tmp/out.raw"})
	fmt.Println(err)
	// Output: Could not open '/nonexistent.qcow2': Could not open '/nonexistent.qcow2': No such file or directory
}
