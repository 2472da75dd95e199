package img

import (
	"context"
	"io"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
)

// Image is an open image: the top node of its block graph (backing chain,
// data file and filters included). It satisfies io.ReaderAt, io.WriterAt
// and io.Closer with their contracts.
type Image struct {
	// Node is the graph node (its Disk is the generic block layer).
	Node *formats.Node
}

// OpenOptions say how to open an image; the zero value opens it
// read-write, probing its format, with its backing chain, as qemu-img
// does.
type OpenOptions struct {
	Format     string // "" probes
	ReadOnly   bool
	NoBacking  bool // open no backing file
	ForceShare bool // share every permission (qemu-img -U)
	// Options are driver options (dotted keys, as --image-opts gives them).
	Options map[string]string
	// Graph is the graph the nodes join (--object definitions live
	// there); nil makes a new one.
	Graph *formats.Graph
}

// Open opens the image at path.
func Open(path string, o OpenOptions) (*Image, error) {
	n, err := formats.OpenNode(path, formats.Options{Format: o.Format, ReadOnly: o.ReadOnly,
		NoBacking: o.NoBacking, ForceShare: o.ForceShare, Options: o.Options, Graph: o.Graph})
	if err != nil {
		return nil, err
	}
	return &Image{Node: n}, nil
}

// FromNode wraps a node opened by the caller.
func FromNode(n *formats.Node) *Image { return &Image{Node: n} }

// Disk is the image's generic block layer.
func (im *Image) Disk() *image.Disk { return im.Node.Disk }

// Size is the guest size in bytes.
func (im *Image) Size() int64 { return im.Node.Disk.Size() }

// ReadAt reads len(p) bytes of guest data at off, with io.ReaderAt's
// contract: a read reaching past the end returns what lies before it and
// io.EOF, a read at or past the end 0 and io.EOF.
func (im *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, image.ErrOutOfRange
	}
	size := im.Size()
	if off >= size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > size-off {
		p, eof = p[:size-off], io.EOF
	}
	if err := im.Node.Disk.ReadAt(p, off); err != nil {
		return 0, err
	}
	return len(p), eof
}

// WriteAt writes p at off, with io.WriterAt's contract: all of p or an
// error; a write past the end fails with image.ErrOutOfRange.
func (im *Image) WriteAt(p []byte, off int64) (int, error) {
	if err := im.Node.Disk.WriteAt(p, off, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteZeroes makes [off, off+n) read as zeroes (qemu-io's write -z).
func (im *Image) WriteZeroes(off, n int64) error {
	return im.Node.Disk.WriteZeroes(off, n, 0, false)
}

// BlockStatus describes the run at off (at most n bytes) through the
// whole backing chain.
func (im *Image) BlockStatus(off, n int64) (image.Extent, error) {
	e, _, err := image.BlockStatusAbove(im.Node.Disk, off, n, true)
	return e, err
}

// Flush makes every completed write durable.
func (im *Image) Flush() error { return im.Node.Disk.Flush() }

// Close flushes and closes the image and its graph.
func (im *Image) Close() error { return im.Node.Close() }

var (
	_ io.ReaderAt = (*Image)(nil)
	_ io.WriterAt = (*Image)(nil)
	_ io.Closer   = (*Image)(nil)
)

// canceled returns ctx's error, if it is done.
func canceled(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	default:
		return nil
	}
}
