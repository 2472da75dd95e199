package formats

import (
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
)

func init() {
	Register(&BlockDriver{Name: "compress", IsFilter: true, Open: openCompress})
}

// compressFilter is block/filter-compress.c: every data write becomes a
// compressed write on the child; reads, zero writes and discards pass as
// they are. Its request alignment is the child's cluster size
// (compress_refresh_limits), so an unaligned write is padded to whole
// clusters (read-modify-write through the filter) before it is compressed.
type compressFilter struct {
	filterBase
	align int64
}

// openCompress is compress_open.
func openCompress(g *Graph, n *Node, opts *qdict.Dict) error {
	file, err := openFilterChild(g, n, opts)
	if err != nil {
		return err
	}
	if !driverCanCompress(file) {
		name := "(no format)"
		if file.Drv != nil {
			name = file.Drv.Name
		}
		return errorf(image.ErrNotSupported, "Compression is not supported for underlying format: %s", name)
	}
	c := &compressFilter{filterBase: filterBase{name: "compress", node: n, child: file.Disk}}
	if i, err := file.Disk.Info(); err == nil && i.ClusterSize > 0 {
		c.align = i.ClusterSize
	}
	n.Impl = c
	return nil
}

func (c *compressFilter) WriteAt(p []byte, off int64) (int, error) {
	if err := compressThrough(c.child, p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *compressFilter) Limits() image.Limits {
	l := c.filterBase.Limits()
	if c.align > 0 {
		l.RequestAlignment = c.align
	}
	return l
}
