package formats

import (
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
)

func init() {
	Register(&BlockDriver{Name: "copy-on-read", IsFilter: true, Open: openCOR})
}

// corFilter is block/copy-on-read.c: reads copy what the child does not
// store from the child's backing chain into the child (a read with
// BDRV_REQ_COPY_ON_READ on the child, image.Disk.ReadCopyOnRead); with
// bottom, only what is allocated from the child's backing file down to
// bottom (included) is copied, the rest is read as it is. Writes, zero
// writes, discards and compressed writes pass to the child.
type corFilter struct {
	filterBase
	bottom *image.Disk
}

// openCOR is cor_open.
func openCOR(g *Graph, n *Node, opts *qdict.Dict) error {
	bottomName, hasBottom := opts.Get("bottom").(string)
	file, err := openFilterChild(g, n, opts)
	if err != nil {
		return err
	}
	if file.ReadOnly() {
		// cor_child_perm asks for WRITE_UNCHANGED on the child
		return errorf(syscall.EPERM, "Block node is read-only")
	}
	c := &corFilter{filterBase: filterBase{name: "copy-on-read", node: n, child: file.Disk}}
	if hasBottom {
		opts.Del("bottom")
		b := g.Lookup(bottomName)
		if b == nil {
			return errorf(syscall.EINVAL, "Bottom node '%s' not found", bottomName)
		}
		if b.Drv.IsFilter {
			return errorf(syscall.EINVAL, "Bottom node '%s' is a filter", bottomName)
		}
		if !inChain(file, b) {
			// QEMU 7.2's bdrv_freeze_backing_chain loops forever here
			return errorf(syscall.EINVAL, "Bottom node '%s' is not in the backing chain of the copy-on-read filter (QEMU 7.2 hangs)", bottomName)
		}
		c.bottom = b.Disk
	}
	n.Impl = c
	return nil
}

// inChain reports whether b is n or below n through filtered and backing
// children (bdrv_filter_or_cow_child).
func inChain(n, b *Node) bool {
	for n != nil {
		if n == b {
			return true
		}
		next := n.Child("backing")
		if next == nil && n.Drv.IsFilter {
			next = n.Child("file")
		}
		n = next
	}
	return false
}

// ReadAt is cor_co_preadv_part.
func (c *corFilter) ReadAt(p []byte, off int64) (int, error) {
	if c.bottom == nil {
		if err := c.child.ReadCopyOnRead(p, off); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	done := 0
	for len(p) > 0 {
		n := int64(len(p))
		alloc, pnum, err := c.child.IsAllocated(off, n)
		copyOnRead := false
		if err != nil || !alloc {
			if err != nil {
				pnum = n
			}
			// in case of failure, copy anyway
			above := image.BackingChainNext(c.child)
			var a bool
			var aerr error
			if above != nil && c.bottom != c.child {
				a, pnum, aerr = image.IsAllocatedAbove(above, c.bottom, true, off, pnum)
			}
			copyOnRead = a || aerr != nil
			if pnum == 0 {
				// the end of a backing file: QEMU stops, the rest of the
				// buffer is left as it is
				break
			}
		}
		var rerr error
		if copyOnRead {
			rerr = c.child.ReadCopyOnRead(p[:pnum], off)
		} else {
			rerr = c.child.ReadAt(p[:pnum], off)
		}
		if rerr != nil {
			return done, rerr
		}
		p = p[pnum:]
		off += pnum
		done += int(pnum)
	}
	return done, nil
}

// WriteCompressed is cor_co_pwritev_compressed.
func (c *corFilter) WriteCompressed(p []byte, off int64) error {
	return compressThrough(c.child, p, off)
}
