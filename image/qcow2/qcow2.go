// Package qcow2 is goqio's qcow2 driver: it reads and writes qcow2 images
// (versions 2 and 3) as QEMU 7.2 does, down to where it places clusters, so
// that qemu-img map and qemu-img check see the same image.
//
// Layout of an image (offsets in the file, all integers big-endian):
//
//	cluster 0      header, header extensions, backing file name
//	refcount table refcount_table_clusters clusters of u64 refcount block offsets
//	refcount block one cluster of refcounts (1..64 bits each) for a run of clusters
//	L1 table       l1_size u64 entries: L2 table offset | COPIED
//	L2 table       one cluster of u64 entries: host cluster offset | COPIED | ZERO
//	data cluster   guest data
//
// Allocation follows QEMU: first fit from the lowest free cluster (the
// free cluster index, lowered when clusters are freed), an L2 table before
// the data cluster that needs it, refcount blocks that describe themselves,
// and the refcount table grown past the clusters it must cover.
//
// Write ordering: data (and copy-on-write) is written before the L2 entry
// that points to it; refcount blocks reach the file before the L2 tables
// and L1 entries that use new clusters (a refcount increase makes the L2
// cache depend on the refcount cache, and a new L2 table is written before
// the L1 entry that points to it); an L2 table that dropped a reference
// reaches the file before the refcount block that frees the cluster (a
// decrease makes the refcount cache depend on the L2 cache). A dependency
// is settled by a flush before the opposite one is set, as QEMU's
// qcow2_cache_set_dependency does. A crash can therefore leak clusters but
// never leave a reference to unwritten data or to a free cluster.
//
// Lazy refcounts (compatible feature bit 0): the first L2 update sets the
// dirty bit in the header; from then on flushes write L2 tables but keep
// refcount blocks in memory, and no L2 table waits for a refcount block,
// so a crash can leave references with a refcount of 0 — which is what the
// dirty bit announces: the next read-write open checks and repairs the
// image (QEMU's qcow2_check with the refcount rebuild). A clean close
// writes everything and clears the bit.
//
// Concurrency: metadata under one FIFO lock, guest data read and written
// outside it, overlapping allocations ordered as QEMU orders them
// (inflight.go).
//
// The units of the driver (files, or a package), and what each sees:
//
//	geometry.go             cluster, L2, subcluster and refcount block sizes:
//	                        a value fixed at open
//	internal/metacache      the metadata cache (L2 tables, refcount blocks):
//	                        LRU eviction with pins and safe points, write-back
//	                        in dependency order; sees the file only through a
//	                        Store (cache.go's cacheStore: file, overlap check,
//	                        blkdebug events)
//	alloc.go, refcount.go   the refcount allocator: refcount table, free
//	                        cluster index, discard queue; allocates, frees and
//	                        updates refcounts; sees the geometry, the file, the
//	                        caches and allocEnv (corruption reports, header)
//	overlap.go              the overlap check, corruption reports
//	inflight.go             the metadata lock, the in-flight allocations
//	qcow2.go                the Driver (its state grouped by what guards it),
//	                        open, the header, reads
//	write.go, zero.go,      the write paths
//	compressed.go
//	check.go, amend.go,     check and repair, amend, snapshots, bitmaps,
//	snapshot*.go, bitmap*.go, truncate.go, and the rest
package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
	"github.com/goqio/goqio/image/qcow2/internal/metacache"
	"github.com/goqio/goqio/image/qcrypto"
	"github.com/goqio/goqio/image/raw"
)

// Options control how an image is opened.
type Options struct {
	ReadOnly bool
	Direct   bool // O_DIRECT on the image file
	NoFlush  bool // cache=unsafe
	Unmap    bool // discards of freed clusters reach the file
	// OpenBacking opens the backing file (read-only); name is already
	// resolved against the image's directory, format is "" when the image
	// does not name one. nil, for Open: the backing file is opened
	// read-only as a qcow2 image (by its format or its magic) or a raw
	// file, following its own backing file, unless NoBacking is set.
	// OpenOn never opens a backing file itself.
	OpenBacking func(name, format string) (*image.Disk, error)
	// NoBacking opens no backing file (QEMU's BDRV_O_NO_BACKING): what
	// the image does not store reads as zeroes.
	NoBacking bool
	// Backing, when set, is the backing image to use instead of the one
	// the header names (QEMU's temporary snapshot overlay).
	Backing *image.Disk
	// ForceShare shares every permission with other processes (qemu-io -U);
	// without it the image refuses to share writes and resizes.
	ForceShare bool
	// RemoveOnClose deletes the image file when it is closed (a temporary
	// overlay).
	RemoveOnClose bool
	// Check opens a corrupt or dirty image for qemu-img check (BDRV_O_CHECK).
	Check bool
	// Trace, when set, receives one line for every decision the driver
	// takes on a zero write or discard (goqio -T zero).
	Trace func(string)
	// Runtime are the runtime options (cache sizes, lazy-refcounts,
	// overlap-check, pass-discard-*), QEMU's defaults when unset.
	Runtime RuntimeOptions
	// Stderr receives, byte for byte, what QEMU's qcow2 driver prints on
	// its stderr: warnings, corruption reports, the repair of a dirty image.
	// nil drops them. The driver never writes to the process's stderr.
	Stderr io.Writer
	// Prog is the program name that QEMU's error_report and warn_report
	// messages begin with ("qemu-io: ..."); "" prints them without it.
	Prog string
	// OpenDataFile opens the external data file (QEMU's "data-file"
	// child). It is called with name "" for the data file the caller's
	// options give (nil, nil when they give none), then, for an image
	// with the data-file bit and no such option, with the name the
	// image's header extension records. The driver closes the Disk it
	// returns. nil: no data file can be opened.
	OpenDataFile func(name string) (*image.Disk, error)
	// NoIO opens the image for its metadata only (BDRV_O_NO_IO): an
	// encrypted image opens without its key (qemu-img info).
	NoIO bool
	// Secrets looks up the secret encrypt.key-secret names.
	Secrets qcrypto.Lookup
}

// Driver is an open qcow2 image.
//
// Its state, by what guards it:
//
//   - fixed at open (read by anything, without d.mu: data I/O runs
//     outside it): the file, the options, the geometry, the external data
//     file, the encryption context, the backing image; the few changes
//     they get (amend's refcount-order change of the geometry, SetBacking)
//     take d.mu exclusively, with no request in flight;
//   - guarded by d.mu (inflight.go): everything after it — the header as
//     in memory, the L1 table, the two metadata caches, the allocator, the
//     snapshot table, the bitmap directory and the driver's flags. The
//     in-flight allocations are d.mu's own (coMutex.inflight).
type Driver struct {
	// fixed at open
	file     *image.Disk // the image file (QEMU's bs->file)
	name     string
	opts     Options
	geometry // cluster, L2, subcluster, refcount block sizes (geometry.go)
	// the external data file (nil when the data lives in file; datafile.go)
	data *image.Disk
	// dataUnopened: an image with an external data file opened with
	// NoIO, its data file not opened
	dataUnopened bool
	cs           cryptoState // encryption (crypto.go), set at open or create
	backing      *image.Disk // the backing image (nil: none); SetBacking changes it

	// mu guards everything below (see above)
	mu coMutex

	// the header as in memory, and what the header and the runtime
	// options decided
	hdr           Header
	rt            runtimeState // what the runtime options decided
	unknownFields []byte       // header bytes between 112 and header_length
	exts          []extension  // unknown extensions, kept
	features      []feature
	backingFile   string // as stored in the image
	backingFmt    string
	// the name the data file's header extension records (QEMU's
	// image_data_file)
	dataName    string
	hasDataName bool
	size        int64 // the guest size (truncate changes it)

	// the active L1 table
	l1       []uint64
	l1Offset int64

	// the metadata caches (internal/metacache; cache.go): L2 tables,
	// refcount blocks
	l2c, rbc *metacache.Cache

	// the refcount allocator (alloc.go, refcount.go): refcount table, free
	// cluster index, compressed free byte offset, discard queue
	allocator

	// the snapshot table as read at open (or by the last check)
	snaps         []snapEntry
	snapshotsSize int64 // bytes of the snapshot table (for overlap checks)

	// persistent dirty bitmaps (bitmap.go)
	nbBitmaps     uint32
	bitmapDirSize uint64
	bitmapDirOff  uint64
	bitmaps       []*dirtyBitmap
	// the bitmaps extension was left by a program without bitmap support
	staleBitmapsExt bool

	// flags
	signaled        bool // a corruption was reported
	dead            bool // a fatal corruption made the image unusable
	preallocChecked bool // metadata preallocation detection ran
	prealloc        bool // the image has metadata preallocation
	flushEvents     bool // a Flush of the image is running (its debug events)
}

// Error texts of open failures are QEMU's.
func openErr(format string, a ...any) error { return fmt.Errorf(format, a...) }

// Open opens the qcow2 image at path.
func Open(path string, opts Options) (*Driver, error) {
	if opts.OpenBacking == nil && !opts.NoBacking {
		opts.OpenBacking = defaultOpenBacking(0)
	}
	lock := &raw.Lock{Perm: raw.PermConsistentRead}
	if !opts.ReadOnly {
		lock.Perm |= raw.PermWrite | raw.PermResize
	}
	if !opts.ForceShare {
		lock.Unshared = raw.PermWrite | raw.PermResize
	}
	rd, err := raw.Open(path, raw.Options{ReadOnly: opts.ReadOnly, Direct: opts.Direct, NoFlush: opts.NoFlush, Lock: lock})
	if err != nil {
		return nil, err
	}
	// The protocol node under a format always has discard=unmap in QEMU
	// (bdrv_inherited_options); opts.Unmap only decides whether guest
	// discards pass through qcow2 (pass-discard-request).
	file := image.New(rd, path, image.Options{ReadOnly: opts.ReadOnly, Unmap: true, Grow: true})
	d, err := openOn(file, path, opts)
	if err != nil {
		file.Close()
		return nil, err
	}
	return d, nil
}

func openOn(file *image.Disk, path string, opts Options) (*Driver, error) {
	d := &Driver{file: file, name: path, opts: opts}
	buf := make([]byte, headerSize)
	if err := file.ReadAt(buf[:min(int64(len(buf)), max(file.Size(), 0))], 0); err != nil {
		return nil, openErr("Could not read qcow2 header: %s", image.StrerrorOf(err))
	}
	h, err := parseHeader(buf)
	if err != nil {
		return nil, err
	}
	if h.Version < 2 || h.Version > 3 {
		return nil, openErr("Unsupported qcow2 version %d", h.Version)
	}
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return nil, openErr("Unsupported cluster size: 2^%d", int32(h.ClusterBits))
	}
	// the cluster size, for the checks that follow; the rest of the
	// geometry once they pass
	d.geometry = newGeometry(uint(h.ClusterBits), false, 0)
	if h.Version >= 3 {
		if h.HeaderLength < headerV3Size {
			return nil, openErr("qcow2 header too short")
		}
		if int64(h.HeaderLength) > d.clusterSize {
			return nil, openErr("qcow2 header exceeds cluster size")
		}
		if h.HeaderLength < headerSize {
			h.CompressionType = 0
		}
		if h.HeaderLength > headerSize {
			d.unknownFields = make([]byte, h.HeaderLength-headerSize)
			if err := file.ReadAt(d.unknownFields, headerSize); err != nil {
				return nil, openErr("Could not read unknown qcow2 header fields: %s", image.StrerrorOf(err))
			}
		}
	}
	if h.BackingFileOffset > uint64(d.clusterSize) {
		return nil, openErr("Invalid backing file offset")
	}
	extEnd := d.clusterSize
	if h.BackingFileOffset != 0 {
		extEnd = int64(h.BackingFileOffset)
	}
	// QEMU's order of checks (qcow2_do_open)
	if h.CompressionType > 1 {
		return nil, openErr("qcow2: unknown compression type: %d", h.CompressionType)
	}
	if h.CompressionType == 0 && h.IncompatibleFeatures&incompatCompression != 0 {
		return nil, openErr("qcow2: Compression type incompatible feature bit must not be set")
	}
	if h.CompressionType != 0 && h.IncompatibleFeatures&incompatCompression == 0 {
		return nil, openErr("qcow2: Compression type incompatible feature bit must be set")
	}
	if h.IncompatibleFeatures&^incompatMask != 0 {
		d.readExtensions(int64(h.HeaderLength), extEnd)
		return nil, d.unsupportedFeatures(h.IncompatibleFeatures &^ incompatMask)
	}
	if h.IncompatibleFeatures&incompatCorrupt != 0 && !opts.ReadOnly && !opts.Check {
		return nil, &openError{"qcow2: Image is corrupt; cannot be opened read/write", syscall.EACCES}
	}
	extL2 := h.IncompatibleFeatures&incompatExtL2 != 0
	if g := newGeometry(d.clusterBits, extL2, 0); g.scSize < 1<<minClusterBits {
		return nil, openErr("Unsupported subcluster size: %d", g.scSize)
	}
	if h.RefcountOrder > maxRefcountOrder {
		return nil, openErr("Reference count entry width too large; may not exceed 64 bits")
	}
	d.geometry = newGeometry(d.clusterBits, extL2, uint(h.RefcountOrder))
	d.size = int64(h.Size/512) * 512
	if h.RefcountTableClusters == 0 && !opts.Check {
		return nil, openErr("Image does not contain a reference count table")
	}
	if err := d.validateTable(h.RefcountTableOffset, uint64(h.RefcountTableClusters), uint64(d.clusterSize), maxReftableSize*reftableEntrySize, "Reference count table"); err != nil {
		return nil, err
	}
	if !opts.Check { // an open for checking leaves the snapshot table to the check
		if err := d.validateTable(h.SnapshotsOffset, uint64(h.NbSnapshots), 40, 40*maxSnapshots, "Snapshot table"); err != nil {
			return nil, err
		}
	}
	if err := d.validateTable(h.L1TableOffset, uint64(h.L1Size), 8, maxL1Size, "Active L1 table"); err != nil {
		return nil, err
	}
	shift := d.clusterBits + d.l2Bits
	if need := (h.Size + 1<<shift - 1) >> shift; h.Size > 1<<63-1 || need > intMax {
		return nil, openErr("Image is too big")
	} else if uint64(h.L1Size) < need {
		return nil, openErr("L1 table is too small")
	}
	d.hdr = h
	d.l1Offset = int64(h.L1TableOffset)
	d.l1 = make([]uint64, h.L1Size)
	if h.L1Size > 0 {
		b := make([]byte, int64(h.L1Size)*8)
		if err := file.ReadAt(b, d.l1Offset); err != nil {
			return nil, openErr("Could not read L1 table: %s", image.StrerrorOf(err))
		}
		d.l1 = decodeU64s(b)
	}
	rtBytes := int64(h.RefcountTableClusters) << d.clusterBits
	d.refTableOffset = int64(h.RefcountTableOffset)
	b := make([]byte, rtBytes)
	if rtBytes > 0 {
		file.DebugEvent("reftable_load")
	}
	if err := file.ReadAt(b, d.refTableOffset); err != nil {
		return nil, openErr("Could not initialize refcount handling: %s", image.StrerrorOf(err))
	}
	d.refTable = decodeU64s(b)
	rt, err := d.prepareRuntime(opts.Runtime, opts.Unmap)
	if err != nil {
		return nil, openErr("%s", err.Error())
	}
	d.rt = rt
	d.cs.ready = true
	if err := d.readExtensions(int64(h.HeaderLength), extEnd); err != nil {
		return nil, err
	}
	if err := d.openDataFile(); err != nil {
		return nil, err
	}
	if err := d.openCryptoLate(); err != nil {
		return nil, err
	}
	if !opts.Check {
		snaps, size, _, _, err := d.readSnapshotTable(int64(h.SnapshotsOffset), h.NbSnapshots, false, nil)
		if err != nil {
			msg := err.Error()
			var se *snapTableError
			if errors.As(err, &se) {
				msg += "\n" + strings.TrimSuffix(se.hint, "\n")
			}
			return nil, openErr("%s", msg)
		}
		d.snaps, d.snapshotsSize = snaps, size
	}
	d.updateMaxRefTableIndex()
	rbMax, l2Max := max(16, int((8<<20)>>d.clusterBits)), max(16, int((32<<20)>>d.clusterBits))
	if r := opts.Runtime; r.CacheSize != nil || r.RefcountCacheSize != nil {
		rbMax = rt.refcountTables
	}
	if r := opts.Runtime; r.CacheSize != nil || r.L2CacheSize != nil || r.L2CacheEntrySize != nil {
		l2Max = rt.l2Tables
	}
	d.newCaches(rbMax, l2Max)
	d.initAllocator()
	// backing file name
	if h.BackingFileOffset != 0 {
		n := int64(h.BackingFileSize)
		if n > maxBackingNameLength || n > d.clusterSize-int64(h.BackingFileOffset) {
			return nil, openErr("Backing file name too long")
		}
		b := make([]byte, n)
		if err := file.ReadAt(b, int64(h.BackingFileOffset)); err != nil {
			return nil, openErr("Could not read backing file name: %s", image.StrerrorOf(err))
		}
		d.backingFile = string(b)
	}
	if h.IncompatibleFeatures&incompatDirty != 0 && !opts.ReadOnly && !opts.Check {
		// QEMU repairs a dirty image (lazy refcounts) on a read-write open
		res, err := d.checkLocked(d.stderr(), FixLeaks|FixErrors)
		if err == nil && res.CheckErrors != 0 {
			err = syscall.EIO
		}
		if err != nil {
			return nil, openErr("Could not repair dirty image: %s", image.StrerrorOf(err))
		}
	}
	// autoclear bits this code does not maintain are cleared on a read-write
	// open (with the header the bitmaps write, or on their own)
	updateHeader := !opts.ReadOnly && (h.AutoclearFeatures&^autoclearMask != 0 || d.staleBitmapsExt)
	if updateHeader {
		d.hdr.AutoclearFeatures &= autoclearMask
	}
	written, err := d.loadBitmaps()
	if err != nil {
		return nil, err
	}
	if updateHeader && !written {
		if err := d.updateHeader(); err != nil {
			return nil, err
		}
	}
	if opts.Backing != nil {
		d.backing = opts.Backing
	} else if d.backingFile != "" && opts.OpenBacking != nil && !opts.NoBacking {
		b, err := opts.OpenBacking(d.resolveBacking(), d.backingFmt)
		if err != nil {
			return nil, openErr("Could not open backing file: %v", err)
		}
		d.backing = b
	}
	return d, nil
}

type openError struct {
	msg   string
	errno syscall.Errno
}

func (e *openError) Error() string        { return e.msg }
func (e *openError) Errno() syscall.Errno { return e.errno }

// stderr is where the driver prints what QEMU prints on stderr.
func (d *Driver) stderr() io.Writer {
	if d.opts.Stderr != nil {
		return d.opts.Stderr
	}
	return io.Discard
}

// progPrefix is the "PROG: " that error_report and warn_report put first.
func (d *Driver) progPrefix() string {
	if d.opts.Prog == "" {
		return ""
	}
	return d.opts.Prog + ": "
}

// report is QEMU's error_report: the program name, the message, a newline.
func (d *Driver) report(format string, a ...any) {
	fmt.Fprintf(d.stderr(), "%s%s\n", d.progPrefix(), fmt.Sprintf(format, a...))
}

// warn is QEMU's warn_report.
func (d *Driver) warn(format string, a ...any) {
	fmt.Fprintf(d.stderr(), "%swarning: %s\n", d.progPrefix(), fmt.Sprintf(format, a...))
}

// resolveBacking is QEMU's bdrv_get_full_backing_filename for plain paths:
// relative names are relative to the image's directory.
func (d *Driver) resolveBacking() string {
	b := d.backingFile
	if filepath.IsAbs(b) || strings.Contains(b, ":") && !strings.HasPrefix(b, ".") && strings.Index(b, ":") < strings.Index(b+"/", "/") {
		return b
	}
	dir := filepath.Dir(d.name)
	if dir == "." && !strings.HasPrefix(d.name, "./") {
		return b
	}
	return dir + "/" + b
}

// validateTable is QEMU's qcow2_validate_table.
func (d *Driver) validateTable(off, entries, entryLen, maxBytes uint64, name string) error {
	if entries > maxBytes/entryLen {
		return openErr("%s too large", name)
	}
	if (1<<63-1)-entries*entryLen < off || off&uint64(d.clusterSize-1) != 0 {
		return openErr("%s offset invalid", name)
	}
	return nil
}

// validateTableReported is qcow2_validate_table whose error QEMU's caller
// prints (error_report_err) before failing with its errno: EFBIG for a
// table too large, EINVAL for a bad offset.
func (d *Driver) validateTableReported(off, entries, entryLen, maxBytes uint64, name string) error {
	err := d.validateTable(off, entries, entryLen, maxBytes, name)
	if err == nil {
		return nil
	}
	d.report("%s", err.Error())
	if strings.HasSuffix(err.Error(), "too large") {
		return syscall.EFBIG
	}
	return syscall.EINVAL
}

func (d *Driver) sizeToL1(size int64) int64 {
	shift := d.clusterBits + d.l2Bits
	return (size + (1 << shift) - 1) >> shift
}

// readExtensions reads the header extensions between start and end.
func (d *Driver) readExtensions(start, end int64) error {
	if start >= end {
		return nil
	}
	buf := make([]byte, end-start)
	if err := d.file.ReadAt(buf, start); err != nil {
		return openErr("qcow2_read_extension: ERROR: pread fail from offset %d", start)
	}
	err := layout.WalkExtensions(buf, func(typ uint32, data []byte) error {
		switch typ {
		case extBackingFormat:
			if len(data) >= 16 {
				return openErr("ERROR: ext_backing_format: len=%d too large (>=16)", len(data))
			}
			d.backingFmt = string(data)
		case extFeatureTable:
			d.features = decodeFeatures(data)
		case extBitmaps:
			if err := d.readBitmapsExt(data); err != nil {
				return err
			}
		case extDataFile:
			d.dataName, d.hasDataName = cstring(data), true
		case extCryptoHeader:
			if err := d.readCryptoExt(data); err != nil {
				return err
			}
		default:
			d.exts = append(d.exts, extension{Type: typ, Data: append([]byte(nil), data...)})
		}
		return nil
	})
	if err == layout.ErrExtensionTooLarge {
		return openErr("%v", err)
	}
	return err
}

// unsupportedFeatures is QEMU's report_unsupported_feature.
func (d *Driver) unsupportedFeatures(mask uint64) error {
	var names []string
	for _, f := range d.features {
		if f.Type == 0 && f.Bit < 64 && mask&(1<<f.Bit) != 0 {
			names = append(names, f.Name)
			mask &^= 1 << f.Bit
		}
	}
	if mask != 0 {
		names = append(names, fmt.Sprintf("Unknown incompatible feature: %x", mask))
	}
	return &openError{"Unsupported qcow2 feature(s): " + strings.Join(names, ", "), syscall.EOPNOTSUPP}
}

// Size is the virtual size.
func (d *Driver) Size() int64 { return d.size }

// Limits: byte-granular requests; zero writes and discards in clusters.
func (d *Driver) Limits() image.Limits {
	if d.encrypted() {
		// encryption works on sectors (qcow2_refresh_limits)
		return image.Limits{RequestAlignment: 512, ZeroAlignment: d.scSize, DiscardAlignment: d.clusterSize}
	}
	return image.Limits{RequestAlignment: 1, ZeroAlignment: d.scSize, DiscardAlignment: d.clusterSize}
}

// File returns the Disk block status offsets refer to (QEMU's *file of
// qcow2_co_block_status): the external data file when there is one, else
// the image file.
func (d *Driver) File() *image.Disk { return d.dataDisk() }

// OffsetFile is the node the host offsets of block status refer to, for
// reads of plain data straight from it (image.HostFile): none when the
// data is encrypted.
func (d *Driver) OffsetFile() *image.Disk {
	if d.encrypted() {
		return nil
	}
	return d.dataDisk()
}

// Backing returns the backing image or nil.
func (d *Driver) Backing() *image.Disk { return d.backing }

// hostRun is QEMU's qcow2_get_host_offset: the (subcluster) type at off,
// its host offset (for normal, zero-alloc and unallocated-alloc ones; the
// entry for compressed clusters), and how many of the n bytes from off are
// of the same type (and contiguous in the file), within one L2 table.
func (d *Driver) hostRun(off, n int64) (clusterType, uint64, int64, error) {
	inCluster := off & (d.clusterSize - 1)
	scIdx := d.scIndex(off)
	needed := n + inCluster
	l2i := (off >> d.clusterBits) & (d.l2Size - 1)
	avail := (d.l2Size - l2i) << d.clusterBits
	needed = min(needed, avail)
	l1i := off >> (d.clusterBits + d.l2Bits)
	if l1i >= int64(len(d.l1)) || layout.L1Entry(d.l1[l1i]).Offset() == 0 {
		return clusterUnallocated, 0, needed - inCluster, nil
	}
	l2off := layout.L1Entry(d.l1[l1i]).Offset()
	if l2off&(d.clusterSize-1) != 0 {
		return 0, 0, 0, d.corruption(fmt.Sprintf("L2 table offset %s unaligned (L1 index: %s)", hx(l2off), hx(l1i)))
	}
	// not pinned: the entries are read here and the table let go
	b, err := d.l2c.Peek(l2off)
	if err != nil {
		return 0, 0, 0, err
	}
	entry := d.getEntry(b, l2i)
	typ := d.sctype(entry, d.getBitmap(b, l2i), scIdx)
	invalid := func(idx int64) error {
		// (QEMU's message has the two spaces)
		return d.corruption(fmt.Sprintf("Invalid cluster entry found  (L2 offset: %s, L2 index: %s)", hx(l2off), hx(idx)))
	}
	if typ == clusterInvalid {
		return 0, 0, 0, invalid(l2i)
	}
	if d.hdr.Version < 3 && (typ == clusterZeroPlain || typ == clusterZeroAlloc) {
		return 0, 0, 0, d.corruption(fmt.Sprintf("Zero cluster entry found in pre-v3 image (L2 offset: %s, L2 index: %s)", hx(l2off), hx(l2i)))
	}
	var host uint64
	switch typ {
	case clusterNormal, clusterZeroAlloc, clusterUnallocAlloc:
		hc := uint64(entry.Offset())
		if hc&uint64(d.clusterSize-1) != 0 {
			return 0, 0, 0, d.corruption(fmt.Sprintf("Cluster allocation offset %s unaligned (L2 offset: %s, L2 index: %s)", hx(hc), hx(l2off), hx(l2i)))
		}
		host = hc + uint64(inCluster)
		if d.hasDataFile() && host != uint64(off) {
			return 0, 0, 0, d.corruption(fmt.Sprintf("External data file host cluster offset %s does not match guest cluster offset: %s, L2 index: %s)", hx(hc), hx(off-inCluster), hx(l2i)))
		}
	case clusterCompressed:
		if d.hasDataFile() {
			return 0, 0, 0, d.corruption(fmt.Sprintf("Compressed cluster entry found in image with external data file (L2 offset: %s, L2 index: %s)", hx(l2off), hx(l2i)))
		}
		host = uint64(entry) // the compressed descriptor
	}
	// QEMU's count_contiguous_subclusters
	nb := (needed + d.clusterSize - 1) >> d.clusterBits
	var count int64
	checkOffset := typ == clusterNormal || typ == clusterZeroAlloc || typ == clusterUnallocAlloc
	expected := uint64(entry.Offset())
	for i := int64(0); i < nb; i++ {
		first := int64(0)
		if i == 0 {
			first = scIdx
		}
		e := d.getEntry(b, l2i+i)
		t, cnt := d.scRangeType(e, d.getBitmap(b, l2i+i), first)
		if cnt < 0 {
			return 0, 0, 0, invalid(l2i + i)
		}
		if i == 0 {
			if t == clusterCompressed {
				count = cnt
				break
			}
		} else if t != typ {
			break
		} else if checkOffset {
			expected += uint64(d.clusterSize)
			if uint64(e.Offset()) != expected {
				break
			}
		}
		count += cnt
		if first+cnt < d.scPerCluster {
			break
		}
	}
	run := min((count+scIdx)<<d.scBits, needed) - inCluster
	return typ, host, run, nil
}

// ReadAt reads guest data with io.ReaderAt's contract: a read that
// reaches past Size returns the bytes before the end and io.EOF (0 and
// io.EOF at or past the end); a negative offset is an error.
func (d *Driver) ReadAt(p []byte, off int64) (int, error) {
	h := d.mu.lockReq()
	defer d.mu.Unlock()
	if d.dead {
		return 0, errNoMedium
	}
	if off < 0 {
		return 0, image.ErrOutOfRange
	}
	var eof error
	if off >= d.size {
		return 0, io.EOF
	}
	if int64(len(p)) > d.size-off {
		p, eof = p[:d.size-off], io.EOF
	}
	if err := d.evict(); err != nil {
		return 0, err
	}
	f := &flight{start: off, end: off + int64(len(p))}
	d.begin(f)
	h.req = nil // (an asynchronous read does not park: see hold)
	err := d.readGuest(p, off, h)
	d.end(f)
	if err != nil {
		return 0, err
	}
	return len(p), eof
}

// unlocked runs the I/O fn without d.mu (held on entry and on return),
// unless holdKeep: then the caller keeps the lock over it (an exclusive
// operation, or one that must be atomic). With a loop (image.Loop), a
// synchronous request yields it, and an asynchronous one parks after its
// I/O until the loop runs, as QEMU's coroutine goes on only then.
func (d *Driver) unlocked(h hold, fn func() error) error {
	if h == holdKeep {
		return fn()
	}
	loop := d.mu.loop
	d.mu.Unlock()
	if loop != nil && !h.async {
		loop.Yield()
	}
	err := fn()
	if loop != nil && h.req != nil {
		loop.Park(h.req)
	}
	d.mu.lockRaw()
	return err
}

// event emits the blkdebug event name without d.mu (unless holdKeep), so
// that a request suspended at it does not hold the lock; it parks nowhere
// (no I/O is done).
func (d *Driver) event(h hold, name string) {
	if h == holdKeep {
		d.file.DebugEvent(name)
		return
	}
	d.mu.Unlock()
	d.file.DebugEvent(name)
	d.mu.lockRaw()
}

// readGuest reads guest data, with d.mu held on entry and on return: each
// run of clusters is looked up under it, its data read without it (unless
// keep), as QEMU's qcow2_co_preadv_part. Consecutive compressed clusters
// are decompressed in parallel.
func (d *Driver) readGuest(p []byte, off int64, keep hold) error {
	var batch []compressedJob
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := d.unlocked(keep, func() error { return d.readCompressedBatch(batch) })
		batch = batch[:0]
		return err
	}
	for len(p) > 0 {
		typ, host, n, err := d.hostRun(off, int64(len(p)))
		if err != nil {
			return err
		}
		q := p[:n]
		if typ == clusterCompressed {
			batch = append(batch, compressedJob{q, layout.L2Entry(host), off & (d.clusterSize - 1)})
			if len(batch) == 64 {
				if err := flush(); err != nil {
					return err
				}
			}
			p = p[n:]
			off += n
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		switch typ {
		case clusterUnallocated, clusterUnallocAlloc:
			if d.backing == nil {
				// zeroes, no I/O: as QEMU's read, this neither yields the
				// loop nor parks (a sync read of an unallocated cluster
				// must not let a parked aio write link its cluster)
				clear(q)
				break
			}
			o := off
			if err := d.unlocked(keep, func() error { return d.readBacking(q, o) }); err != nil {
				return err
			}
		case clusterZeroPlain, clusterZeroAlloc:
			clear(q)
		case clusterNormal:
			o := off
			err := d.unlocked(keep, func() error {
				d.file.DebugEvent("read_aio")
				if err := d.dataDisk().ReadAt(q, int64(host)); err != nil {
					return err
				}
				if d.encrypted() { // (the cipher is safe for concurrent use)
					return d.decryptData(q, int64(host), o)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		p = p[n:]
		off += n
	}
	return flush()
}

// readBacking reads from the backing file; what lies past its end (or
// everything, without one) reads as zeroes.
func (d *Driver) readBacking(p []byte, off int64) error {
	if d.backing == nil {
		clear(p)
		return nil
	}
	d.file.DebugEvent("read_backing_aio")
	bsize := d.backing.Size()
	n := int64(len(p))
	if off >= bsize {
		clear(p)
		return nil
	}
	if off+n > bsize {
		clear(p[bsize-off:])
		p = p[:bsize-off]
	}
	return d.backing.ReadAt(p, off)
}

// BlockStatus is QEMU's qcow2_co_block_status.
func (d *Driver) BlockStatus(off, n int64, wantZero bool) (e image.Extent, err error) {
	d.mu.lockRaw()
	defer d.mu.Unlock()
	if d.dead {
		return image.Extent{}, errNoMedium
	}
	if !d.preallocChecked {
		d.prealloc = d.detectMetadataPreallocation()
		d.preallocChecked = true
	}
	// between requests: keeps a map of a large image within the cache size
	if err := d.evict(); err != nil {
		return image.Extent{}, err
	}
	typ, host, run, err := d.hostRun(off, min(n, intMax))
	if err != nil {
		return image.Extent{}, err
	}
	e = image.Extent{Len: run, File: d.dataFileName()}
	defer func() {
		if d.encrypted() { // no host offsets for encrypted data (qcow2_co_block_status)
			e.Status &^= image.StatusOffsetValid
			e.Offset, e.File = 0, ""
		}
	}()
	switch typ {
	case clusterNormal:
		e.Status = image.StatusData | image.StatusOffsetValid
		e.Offset = int64(host)
		if d.prealloc {
			e.Status |= image.StatusRecurse
		}
	case clusterZeroAlloc:
		e.Status = image.StatusZero | image.StatusOffsetValid
		e.Offset = int64(host)
	case clusterZeroPlain:
		e.Status = image.StatusZero
	case clusterCompressed:
		e.Status = image.StatusData
	case clusterUnallocAlloc:
		e.Status = image.StatusOffsetValid
		e.Offset = int64(host)
	}
	return e, nil
}

// Info describes the image for qemu-io's info.
func (d *Driver) Info() (image.Info, error) {
	if d.Dead() {
		return image.Info{}, errNoMedium
	}
	l2span := d.clusterSize * d.l2Size
	info := image.Info{
		FormatName:    "qcow2",
		ClusterSize:   d.clusterSize,
		VMStateOffset: d.sizeToL1(d.size) * l2span,
	}
	ct := "zlib"
	if d.hdr.CompressionType == 1 {
		ct = "zstd"
	}
	rb := fmt.Sprint(1 << d.refOrder)
	if d.hdr.Version < 3 {
		info.Specific = []image.KeyValue{kv("compat", "0.10"), kv("compression type", ct), kv("refcount bits", rb)}
		if lines := d.encryptInfoLines(); lines != nil {
			info.Specific = append(info.Specific, image.KeyValue{Key: "encrypt", Sub: lines})
		}
		return info, nil
	}
	info.Specific = []image.KeyValue{
		kv("compat", "1.1"),
		kv("compression type", ct),
		kv("lazy refcounts", fmt.Sprint(d.hdr.CompatibleFeatures&compatLazyRefcounts != 0)),
	}
	if lines := d.bitmapInfoLines(); lines != nil {
		info.Specific = append(info.Specific, image.KeyValue{Key: "bitmaps", Sub: lines})
	}
	info.Specific = append(info.Specific,
		kv("refcount bits", rb),
	)
	if lines := d.encryptInfoLines(); lines != nil {
		info.Specific = append(info.Specific, image.KeyValue{Key: "encrypt", Sub: lines})
	}
	if d.hasDataName {
		info.Specific = append(info.Specific, kv("data file", d.dataName))
	}
	if d.hasDataFile() {
		info.Specific = append(info.Specific, kv("data file raw", fmt.Sprint(d.dataFileRaw())))
	}
	info.Specific = append(info.Specific,
		kv("corrupt", fmt.Sprint(d.hdr.IncompatibleFeatures&incompatCorrupt != 0)),
		kv("extended l2", fmt.Sprint(d.hdr.IncompatibleFeatures&incompatExtL2 != 0)),
	)
	return info, nil
}

// safePoint releases the pins of both caches (metacache.Cache.SafePoint): the
// caller, a loop walking many tables, holds no table between two steps.
func (d *Driver) safePoint() {
	d.l2c.SafePoint()
	d.rbc.SafePoint()
}

// evict is the safe point at the start of a request; it trims the caches
// back to their sizes if the last request held more tables than that.
func (d *Driver) evict() error {
	if err := d.rbc.Evict(); err != nil {
		return err
	}
	return d.l2c.Evict()
}

// Flush writes cached metadata (refcounts first) and syncs the file.
func (d *Driver) Flush() error {
	// as QEMU's: a flush does not wait for the writes in flight (what
	// they link is linked after their data is written)
	d.mu.lockRaw()
	defer d.mu.Unlock()
	if d.dead {
		return errNoMedium
	}
	// QEMU's bdrv_co_flush signals these on the primary child of the
	// node flushed, not for the flushes of the file inside a request
	d.flushEvents = true
	defer func() { d.flushEvents = false }()
	return d.flushLocked()
}

func (d *Driver) flushLocked() error {
	if d.opts.ReadOnly || d.dead {
		return nil
	}
	if d.flushEvents {
		d.file.DebugEvent("flush_to_os")
	}
	if err := d.l2c.Flush(); err != nil {
		return err
	}
	// a dirty image (lazy refcounts) keeps its refcount blocks in memory
	// until it is closed, as QEMU's qcow2_write_caches does
	if d.needAccurateRefcounts() {
		if err := d.rbc.Flush(); err != nil {
			return err
		}
	}
	d.processDiscards()
	if d.flushEvents && !d.opts.NoFlush {
		d.file.DebugEvent("flush_to_disk")
	}
	if err := d.file.Flush(); err != nil {
		return err
	}
	if d.data != nil {
		return d.data.Flush()
	}
	return nil
}

// lazyRefcounts reports whether refcount updates may lag behind (the
// lazy_refcounts compatible feature, version 3 only).
func (d *Driver) lazyRefcounts() bool {
	return d.hdr.Version >= 3 && d.rt.lazy
}

// needAccurateRefcounts is QEMU's qcow2_need_accurate_refcounts: false
// once the dirty bit is set.
func (d *Driver) needAccurateRefcounts() bool {
	return d.hdr.IncompatibleFeatures&incompatDirty == 0
}

// markDirty is QEMU's qcow2_mark_dirty: the file is synced (the caches are
// not written) and the dirty bit set in the header.
func (d *Driver) markDirty() error {
	if d.hdr.IncompatibleFeatures&incompatDirty != 0 {
		return nil
	}
	if err := d.file.Flush(); err != nil {
		return err
	}
	nh := d.hdr
	nh.IncompatibleFeatures |= incompatDirty
	if err := d.writeHeaderFields(&nh, layout.FieldIncompatible, layout.FieldIncompatible); err != nil {
		return err
	}
	d.hdr.IncompatibleFeatures |= incompatDirty
	return nil
}

// markClean is QEMU's qcow2_mark_clean: with the dirty bit set, write
// every cache out and rewrite the header without it.
func (d *Driver) markClean() error {
	if d.hdr.IncompatibleFeatures&incompatDirty == 0 {
		return nil
	}
	d.hdr.IncompatibleFeatures &^= incompatDirty
	if err := d.flushLocked(); err != nil {
		return err
	}
	return d.updateHeader()
}

// writeSync writes metadata and syncs, as QEMU's bdrv_pwrite_sync.
func (d *Driver) writeSync(b []byte, off int64) error {
	if err := d.file.WriteAt(b, off, false); err != nil {
		return err
	}
	return d.file.Flush()
}

// Close flushes and closes the image and its backing file.
func (d *Driver) Close() error {
	d.mu.Lock()
	if !d.opts.ReadOnly && !d.dead {
		if berr := d.storeBitmaps(); berr != nil {
			d.report("Lost persistent bitmaps during inactivation of node '%s': %s", d.name, image.StrerrorOf(berr))
		}
	}
	// bdrv_close flushes first and does not report its failure; then
	// qcow2_inactivate writes both caches, reporting each failure, and
	// marks the image clean if both were written
	err := d.flushLocked()
	if !d.opts.ReadOnly && !d.dead {
		var ierr error
		if e := d.cacheFlush(d.l2c); e != nil {
			d.report("Failed to flush the L2 table cache: %s", image.StrerrorOf(e))
			ierr = e
		}
		if e := d.cacheFlush(d.rbc); e != nil {
			d.report("Failed to flush the refcount block cache: %s", image.StrerrorOf(e))
			ierr = e
		}
		if ierr == nil {
			ierr = d.markClean()
		}
		err = ierr
	}
	d.mu.Unlock()
	if d.backing != nil {
		d.backing.Close()
	}
	if cerr := d.file.Close(); err == nil {
		err = cerr
	}
	if d.data != nil {
		if cerr := d.data.Close(); err == nil {
			err = cerr
		}
	}
	if d.opts.RemoveOnClose {
		os.Remove(d.name)
	}
	return err
}

// cacheFlush is QEMU's qcow2_cache_flush: the cache's dirty tables are
// written, then the file is flushed (which the file's node skips when
// nothing was written since its last flush).
func (d *Driver) cacheFlush(c *metacache.Cache) error {
	if err := c.Flush(); err != nil {
		return err
	}
	return d.file.Flush()
}

// updateHeader rewrites cluster 0 as QEMU's qcow2_update_header does.
func (d *Driver) updateHeader() error {
	buf := make([]byte, d.clusterSize)
	h := d.hdr
	h.BackingFileOffset, h.BackingFileSize = 0, 0
	h.L1Size = uint32(len(d.l1))
	h.L1TableOffset = uint64(d.l1Offset)
	h.RefcountTableOffset = uint64(d.refTableOffset)
	h.RefcountTableClusters = uint32(int64(len(d.refTable)) >> (d.clusterBits - 3))
	h.Size = uint64(d.size)
	if h.Version >= 3 {
		h.HeaderLength = uint32(headerSize + len(d.unknownFields))
	}
	pos := int64(h.Encode(buf))
	if h.Version >= 3 {
		pos += int64(copy(buf[pos:], d.unknownFields))
	}
	add := func(typ uint32, data []byte) error {
		np, ok := layout.PutExtension(buf, int(pos), typ, data)
		if !ok {
			return syscall.ENOSPC
		}
		pos = int64(np)
		return nil
	}
	if d.backingFmt != "" {
		if err := add(extBackingFormat, []byte(d.backingFmt)); err != nil {
			return err
		}
	}
	if d.hasDataFile() && d.hasDataName {
		if err := add(extDataFile, []byte(d.dataName)); err != nil {
			return err
		}
	}
	if ce := d.cryptoExt(); ce != nil {
		if err := add(extCryptoHeader, ce); err != nil {
			return err
		}
	}
	if h.Version >= 3 && d.clusterSize > 4096 {
		if err := add(extFeatureTable, encodeFeatures(qemuFeatures)); err != nil {
			return err
		}
	}
	if d.nbBitmaps > 0 {
		ext := layout.BitmapsExt{NbBitmaps: d.nbBitmaps, DirSize: d.bitmapDirSize, DirOffset: d.bitmapDirOff}
		if err := add(extBitmaps, ext.Encode()); err != nil {
			return err
		}
	}
	for _, e := range d.exts {
		if err := add(e.Type, e.Data); err != nil {
			return err
		}
	}
	if err := add(extEnd, nil); err != nil {
		return err
	}
	if d.backingFile != "" {
		if int64(len(d.backingFile)) > d.clusterSize-pos {
			return syscall.ENOSPC
		}
		copy(buf[pos:], d.backingFile)
		h.BackingFileOffset = uint64(pos)
		h.BackingFileSize = uint32(len(d.backingFile))
		binary.BigEndian.PutUint64(buf[layout.OffBackingFileOffset:], h.BackingFileOffset)
		binary.BigEndian.PutUint32(buf[layout.OffBackingFileSize:], h.BackingFileSize)
	}
	d.hdr.BackingFileOffset, d.hdr.BackingFileSize = h.BackingFileOffset, h.BackingFileSize
	return d.file.WriteAt(buf, 0, false)
}

func kv(k, v string) image.KeyValue { return image.KeyValue{Key: k, Value: v} }

var (
	_ image.Driver        = (*Driver)(nil)
	_ image.BlockStatuser = (*Driver)(nil)
	_ image.Backed        = (*Driver)(nil)
	_ image.Infoer        = (*Driver)(nil)
)

// OpenOn opens a qcow2 image stored in file, a node opened by the caller
// (the block graph's "file" child); name is the image's name in messages.
// The backing file is not opened: the caller opens the one BackingFile
// names and hands it over with SetBacking, as QEMU's block layer does
// after the format driver's open. Closing the driver closes file.
func OpenOn(file *image.Disk, name string, opts Options) (*Driver, error) {
	opts.OpenBacking = nil
	return openOn(file, name, opts)
}

// BackingFile returns the backing file name and format the image header
// names ("" when none).
func (d *Driver) BackingFile() (name, format string) { return d.backingFile, d.backingFmt }

// SetBacking attaches the backing image (QEMU's bdrv_set_backing_hd).
func (d *Driver) SetBacking(b *image.Disk) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.backing = b
	return nil
}
