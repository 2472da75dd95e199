package qcow2

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
	"github.com/goqio/goqio/image/raw"
)

// createDF makes an image with an external data file (absolute names).
func createDF(t *testing.T, o CreateOptions) (string, string) {
	t.Helper()
	o.DataFile = filepath.Join(t.TempDir(), "t.data")
	return create(t, o), o.DataFile
}

// openDF opens an image with a data file as the block graph does: no
// data-file option, so the file the header names.
func openDF(t *testing.T, path string, o Options) *Driver {
	t.Helper()
	o.OpenDataFile = func(name string) (*image.Disk, error) {
		if name == "" {
			return nil, nil
		}
		rd, err := raw.Open(name, raw.Options{ReadOnly: o.ReadOnly})
		if err != nil {
			return nil, err
		}
		return image.New(rd, name, image.Options{ReadOnly: o.ReadOnly, Unmap: true, Grow: true}), nil
	}
	d, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDataFileConformance(t *testing.T) {
	for _, o := range []CreateOptions{
		{Size: 4 << 20},
		{Size: 4 << 20, DataFileRaw: true},
		{Size: 4 << 20, ClusterSize: 512},
		{Size: 4 << 20, ClusterSize: 16384, ExtendedL2: true, DataFileRaw: true},
	} {
		o := o
		t.Run("", func(t *testing.T) {
			imagetest.Conformance(t, func(t *testing.T) *image.Disk {
				p, _ := createDF(t, o)
				return image.New(openDF(t, p, Options{Unmap: true}), "t", image.Options{Unmap: true})
			})
		})
	}
}

// TestDataFileLayout: guest data lands in the data file at its guest
// offset, the image file keeps only metadata (no refcounts for the data),
// and the image checks clean.
func TestDataFileLayout(t *testing.T) {
	for _, rawData := range []bool{false, true} {
		p, dp := createDF(t, CreateOptions{Size: 4 << 20, DataFileRaw: rawData})
		d := openDF(t, p, Options{})
		disk := image.New(d, "t", image.Options{})
		pat := bytes.Repeat([]byte{0x5a}, 70000)
		if err := disk.WriteAt(pat, 1<<20+100, false); err != nil {
			t.Fatal(err)
		}
		if err := disk.WriteAt([]byte{1}, 0, false); err != nil {
			t.Fatal(err)
		}
		if err := disk.WriteZeroes(3<<20, 64<<10, 0, false); err != nil {
			t.Fatal(err)
		}
		e, err := disk.BlockStatus(1<<20, 4096, true)
		if err != nil || e.Status&image.StatusOffsetValid == 0 || e.Offset != 1<<20 || e.File != dp {
			t.Errorf("raw=%v: block status %+v %v, want data at offset 1M in %s", rawData, e, err, dp)
		}
		info, _ := disk.Info()
		var lines []string
		for _, kv := range info.Specific {
			lines = append(lines, kv.Key+": "+kv.Value)
		}
		if s := strings.Join(lines, "\n"); !strings.Contains(s, "refcount bits: 16\ndata file: "+dp+"\ndata file raw: ") {
			t.Errorf("info:\n%s", s)
		}
		if err := disk.Close(); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(dp)
		if int64(len(data)) < 1<<20+100+70000 || !bytes.Equal(data[1<<20+100:1<<20+100+70000], pat) || data[0] != 1 {
			t.Errorf("raw=%v: the data file does not hold the guest data at its offset", rawData)
		}
		img, _ := os.ReadFile(p)
		if bytes.Contains(img, pat[:4096]) {
			t.Errorf("raw=%v: guest data in the image file", rawData)
		}
		c := openDF(t, p, Options{ReadOnly: true, Check: true})
		res, err := c.Check(io.Discard, 0)
		if err != nil || res.Corruptions != 0 || res.Leaks != 0 || res.ImageEndOffset != 5<<16 {
			t.Errorf("raw=%v: check %+v %v", rawData, res, err)
		}
		c.Close()
	}
}

// TestDataFileRefusals: no compressed clusters and no internal snapshots
// with a data file; the data-file child is required.
func TestDataFileRefusals(t *testing.T) {
	p, _ := createDF(t, CreateOptions{Size: 1 << 20})
	if _, err := Open(p, Options{}); err == nil || err.Error() != "'data-file' is required for this image" {
		t.Errorf("open without a data file: %v", err)
	}
	d := openDF(t, p, Options{})
	if err := d.WriteCompressed(make([]byte, 65536), 0); image.Errno(err) != image.Errno(image.ErrNotSupported) {
		t.Errorf("compressed write: %v", err)
	}
	if err := d.CreateSnapshot("s", time.Now()); !errors.Is(err, image.ErrNotSupported) {
		t.Errorf("snapshot: %v", err)
	}
	d.Close()
	plain := create(t, CreateOptions{Size: 1 << 20})
	_, err := Open(plain, Options{OpenDataFile: func(string) (*image.Disk, error) {
		rd, err := raw.Open(plain, raw.Options{ReadOnly: true})
		if err != nil {
			return nil, err
		}
		return image.New(rd, plain, image.Options{ReadOnly: true}), nil
	}})
	if err == nil || err.Error() != "'data-file' can only be set for images with an external data file" {
		t.Errorf("data file for a plain image: %v", err)
	}
	for _, o := range []CreateOptions{{Size: 1 << 20, DataFileRaw: true}, {Size: 1 << 20, Version: 2, DataFile: "x"}} {
		o.ClusterSize, o.RefcountBits = 65536, 16
		if o.Version == 0 {
			o.Version = 3
		}
		if err := o.Validate(); err == nil {
			t.Errorf("%+v validates", o)
		}
	}
}
