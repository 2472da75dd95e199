package formats

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/nbd/client"
)

// Flags are QEMU's BDRV_O_* open flags.
type Flags uint32

const (
	FlagRDWR       Flags = 1 << iota // BDRV_O_RDWR
	FlagNoCache                      // BDRV_O_NOCACHE: cache.direct
	FlagNoFlush                      // BDRV_O_NO_FLUSH: cache.no-flush
	FlagSnapshot                     // BDRV_O_SNAPSHOT: a temporary overlay takes the writes
	FlagTemporary                    // BDRV_O_TEMPORARY: delete the file at close
	FlagCopyOnRead                   // BDRV_O_COPY_ON_READ
	FlagNativeAIO                    // BDRV_O_NATIVE_AIO
	FlagUnmap                        // BDRV_O_UNMAP: discard=unmap
	FlagProtocol                     // BDRV_O_PROTOCOL: open a protocol driver, no format probing
	FlagNoBacking                    // BDRV_O_NO_BACKING
	FlagAutoRdonly                   // BDRV_O_AUTO_RDONLY
	FlagCheck                        // BDRV_O_CHECK: opened for qemu-img check
	FlagAllowRDWR                    // BDRV_O_ALLOW_RDWR
	FlagNoIO                         // BDRV_O_NO_IO
)

// Role is a child's BdrvChildRole.
type Role uint8

const (
	RoleData Role = 1 << iota
	RoleMetadata
	RoleFiltered
	RoleCOW
	RolePrimary

	RoleImage = RoleData | RoleMetadata | RolePrimary
)

// Child is a named edge of the graph.
type Child struct {
	Name string // "file", "backing", "data-file", "image", ...
	Role Role
	Node *Node
}

// Node is one node of the block graph: a driver, the options it was opened
// with, its children, and the generic block layer (Disk) in front of it.
type Node struct {
	NodeName string
	Drv      *BlockDriver
	Impl     image.Driver
	Disk     *image.Disk
	Flags    Flags
	// Options are the node's effective options (bs->options) and
	// Explicit the ones the user gave (bs->explicit_options), children's
	// options removed.
	Options, Explicit *qdict.Dict
	Filename          string
	Children          []*Child
	Probed            bool
	ForceShare        bool
	DetectZeroes      image.DetectZeroes
	CopyOnRead        bool
	// BackingFile and BackingFormat are what a format node's image names.
	BackingFile, BackingFormat string

	graph     *Graph
	refs      int
	cowParent *Node // the node this one is the backing file of
	parent    *Node // the node this one was opened for, nil at the top
	// ident identifies the file a file node opened (or a format node's
	// file), for backing-loop detection
	ident fileIdent
	// noLock: the file node was opened with locking=off
	noLock bool
	// role is the node's role under its parent; topResize: the top node
	// has been given the resize permission (GrantResize)
	role      Role
	topResize bool
	// implicitBacking: a backing file opened from the name in its parent
	// image, not from options
	implicitBacking bool
	// FullOptions are the options that open this node's tree again
	// (full_open_options, made by refreshFilename).
	FullOptions *qdict.Dict
	// exactFilename and autoBackingFile are QEMU's exact_filename and
	// auto_backing_file
	exactFilename, autoBackingFile string
	closers                        []func() error
}

// Child returns the child named name, or nil.
func (n *Node) Child(name string) *Node {
	for _, c := range n.Children {
		if c.Name == name {
			return c.Node
		}
	}
	return nil
}

// ReadOnly reports whether the node was opened without write access.
func (n *Node) ReadOnly() bool { return n.Flags&FlagRDWR == 0 }

// Close drops a reference; the last one closes the node and its children.
func (n *Node) Close() error {
	n.refs--
	if n.refs > 0 {
		return nil
	}
	if n.Disk != nil {
		return n.Disk.Close() // then closeRest, through the Disk's OnClose
	}
	var first error
	if n.Impl != nil {
		first = n.Impl.Close()
	}
	if err := n.closeRest(); first == nil {
		first = err
	}
	return first
}

// closeRest closes what the node holds besides its driver.
func (n *Node) closeRest() error {
	var first error
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil && first == nil {
			first = err
		}
	}
	for _, c := range n.Children {
		// a format driver may have closed its file already
		if err := c.Node.Close(); err != nil && !errors.Is(err, image.ErrClosed) && first == nil {
			first = err
		}
	}
	if n.graph != nil && n.graph.nodes[n.NodeName] == n {
		delete(n.graph.nodes, n.NodeName)
	}
	return first
}

// OnClose registers f to run when the node closes, after its driver.
func (n *Node) OnClose(f func() error) { n.closers = append(n.closers, f) }

// Graph is the graph the node belongs to (nil for one opened alone).
func (n *Node) Graph() *Graph { return n.graph }

// Env is what a graph's drivers may use of the program around them.
type Env struct {
	// Warn receives warnings QEMU prints with warn_report (no prefix, no
	// newline): the caller adds "prog: warning: ".
	Warn func(string)
	// Print receives messages QEMU prints on stderr as they are (the
	// probed-raw warning), without the trailing newline.
	Print func(string)
	// Trace receives goqio's request trace (-T zero), or is nil.
	Trace func(string)
	// Prog is the program name, for messages that carry it.
	Prog string
	// Stderr receives what drivers print on stderr as QEMU's do (byte
	// for byte, some of it without a newline), or is nil.
	Stderr io.Writer
	// Fatal receives the message of an error QEMU exits on (exit(1));
	// nil: the request fails instead.
	Fatal func(string)
	// WriteThrough: the top node flushes after every write (the
	// BlockBackend's write cache disabled).
	WriteThrough bool
}

// Graph is a set of nodes that can refer to each other by node-name, as
// QEMU's global node list. A qemu-io session keeps one for its lifetime.
type Graph struct {
	Env Env
	// Reopening is set while a reopen opens the graph again: what QEMU
	// checks only at a first open (force-share on a read-write node) is
	// not checked again.
	Reopening bool
	// keptNBD holds the connections of the nbd nodes a reopen closed, by
	// nbdNode.key, for the open that follows (KeepConnections).
	keptNBD  map[string][]*client.Conn
	nodes    map[string]*Node
	counter  int
	implicit bool // the backing file being opened is implicit
	// Objects are the --object definitions (secrets, throttle groups).
	Objects Objects
}

// NewGraph returns an empty graph.
func NewGraph(env Env) *Graph { return &Graph{Env: env, nodes: map[string]*Node{}} }

func (g *Graph) warn(msg string) {
	if g.Env.Warn != nil {
		g.Env.Warn(msg)
	}
}

// Lookup finds a node by node-name.
func (g *Graph) Lookup(name string) *Node { return g.nodes[name] }

// Open is bdrv_open: the node tree described by filename (may be "" for
// none) and options, opened with flags. hasFilename distinguishes an empty
// filename from none.
func (g *Graph) Open(filename string, hasFilename bool, options *qdict.Dict, flags Flags) (*Node, error) {
	n, err := g.openInherit(filename, hasFilename, "", options, flags, nil, 0)
	if err != nil {
		return nil, err
	}
	return n, nil
}

func errorf(err error, format string, a ...any) *Error {
	return &Error{Msg: fmt.Sprintf(format, a...), Err: err}
}

func prepend(err error, prefix string) error {
	if e, ok := err.(*Error); ok {
		return &Error{Msg: prefix + e.Msg, Err: e.Err, Hint: e.Hint}
	}
	return &Error{Msg: prefix + err.Error(), Err: err}
}

// inheritOptions is bdrv_inherited_options.
func inheritOptions(role Role, parentIsFormat bool, flags *Flags, child *qdict.Dict, parentFlags Flags, parent *qdict.Dict) {
	f := parentFlags
	if !parentIsFormat && role&RoleData != 0 && role&(RoleMetadata|RoleFiltered) == 0 {
		f &^= FlagProtocol
	}
	if (parentIsFormat && role&RoleCOW == 0) || role&RoleMetadata != 0 {
		f |= FlagProtocol
	}
	child.CopyDefault(parent, "cache.direct")
	child.CopyDefault(parent, "cache.no-flush")
	child.CopyDefault(parent, "force-share")
	if role&RoleCOW != 0 {
		child.SetDefault("read-only", "on")
		child.SetDefault("auto-read-only", "off")
	} else {
		child.CopyDefault(parent, "read-only")
		child.CopyDefault(parent, "auto-read-only")
	}
	child.SetDefault("discard", "unmap")
	f &^= FlagSnapshot | FlagNoBacking | FlagCopyOnRead
	if role&RoleMetadata != 0 {
		f &^= FlagNoIO
	}
	if role&RoleCOW != 0 {
		f &^= FlagTemporary
	}
	*flags = f
}

// tempSnapshotOptions is bdrv_temp_snapshot_options.
func tempSnapshotOptions(childFlags *Flags, child *qdict.Dict, parentFlags Flags, parent *qdict.Dict) {
	*childFlags = (parentFlags &^ FlagSnapshot) | FlagTemporary
	child.SetDefault("cache.direct", "off")
	child.SetDefault("cache.no-flush", "on")
	child.CopyDefault(parent, "read-only")
	child.CopyDefault(parent, "discard")
	*childFlags &^= FlagNativeAIO
}

// updateOptionsFromFlags is update_options_from_flags.
func updateOptionsFromFlags(o *qdict.Dict, f Flags) {
	if !o.Has("cache.direct") {
		o.Put("cache.direct", f&FlagNoCache != 0)
	}
	if !o.Has("cache.no-flush") {
		o.Put("cache.no-flush", f&FlagNoFlush != 0)
	}
	if !o.Has("read-only") {
		o.Put("read-only", f&FlagRDWR == 0)
	}
	if !o.Has("auto-read-only") {
		o.Put("auto-read-only", f&FlagAutoRdonly != 0)
	}
}

// pathHasProtocol is path_has_protocol.
func pathHasProtocol(p string) bool {
	i := strings.IndexAny(p, ":/")
	return i >= 0 && p[i] == ':'
}

// fillOptions is bdrv_fill_options.
func (g *Graph) fillOptions(options *qdict.Dict, filename string, hasFilename bool, flags *Flags) error {
	protocol := *flags&FlagProtocol != 0
	parseFilename := false
	var drv *BlockDriver
	drvname, hasDrv := options.Str("driver")
	if hasDrv {
		drv = FindFormat(drvname)
		if drv == nil {
			return errorf(nil, "Unknown driver '%s'", drvname)
		}
		protocol = drv.FileOpen
	}
	if protocol {
		*flags |= FlagProtocol
	} else {
		*flags &^= FlagProtocol
	}
	updateOptionsFromFlags(options, *flags)
	if protocol && hasFilename {
		if !options.Has("filename") {
			options.Put("filename", filename)
			parseFilename = true
		} else {
			return errorf(nil, "Can't specify 'file' and 'filename' options at the same time")
		}
	}
	fn, hasFn := options.Str("filename")
	if !hasDrv && protocol {
		if !hasFn {
			return errorf(nil, "Must specify either driver or file")
		}
		d, err := findProtocol(fn, parseFilename)
		if err != nil {
			return err
		}
		drv = d
		options.Put("driver", drv.Name)
	}
	if drv != nil && drv.ParseFilename != nil && parseFilename {
		if err := drv.ParseFilename(fn, options); err != nil {
			return err
		}
		if !drv.NeedsFilename {
			options.Del("filename")
		}
	}
	return nil
}

// findProtocol is bdrv_find_protocol.
func findProtocol(filename string, allowPrefix bool) (*BlockDriver, error) {
	if d := findHostDevice(filename); d != nil {
		return d, nil
	}
	if !pathHasProtocol(filename) || !allowPrefix {
		return FindFormat("file"), nil
	}
	proto := filename[:strings.Index(filename, ":")]
	for _, d := range registry {
		if d.Protocol != "" && d.Protocol == proto {
			return d, nil
		}
		for _, p := range d.Protocols {
			if p == proto {
				return d, nil
			}
		}
	}
	return nil, errorf(nil, "Unknown protocol '%s'", proto)
}

func findHostDevice(filename string) *BlockDriver {
	var st os.FileInfo
	if strings.HasPrefix(filename, "/dev/cdrom") {
		return nil // no host_cdrom driver: the file driver's messages
	}
	st, err := os.Stat(filename)
	if err != nil {
		return nil
	}
	if st.Mode()&(os.ModeDevice|os.ModeCharDevice) != 0 {
		return FindFormat("host_device")
	}
	return nil
}

// openInherit is bdrv_open_inherit.
func (g *Graph) openInherit(filename string, hasFilename bool, reference string, options *qdict.Dict, flags Flags, parent *Node, role Role) (*Node, error) {
	if reference != "" {
		if hasFilename || options.Len() > 0 {
			return nil, errorf(nil, "Cannot reference an existing block device with additional options or a new filename")
		}
		n := g.nodes[reference]
		if n == nil {
			return nil, errorf(nil, "Cannot find device='%s' nor node-name='%s'", reference, reference)
		}
		n.refs++
		return n, nil
	}
	bs := &Node{graph: g, refs: 1, parent: parent, role: role}
	if role&RoleCOW != 0 {
		bs.cowParent = parent
		bs.implicitBacking = g.implicit
		g.implicit = false // not for this node's own children
	}
	if options == nil {
		options = qdict.New()
	}
	if hasFilename && strings.HasPrefix(filename, "json:") {
		j, err := parseJSONFilename(filename)
		if err != nil {
			return nil, err
		}
		options.Join(j, false)
		hasFilename, filename = false, ""
	}
	bs.Explicit = options.Clone()
	if parent != nil {
		parentIsFormat := parent.Drv == nil || parent.Drv.IsFormat
		inheritOptions(role, parentIsFormat, &flags, options, parent.Flags, parent.Options)
	}
	if err := g.fillOptions(options, filename, hasFilename, &flags); err != nil {
		return nil, err
	}
	if ro, _ := options.Str("read-only"); ro != "on" && options.Get("read-only") != true {
		flags |= FlagRDWR | FlagAllowRDWR
	} else {
		flags &^= FlagRDWR
	}
	var snapshotOptions *qdict.Dict
	var snapshotFlags Flags
	if flags&FlagSnapshot != 0 {
		snapshotOptions = qdict.New()
		tempSnapshotOptions(&snapshotFlags, snapshotOptions, flags, options)
		options.Del("read-only")
		inheritOptions(RoleCOW, true, &flags, options, flags, options)
	}
	bs.Flags = flags
	bs.Options = options
	options = options.Clone()

	var drv *BlockDriver
	if drvname, ok := options.Str("driver"); ok {
		drv = FindFormat(drvname)
		if drv == nil {
			return nil, errorf(nil, "Unknown driver: '%s'", drvname)
		}
	}
	backing, isStr := options.Str("backing")
	if _, isNull := options.Get("backing").(qdict.Null); isNull || (isStr && backing == "") {
		if isStr {
			g.warn("Use of \"backing\": \"\" is deprecated; use \"backing\": null instead")
		}
		flags |= FlagNoBacking
		bs.Flags |= FlagNoBacking
		bs.Explicit.Del("backing")
		bs.Options.Del("backing")
		options.Del("backing")
	}
	var file *Node
	fail := func(err error) (*Node, error) {
		if file != nil {
			file.Close()
		}
		return nil, err
	}
	if flags&FlagProtocol == 0 {
		f, err := g.openChildNode(filename, hasFilename, options, "file", bs, RoleImage, true)
		if err != nil {
			return fail(err)
		}
		if f != nil {
			file = f
			options.Put("file", f.NodeName)
		}
	}
	bs.Probed = drv == nil
	if drv == nil && file != nil {
		d, err := findImageFormat(file, filename)
		if err != nil {
			return fail(err)
		}
		drv = d
		bs.Options.Put("driver", drv.Name)
		options.Put("driver", drv.Name)
	} else if drv == nil {
		return fail(errorf(nil, "Must specify either driver or file"))
	}
	if err := g.openCommon(bs, file, options); err != nil {
		return fail(err)
	}
	if file != nil {
		file.Close() // the probing reference; the driver holds its own
		file = nil
	}
	closeAndFail := func(err error) (*Node, error) {
		bs.Close()
		return nil, err
	}
	if bs.Flags&FlagNoBacking == 0 {
		if err := g.openBackingFile(bs, options, "backing"); err != nil {
			return closeAndFail(err)
		}
	}
	for _, c := range bs.Children {
		bs.Explicit.DelSub(c.Name + ".")
		bs.Options.DelSub(c.Name + ".")
		bs.Explicit.Del(c.Name)
		bs.Options.Del(c.Name)
	}
	if options.Len() != 0 {
		k := options.First()
		if flags&FlagProtocol != 0 {
			return closeAndFail(errorf(nil, "Block protocol '%s' doesn't support the option '%s'", drv.Name, k))
		}
		return closeAndFail(errorf(nil, "Block format '%s' does not support the option '%s'", drv.Name, k))
	}
	if err := g.finish(bs, parent); err != nil {
		return closeAndFail(err)
	}
	if snapshotFlags != 0 {
		top, err := g.appendTempSnapshot(bs, snapshotFlags, snapshotOptions)
		if err != nil {
			return closeAndFail(err)
		}
		bs = top
	}
	return bs, nil
}

// finish makes the node's Disk once its driver and children are open.
func (g *Graph) finish(bs *Node, parent *Node) error {
	if bs.Disk != nil {
		return nil
	}
	o := image.Options{
		ReadOnly:     bs.Flags&FlagRDWR == 0,
		Unmap:        bs.Flags&FlagUnmap != 0,
		DetectZeroes: bs.DetectZeroes,
		CopyOnRead:   bs.CopyOnRead,
		OnClose:      bs.closeRest,
	}
	if parent != nil && (bs.Drv.FileOpen || bs.Drv.IsFilter || bs.Drv.PassEnd) {
		// below another node, requests may pass the end (QEMU checks
		// the bounds in the BlockBackend only); a filter passes them on
		o.Grow = true
	}
	if parent == nil {
		o.Trace = g.Env.Trace // the trace shows what the top node's requests become
	}
	if _, ok := bs.Impl.(rawShared); ok {
		o.RawFormat = true // one Disk for the raw node and its file node
	}
	if pc, ok := bs.Impl.(permChecker); ok {
		if err := pc.checkPerm(bs); err != nil {
			return err
		}
	}
	bs.Disk = image.New(bs.Impl, bs.Filename, o)
	if bs.Drv.IsFilter && bs.Flags&FlagRDWR != 0 && !bs.resizePerm() {
		// bdrv_node_refresh_perm, for the writer the node's parent is
		if align := bs.Disk.Limits().RequestAlignment; ((bs.Disk.Size()+511)&^511)%align != 0 {
			bs.Disk = nil
			return errorf(nil, "Cannot get 'write' permission without 'resize': Image size is not a multiple of request alignment")
		}
	}
	return nil
}

// permChecker is a driver whose node checks the permissions it asks of
// its children once its parent's are known (bdrv_node_refresh_perm when
// the parent attaches it).
type permChecker interface {
	checkPerm(n *Node) error
}

// resizePerm reports whether the node's parent, as a writer, holds QEMU's
// BLK_PERM_RESIZE on it (bdrv_default_perms): a format driver's file
// (metadata or data) child does; a filtered child (a filter's, or the raw
// format's without offset and size) has what its parent has; the top node
// has it once a command needed it (truncate); a backing file never does.
func (n *Node) resizePerm() bool {
	if n.Flags&FlagRDWR == 0 {
		return false
	}
	if n.parent == nil {
		return n.topResize
	}
	switch {
	case n.role&RoleCOW != 0:
		return false
	case n.role&(RoleMetadata|RoleData) != 0:
		return n.parent.Flags&FlagRDWR != 0
	case n.role&RoleFiltered != 0:
		return n.parent.resizePerm()
	}
	return false
}

// GrantResize gives the top node QEMU's BLK_PERM_RESIZE, as qemu-io's
// truncate command asks for it before it runs (blk_set_perm).
func (n *Node) GrantResize() { n.topResize = true }

func parseJSONFilename(filename string) (*qdict.Dict, error) {
	v, err := qdict.ParseJSON(strings.TrimPrefix(filename, "json:"))
	if err != nil {
		return nil, errorf(err, "Could not parse the JSON options: %v", err)
	}
	d, ok := v.(*qdict.Dict)
	if !ok {
		return nil, errorf(nil, "Invalid JSON object given")
	}
	d.Flatten()
	return d, nil
}

// openChildNode is bdrv_open_child_bs.
func (g *Graph) openChildNode(filename string, hasFilename bool, options *qdict.Dict, key string, parent *Node, role Role, allowNone bool) (*Node, error) {
	sub := options.ExtractSub(key + ".")
	reference, _ := options.Str(key)
	defer options.Del(key)
	if !hasFilename && reference == "" && sub.Len() == 0 {
		if !allowNone {
			return nil, errorf(nil, "A block device must be specified for \"%s\"", key)
		}
		return nil, nil
	}
	return g.openInherit(filename, hasFilename, reference, sub, 0, parent, role)
}

// OpenChild is bdrv_open_child for drivers: it opens (or references) the
// child key of parent from options and attaches it. It returns nil, nil
// when allowNone and nothing names the child.
func (g *Graph) OpenChild(options *qdict.Dict, key string, parent *Node, role Role, allowNone bool) (*Node, error) {
	n, err := g.openChildNode("", false, options, key, parent, role, allowNone)
	if err != nil || n == nil {
		return nil, err
	}
	if err := attachCheck(n, key, parent); err != nil {
		n.Close()
		return nil, err
	}
	parent.Children = append(parent.Children, &Child{Name: key, Role: role, Node: n})
	return n, nil
}

// attachCheck is bdrv_attach_child's cycle check: parent must not be
// reachable from the child.
func attachCheck(child *Node, name string, parent *Node) error {
	if reachable(child, parent, map[*Node]bool{}) {
		return errorf(nil, "Making '%s' a %s child of '%s' would create a cycle", child.NodeName, name, parent.NodeName)
	}
	return nil
}

func reachable(from, target *Node, seen map[*Node]bool) bool {
	if from == target {
		return true
	}
	if seen[from] {
		return false
	}
	seen[from] = true
	for _, c := range from.Children {
		if reachable(c.Node, target, seen) {
			return true
		}
	}
	return false
}

// runtimeOpts is bdrv_runtime_opts.
var runtimeOpts = []OptDesc{
	{"node-name", OptString}, {"driver", OptString}, {"cache.direct", OptBool},
	{"cache.no-flush", OptBool}, {"read-only", OptBool}, {"auto-read-only", OptBool},
	{"detect-zeroes", OptString}, {"discard", OptString}, {"force-share", OptBool},
}

// openCommon is bdrv_open_common.
func (g *Graph) openCommon(bs *Node, file *Node, options *qdict.Dict) error {
	opts, err := Absorb(runtimeOpts, options)
	if err != nil {
		return err
	}
	// update_flags_from_options
	bs.Flags &^= FlagNoCache | FlagNoFlush | FlagRDWR | FlagAutoRdonly
	if opts.Bool("cache.no-flush", false) {
		bs.Flags |= FlagNoFlush
	}
	if opts.Bool("cache.direct", false) {
		bs.Flags |= FlagNoCache
	}
	if !opts.Bool("read-only", false) {
		bs.Flags |= FlagRDWR
	}
	if opts.Bool("auto-read-only", false) {
		bs.Flags |= FlagAutoRdonly
	}
	name, _ := opts.Str("driver")
	drv := FindFormat(name)
	bs.ForceShare = opts.Bool("force-share", false)
	if bs.ForceShare && bs.Flags&FlagRDWR != 0 && !g.Reopening {
		return errorf(nil, "force-share=on can only be used with read-only images")
	}
	var filename string
	hasFilename := false
	if file != nil {
		file.refreshFilename()
		filename, hasFilename = file.Filename, true
	} else {
		filename, hasFilename = options.Str("filename")
	}
	if drv.NeedsFilename && filename == "" {
		return errorf(nil, "The '%s' block driver requires a file name", drv.Name)
	}
	ro := bs.Flags&FlagRDWR == 0
	if bs.Flags&FlagCopyOnRead != 0 {
		if ro {
			return errorf(nil, "Can't use copy-on-read on read-only device")
		}
		bs.CopyOnRead = true
	}
	if d, ok := opts.Str("discard"); ok {
		switch d {
		case "off", "ignore":
			bs.Flags &^= FlagUnmap
		case "on", "unmap":
			bs.Flags |= FlagUnmap
		default:
			return errorf(nil, "Invalid discard option")
		}
	}
	if dz, ok := opts.Str("detect-zeroes"); ok {
		z, err := image.ParseDetectZeroes(dz, bs.Flags&FlagUnmap != 0)
		if err != nil {
			return errorf(nil, "%v", err)
		}
		bs.DetectZeroes = z
	}
	if hasFilename {
		bs.Filename = filename
	}
	bs.exactFilename = bs.Filename
	nodeName, hasNodeName := opts.Str("node-name")
	if err := g.assignNodeName(bs, nodeName, hasNodeName); err != nil {
		return err
	}
	bs.Drv = drv
	if err := drv.Open(g, bs, options); err != nil {
		delete(g.nodes, bs.NodeName)
		for _, c := range bs.Children {
			c.Node.Close()
		}
		bs.Children = nil
		if _, ok := err.(*Error); ok {
			return err
		}
		if bs.Filename != "" {
			return errorf(err, "Could not open '%s': %s", bs.Filename, Strerror(image.Errno(err)))
		}
		return errorf(err, "Could not open image: %s", Strerror(image.Errno(err)))
	}
	return nil
}

// idWellformed is id_wellformed.
func idWellformed(id string) bool {
	if id == "" {
		return false
	}
	c := id[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return false
	}
	for i := 1; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// assignNodeName is bdrv_assign_node_name. Generated names are
// "#block" and a number, as QEMU's id_generate (whose two random digits
// goqio replaces by a counter's).
func (g *Graph) assignNodeName(bs *Node, name string, given bool) error {
	if !given {
		g.counter++
		name = fmt.Sprintf("#block%03d", g.counter)
	} else if !idWellformed(name) {
		return errorf(nil, "Invalid node-name: '%s'", name)
	}
	if g.nodes[name] != nil {
		return errorf(nil, "Duplicate nodes with node-name='%s'", name)
	}
	if len(name) >= 32 {
		return errorf(nil, "Node name too long")
	}
	bs.NodeName = name
	g.nodes[name] = bs
	return nil
}

// FullBackingFilename is bdrv_get_full_backing_filename for a node whose
// image names a backing file (qemu-img info's full-backing-filename).
func FullBackingFilename(n *Node) (string, error) { return fullBackingFilename(n) }

// fullBackingFilename is bdrv_get_full_backing_filename: a relative name
// is relative to the directory of the node's file (bdrv_dirname).
func fullBackingFilename(bs *Node) (string, error) {
	b := bs.BackingFile
	if b == "" || pathHasProtocol(b) || filepath.IsAbs(b) {
		return b, nil
	}
	dir, err := dirname(bs)
	if err != nil {
		return "", err
	}
	return dir + b, nil
}

// dirname is bdrv_dirname: the directory of the primary child's exact
// filename, with its slash ("" for none).
func dirname(n *Node) (string, error) {
	for _, c := range n.Children {
		if c.Role&RolePrimary != 0 {
			return dirname(c.Node)
		}
	}
	n.refreshFilename()
	if n.Drv.Name == "nbd" {
		// nbd_dirname: NBD exports have no directories
		return "", errorf(nil, "Cannot generate a base directory for NBD nodes")
	}
	if n.exactFilename != "" {
		if i := strings.LastIndex(n.exactFilename, "/"); i >= 0 {
			return n.exactFilename[:i+1], nil
		}
		return "", nil
	}
	return "", errorf(nil, "Cannot generate a base directory for %s nodes", n.Drv.Name)
}

// BackingSetter is implemented by format drivers that take a backing file
// opened by the graph.
type BackingSetter interface {
	SetBacking(*image.Disk) error
}

// openBackingFile is bdrv_open_backing_file.
func (g *Graph) openBackingFile(bs *Node, parentOptions *qdict.Dict, key string) error {
	if bs.Child(key) != nil {
		return nil
	}
	options := parentOptions.ExtractSub(key + ".")
	reference, _ := parentOptions.Str(key)
	backingFilename, hasBacking := "", false
	if reference != "" || options.Has("file.filename") {
		// keep no filename
	} else if bs.BackingFile == "" && options.Len() == 0 {
		return nil
	} else {
		f, err := fullBackingFilename(bs)
		if err != nil {
			return err
		}
		backingFilename, hasBacking = f, f != ""
	}
	if !bs.Drv.SupportsBacking {
		return errorf(nil, "Driver doesn't support backing files")
	}
	implicitBacking := false
	if reference == "" && !options.Has("file.filename") && options.Len() == 0 {
		implicitBacking = bs.autoBackingFile == bs.BackingFile
	}
	if reference == "" && bs.BackingFormat != "" && !options.Has("driver") {
		options.Put("driver", bs.BackingFormat)
	}
	implicit := reference == "" && !options.Has("file.filename") && options.Len() <= 1
	b, err := g.openInheritImplicit(backingFilename, hasBacking, reference, options, bs, implicit)
	if err == nil {
		if err = attachCheck(b, key, bs); err != nil {
			b.Close()
			return err
		}
	}
	if err != nil {
		bs.Flags |= FlagNoBacking
		return prepend(err, "Could not open backing file: ")
	}
	b.refreshFilename()
	if implicitBacking {
		bs.autoBackingFile = b.Filename
	}
	bs.Children = append(bs.Children, &Child{Name: key, Role: RoleCOW, Node: b})
	if s, ok := bs.Impl.(BackingSetter); ok {
		if err := s.SetBacking(b.Disk); err != nil {
			return err
		}
	}
	parentOptions.Del(key)
	return nil
}

// openInheritImplicit opens a backing file; implicit marks one opened
// from the name in its parent's image (not from options), whose file may
// loop back into the chain.
func (g *Graph) openInheritImplicit(filename string, hasFilename bool, reference string, options *qdict.Dict, parent *Node, implicit bool) (*Node, error) {
	prev := g.implicit
	g.implicit = implicit
	defer func() { g.implicit = prev }()
	return g.openInherit(filename, hasFilename, reference, options, 0, parent, RoleCOW)
}

// MaxChainDepth bounds a backing chain. QEMU has no such bound and hangs
// on a backing loop; goqio refuses both a loop and an absurdly deep chain.
const MaxChainDepth = 256

// appendTempSnapshot is bdrv_append_temp_snapshot: a temporary qcow2
// overlay in $TMPDIR (default /var/tmp) over bs, deleted at close.
func (g *Graph) appendTempSnapshot(bs *Node, flags Flags, options *qdict.Dict) (*Node, error) {
	dir := os.Getenv("TMPDIR")
	if dir == "" {
		dir = "/var/tmp"
	}
	f, err := os.CreateTemp(dir, "vl.")
	if err != nil {
		return nil, errorf(err, "Could not get temporary filename: %v", err)
	}
	tmp := f.Name()
	f.Close()
	co := qcow2.CreateOptions{Size: bs.Disk.Size(), ClusterSize: 65536, Version: 3, RefcountBits: 16}
	if err := qcow2.Create(tmp, co); err != nil {
		os.Remove(tmp)
		return nil, errorf(err, "Could not create temporary overlay '%s': %v", tmp, err)
	}
	options.Put("file.driver", "file")
	options.Put("file.filename", tmp)
	options.Put("driver", "qcow2")
	top, err := g.openInherit("", false, "", options, flags|FlagNoBacking, nil, 0)
	if err != nil {
		os.Remove(tmp)
		return nil, err
	}
	// bdrv_append: bs becomes the overlay's backing file
	top.Flags &^= FlagNoBacking
	bs.cowParent = top
	top.Children = append(top.Children, &Child{Name: "backing", Role: RoleCOW, Node: bs})
	if s, ok := top.Impl.(BackingSetter); ok {
		if err := s.SetBacking(bs.Disk); err != nil {
			top.Close()
			return nil, err
		}
	}
	return top, nil
}
