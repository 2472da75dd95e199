package formats

import (
	"bytes"
	"encoding/binary"
	"io"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
)

// BlockDriver is one registered driver, as QEMU's BlockDriver table.
type BlockDriver struct {
	Name     string // format_name: driver=NAME
	Protocol string // protocol_name: "NAME:..." filenames, "" for none
	// Protocols are more prefixes of the same driver (QEMU registers nbd,
	// nbd+tcp and nbd+unix as three drivers of one format name).
	Protocols []string
	// IsFormat: a format driver (its children are not probed);
	// IsFilter: a filter whose one child takes every request.
	IsFormat, IsFilter bool
	// FileOpen marks a protocol driver (bdrv_file_open): it opens no
	// "file" child and is never probed for.
	FileOpen bool
	// NeedsFilename: the driver fails without a filename option.
	NeedsFilename bool
	// SupportsBacking: the node may have a "backing" child.
	SupportsBacking bool
	// PassEnd: below a parent, requests may pass the node's end (QEMU
	// checks bounds in the BlockBackend only), as for protocol drivers
	// and filters.
	PassEnd bool
	// ParseFilename turns a protocol filename into options
	// (bdrv_parse_filename).
	ParseFilename func(filename string, opts *qdict.Dict) error
	// Probe scores the first bytes of an image (0: not this format).
	Probe func(head []byte, filename string) int
	// Open consumes the driver's options from opts, opens the node's
	// children through g.OpenChild and sets n.Impl.
	Open func(g *Graph, n *Node, opts *qdict.Dict) error
	// ReopenPrepare checks the node's new options (consuming those it
	// can change) for a reopen with flags; nil: the driver cannot reopen.
	ReopenPrepare func(n *Node, opts *qdict.Dict, flags Flags) error
	// JoinOptions merges a node's old options into the new ones of a
	// reopen (bdrv_join_options); nil: the new ones win, key by key.
	JoinOptions func(options, old *qdict.Dict)
}

var registry []*BlockDriver

// Register adds a driver. It panics on a duplicate name: registration is
// a program's setup, not input.
func Register(d *BlockDriver) {
	if FindFormat(d.Name) != nil {
		panic("formats: driver registered twice: " + d.Name)
	}
	registry = append(registry, d)
}

// FindFormat is bdrv_find_format: the driver named name, or nil.
func FindFormat(name string) *BlockDriver {
	for _, d := range registry {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// Drivers lists the registered drivers in registration order.
func Drivers() []*BlockDriver { return append([]*BlockDriver(nil), registry...) }

// probeSize is how much of the file probing looks at (QEMU's BLOCK_PROBE_BUF_SIZE).
const probeSize = 512

// ProbeDriver is bdrv_probe_all: the format driver scoring highest on
// head (the first in registration order among equals), or nil.
func ProbeDriver(head []byte, filename string) *BlockDriver {
	var best *BlockDriver
	score := 0
	for _, d := range registry {
		if d.Probe == nil {
			continue
		}
		if s := d.Probe(head, filename); s > score {
			best, score = d, s
		}
	}
	return best
}

// Probe names the format of the first bytes of an image: "qcow2" for a
// qcow2 header (magic and version >= 2), another format's name for the
// other magics QEMU knows, or "raw".
func Probe(head []byte) string {
	if d := ProbeDriver(head, ""); d != nil {
		return d.Name
	}
	return "raw"
}

// findImageFormat is find_image_format: the format of the image in file.
func findImageFormat(file *Node, filename string) (*BlockDriver, error) {
	size := file.Disk.Size()
	if size == 0 {
		return FindFormat("raw"), nil
	}
	buf := make([]byte, probeSize)
	n := int64(len(buf))
	if size < n {
		// QEMU's blk_pread fails past the end of a node; protocol nodes
		// under a format grow, so read what there is
		n = size
	}
	if err := file.Disk.ReadAt(buf[:n], 0); err != nil && err != io.EOF {
		return nil, errorf(err, "Could not read image for determining its format: %s", Strerror(image.Errno(err)))
	}
	d := ProbeDriver(buf, filename)
	if d == nil {
		return nil, errorf(nil, "Could not determine image format: No compatible driver found")
	}
	return d, nil
}

func magicProbe(magic string) func([]byte, string) int {
	return func(b []byte, _ string) int {
		if bytes.HasPrefix(b, []byte(magic)) {
			return 100
		}
		return 0
	}
}

func probeQcow2(b []byte, _ string) int {
	if len(b) >= 8 && bytes.Equal(b[:4], []byte("QFI\xfb")) && binary.BigEndian.Uint32(b[4:8]) >= 2 {
		return 100
	}
	return 0
}

func probeQcow(b []byte, _ string) int {
	if len(b) >= 8 && bytes.Equal(b[:4], []byte("QFI\xfb")) && binary.BigEndian.Uint32(b[4:8]) == 1 {
		return 100
	}
	return 0
}

func probeVmdk(b []byte, _ string) int {
	if bytes.HasPrefix(b, []byte("KDMV")) || bytes.HasPrefix(b, []byte("COWD")) {
		return 100
	}
	return 0
}

func probeVdi(b []byte, _ string) int {
	if len(b) >= 68 && binary.LittleEndian.Uint32(b[64:68]) == 0xbeda107f {
		return 100
	}
	return 0
}

func probeParallels(b []byte, _ string) int {
	if len(b) >= 16 && (bytes.Equal(b[:16], []byte("WithoutFreeSpace")) || bytes.Equal(b[:16], []byte("WithouFreSpacExt"))) {
		return 100
	}
	return 0
}

// unimplemented registers the drivers QEMU 7.2 has and goqio does not
// yet: named or probed, they refuse to open with a clear message instead
// of QEMU's "Unknown driver".
func unimplemented(name string, probe func([]byte, string) int, protocol bool) *BlockDriver {
	d := &BlockDriver{Name: name, Probe: probe, IsFormat: !protocol, FileOpen: protocol}
	if protocol {
		d.Protocol = name
	}
	d.Open = func(g *Graph, n *Node, opts *qdict.Dict) error {
		return errorf(nil, "Unsupported image format '%s': goqio does not implement it yet", name)
	}
	return d
}
