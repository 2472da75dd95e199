package qcow2

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
	"github.com/goqio/goqio/image/qcrypto"
	"github.com/goqio/goqio/image/raw"
)

// CreateOptions are qemu-img create's qcow2 options.
type CreateOptions struct {
	Size            int64
	ClusterSize     int64 // 0: the default, 65536
	Version         int   // 2 or 3 (0: the default, 3)
	RefcountBits    int   // 0: the default, 16
	LazyRefcounts   bool
	ExtendedL2      bool
	CompressionType int // 0 zlib, 1 zstd
	Prealloc        image.Prealloc
	BackingFile     string
	BackingFmt      string
	// DataFile is the external data file to create (data_file=), named
	// in the image as given; DataFileRaw sets data-file-raw.
	DataFile    string
	DataFileRaw bool
	// FileAttrs are set on the image file and the data file once created
	// (nocow, extent_size_hint: file-posix's create options)
	FileAttrs raw.FileAttrs
	// Encrypt, when set, encrypts the image (encrypt.format=luks or
	// qcow, the legacy AES; encrypt.* options), as
	// qcow2_set_up_encryption after the size and backing file.
	Encrypt *qcrypto.CreateOptions
}

// Validate checks the options as qemu-img does, with its messages, in the
// order of qcow2_co_create.
func (o *CreateOptions) Validate() error {
	const v3 = "compatibility level 1.1 and above (use version=v3 or greater)"
	if o.ExtendedL2 && o.Version < 3 {
		return fmt.Errorf("Extended L2 entries are only supported with %s", v3)
	}
	cs := o.ClusterSize
	if cs < 512 || cs > 2<<20 || cs&(cs-1) != 0 {
		return fmt.Errorf("Cluster size must be a power of two between 512 and 2048k")
	}
	if o.ExtendedL2 && cs < 16384 {
		return fmt.Errorf("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes")
	}
	if o.BackingFile != "" && o.Prealloc != image.PreallocOff && !o.ExtendedL2 {
		return fmt.Errorf("Backing file and preallocation can only be used at the same time if extended_l2 is on")
	}
	if o.BackingFmt != "" && o.BackingFile == "" {
		return fmt.Errorf("Backing format cannot be used without backing file")
	}
	if o.LazyRefcounts && o.Version < 3 {
		return fmt.Errorf("Lazy refcounts only supported with %s", v3)
	}
	rb := o.RefcountBits
	if rb < 1 || rb > 64 || rb&(rb-1) != 0 {
		return fmt.Errorf("Refcount width must be a power of two and may not exceed 64 bits")
	}
	if rb != 16 && o.Version < 3 {
		return fmt.Errorf("Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)")
	}
	if o.DataFileRaw && o.DataFile == "" {
		return fmt.Errorf("data-file-raw requires data-file")
	}
	if o.DataFileRaw && o.BackingFile != "" {
		return fmt.Errorf("Backing file and data-file-raw cannot be used at the same time")
	}
	if o.DataFile != "" && o.Version < 3 {
		return fmt.Errorf("External data files are only supported with %s", v3)
	}
	if o.CompressionType != 0 && o.Version < 3 {
		return fmt.Errorf("Non-zlib compression type is only supported with %s", v3)
	}
	l2span := cs * (cs / 8)
	if o.ExtendedL2 {
		l2span = cs * (cs / 16)
	}
	if (o.Size+l2span-1)/l2span*8 > maxL1Size {
		return fmt.Errorf("The image size is too large for file format 'qcow2' (try using a larger cluster size)")
	}
	return nil
}

// Create makes a qcow2 image the way QEMU's qcow2_co_create does, so that
// the file is byte for byte what qemu-img create writes: a minimal header
// with a refcount table and one refcount block, then, through the driver,
// the three clusters taken, the full header written, the L1 table grown to
// the size, and the backing file recorded. As in qcow2_co_create_opts, the
// image file and the data file are created (empty) before the options are
// checked, and a failure removes them again.
//
// A zero ClusterSize, Version or RefcountBits means QEMU's default (65536,
// 3, 16), so that CreateOptions{Size: n} makes what qemu-img create -f
// qcow2 makes.
func Create(path string, o CreateOptions) error {
	if o.ClusterSize == 0 {
		o.ClusterSize = 65536
	}
	if o.Version == 0 {
		o.Version = 3
	}
	if o.RefcountBits == 0 {
		o.RefcountBits = 16
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("Could not create '%s': %s", path, image.StrerrorOf(err))
	}
	o.FileAttrs.Apply(f)
	created := []string{path}
	if o.DataFile != "" {
		df, err := os.OpenFile(o.DataFile, os.O_RDWR|os.O_CREATE|os.O_TRUNC|syscall.O_CLOEXEC, 0o644)
		if err != nil {
			f.Close()
			os.Remove(path)
			return fmt.Errorf("Could not create '%s': %s", o.DataFile, image.StrerrorOf(err))
		}
		o.FileAttrs.Apply(df)
		df.Close()
		created = append(created, o.DataFile)
	}
	if err := createOn(f, path, o); err != nil {
		for _, p := range created {
			os.Remove(p)
		}
		return err
	}
	// qemu-img reopens the image with flushing enabled before it returns
	for _, p := range created {
		g, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		err = g.Sync()
		g.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// createOn is qcow2_co_create on the new, empty image file f.
func createOn(f *os.File, path string, o CreateOptions) error {
	if err := o.Validate(); err != nil {
		f.Close()
		return err
	}
	cs := o.ClusterSize
	bits := uint32(0)
	for int64(1)<<bits < cs {
		bits++
	}
	order := uint32(0)
	for 1<<order < o.RefcountBits {
		order++
	}
	h := Header{
		Version:               uint32(o.Version),
		ClusterBits:           bits,
		RefcountTableOffset:   uint64(cs),
		RefcountTableClusters: 1,
		RefcountOrder:         order,
		HeaderLength:          headerSize,
		CompressionType:       uint8(o.CompressionType),
	}
	if o.LazyRefcounts {
		h.CompatibleFeatures |= compatLazyRefcounts
	}
	if o.DataFile != "" {
		h.IncompatibleFeatures |= incompatDataFile
	}
	if o.DataFileRaw {
		h.AutoclearFeatures |= autoclearDataFileRaw
	}
	if o.CompressionType != 0 {
		h.IncompatibleFeatures |= incompatCompression
	}
	if o.ExtendedL2 {
		h.IncompatibleFeatures |= incompatExtL2
	}
	hbuf := make([]byte, cs)
	h.Encode(hbuf)
	if o.Version < 3 {
		// the initial header is always written in the v3 layout
		v3 := h
		v3.Version = 3
		v3.Encode(hbuf)
		putU32(hbuf[layout.OffVersion:], uint32(o.Version))
	}
	rt := make([]byte, 2*cs)
	putU64(rt, uint64(2*cs))
	err := writeBootstrap(f, hbuf, rt, cs)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// the file is flushed as QEMU's qcow2_co_create_opts leaves it (only
	// the qcow2 node is opened with no-flush): its fdatasyncs between the
	// metadata writes decide where the file system places the clusters,
	// which the preallocation modes' host sizes depend on (iotest 125)
	rd, err := raw.Open(path, raw.Options{})
	if err != nil {
		return err
	}
	file := image.New(rd, path, image.Options{Grow: true})
	var data *image.Disk
	if o.DataFile != "" {
		rd, err := raw.Open(o.DataFile, raw.Options{})
		if err != nil {
			file.Close()
			return err
		}
		data = image.New(rd, o.DataFile, image.Options{Grow: true, Unmap: true})
	}
	// the new image is opened with the data file as its "data-file" child
	given := func(name string) (*image.Disk, error) {
		if name == "" {
			return data, nil
		}
		return nil, nil
	}
	d, err := openOn(file, path, Options{NoFlush: true, OpenDataFile: given})
	if err != nil {
		file.Close()
		if data != nil {
			data.Close()
		}
		return err
	}
	if _, err := d.allocClusters(3 * cs); err != nil {
		d.Close()
		return err
	}
	if o.DataFile != "" {
		d.dataName, d.hasDataName = o.DataFile, true
	}
	if err := d.updateHeader(); err != nil {
		d.Close()
		return err
	}
	if err := d.growL1(d.sizeToL1(o.Size), true); err != nil {
		d.Close()
		return err
	}
	// QEMU grows the new image to its size with the preallocation asked for
	if _, err := d.growArea(0, o.Size, o.Prealloc, false); err != nil {
		d.Close()
		return err
	}
	d.size = o.Size
	nh := d.hdr
	nh.Size = uint64(o.Size)
	if err := d.writeHeaderFields(&nh, layout.FieldSize, layout.FieldSize); err != nil {
		d.Close()
		return err
	}
	if o.BackingFile != "" {
		d.backingFile, d.backingFmt = o.BackingFile, o.BackingFmt
		if err := d.updateHeader(); err != nil {
			d.Close()
			return err
		}
	}
	if o.Encrypt != nil {
		if err := d.setUpEncryption(*o.Encrypt); err != nil {
			d.Close()
			return err
		}
	}
	return d.Close()
}

// writeBootstrap writes the minimal header cluster and the refcount table
// with its one refcount block, with qcow2_co_create's messages.
func writeBootstrap(w io.WriterAt, hbuf, rt []byte, cs int64) error {
	if _, err := w.WriteAt(hbuf, 0); err != nil {
		return fmt.Errorf("Could not write qcow2 header: %s", image.StrerrorOf(err))
	}
	if _, err := w.WriteAt(rt, cs); err != nil {
		return fmt.Errorf("Could not write refcount table: %s", image.StrerrorOf(err))
	}
	return nil
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

func putU64(b []byte, v uint64) {
	putU32(b, uint32(v>>32))
	putU32(b[4:], uint32(v))
}
