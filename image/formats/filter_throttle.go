package formats

import (
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
)

func init() {
	Register(&BlockDriver{Name: "throttle", IsFilter: true, Open: openThrottle, ReopenPrepare: reopenThrottle})
}

var throttleOpts = []OptDesc{{"throttle-group", OptString}}

// throttleFilter is block/throttle.c: every read, write, zero write and
// discard first waits for its throttle group's limits (reads count as
// reads, the others as writes), then passes to the child.
type throttleFilter struct {
	filterBase
	group *ThrottleGroup
}

// throttleParseOptions is throttle_parse_options.
func throttleParseOptions(g *Graph, opts *qdict.Dict) (*ThrottleGroup, error) {
	o, err := Absorb(throttleOpts, opts)
	if err != nil {
		return nil, err
	}
	name, ok := o.Str("throttle-group")
	if !ok {
		return nil, errorf(syscall.EINVAL, "Please specify a throttle group")
	}
	tg := g.Objects.ThrottleGroup(name)
	if tg == nil {
		return nil, errorf(syscall.EINVAL, "Throttle group '%s' does not exist", name)
	}
	return tg, nil
}

// openThrottle is throttle_open.
func openThrottle(g *Graph, n *Node, opts *qdict.Dict) error {
	file, err := openFilterChild(g, n, opts)
	if err != nil {
		return err
	}
	tg, err := throttleParseOptions(g, opts)
	if err != nil {
		return err
	}
	tg.mu.Lock()
	tg.members++
	tg.mu.Unlock()
	n.Impl = &throttleFilter{filterBase: filterBase{name: "throttle", node: n, child: file.Disk}, group: tg}
	return nil
}

// reopenThrottle is throttle_reopen_prepare: the group is looked up again.
func reopenThrottle(n *Node, opts *qdict.Dict, flags Flags) error {
	_, err := throttleParseOptions(n.graph, opts)
	return err
}

func (t *throttleFilter) ReadAt(p []byte, off int64) (int, error) {
	t.group.intercept(int64(len(p)), false)
	return t.filterBase.ReadAt(p, off)
}

func (t *throttleFilter) WriteAt(p []byte, off int64) (int, error) {
	t.group.intercept(int64(len(p)), true)
	return t.filterBase.WriteAt(p, off)
}

func (t *throttleFilter) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	t.group.intercept(n, true)
	return t.filterBase.WriteZeroes(off, n, flags)
}

func (t *throttleFilter) Discard(off, n int64) error {
	t.group.intercept(n, true)
	return t.filterBase.Discard(off, n)
}

// WriteCompressed is throttle_co_pwritev_compressed: throttled as a write.
func (t *throttleFilter) WriteCompressed(p []byte, off int64) error {
	t.group.intercept(int64(len(p)), true)
	return compressThrough(t.child, p, off)
}

func (t *throttleFilter) Close() error {
	t.group.mu.Lock()
	t.group.members--
	t.group.mu.Unlock()
	return nil
}
