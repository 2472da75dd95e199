package formats

import (
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/image/raw"
)

// filterBase is what QEMU's filter drivers have in common: a child (the
// "file" child, BDRV_CHILD_FILTERED | BDRV_CHILD_PRIMARY) that every request
// goes to through the child's own block layer (bdrv_co_preadv_part and
// friends on bs->file), the child's length, the limits bdrv_refresh_limits
// takes from a filtered child (max transfer, discard alignment), the
// child's bdrv_get_info under the filter's own format name, and truncate
// passed down (bdrv_co_truncate on the filtered child). Block status is the
// child's (image.Filter: QEMU's BDRV_BLOCK_RAW default for filters).
type filterBase struct {
	name  string
	node  *Node
	child *image.Disk
}

var (
	_ image.Filter    = (*filterBase)(nil)
	_ image.Zeroer    = (*filterBase)(nil)
	_ image.Discarder = (*filterBase)(nil)
	_ image.Truncater = (*filterBase)(nil)
	_ image.Infoer    = (*filterBase)(nil)
)

func (f *filterBase) Filtered() *image.Disk { return f.child }

func (f *filterBase) ReadAt(p []byte, off int64) (int, error) {
	if err := f.child.ReadAt(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *filterBase) WriteAt(p []byte, off int64) (int, error) {
	if err := f.child.WriteAt(p, off, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *filterBase) Size() int64 { return f.child.Size() }

// Limits are bdrv_refresh_limits' for a filter with a byte interface:
// request alignment 1, and from the child (bdrv_merge_limits) the max
// transfer and the discard alignment.
func (f *filterBase) Limits() image.Limits {
	cl := f.child.Limits()
	return image.Limits{RequestAlignment: 1, DiscardAlignment: cl.DiscardAlignment, MaxTransfer: cl.MaxTransfer}
}

func (f *filterBase) Flush() error { return f.child.Flush() }

// Close does nothing: the node closes its children.
func (f *filterBase) Close() error { return nil }

func (f *filterBase) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	return f.child.WriteZeroes(off, n, flags, false)
}

// SupportedZeroFlags are the child's (QEMU's filters take MAY_UNMAP and
// NO_FALLBACK from bs->file->bs->supported_zero_flags).
func (f *filterBase) SupportedZeroFlags() image.ZeroFlags { return childZeroFlags(f.child) }

func childZeroFlags(d *image.Disk) image.ZeroFlags {
	if z, ok := d.Driver().(image.Zeroer); ok {
		return z.SupportedZeroFlags()
	}
	return 0
}

func (f *filterBase) Discard(off, n int64) error { return f.child.Discard(off, n) }

func (f *filterBase) Truncate(size int64, p image.Prealloc) error { return f.child.Truncate(size, p) }

// Info is bdrv_get_info through a filter (the filtered child's) under the
// filter's format name; a filter has no format-specific information.
func (f *filterBase) Info() (image.Info, error) {
	return filterInfo(f.name, f.child)
}

func filterInfo(name string, child *image.Disk) (image.Info, error) {
	ci, err := child.Info()
	return image.Info{FormatName: name, ClusterSize: ci.ClusterSize, VMStateOffset: ci.VMStateOffset}, err
}

// compressThrough is a compressed write of a filter to its child
// (bdrv_co_pwritev_part with BDRV_REQ_WRITE_COMPRESSED): the child's
// detect-zeroes may make it a zero write first (bdrv_aligned_pwritev).
func compressThrough(child *image.Disk, p []byte, off int64) error {
	if done, err := child.DetectZeroWrite(p, off, false); done {
		return err
	}
	return child.WriteCompressed(p, off)
}

// openFilterChild is bdrv_open_file_child for a filter: the "file" child,
// filtered and primary, with the parent's permissions passed through to
// the file it ends in.
func openFilterChild(g *Graph, n *Node, opts *qdict.Dict) (*Node, error) {
	file, err := g.OpenChild(opts, "file", n, RoleFiltered|RolePrimary, false)
	if err != nil {
		return nil, err
	}
	l := raw.Lock{Perm: raw.PermConsistentRead}
	if n.Flags&FlagRDWR != 0 {
		l.Perm |= raw.PermWrite
	}
	if err := attachLock(file, l); err != nil {
		return nil, errorf(err, "%v", err)
	}
	n.ident = file.ident
	return file, nil
}

// driverCanCompress is block_driver_can_compress: the driver has a
// compressed write path.
func driverCanCompress(n *Node) bool {
	if n.Impl == nil {
		return false
	}
	_, ok := n.Impl.(image.Compressor)
	return ok
}
