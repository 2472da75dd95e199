package formats

import (
	"fmt"
	"strings"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
)

func init() {
	Register(&BlockDriver{Name: "blkverify", Protocol: "blkverify", FileOpen: true, IsFilter: true,
		ParseFilename: parseBlkverifyFilename, Open: openBlkverify})
}

// parseBlkverifyFilename is blkverify_parse_filename:
// blkverify:RAW:TEST names both images; a filename without the prefix is
// the test image, the rest must come as options.
func parseBlkverifyFilename(filename string, opts *qdict.Dict) error {
	rest, ok := strings.CutPrefix(filename, "blkverify:")
	if !ok {
		opts.Put("x-image", filename)
		return nil
	}
	c := strings.IndexByte(rest, ':')
	if c < 0 {
		return errorf(syscall.EINVAL, "blkverify requires raw copy and original image path")
	}
	opts.Put("x-raw", rest[:c])
	opts.Put("x-image", rest[c+1:])
	return nil
}

var blkverifyOpts = []OptDesc{{"x-raw", OptString}, {"x-image", OptString}}

// blkverify is block/blkverify.c: every read and write goes to both the
// raw copy (the "raw" child, the filtered one) and the image under test
// (the "test" child); the results must agree, and reads the contents too:
// otherwise the process prints the mismatch and exits with status 1, as
// QEMU's blkverify_err does. The length is the test image's; flushes go to
// the test image only; discards do nothing; block status, info and
// truncate are the raw child's (the filtered child of QEMU's filter code).
type blkverify struct {
	node      *Node
	raw, test *image.Disk
}

var (
	_ image.Filter = (*blkverify)(nil)
	_ image.Zeroer = (*blkverify)(nil)
)

// openBlkverify is blkverify_open.
func openBlkverify(g *Graph, n *Node, opts *qdict.Dict) error {
	o, err := Absorb(blkverifyOpts, opts)
	if err != nil {
		return err
	}
	xraw, hasRaw := o.Str("x-raw")
	rawNode, err := g.openNamedChild(xraw, hasRaw, opts, "raw", n, RoleFiltered|RolePrimary)
	if err != nil {
		return err
	}
	ximage, hasImage := o.Str("x-image")
	testNode, err := g.openNamedChild(ximage, hasImage, opts, "test", n, RoleData)
	if err != nil {
		return err
	}
	if rawNode.Filename != "" && testNode.Filename != "" && !strings.HasPrefix(rawNode.Filename, "json:") &&
		!strings.HasPrefix(testNode.Filename, "json:") {
		// blkverify_refresh_filename
		n.Filename = "blkverify:" + rawNode.Filename + ":" + testNode.Filename
	}
	n.Impl = &blkverify{node: n, raw: rawNode.Disk, test: testNode.Disk}
	return nil
}

// openNamedChild is bdrv_open_child with a filename (NULL when
// hasFilename is false) for the child key.
func (g *Graph) openNamedChild(filename string, hasFilename bool, options *qdict.Dict, key string, parent *Node, role Role) (*Node, error) {
	n, err := g.openChildNode(filename, hasFilename, options, key, parent, role, false)
	if err != nil {
		return nil, err
	}
	parent.Children = append(parent.Children, &Child{Name: key, Role: role, Node: n})
	return n, nil
}

// fail is blkverify_err: the report and exit(1).
func (b *blkverify) fail(write bool, off int64, n int, format string, a ...any) error {
	kind := "read"
	if write {
		kind = "write"
	}
	msg := fmt.Sprintf("blkverify: %s offset=%d bytes=%d ", kind, off, n) + fmt.Sprintf(format, a...)
	if f := b.node.graph.Env.Fatal; f != nil {
		f(msg)
	}
	return &Error{Msg: msg, Err: syscall.EIO}
}

// ret is a request's result as QEMU's int: 0 or -errno.
func ret(err error) int {
	if err == nil {
		return 0
	}
	return -int(image.Errno(err))
}

// check is the end of blkverify_co_prwv.
func (b *blkverify) check(write bool, off int64, n int, terr, rerr error) error {
	if ret(terr) != ret(rerr) {
		return b.fail(write, off, n, "return value mismatch %d != %d", ret(terr), ret(rerr))
	}
	return nil
}

func (b *blkverify) ReadAt(p []byte, off int64) (int, error) {
	rawBuf := make([]byte, len(p))
	terr := b.test.ReadAt(p, off)
	rerr := b.raw.ReadAt(rawBuf, off)
	if err := b.check(false, off, len(p), terr, rerr); err != nil {
		return 0, err
	}
	for i := range p {
		if p[i] != rawBuf[i] {
			return 0, b.fail(false, off, len(p), "contents mismatch at offset %d", off+int64(i))
		}
	}
	if terr != nil {
		return 0, terr
	}
	return len(p), nil
}

func (b *blkverify) WriteAt(p []byte, off int64) (int, error) {
	terr := b.test.WriteAt(p, off, false)
	rerr := b.raw.WriteAt(p, off, false)
	if err := b.check(true, off, len(p), terr, rerr); err != nil {
		return 0, err
	}
	if terr != nil {
		return 0, terr
	}
	return len(p), nil
}

// errBlkverifyZero refuses a zero write, which makes QEMU 7.2 abort: the
// driver has no bdrv_co_pwrite_zeroes but declares supported zero flags,
// and bdrv_co_do_pwrite_zeroes asserts it has none.
var errBlkverifyZero = &Error{Msg: "blkverify: zero writes make QEMU 7.2 abort (assertion in bdrv_co_do_pwrite_zeroes)", Err: syscall.EINVAL}

func (b *blkverify) WriteZeroes(off, n int64, flags image.ZeroFlags) error { return errBlkverifyZero }
func (b *blkverify) SupportedZeroFlags() image.ZeroFlags                   { return 0 }

func (b *blkverify) Size() int64 { return b.test.Size() }

// Limits: bdrv_refresh_limits merges both children (the raw copy is
// filtered, the test image data).
func (b *blkverify) Limits() image.Limits {
	r, t := b.raw.Limits(), b.test.Limits()
	mt := r.MaxTransfer
	if mt == 0 || (t.MaxTransfer != 0 && t.MaxTransfer < mt) {
		mt = t.MaxTransfer
	}
	return image.Limits{RequestAlignment: 1, DiscardAlignment: max(r.DiscardAlignment, t.DiscardAlignment), MaxTransfer: mt}
}

// Flush is blkverify_co_flush: only the test image matters.
func (b *blkverify) Flush() error { return b.test.Flush() }

func (b *blkverify) Close() error { return nil }

func (b *blkverify) Filtered() *image.Disk { return b.raw }

func (b *blkverify) Truncate(size int64, p image.Prealloc) error { return b.raw.Truncate(size, p) }

// Info is bdrv_get_info through the filter (the raw copy's), under
// blkverify's format and protocol names.
func (b *blkverify) Info() (image.Info, error) {
	i, err := filterInfo("blkverify", b.raw)
	i.ProtocolName = "blkverify"
	return i, err
}
