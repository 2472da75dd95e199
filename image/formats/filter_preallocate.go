package formats

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/goqio/goqio/blkalign"
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
)

func init() {
	Register(&BlockDriver{Name: "preallocate", IsFilter: true, Open: openPreallocate, ReopenPrepare: reopenPreallocate})
}

var preallocOpts = []OptDesc{{"prealloc-align", OptSize}, {"prealloc-size", OptSize}}

// preallocFilter is block/preallocate.c: a write past the end of the file
// first extends the file with zeroes (a zero write without fallback) to
// prealloc-size bytes past the write's end, rounded up to prealloc-align;
// the node's length stays the end of the data written (data_end), and at
// close the file is truncated back to it. It works only while its parent
// holds both the write and the resize permissions on it (a format driver's
// file does; at the top, once truncate has asked for resize); otherwise
// every request passes as it is.
type preallocFilter struct {
	filterBase
	align, size int64 // prealloc-align, prealloc-size

	mu sync.Mutex
	// dataEnd, zeroStart and fileEnd are QEMU's data_end, zero_start and
	// file_end; negative: unknown
	dataEnd, zeroStart, fileEnd int64
}

// preallocAbsorb is preallocate_absorb_opts.
func preallocAbsorb(opts *qdict.Dict, child *image.Disk) (align, size int64, err error) {
	o, err := Absorb(preallocOpts, opts)
	if err != nil {
		return 0, 0, err
	}
	align = int64(o.Num("prealloc-align", 1<<20))
	size = int64(o.Num("prealloc-size", 128<<20))
	if align%512 != 0 {
		return 0, 0, errorf(syscall.EINVAL, "prealloc-align parameter of preallocate filter is not aligned to %d", 512)
	}
	if ra := child.Limits().RequestAlignment; align%ra != 0 {
		return 0, 0, errorf(syscall.EINVAL, "prealloc-align parameter of preallocate filter is not aligned to underlying node request alignment (%d)", int32(ra))
	}
	return align, size, nil
}

// openPreallocate is preallocate_open.
func openPreallocate(g *Graph, n *Node, opts *qdict.Dict) error {
	file, err := openFilterChild(g, n, opts)
	if err != nil {
		return err
	}
	align, size, err := preallocAbsorb(opts, file.Disk)
	if err != nil {
		return err
	}
	n.Impl = &preallocFilter{filterBase: filterBase{name: "preallocate", node: n, child: file.Disk},
		align: align, size: size, dataEnd: -1, zeroStart: -1, fileEnd: -1}
	return nil
}

// reopenPreallocate is preallocate_reopen_prepare: the options are checked
// again.
func reopenPreallocate(n *Node, opts *qdict.Dict, flags Flags) error {
	p, ok := n.Impl.(*preallocFilter)
	if !ok {
		return nil
	}
	_, _, err := preallocAbsorb(opts, p.child)
	return err
}

// perms is has_prealloc_perms, with preallocate_set_perm folded in: when
// the node has the permissions and no state, the state starts at the
// file's length; without them it is unknown. p.mu is held.
func (p *preallocFilter) perms() bool {
	if !p.node.resizePerm() {
		p.dataEnd, p.zeroStart, p.fileEnd = -1, -1, -1
		return false
	}
	if p.dataEnd < 0 {
		l := p.child.Size()
		p.dataEnd, p.zeroStart, p.fileEnd = l, l, l
	}
	return true
}

// Size is preallocate_getlength (in whole sectors, as bdrv_getlength).
func (p *preallocFilter) Size() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.perms() {
		return blkalign.AlignUp(p.dataEnd, 512)
	}
	return p.child.Size()
}

// handleWrite is handle_write: it reports whether [off, off+n) is known
// to read as zeroes already when wantMergeZero is set.
func (p *preallocFilter) handleWrite(off, n int64, wantMergeZero bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	end := off + n
	fileAlign := p.child.Limits().RequestAlignment
	preallocAlign := max(p.align, fileAlign)
	if !p.perms() {
		return false
	}
	if end <= p.dataEnd {
		return false
	}
	p.dataEnd = end
	if p.zeroStart < 0 || !wantMergeZero {
		p.zeroStart = end
	}
	if p.fileEnd < 0 {
		p.fileEnd = p.child.Size()
	}
	if end <= p.fileEnd {
		return wantMergeZero && off >= p.zeroStart
	}
	start := p.fileEnd
	if wantMergeZero {
		start = min(off, p.fileEnd)
	}
	start = blkalign.AlignUp(start, fileAlign)
	pend := blkalign.AlignUp(max(start, end)+p.size, preallocAlign)
	wantMergeZero = wantMergeZero && start <= off
	if err := p.child.WriteZeroes(start, pend-start, image.ZeroNoFallback, false); err != nil {
		p.fileEnd = -1
		return false
	}
	p.fileEnd = pend
	return wantMergeZero
}

func (p *preallocFilter) WriteAt(b []byte, off int64) (int, error) {
	p.handleWrite(off, int64(len(b)), false)
	return p.filterBase.WriteAt(b, off)
}

// WriteZeroes is preallocate_co_pwrite_zeroes: a zero write that may not
// unmap is merged with the preallocation when that already zeroed it.
func (p *preallocFilter) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	if p.node.Flags&FlagUnmap == 0 {
		flags &^= image.ZeroMayUnmap
	}
	if p.handleWrite(off, n, flags&image.ZeroMayUnmap == 0) {
		return nil
	}
	return p.child.WriteZeroes(off, n, flags, false)
}

// Truncate is preallocate_co_truncate.
func (p *preallocFilter) Truncate(size int64, mode image.Prealloc) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.perms()
	if p.dataEnd >= 0 && size > p.dataEnd {
		if p.fileEnd < 0 {
			p.fileEnd = p.child.Size()
		}
		if mode == image.PreallocFalloc {
			if size <= p.fileEnd {
				// what the filter preallocated becomes the user's
				p.dataEnd = size
				return nil
			}
		} else if p.fileEnd > p.dataEnd {
			if err := p.child.Truncate(p.dataEnd, image.PreallocOff); err != nil {
				p.fileEnd = -1
				return fmt.Errorf("preallocate-filter: failed to drop write-zero preallocation: %w", err)
			}
			p.fileEnd = p.dataEnd
		}
		p.dataEnd = size
	}
	if err := p.child.Truncate(size, mode); err != nil {
		p.dataEnd, p.zeroStart, p.fileEnd = -1, -1, -1
		return err
	}
	if p.node.resizePerm() {
		p.dataEnd, p.zeroStart, p.fileEnd = size, size, size
	}
	return nil
}

// Close is preallocate_close: the file is cut back to the data written.
func (p *preallocFilter) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dataEnd < 0 {
		return nil
	}
	if p.fileEnd < 0 {
		p.fileEnd = p.child.Size()
	}
	if p.dataEnd < p.fileEnd {
		if err := p.child.Truncate(p.dataEnd, image.PreallocOff); err != nil && !errors.Is(err, image.ErrClosed) {
			p.fileEnd = -1
			return nil
		}
		p.fileEnd = p.dataEnd
	}
	return nil
}
