package image

import "os"

// Reading data straight from the host file.
//
// A server that sends guest data out of a socket (the NBD server) can let
// the kernel copy it from the host file (sendfile) instead of reading it
// into a buffer first, when the data is stored there as is. HostFile
// finds that file for a block status answer, going through only the nodes
// that pass data unchanged: a raw node (an offset window), a format whose
// block status gives host offsets of plain data (qcow2 without
// encryption), and the file node itself. Any other node on the way (a
// filter, blkdebug, throttling, copy-on-read) has reads of its own to do,
// and the caller reads through the Disk instead.

// OSFiler is implemented by protocol drivers whose bytes are those of an
// open host file, at the same offsets, through the page cache: OSFile is
// nil when reads do not go that way (O_DIRECT).
type OSFiler interface {
	OSFile() *os.File
}

// OffsetFiler is implemented by format drivers whose block status host
// offsets (StatusOffsetValid with StatusData) address plain guest data in
// the node OffsetFile returns.
type OffsetFiler interface {
	OffsetFile() *Disk
}

// HostFile returns the host file and offset holding the n bytes of data
// that e, the answer of BlockStatusAbove(d, ...) at that depth, describes,
// when they can be read from it as they are; ok is false otherwise (the
// caller reads through d).
func HostFile(d *Disk, depth int, e Extent, n int64) (f *os.File, off int64, ok bool) {
	if e.Status&(StatusData|StatusOffsetValid) != StatusData|StatusOffsetValid || e.Status&(StatusZero|StatusRecurse) != 0 || n <= 0 || n > e.Len {
		return nil, 0, false
	}
	if d.CopyOnRead() {
		return nil, 0, false
	}
	layer := d
	for i := 1; i < depth; i++ {
		// only backing files below d: a filter does reads of its own
		if layer.Backing() == nil {
			return nil, 0, false
		}
		layer = layer.Backing()
	}
	node := layer
	for hops := 0; ; hops++ {
		if hops > 16 || !node.Available() {
			return nil, 0, false
		}
		if osf, ok := node.drv.(OSFiler); ok {
			f = osf.OSFile()
			break
		}
		if fw, ok := node.drv.(StatusForwarder); ok {
			// a raw node: an offset into its child, which answered
			t, _ := fw.ForwardStatus(0)
			if t == nil {
				return nil, 0, false
			}
			node = t
			continue
		}
		if of, ok := node.drv.(OffsetFiler); ok && node == layer {
			// the format answered: its offsets are in its file, which
			// must be a plain file itself
			t := of.OffsetFile()
			if t == nil {
				return nil, 0, false
			}
			osf, ok := t.drv.(OSFiler)
			if !ok || !t.Available() {
				return nil, 0, false
			}
			f = osf.OSFile()
			break
		}
		return nil, 0, false
	}
	if f == nil {
		return nil, 0, false
	}
	// a short file reads as zeroes past its end: not from the file
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || e.Offset < 0 || e.Offset+n > st.Size() {
		return nil, 0, false
	}
	return f, e.Offset, true
}
