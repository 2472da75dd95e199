// Package image is the block layer of goqio: the Driver interface that image
// formats implement, the optional capabilities they may add, and Disk, the one
// generic layer that checks bounds, pads and splits requests and supplies
// QEMU's fallbacks (what QEMU's block/io.c does).
//
// A driver never sees an unaligned or out-of-range request: it declares its
// Limits and Disk honours them. This package imports no driver; formats are
// opened through package image/formats.
package image

// Driver is the required interface of an image format.
//
// ReadAt and WriteAt follow the io.ReaderAt and io.WriterAt contracts, with
// one guarantee from Disk: requests are inside [0, Size()) and aligned to
// Limits().RequestAlignment, so a driver returns a short count only together
// with an error. The driver does not keep p after returning.
//
// Size is the guest-visible length in bytes, fixed at open and changed only by
// Truncate; it never fails. Flush makes every completed write durable. A
// driver must be safe for concurrent use by several goroutines.
type Driver interface {
	ReadAt(p []byte, off int64) (n int, err error)
	WriteAt(p []byte, off int64) (n int, err error)
	Size() int64
	Limits() Limits
	Flush() error
	Close() error
}

// VectorIO is implemented by drivers that can read or write several buffers
// as one request (preadv/pwritev). Disk uses it for padded requests so that
// the file sees one request, as it does under QEMU: the page cache, and so
// what SEEK_DATA reports, depends on the shape of the requests. The
// requests are aligned like ReadAt/WriteAt; a short count is an error.
type VectorIO interface {
	ReadvAt(bufs [][]byte, off int64) error
	WritevAt(bufs [][]byte, off int64) error
}

// Limits mirror QEMU's BlockLimits. Zero means "no constraint" for the
// maxima and 1 for the alignments.
type Limits struct {
	RequestAlignment int64 // every request is a multiple of this, in offset and length
	ZeroAlignment    int64 // WriteZeroes pieces: unaligned ones never cross a boundary of this
	DiscardAlignment int64 // the same for Discard
	MaxTransfer      int64 // largest ReadAt/WriteAt
	MaxZero          int64 // largest WriteZeroes piece
	MaxDiscard       int64 // largest Discard piece
}

// ZeroFlags modify a zero write.
type ZeroFlags uint8

const (
	// ZeroMayUnmap allows the driver to deallocate the range instead of
	// writing zeroes, as long as it reads back as zeroes (qemu-io write -u).
	ZeroMayUnmap ZeroFlags = 1 << iota
	// ZeroNoFallback makes Disk fail with ErrNotSupported instead of writing
	// explicit zeroes when the driver cannot zero efficiently (write -n).
	ZeroNoFallback
)

// String names the flags as qemu-io's options: "-u", "-n", "-un" or "0".
func (f ZeroFlags) String() string {
	s := ""
	if f&ZeroMayUnmap != 0 {
		s += "u"
	}
	if f&ZeroNoFallback != 0 {
		s += "n"
	}
	if s == "" {
		return "0"
	}
	return "-" + s
}

// Zeroer is implemented by drivers that can zero a range without a buffer.
// WriteZeroes returns ErrNotSupported when it cannot do this piece
// efficiently; Disk then writes explicit zeroes unless ZeroNoFallback is set.
// The flags passed are already masked with SupportedZeroFlags.
type Zeroer interface {
	WriteZeroes(off, n int64, flags ZeroFlags) error
	SupportedZeroFlags() ZeroFlags
}

// FUAWriter is implemented by drivers that can make one write durable by
// itself (QEMU's BDRV_REQ_FUA in supported_write_flags and
// supported_zero_flags, as NBD's NBD_CMD_FLAG_FUA): when SupportsFUA
// says so, Disk passes a FUA request's pieces to WriteAtFUA and
// WriteZeroesFUA instead of flushing after the request.
type FUAWriter interface {
	SupportsFUA() bool
	WriteAtFUA(p []byte, off int64) error
	WriteZeroesFUA(off, n int64, flags ZeroFlags) error
}

// Discarder is implemented by drivers that can deallocate a range. Discard is
// advisory: ErrNotSupported means nothing was done and is not an error.
type Discarder interface {
	Discard(off, n int64) error
}

// Status bits of a block status answer, as QEMU's BDRV_BLOCK_*.
type Status uint16

const (
	StatusData        Status = 1 << iota // reads come from a data area
	StatusZero                           // reads return zeroes
	StatusOffsetValid                    // Extent.Offset is the host offset
	StatusAllocated                      // the answer comes from this layer
	StatusEOF                            // the extent reaches the end of the image
	// StatusRecurse: the data area may be a hole in the file (metadata
	// preallocation); ask the file whether it reads as zero.
	StatusRecurse
)

// Filer is implemented by format drivers that store data in a file: the
// file's own Disk, for StatusRecurse.
type Filer interface {
	File() *Disk
}

// Extent is a block status answer for [off, off+Len).
type Extent struct {
	Status Status
	Len    int64
	Offset int64  // host offset in File when StatusOffsetValid
	File   string // name of the file the offset refers to
}

// BlockStatuser is implemented by drivers that know which ranges they store.
// BlockStatus describes the run starting at off, at most n bytes long (off
// and n aligned, off < Size()). It returns an Extent whose Len is > 0. With
// wantZero false the driver may answer coarsely (whole ranges as data); with
// wantZero true it should tell zeroes apart. The driver reports only Data,
// Zero and OffsetValid; Disk adds Allocated and EOF.
type BlockStatuser interface {
	BlockStatus(off, n int64, wantZero bool) (Extent, error)
}

// Backed is implemented by drivers that support backing files. Backing
// returns the backing image, or nil when there is none.
type Backed interface {
	Backing() *Disk
}

// Prealloc is a preallocation mode for Truncate and create.
type Prealloc int

const (
	PreallocOff Prealloc = iota
	PreallocMetadata
	PreallocFalloc
	PreallocFull
)

// String returns QEMU's name of the mode.
func (p Prealloc) String() string {
	return [...]string{"off", "metadata", "falloc", "full"}[p]
}

// DirtyMarker is implemented by drivers that keep dirty bitmaps: Disk
// tells them the range of every write, zero write and discard it is asked
// for (QEMU's bdrv_set_dirty at the end of a write request).
type DirtyMarker interface {
	MarkDirty(off, n int64)
}

// Compressor is implemented by drivers that can write compressed clusters
// (QEMU's bdrv_co_pwritev_compressed). The driver checks the alignment it
// needs and marks dirty bitmaps itself; a zero-length request is passed on
// (qcow2 aligns its file end then). Use it through Disk.WriteCompressed.
type Compressor interface {
	WriteCompressed(p []byte, off int64) error
}

// VMStater is implemented by drivers that store VM state (QEMU's
// bdrv_load_vmstate and bdrv_save_vmstate); pos is relative to the start of
// the VM state area. Use it through Disk.ReadVMState and Disk.WriteVMState.
type VMStater interface {
	ReadVMState(p []byte, pos int64) error
	WriteVMState(p []byte, pos int64) error
}

// Truncater is implemented by drivers that can change their size.
type Truncater interface {
	Truncate(size int64, prealloc Prealloc) error
}

// Info is what qemu-io's info command prints about an image.
type Info struct {
	FormatName    string
	ProtocolName  string // printed as a second "format name" line (QEMU's file driver)
	ClusterSize   int64
	VMStateOffset int64
	// Specific is the "Format specific information" block, in print order;
	// nil when the format has none.
	Specific []KeyValue
}

// KeyValue is one line of format-specific information.
type KeyValue struct {
	Key, Value string
	// Sub, when set, are the lines of a nested value (printed under Key,
	// indented one more level; Value is then empty).
	Sub []string
}

// Infoer is implemented by drivers that describe themselves.
type Infoer interface {
	Info() (Info, error)
}
