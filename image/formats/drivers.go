package formats

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/image/raw"
)

func init() {
	// QEMU's registration order decides ties in probing; every format
	// but raw scores 100 on its magic, raw 1 on anything.
	Register(&BlockDriver{Name: "file", Protocol: "file", FileOpen: true, NeedsFilename: true,
		ParseFilename: stripPrefix("file:"), Open: openFile, ReopenPrepare: reopenFile})
	Register(&BlockDriver{Name: "host_device", Protocol: "host_device", FileOpen: true, NeedsFilename: true,
		ParseFilename: stripPrefix("host_device:"), Open: openFile, ReopenPrepare: reopenFile})
	Register(&BlockDriver{Name: "host_cdrom", Protocol: "host_cdrom", FileOpen: true, NeedsFilename: true,
		ParseFilename: stripPrefix("host_cdrom:"), Open: openFile, ReopenPrepare: reopenFile})
	Register(&BlockDriver{Name: "raw", IsFormat: true, Probe: func([]byte, string) int { return 1 }, Open: openRawFormat, ReopenPrepare: reopenRaw})
	Register(&BlockDriver{Name: "qcow2", IsFormat: true, SupportsBacking: true, Probe: probeQcow2, Open: openQcow2, ReopenPrepare: reopenQcow2, JoinOptions: joinQcow2})
	Register(&BlockDriver{Name: "null-co", Protocol: "null-co", FileOpen: true,
		ParseFilename: onlyFilename("null-co://"), Open: openNull, ReopenPrepare: reopenNull})
	Register(&BlockDriver{Name: "null-aio", Protocol: "null-aio", FileOpen: true,
		ParseFilename: onlyFilename("null-aio://"), Open: openNull, ReopenPrepare: reopenNull})
	for _, u := range []struct {
		name  string
		probe func([]byte, string) int
	}{
		{"qcow", probeQcow}, {"qed", magicProbe("QED\x00")}, {"vmdk", probeVmdk},
		{"vpc", magicProbe("conectix")}, {"vhdx", magicProbe("vhdxfile")}, {"luks", magicProbe("LUKS\xba\xbe")},
		{"vdi", probeVdi}, {"parallels", probeParallels}, {"bochs", nil}, {"cloop", nil}, {"dmg", nil},
		{"blklogwrites", nil},
		{"copy-before-write", nil}, {"snapshot-access", nil},
	} {
		if u.name == "luks" {
			Register(luksDriverDef())
			continue
		}
		Register(unimplemented(u.name, u.probe, false))
	}
	Register(&BlockDriver{Name: "nbd", Protocol: "nbd+unix", Protocols: []string{"nbd", "nbd+tcp"}, FileOpen: true,
		ParseFilename: parseNBDFilename, Open: openNBD, ReopenPrepare: reopenNBD})
}

// stripPrefix is bdrv_parse_filename_strip_prefix.
func stripPrefix(prefix string) func(string, *qdict.Dict) error {
	return func(filename string, opts *qdict.Dict) error {
		if rest, ok := strings.CutPrefix(filename, prefix); ok {
			if pathHasProtocol(rest) {
				rest = "./" + rest
			}
			opts.Put("filename", rest)
		}
		return nil
	}
}

func onlyFilename(name string) func(string, *qdict.Dict) error {
	return func(filename string, opts *qdict.Dict) error {
		if filename != name {
			return errorf(nil, "The only allowed filename for this driver is '%s'", name)
		}
		return nil
	}
}

type fileIdent struct{ dev, ino uint64 }

var fileOpts = []OptDesc{
	{"filename", OptString}, {"aio", OptString}, {"aio-max-batch", OptNumber}, {"locking", OptString},
	{"pr-manager", OptString}, {"drop-cache", OptBool}, {"x-check-cache-dropped", OptBool},
}

// openFile is file-posix's raw_open_common for the file and host_device
// drivers. The image locks are taken when a parent attaches the node
// (attachLock), as QEMU applies them with the parents' permissions.
func openFile(g *Graph, n *Node, opts *qdict.Dict) error {
	o, err := Absorb(fileOpts, opts)
	if err != nil {
		return err
	}
	filename, _ := o.Str("filename")
	aio := "threads"
	if n.Flags&FlagNativeAIO != 0 {
		aio = "native"
	}
	if v, ok := o.Str("aio"); ok {
		switch v {
		case "threads", "native", "io_uring":
			aio = v
		default:
			return errorf(nil, "invalid parameter value: %s", v)
		}
	}
	locking := "auto"
	if v, ok := o.Str("locking"); ok {
		switch v {
		case "on", "off", "auto":
			locking = v
		default:
			return errorf(nil, "invalid parameter value: %s", v)
		}
	}
	if v, ok := o.Str("pr-manager"); ok {
		return errorf(nil, "No persistent reservation manager with id '%s'", v)
	}
	ro := n.Flags&FlagRDWR == 0
	// QEMU opens first (a directory opens read-only), then checks the type
	if st, err := os.Stat(filename); err == nil && (ro || !st.IsDir()) {
		if n.Drv.Name == "file" && !st.Mode().IsRegular() {
			return errorf(nil, "'file' driver requires '%s' to be a regular file", filename)
		}
		if n.Drv.Name != "file" && st.Mode()&os.ModeDevice == 0 {
			return errorf(nil, "'%s' driver requires '%s' to be either a character or block device", n.Drv.Name, filename)
		}
	}
	d, err := raw.Open(filename, raw.Options{ReadOnly: ro, Direct: n.Flags&FlagNoCache != 0, NoFlush: n.Flags&FlagNoFlush != 0})
	if err != nil && !ro && n.Flags&FlagAutoRdonly != 0 && (errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EROFS)) {
		// bdrv_apply_auto_read_only: a file that cannot be written is
		// opened read-only when auto-read-only allows it
		d, err = raw.Open(filename, raw.Options{ReadOnly: true, Direct: n.Flags&FlagNoCache != 0, NoFlush: n.Flags&FlagNoFlush != 0})
		if err == nil {
			n.Flags &^= FlagRDWR
		}
	}
	if err != nil {
		if e, ok := err.(*os.PathError); ok && e.Err == syscall.EROFS {
			err = syscall.EACCES
		}
		return err
	}
	if aio == "native" && n.Flags&FlagNoCache == 0 {
		d.Close()
		return errorf(nil, "aio=native was specified, but it requires cache.direct=on, which was not specified.")
	}
	if st, err := os.Stat(filename); err == nil {
		if s, ok := st.Sys().(*syscall.Stat_t); ok {
			n.ident = fileIdent{uint64(s.Dev), s.Ino}
		}
	}
	n.noLock = locking == "off"
	if n.Flags&FlagTemporary != 0 {
		n.OnClose(func() error { os.Remove(filename); return nil })
	}
	n.Impl = fileNode{d}
	return nil
}

// fileNode is the raw driver as QEMU's "file" protocol driver: the same
// I/O, another name in info.
type fileNode struct{ *raw.Driver }

func (f fileNode) Info() (image.Info, error) {
	return image.Info{FormatName: "file", ProtocolName: "file"}, nil
}

// rawOf returns the raw driver of a file node, or nil.
func rawOf(n *Node) *raw.Driver {
	if f, ok := n.Impl.(fileNode); ok {
		return f.Driver
	}
	return nil
}

// attachLock takes the image locks of a file node for a parent's
// permissions (QEMU's raw_check_perm/raw_set_perm).
func attachLock(file *Node, l raw.Lock) error {
	if c, extra := blkdebugChild(file); c != nil {
		l.Perm |= extra.Perm
		l.Unshared |= extra.Unshared
		return attachLock(c, l)
	}
	if file.Drv != nil && file.Drv.IsFilter {
		// a filter passes its parent's permissions on (bdrv_default_perms)
		for _, c := range file.Children {
			if c.Role&(RoleFiltered|RoleData) != 0 {
				if err := attachLock(c.Node, l); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if q, ok := file.Impl.(*quorum); ok {
		// quorum_child_perm: the parent's permissions, write and
		// resize never shared
		return quorumLocks(file, q, false, l.Perm, l.Unshared)
	}
	d := rawOf(file)
	if d == nil || file.noLock {
		return nil
	}
	return d.SetLock(l)
}

var rawOpts = []OptDesc{{"offset", OptSize}, {"size", OptSize}}

// rawShared is the file node's raw driver seen through the raw format
// node: the same I/O (goqio's raw driver is both); the file node closes it.
type rawShared struct{ *raw.Driver }

func (rawShared) Close() error { return nil }

// openRawFormat is raw-format.c's raw_open.
func openRawFormat(g *Graph, n *Node, opts *qdict.Dict) error {
	o, err := Absorb(rawOpts, opts)
	if err != nil {
		return err
	}
	offset := int64(o.Num("offset", 0))
	hasSize := o.Has("size")
	size := int64(o.Num("size", 0))
	role := RoleFiltered | RolePrimary
	if offset != 0 || hasSize {
		role = RoleData | RolePrimary
	}
	file, err := g.OpenChild(opts, "file", n, role, false)
	if err != nil {
		return err
	}
	l := raw.Lock{Perm: raw.PermConsistentRead}
	if n.Flags&FlagRDWR != 0 {
		l.Perm |= raw.PermWrite
	}
	if err := attachLock(file, l); err != nil {
		return errorf(err, "%v", err)
	}
	if n.Probed && n.Flags&FlagRDWR != 0 && g.Env.Print != nil {
		file.refreshFilename()
		g.Env.Print(fmt.Sprintf("WARNING: Image format was not specified for '%s' and probing guessed raw.\n"+
			"         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n"+
			"         Specify the 'raw' format explicitly to remove the restrictions.", file.Filename))
	}
	realSize := file.Disk.Size()
	if offset > realSize || offset < 0 {
		return errorf(nil, "Offset (%d) cannot be greater than size of the containing file (%d)", uint64(offset), realSize)
	}
	if hasSize && (realSize-offset < size || size < 0) {
		return errorf(nil, "The sum of offset (%d) and size (%d) has to be smaller or equal to the  actual size of the containing file (%d)", uint64(offset), uint64(size), realSize)
	}
	if hasSize && size%512 != 0 {
		return errorf(nil, "Specified size is not multiple of %d", 512)
	}
	if !hasSize {
		size = realSize - offset
	}
	n.ident = file.ident
	if d := rawOf(file); d != nil && offset == 0 && !hasSize {
		if n.Probed {
			d.SetProbed(func(b []byte) bool { return Probe(b) != "raw" })
		}
		n.Impl = rawShared{d}
		return nil
	}
	n.Impl = &window{file: file.Disk, off: offset, size: size, hasSize: hasSize, probed: n.Probed}
	return nil
}

// openQcow2 is qcow2_open: the file child, its locks, the image (which
// opens its data-file child, openDataFile, when it has one).
func openQcow2(g *Graph, n *Node, opts *qdict.Dict) error {
	file, err := g.OpenChild(opts, "file", n, RoleImage, false)
	if err != nil {
		return err
	}
	rw := n.Flags&FlagRDWR != 0
	l := raw.Lock{Perm: raw.PermConsistentRead}
	if rw {
		l.Perm |= raw.PermWrite | raw.PermResize
	}
	if !n.ForceShare {
		l.Unshared = raw.PermWrite | raw.PermResize
	}
	if err := attachLock(file, l); err != nil {
		return errorf(err, "%v", err)
	}
	n.ident = file.ident
	depth := 0
	for p := n.cowParent; p != nil; p = p.cowParent {
		// QEMU hangs on a loop of backing file names; references and
		// explicit options make a cycle its attach check refuses
		if n.implicitBacking && p.ident == n.ident && n.ident != (fileIdent{}) {
			return errorf(nil, "Backing file loop: '%s' is its own backing file (directly or through others)", file.Filename)
		}
		depth++
	}
	if depth >= MaxChainDepth {
		return errorf(nil, "Backing chain deeper than %d images", MaxChainDepth)
	}
	ro, err := qcow2RuntimeOptions(n, opts, n.Flags)
	if err != nil {
		return err
	}
	qo := qcow2.Options{Runtime: ro, ReadOnly: !rw, Direct: n.Flags&FlagNoCache != 0, NoFlush: n.Flags&FlagNoFlush != 0,
		Unmap: n.Flags&FlagUnmap != 0, ForceShare: n.ForceShare, Check: n.Flags&FlagCheck != 0}
	if n.parent == nil {
		qo.Trace = g.Env.Trace
	}
	qo.Stderr, qo.Prog = g.Env.Stderr, g.Env.Prog
	qo.NoIO, qo.Secrets = n.Flags&FlagNoIO != 0, g.Objects.Secret
	qo.OpenDataFile = func(name string) (*image.Disk, error) { return openDataFile(g, n, opts, name) }
	if qo.NoIO {
		// qcow2_do_open with BDRV_O_NO_IO (QEMU 7.2.x, CVE-2024-4467):
		// the data file is not opened and its options are dropped
		opts.DelSub("data-file.")
		opts.Del("data-file")
	}
	d, err := qcow2.OpenOn(file.Disk, file.Filename, qo)
	if err != nil {
		if e, ok := err.(*Error); ok {
			return e // opening the data file failed
		}
		var pe *os.PathError
		if asPathError(err, &pe) {
			return openErr(file.Filename, err)
		}
		return &Error{Msg: err.Error(), Err: err}
	}
	n.BackingFile, n.BackingFormat = d.BackingFile()
	n.autoBackingFile = n.BackingFile
	n.Impl = d
	return nil
}

var nullOpts = []OptDesc{{"size", OptSize}, {"latency-ns", OptNumber}, {"read-zeroes", OptBool}}

// openNull is null.c's null_file_open.
func openNull(g *Graph, n *Node, opts *qdict.Dict) error {
	o, err := Absorb(nullOpts, opts)
	if err != nil {
		return err
	}
	lat := o.Num("latency-ns", 0)
	if int64(lat) < 0 {
		return errorf(nil, "latency-ns is invalid")
	}
	n.Impl = &nullDriver{name: n.Drv.Name, size: int64(o.Num("size", 1<<30)), zeroes: o.Bool("read-zeroes", false), latency: int64(lat)}
	return nil
}

// window is raw-format.c over a child it does not share a driver with
// (a file with offset or size, or any other node): requests are moved by
// the offset (raw_adjust_offset), the length follows the child's
// (raw_getlength), reads and writes tell the child read_aio and write_aio
// (for a blkdebug child), block status is the child's at the moved offset
// (BDRV_BLOCK_RAW), info the child's (raw_get_info). A probed raw image
// takes requests in sectors and refuses a block 0 that would probe as
// another format (raw_co_pwritev).
type window struct {
	file      *image.Disk
	off, size int64
	hasSize   bool
	probed    bool
	mu        sync.Mutex
}

var (
	_ image.StatusForwarder = (*window)(nil)
	_ image.Truncater       = (*window)(nil)
)

// adjust is raw_adjust_offset: with a size, a request past it fails
// (ENOSPC for writes, EINVAL for reads).
func (w *window) adjust(off, n int64, write bool) (int64, error) {
	if w.hasSize {
		size := w.Size()
		if off > size || n > size-off {
			if write {
				return 0, syscall.ENOSPC
			}
			return 0, syscall.EINVAL
		}
	}
	return off + w.off, nil
}

func (w *window) ReadAt(p []byte, off int64) (int, error) {
	o, err := w.adjust(off, int64(len(p)), false)
	if err != nil {
		return 0, err
	}
	w.file.DebugEvent("read_aio")
	if err := w.file.ReadAt(p, o); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *window) WriteAt(p []byte, off int64) (int, error) {
	if w.probed && off < probeSize && len(p) > 0 {
		if len(p) < probeSize || Probe(p[:probeSize]) != "raw" {
			return 0, syscall.EPERM
		}
	}
	o, err := w.adjust(off, int64(len(p)), true)
	if err != nil {
		return 0, err
	}
	w.file.DebugEvent("write_aio")
	if err := w.file.WriteAt(p, o, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Size is raw_getlength.
func (w *window) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.file.Size()
	switch {
	case l < w.off:
		w.size = 0
	case w.hasSize:
		w.size = min(w.size, l-w.off)
	default:
		w.size = l - w.off
	}
	return w.size
}

// Limits: a byte interface (sectors for a probed image,
// raw_refresh_limits) with the child's max transfer and discard
// alignment.
func (w *window) Limits() image.Limits {
	cl := w.file.Limits()
	l := image.Limits{RequestAlignment: 1, DiscardAlignment: cl.DiscardAlignment, MaxTransfer: cl.MaxTransfer}
	if w.probed {
		l.RequestAlignment = 512
	}
	return l
}

func (w *window) Flush() error { return w.file.Flush() }

// SupportsFUA: raw passes FUA to its child when the child takes it
// (raw_open's supported_write_flags).
func (w *window) SupportsFUA() bool { return w.file.SupportsFUA() }

func (w *window) WriteAtFUA(p []byte, off int64) error {
	if w.probed && off < probeSize && len(p) > 0 {
		if len(p) < probeSize || Probe(p[:probeSize]) != "raw" {
			return syscall.EPERM
		}
	}
	o, err := w.adjust(off, int64(len(p)), true)
	if err != nil {
		return err
	}
	return w.file.WriteAt(p, o, true)
}

func (w *window) WriteZeroesFUA(off, n int64, flags image.ZeroFlags) error {
	o, err := w.adjust(off, n, true)
	if err != nil {
		return err
	}
	return w.file.WriteZeroes(o, n, flags, true)
}
func (w *window) Close() error { return nil }

func (w *window) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	o, err := w.adjust(off, n, true)
	if err != nil {
		return err
	}
	return w.file.WriteZeroes(o, n, flags, false)
}

// SupportedZeroFlags are the child's (raw_open).
func (w *window) SupportedZeroFlags() image.ZeroFlags { return childZeroFlags(w.file) }

func (w *window) Discard(off, n int64) error {
	o, err := w.adjust(off, n, true)
	if err != nil {
		return err
	}
	return w.file.Discard(o, n)
}

// ForwardStatus is raw_co_block_status.
func (w *window) ForwardStatus(off int64) (*image.Disk, int64) { return w.file, off + w.off }

// Truncate is raw_co_truncate.
func (w *window) Truncate(size int64, p image.Prealloc) error {
	if w.hasSize {
		return &Error{Msg: "Cannot resize fixed-size raw disks", Err: syscall.ENOTSUP}
	}
	if math.MaxInt64-size < w.off {
		return &Error{Msg: "Disk size too large for the chosen offset", Err: syscall.EINVAL}
	}
	return w.file.Truncate(size+w.off, p)
}

// Info is raw_get_info: the child's.
func (w *window) Info() (image.Info, error) { return filterInfo("raw", w.file) }

// nullDriver is QEMU's null-co/null-aio: reads leave the buffer (or zero
// it with read-zeroes), writes go nowhere.
type nullDriver struct {
	name    string
	size    int64
	zeroes  bool
	latency int64
}

// wait is null_co_common: each request takes latency-ns.
func (d *nullDriver) wait() {
	if d.latency > 0 {
		time.Sleep(time.Duration(d.latency))
	}
}

func (d *nullDriver) ReadAt(p []byte, off int64) (int, error) {
	d.wait()
	if d.zeroes {
		clear(p)
	}
	return len(p), nil
}
func (d *nullDriver) WriteAt(p []byte, off int64) (int, error) { d.wait(); return len(p), nil }
func (d *nullDriver) Size() int64                              { return d.size }
func (d *nullDriver) Limits() image.Limits                     { return image.Limits{RequestAlignment: 1} }
func (d *nullDriver) Flush() error                             { return nil }
func (d *nullDriver) Close() error                             { return nil }
func (d *nullDriver) BlockStatus(off, n int64, wantZero bool) (image.Extent, error) {
	st := image.StatusOffsetValid // null_co_block_status: never data
	if d.zeroes {
		st |= image.StatusZero
	}
	return image.Extent{Status: st, Len: n, Offset: off}, nil
}

// Info: null has no bdrv_get_info; qemu-io prints both names and fails.
func (d *nullDriver) Info() (image.Info, error) {
	return image.Info{FormatName: d.name, ProtocolName: d.name}, image.ErrNotSupported
}
