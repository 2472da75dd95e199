package formats

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/image/raw"
)

func init() {
	Register(&BlockDriver{Name: "quorum", PassEnd: true, Open: openQuorum})
}

// quorumOpts is quorum_runtime_opts.
var quorumOpts = []OptDesc{
	{"vote-threshold", OptNumber}, {"blkverify", OptBool}, {"rewrite-corrupted", OptBool}, {"read-pattern", OptString},
}

// quorum is block/quorum.c: a node over N children ("children.0" ...,
// each a data child) that all hold the same image.
//
// Every write, zero write and flush goes to every child and succeeds when
// at least threshold children succeed; otherwise the error most children
// returned wins (among equals the one counted last, as QEMU's vote list
// takes its newest version first). Reads in the quorum pattern read every
// child: when the successful reads agree their data is returned, else the
// versions are counted by their SHA-256 and the most common one (again the
// newest among equals) is returned if threshold children hold it, else the
// read fails with EIO; rewrite-corrupted writes the winning data over the
// children that disagreed, errors ignored. In blkverify mode (two children,
// threshold 2) a difference ends the process with QEMU's report. The fifo
// pattern reads the children in order until one succeeds. Discard does
// nothing (quorum has no bdrv_co_pdiscard); truncate is refused; block
// status is DATA where any child's chain has data, ZERO where all agree on
// zeroes, no offset. The length is the children's, which must agree at
// open (QEMU's quorum_getlength); below a parent the node passes its end
// as QEMU's nodes do and grows with the writes past it.
//
// Requests to the children are issued one after the other, in child order
// (QEMU starts them as coroutines in that order); the driver is safe for
// concurrent use as its children's Disks are.
type quorum struct {
	node      *Node
	children  []*image.Disk
	threshold int
	blkverify bool
	rewrite   bool
	fifo      bool
	size      atomic.Int64
}

var (
	_ image.Zeroer        = (*quorum)(nil)
	_ image.BlockStatuser = (*quorum)(nil)
	_ image.Infoer        = (*quorum)(nil)
	_ image.SerialDriver  = (*quorum)(nil)
)

// arrayEntries is qdict_array_entries: the number of array elements
// prefix0, prefix1, ... (each one key, or keys under "prefixN."), or -1
// when a key under prefix is not part of that array or an element is both.
func arrayEntries(d *qdict.Dict, prefix string) int {
	keys := d.Keys()
	// the keys under each "prefixN.", by N as written
	under := map[string]int{}
	for _, k := range keys {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			if dot := strings.IndexByte(rest, '.'); dot >= 0 {
				under[rest[:dot]]++
			}
		}
	}
	entries := 0
	i := 0
	for ; i < 1<<31-1; i++ {
		key := strconv.Itoa(i)
		sub := under[key]
		has := d.Has(prefix + key)
		if has && sub > 0 {
			return -1
		}
		if !has && sub == 0 {
			break
		}
		entries += max(sub, 1)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			entries++
		}
	}
	if len(keys) != entries {
		return -1
	}
	return i
}

// asError keeps an option error's text (and hint) as the open error.
func asError(err error) error {
	if e, ok := err.(*Error); ok {
		return e
	}
	return errorf(nil, "%v", err)
}

// openQuorum is quorum_open.
func openQuorum(g *Graph, n *Node, opts *qdict.Dict) error {
	opts.Flatten()
	count := arrayEntries(opts, "children.")
	if count < 0 {
		return errorf(syscall.EINVAL, "Option children is not a valid array")
	}
	if count < 1 {
		return errorf(syscall.EINVAL, "Number of provided children must be 1 or more")
	}
	o, err := Absorb(quorumOpts, opts)
	if err != nil {
		return asError(err)
	}
	// s->threshold is an int given the option's uint64
	q := &quorum{node: n, threshold: int(int32(o.Num("vote-threshold", 0)))}
	if q.threshold < 1 {
		return errorf(syscall.ERANGE, "Parameter 'vote-threshold' expects a value >= 1")
	}
	if q.threshold > count {
		return errorf(syscall.ERANGE, "threshold may not exceed children count")
	}
	if p, ok := o.Str("read-pattern"); ok && p != "quorum" {
		if p != "fifo" {
			return errorf(syscall.EINVAL, "Please set read-pattern as fifo or quorum")
		}
		q.fifo = true
	}
	if !q.fifo {
		q.blkverify = o.Bool("blkverify", false)
		if q.blkverify && (count != 2 || q.threshold != 2) {
			return errorf(syscall.EINVAL, "blkverify=on can only be set if there are exactly two files and vote-threshold is 2")
		}
		q.rewrite = o.Bool("rewrite-corrupted", false)
		if q.rewrite && q.blkverify {
			return errorf(syscall.EINVAL, "rewrite-corrupted=on cannot be used with blkverify=on")
		}
	}
	for i := 0; i < count; i++ {
		c, err := g.OpenChild(opts, "children."+strconv.Itoa(i), n, RoleData, false)
		if err != nil {
			return err
		}
		if q.rewrite && c.ReadOnly() {
			// quorum_child_perm asks for write to rewrite corrupted data
			return errorf(syscall.EPERM, "Block node is read-only")
		}
		q.children = append(q.children, c.Disk)
	}
	if err := quorumLocks(n, q, n.Flags&FlagRDWR != 0, 0, 0); err != nil {
		return err
	}
	// refresh_total_sectors: quorum_getlength wants equal lengths
	size := sectorLength(q.children[0])
	for _, c := range q.children[1:] {
		if sectorLength(c) != size {
			return errorf(syscall.EIO, "Could not refresh total sector count: %s", Strerror(syscall.EIO))
		}
	}
	q.size.Store(size)
	n.Impl = q
	return nil
}

// sectorLength is bdrv_getlength of a child: its length in whole sectors.
func sectorLength(d *image.Disk) int64 { return (d.Size() + 511) &^ 511 }

// quorumLocks takes the image locks of the children for the quorum node's
// permissions (quorum_child_perm): what the parent holds (consistent read,
// write when rw, more from a parent such as qcow2's resize), write for
// rewrite-corrupted, and never sharing write or resize, which would let
// the children differ (unless the child is force-share).
func quorumLocks(n *Node, q *quorum, rw bool, perm, unshared uint) error {
	l := raw.Lock{Perm: raw.PermConsistentRead | perm,
		Unshared: unshared&(raw.PermConsistentRead|raw.PermWriteUnchanged) | raw.PermWrite | raw.PermResize}
	if rw {
		l.Perm |= raw.PermWrite
	}
	if q.rewrite {
		l.Perm |= raw.PermWrite
	}
	for _, c := range n.Children {
		if c.Role&RoleData == 0 {
			continue
		}
		cl := l
		if c.Node.ForceShare {
			cl.Unshared = 0 // bdrv_child_perm: a force-share child shares all
		}
		if err := attachLock(c.Node, cl); err != nil {
			return errorf(err, "%v", err)
		}
	}
	return nil
}

// checkPerm is bdrv_node_refresh_perm for the permissions a read-write
// quorum node asks of its children when its parent attaches it: write on
// each one (a read-only child refuses it) and write shared by none (a
// node that is two of the children conflicts with itself: QEMU names the
// node's last two edges to it, newest first in its parent list).
func (q *quorum) checkPerm(n *Node) error {
	if n.Flags&FlagRDWR == 0 {
		return nil
	}
	for _, c := range n.Children {
		if c.Node.ReadOnly() {
			return errorf(syscall.EPERM, "Block node is read-only")
		}
	}
	last, prev := -1, -1
	for j := len(n.Children) - 1; j > 0 && last < 0; j-- {
		for i := j - 1; i >= 0; i-- {
			if n.Children[i].Node == n.Children[j].Node {
				last, prev = j, i
				break
			}
		}
	}
	if last < 0 {
		return nil
	}
	a, b := n.Children[last], n.Children[prev]
	x := a.Node.NodeName
	perms := "write"
	if n.resizePerm() {
		perms = "write, resize" // a format's file: its parent resizes it
	}
	return errorf(syscall.EPERM, "Permission conflict on node '%s': permissions '%s' are both required by node '%s' "+
		"(uses node '%s' as '%s' child) and unshared by node '%s' (uses node '%s' as '%s' child).",
		x, perms, n.NodeName, x, b.Name, n.NodeName, x, a.Name)
}

// SerialRequests: over children that order their requests (qcow2 images,
// whose clusters QEMU allocates in the order its coroutines submit the
// requests to every child), the node runs its requests one at a time in
// submission order; over files they run in parallel.
func (q *quorum) SerialRequests() bool {
	for _, c := range q.children {
		if c.Ordered() {
			return true
		}
	}
	return false
}

func (q *quorum) Size() int64 { return q.size.Load() }

// grown is bdrv_co_write_req_finish: a successful write past the end
// makes the node longer, to the sector.
func (q *quorum) grown(off, n int64) {
	end := (off + n + 511) &^ 511
	for {
		s := q.size.Load()
		if end <= s || q.size.CompareAndSwap(s, end) {
			return
		}
	}
}

// Limits are bdrv_refresh_limits' for a driver with a byte interface over
// data children: request alignment 1, the largest discard alignment and
// the smallest max transfer of the children.
func (q *quorum) Limits() image.Limits {
	var l image.Limits
	l.RequestAlignment = 1
	for _, c := range q.children {
		cl := c.Limits()
		l.DiscardAlignment = max(l.DiscardAlignment, cl.DiscardAlignment)
		if cl.MaxTransfer != 0 && (l.MaxTransfer == 0 || cl.MaxTransfer < l.MaxTransfer) {
			l.MaxTransfer = cl.MaxTransfer
		}
	}
	return l
}

// vote is a QuorumVoteVersion: a value, the children that gave it (the
// first of them is index) and how many they are.
type vote[T comparable] struct {
	value T
	index int
	items []int // newest first, as QEMU's QLIST_INSERT_HEAD
}

// votes is QuorumVotes: versions newest first.
type votes[T comparable] []*vote[T]

// count is quorum_count_vote.
func (vs *votes[T]) count(value T, index int) {
	for _, v := range *vs {
		if v.value == value {
			v.items = append([]int{index}, v.items...)
			return
		}
	}
	*vs = append(votes[T]{{value: value, index: index, items: []int{index}}}, *vs...)
}

// winner is quorum_get_vote_winner: the first version with the most
// votes.
func (vs votes[T]) winner() *vote[T] {
	var w *vote[T]
	for _, v := range vs {
		if w == nil || len(v.items) > len(w.items) {
			w = v
		}
	}
	return w
}

// voteError is quorum_vote_error: the error most children returned.
func voteError(errs []error) error {
	var vs votes[syscall.Errno]
	for i, err := range errs {
		if err != nil {
			vs.count(image.Errno(err), i)
		}
	}
	if w := vs.winner(); w != nil {
		return errs[w.index]
	}
	return nil
}

// result is the end of a request on every child: nil when threshold
// children succeeded, else the error vote (quorum_has_too_much_io_failed).
func (q *quorum) result(errs []error) error {
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	if ok >= q.threshold {
		return nil
	}
	return voteError(errs)
}

func (q *quorum) ReadAt(p []byte, off int64) (int, error) {
	var err error
	if q.fifo {
		err = q.readFIFO(p, off)
	} else {
		err = q.readQuorum(p, off)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// readFIFO is read_fifo_child: the children in order until one reads.
func (q *quorum) readFIFO(p []byte, off int64) error {
	var err error
	for _, c := range q.children {
		if err = c.ReadAt(p, off); err == nil {
			return nil
		}
	}
	return err
}

// readQuorum is read_quorum_children and quorum_vote.
func (q *quorum) readQuorum(p []byte, off int64) error {
	bufs := make([][]byte, len(q.children))
	errs := make([]error, len(q.children))
	for i, c := range q.children {
		bufs[i] = make([]byte, len(p))
		errs[i] = c.ReadAt(bufs[i], off)
	}
	if err := q.result(errs); err != nil {
		return err
	}
	first := 0
	for errs[first] != nil {
		first++
	}
	agree := true
	for j := first + 1; j < len(q.children); j++ {
		if errs[j] != nil {
			continue
		}
		if q.blkverify {
			// quorum_compare in blkverify mode: a difference ends the process
			if i := firstDiff(bufs[first], bufs[j]); i >= 0 {
				msg := fmt.Sprintf("quorum: offset=%d bytes=%d contents mismatch at offset %d", off, len(p), off+int64(i))
				if f := q.node.graph.Env.Fatal; f != nil {
					f(msg)
				}
				return &Error{Msg: msg, Err: syscall.EIO}
			}
			continue
		}
		if !bytes.Equal(bufs[first], bufs[j]) {
			agree = false
			break
		}
	}
	if agree {
		copy(p, bufs[first])
		return nil
	}
	var vs votes[[sha256.Size]byte]
	for i := range q.children {
		if errs[i] == nil {
			vs.count(sha256.Sum256(bufs[i]), i)
		}
	}
	w := vs.winner()
	if len(w.items) < q.threshold {
		return errNoQuorum
	}
	copy(p, bufs[w.index])
	if q.rewrite {
		// quorum_rewrite_bad_versions: errors are ignored
		for _, v := range vs {
			if v == w {
				continue
			}
			for _, i := range v.items {
				q.children[i].WriteAt(p, off, false)
			}
		}
	}
	return nil
}

// errNoQuorum is a read whose versions all have fewer votes than the
// threshold (QEMU's -EIO after its QUORUM_FAILURE event).
var errNoQuorum = &Error{Msg: "quorum: no version of the data reaches the vote threshold", Err: syscall.EIO}

// firstDiff is qemu_iovec_compare: the offset of the first byte where a
// and b differ, or -1.
func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// WriteAt is quorum_co_pwritev.
func (q *quorum) WriteAt(p []byte, off int64) (int, error) {
	errs := make([]error, len(q.children))
	for i, c := range q.children {
		errs[i] = c.WriteAt(p, off, false)
	}
	if err := q.result(errs); err != nil {
		return 0, err
	}
	q.grown(off, int64(len(p)))
	return len(p), nil
}

// WriteZeroes is quorum_co_pwrite_zeroes: a zero write on every child.
func (q *quorum) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	errs := make([]error, len(q.children))
	for i, c := range q.children {
		errs[i] = c.WriteZeroes(off, n, flags, false)
	}
	if err := q.result(errs); err != nil {
		return err
	}
	q.grown(off, n)
	return nil
}

// SupportedZeroFlags is quorum_refresh_flags: the flags every child
// supports.
func (q *quorum) SupportedZeroFlags() image.ZeroFlags {
	f := image.ZeroMayUnmap | image.ZeroNoFallback
	for _, c := range q.children {
		f &= childZeroFlags(c)
	}
	return f
}

// Flush is quorum_co_flush.
func (q *quorum) Flush() error {
	errs := make([]error, len(q.children))
	for i, c := range q.children {
		errs[i] = c.Flush()
	}
	return q.result(errs)
}

// Close does nothing: the node closes its children.
func (q *quorum) Close() error { return nil }

// BlockStatus is quorum_co_block_status: each child's status through its
// whole backing chain; ZERO (over the shortest run) where every child
// reads zeroes, else DATA (over the longest run of data); a child's
// error makes the whole request DATA.
func (q *quorum) BlockStatus(off, n int64, wantZero bool) (image.Extent, error) {
	pnumZero, pnumData := n, int64(0)
	for _, c := range q.children {
		e, _, err := image.BlockStatusAbove(c, off, n, wantZero)
		if err != nil {
			pnumData = n
			break
		}
		if e.Status&image.StatusZero != 0 {
			pnumZero = min(pnumZero, e.Len)
		} else {
			pnumData = max(pnumData, e.Len)
		}
	}
	if pnumData != 0 {
		return image.Extent{Status: image.StatusData, Len: pnumData}, nil
	}
	return image.Extent{Status: image.StatusZero, Len: pnumZero}, nil
}

// Info: quorum has no bdrv_get_info (qemu-io's info prints the format
// name and fails).
func (q *quorum) Info() (image.Info, error) {
	return image.Info{FormatName: "quorum"}, image.ErrNotSupported
}
