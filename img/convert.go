package img

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/raw"
)

// ConvertOptions are qemu-img convert's options. The zero value (with
// Sources and Target set) is `qemu-img convert SOURCE... TARGET`: the
// sources probed, a raw target created, 4 KiB sparse detection, eight
// requests in flight written in order, cache=unsafe on the target and
// writeback on the sources.
type ConvertOptions struct {
	Env
	// Sources are the images concatenated into the target (at least one),
	// file names or, with SourceImageOpts, --image-opts strings.
	Sources         []string
	SourceFormat    string // -f
	SourceImageOpts bool   // --image-opts
	SourceCache     string // -T ("": writeback)
	ForceShare      bool   // -U
	// Snapshot is -l: an internal snapshot of the (single) source to read
	// instead of its active state (ID or name, or snapshot.id=/name=).
	Snapshot string

	Target          string
	TargetFormat    string // -O ("": raw, or as --target-image-opts say)
	TargetImageOpts bool   // --target-image-opts (needs NoCreate)
	// CreateOptions is -o: the target's creation options, as one
	// comma-separated QemuOpts string (see AccumulateOptions).
	CreateOptions string
	NoCreate      bool   // -n: the target exists
	BackingFile   string // -B: the new target's backing file
	BackingFormat string // -F
	Cache         string // -t ("": unsafe)

	Compress bool // -c
	// SparseSize is -S in bytes: zero runs at least this long in the
	// data are not written. 0 means qemu-img's default, 4 KiB; a negative
	// value is -S 0 (no sparse detection, the target fully allocated).
	SparseSize int64
	// Parallel is -m, the requests in flight (1 to 16; 0 means 8).
	Parallel   int
	OutOfOrder bool // -W: writes may complete in any order
	// RateLimit is -r, in bytes per second (0: none).
	RateLimit    int64
	TargetIsZero bool // --target-is-zero (needs NoCreate)
	CopyRange    bool // -C: copy offloading
	Salvage      bool // --salvage: read errors become zeroes and warnings
	Bitmaps      bool // --bitmaps
	SkipBroken   bool // --skip-broken-bitmaps
	// Quiet is -q: no warnings (and no progress).
	Quiet bool
	// Progress, when set, receives the progress (qemu-img -p).
	Progress Progress
}

type blkStatus int

const (
	blkData blkStatus = iota
	blkZero
	blkBackingFile
)

const (
	maxCoroutines = 16
	ioBufSize     = 2 << 20
	maxBufSectors = 32768
	// requestMaxSectors is BDRV_REQUEST_MAX_SECTORS
	requestMaxSectors = image.MaxRequest / sectorSize
)

// converter is qemu-img's ImgConvertState.
type converter struct {
	ctx        context.Context
	src        []*image.Disk
	srcSectors []int64
	srcAlign   []int64
	total      int64
	target     *image.Disk
	precomp    precompressor

	hasZeroInit, compressed, targetIsNew, targetHasBacking bool
	targetBackingSectors                                   int64
	inOrder, copyRange, salvage, quiet                     bool
	minSparse, alignment, clusterSectors, bufSectors       int64
	workers                                                int
	warn                                                   func(string)
	progress                                               Progress
	rate                                                   *rateLimiter

	mu               sync.Mutex
	cond             *sync.Cond
	sectorNum        int64
	status           blkStatus
	nextStatus       int64
	wrOffs           int64
	err              error
	allocatedSectors int64
	allocatedDone    int64
}

// precompressor is a target that compresses apart from writing, so that
// clusters compress in parallel and are written in order (qcow2).
type precompressor interface {
	PrepareCompressed(p []byte) (any, error)
	WritePrepared(c any, off int64) error
}

func (s *converter) selectPart(sector int64) (int, int64) {
	cur, off := 0, int64(0)
	for sector-off >= s.srcSectors[cur] {
		off += s.srcSectors[cur]
		cur++
	}
	return cur, off
}

// iterationSectors is convert_iteration_sectors; s.mu is held.
func (s *converter) iterationSectors(sector int64) (int64, error) {
	cur, curOff := s.selectPart(sector)
	n := min(s.total-sector, requestMaxSectors)
	postBackingZero := false
	if s.targetBackingSectors >= 0 {
		if sector >= s.targetBackingSectors {
			postBackingZero = true
		} else if sector+n > s.targetBackingSectors {
			n = s.targetBackingSectors - sector
		}
	}
	if s.nextStatus <= sector {
		off := (sector - curOff) * sectorSize
		src := s.src[cur]
		var base *image.Disk
		if s.targetHasBacking {
			base = image.SkipFilters(src).Backing()
		}
		var e image.Extent
		for {
			count := n * sectorSize
			var err error
			e, _, err = image.BlockStatusAboveBase(src, base, off, count, true)
			if err == nil && e.Len == 0 {
				// the end of a source whose size is not whole sectors
				e = image.Extent{Status: image.StatusZero | image.StatusAllocated, Len: count}
			}
			if err == nil {
				break
			}
			if !s.salvage {
				return 0, errorf(err, "error while reading block status at offset %d: %s", off, image.StrerrorOf(err))
			}
			if n == 1 {
				if !s.quiet {
					s.warn(fmt.Sprintf("error while reading block status at offset %d: %s", off, image.StrerrorOf(err)))
				}
				e = image.Extent{Status: image.StatusData, Len: sectorSize}
				break
			}
			n = (n + 3) / 4
		}
		n = (e.Len + sectorSize - 1) / sectorSize
		tail := (sector - curOff + n) % s.srcAlign[cur]
		if n > tail {
			n -= tail
		}
		switch {
		case e.Status&image.StatusZero != 0:
			s.status = blkZero
			if postBackingZero {
				s.status = blkBackingFile
			}
		case e.Status&image.StatusData != 0:
			s.status = blkData
		case s.targetHasBacking:
			s.status = blkBackingFile
		default:
			s.status = blkData
		}
		s.nextStatus = sector + n
	}
	n = min(n, s.nextStatus-sector)
	if s.status == blkData {
		n = min(n, s.bufSectors)
	}
	if s.compressed {
		if n < s.clusterSectors {
			n = min(s.clusterSectors, s.total-sector)
			s.status = blkData
		} else {
			n -= n % s.clusterSectors
		}
	}
	return n, nil
}

// read is convert_co_read: n sectors at sector into buf, across sources.
func (s *converter) read(sector, n int64, buf []byte) error {
	singleUntil := int64(0)
	for n > 0 {
		cur, curOff := s.selectPart(sector)
		d := s.src[cur]
		off := (sector - curOff) * sectorSize
		k := min(n, s.srcSectors[cur]-(sector-curOff))
		if singleUntil > off {
			k = 1
		}
		err := readPadded(d, buf[:k*sectorSize], off)
		if err != nil {
			if !s.salvage {
				return err
			}
			if k > 1 {
				singleUntil = off + k*sectorSize
				continue
			}
			if !s.quiet {
				s.warn(fmt.Sprintf("error while reading offset %d: %s", off, image.StrerrorOf(err)))
			}
			clear(buf[:sectorSize])
		}
		sector += k
		n -= k
		buf = buf[k*sectorSize:]
	}
	return nil
}

// readPadded reads p at off, the part past the end of the image (a raw
// file whose size is not whole sectors) as zeroes, as QEMU's file driver
// reads it.
func readPadded(d *image.Disk, p []byte, off int64) error {
	size := d.Size()
	if off+int64(len(p)) <= size {
		return d.ReadAt(p, off)
	}
	k := max(size-off, 0)
	clear(p[k:])
	if k == 0 {
		return nil
	}
	return d.ReadAt(p[:k], off)
}

// write is convert_co_write.
func (s *converter) write(sector, n int64, buf []byte, status blkStatus, pre any) error {
	for n > 0 {
		k := n
		switch status {
		case blkBackingFile:
		case blkData:
			// copy offloading (-C) copies the data as it is, zeroes too
			write := s.minSparse == 0 || s.copyRange
			if !write && !s.compressed {
				write, k = allocatedSectorsMin(buf, n, s.minSparse, sector, s.alignment)
			} else if !write {
				write = pre != nil || !isZero(buf[:n*sectorSize])
			}
			if write {
				if err := s.writeData(sector, k, buf, pre); err != nil {
					return err
				}
				break
			}
			fallthrough
		case blkZero:
			if s.hasZeroInit {
				break
			}
			if err := s.target.WriteZeroes(sector*sectorSize, k*sectorSize, image.ZeroMayUnmap, false); err != nil {
				return err
			}
		}
		sector += k
		n -= k
		if status == blkData {
			buf = buf[k*sectorSize:]
		}
	}
	return nil
}

// usesFile reports whether a file node of the graphs under nodes is the
// file at path.
func usesFile(nodes []*formats.Node, path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	seen := map[*formats.Node]bool{}
	var walk func(n *formats.Node) bool
	walk = func(n *formats.Node) bool {
		if n == nil || seen[n] {
			return false
		}
		seen[n] = true
		if n.Drv != nil && n.Drv.Name == "file" {
			if f, err := os.Stat(n.Filename); err == nil && os.SameFile(f, fi) {
				return true
			}
		}
		for _, c := range n.Children {
			if walk(c.Node) {
				return true
			}
		}
		return false
	}
	for _, n := range nodes {
		if walk(n) {
			return true
		}
	}
	return false
}

func (s *converter) writeData(sector, n int64, buf []byte, pre any) error {
	off, p := sector*sectorSize, buf[:n*sectorSize]
	if s.rate != nil {
		s.rate.wait(s.ctx, int64(len(p)))
	}
	if !s.compressed {
		return s.target.WriteAt(p, off, false)
	}
	if end := s.target.Size(); off+int64(len(p)) > end {
		p = p[:max(end-off, 0)]
	}
	if pre != nil {
		return s.precomp.WritePrepared(pre, off)
	}
	return s.target.WriteCompressed(p, off)
}

// worker is convert_co_do_copy.
func (s *converter) worker(buf []byte) {
	for {
		s.mu.Lock()
		if s.err == nil {
			if err := s.ctx.Err(); err != nil {
				s.err = errorf(err, "%v", err)
			}
		}
		if s.err != nil || s.sectorNum >= s.total {
			s.mu.Unlock()
			return
		}
		n, err := s.iterationSectors(s.sectorNum)
		if err != nil {
			s.err = err
			s.cond.Broadcast()
			s.mu.Unlock()
			return
		}
		sector, status := s.sectorNum, s.status
		if s.minSparse == 0 && status == blkZero {
			n = min(n, s.bufSectors)
		}
		s.sectorNum += n
		if status == blkData || (s.minSparse == 0 && status == blkZero) {
			s.allocatedDone += n
			s.progress.Report(float32(100 * float64(s.allocatedDone) / float64(s.allocatedSectors)))
		}
		s.mu.Unlock()

		var pre any
		var failed error
		if status == blkData {
			if err := s.read(sector, n, buf); err != nil {
				failed = errorf(err, "error while reading at byte %d: %s", sector*sectorSize, image.StrerrorOf(err))
			} else if s.compressed && s.precomp != nil && !isZero(buf[:n*sectorSize]) {
				p := buf[:n*sectorSize]
				if end := s.target.Size(); sector*sectorSize+int64(len(p)) > end {
					p = p[:max(end-sector*sectorSize, 0)]
				}
				pre, err = s.precomp.PrepareCompressed(p)
				if err != nil {
					failed = errorf(err, "error while writing at byte %d: %s", sector*sectorSize, image.StrerrorOf(err))
				}
			}
		} else if s.minSparse == 0 && status == blkZero {
			status = blkData
			clear(buf[:n*sectorSize])
		}

		s.mu.Lock()
		if failed != nil && s.err == nil {
			s.err = failed
		}
		if s.inOrder {
			for s.wrOffs != sector && s.err == nil {
				s.cond.Wait()
			}
		}
		ok := s.err == nil
		s.mu.Unlock()

		if ok {
			if err := s.write(sector, n, buf, status, pre); err != nil {
				s.mu.Lock()
				if s.err == nil {
					s.err = errorf(err, "error while writing at byte %d: %s", sector*sectorSize, image.StrerrorOf(err))
				}
				s.mu.Unlock()
			}
		}
		if s.inOrder {
			s.mu.Lock()
			s.wrOffs = sector + n
			s.cond.Broadcast()
			s.mu.Unlock()
		}
	}
}

// doCopy is convert_do_copy.
func (s *converter) doCopy() error {
	if s.compressed {
		if s.clusterSectors <= 0 || s.clusterSectors > s.bufSectors {
			return errorf(ErrInvalidOptions, "invalid cluster size")
		}
		s.bufSectors = s.clusterSectors
	}
	for sector := int64(0); sector < s.total; {
		if err := s.ctx.Err(); err != nil {
			return errorf(err, "%v", err)
		}
		n, err := s.iterationSectors(sector)
		if err != nil {
			return err
		}
		if s.status == blkData || (s.minSparse == 0 && s.status == blkZero) {
			s.allocatedSectors += n
		}
		sector += n
	}
	if t, ok := s.progress.(interface{ SetTotal(int64) }); ok {
		t.SetTotal(s.allocatedSectors * sectorSize)
	}
	if s.salvage {
		// qemu-img's coroutines report what they salvage in the order of
		// the offsets; so does one worker
		s.workers = 1
	}
	s.nextStatus = 0
	s.cond = sync.NewCond(&s.mu)
	var wg sync.WaitGroup
	for i := 0; i < s.workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(make([]byte, s.bufSectors*sectorSize))
		}()
	}
	wg.Wait()
	if s.err != nil {
		return s.err
	}
	if s.compressed {
		if err := s.target.WriteCompressed(nil, 0); err != nil && !errors.Is(err, image.ErrNotSupported) {
			return errorf(err, "%s", image.StrerrorOf(err))
		}
	}
	return nil
}

// Convert copies the sources, concatenated, into the target as qemu-img
// convert does: the same requests in the same order, so that the target
// has the same allocation (and, written in order, the same host offsets)
// as qemu-img's. Zero and unallocated ranges of the sources are never
// read; what reads as zero is not written to a new target (or with
// TargetIsZero), and becomes zero writes on an existing one.
//
// Cancelling ctx stops the copy after the requests in flight; the
// target is closed cleanly and holds what was written so far.
func Convert(ctx context.Context, o ConvertOptions) (err error) {
	s := &converter{ctx: ctx, minSparse: 8, bufSectors: ioBufSize / sectorSize, inOrder: !o.OutOfOrder,
		workers: 8, copyRange: o.CopyRange, compressed: o.Compress, salvage: o.Salvage, quiet: o.Quiet,
		hasZeroInit: o.TargetIsZero}
	s.warn = func(m string) { fmt.Fprintf(o.stderr(), "%s: warning: %s\n", o.prog(), m) }
	snap, err := parseSnapshotParam(o.Snapshot)
	if err != nil {
		return err
	}
	explicitSparse := o.SparseSize != 0
	if o.SparseSize < 0 {
		s.minSparse = 0
	} else if o.SparseSize > 0 {
		if o.SparseSize%sectorSize != 0 || o.SparseSize/sectorSize > maxBufSectors {
			return errorf(ErrInvalidOptions, "Invalid buffer size for sparse output specified. Valid sizes are multiples of %d up to %d. Select 0 to disable sparse detection (fully allocates output).", sectorSize, maxBufSectors*sectorSize)
		}
		s.minSparse = o.SparseSize / sectorSize
	}
	if o.Parallel != 0 {
		if o.Parallel < 1 || o.Parallel > maxCoroutines {
			return errorf(ErrInvalidOptions, "Invalid number of coroutines. Allowed number of coroutines is between 1 and %d", maxCoroutines)
		}
		s.workers = o.Parallel
	}
	outFmt := o.TargetFormat
	if outFmt == "" && !o.TargetImageOpts {
		outFmt = "raw"
	}
	switch {
	case o.SkipBroken && !o.Bitmaps:
		return errorf(ErrInvalidOptions, "Use of --skip-broken-bitmaps requires --bitmaps")
	case s.compressed && s.copyRange:
		return errorf(ErrInvalidOptions, "Cannot enable copy offloading when -c is used")
	case explicitSparse && s.copyRange:
		return errorf(ErrInvalidOptions, "Cannot enable copy offloading when -S is used")
	case s.copyRange && s.salvage:
		return errorf(ErrInvalidOptions, "Cannot use copy offloading in salvaging mode")
	case o.TargetImageOpts && !o.NoCreate:
		return errorf(ErrInvalidOptions, "--target-image-opts requires use of -n flag")
	case o.NoCreate && o.CreateOptions != "":
		return errorf(ErrInvalidOptions, "-o has no effect when skipping image creation")
	case s.hasZeroInit && !o.NoCreate:
		return errorf(ErrInvalidOptions, "--target-is-zero requires use of -n flag")
	}
	if o.CreateOptions != "" && HasHelpOption(o.CreateOptions) {
		if outFmt == "" {
			return errorf(ErrInvalidOptions, "Option help requires a format be specified")
		}
		target := ""
		if len(o.Sources) >= 1 {
			target = o.Target
		}
		text, err := CreateOptionsHelp(outFmt, target)
		if err != nil {
			return err
		}
		if o.Stdout != nil {
			io.WriteString(o.Stdout, text)
		}
		return nil
	}
	if len(o.Sources) < 1 {
		return errorf(ErrInvalidOptions, "Must specify image file name")
	}
	srcCache := o.SourceCache
	if srcCache == "" {
		srcCache = "writeback"
	}
	var cf commands.OpenFlags
	if !commands.ParseCacheMode(srcCache, &cf) {
		return errorf(ErrInvalidOptions, "Invalid source cache option: %s", srcCache)
	}
	prog := o.Progress
	if prog == nil || o.Quiet {
		prog = noProgress{}
	}
	s.progress = prog
	prog.Report(0)
	defer func() {
		if err == nil {
			prog.Report(100)
		}
		prog.End()
	}()
	if o.Graph == nil {
		o.Graph = formats.NewGraph(formats.Env{Prog: o.prog()})
	}

	var nodes []*formats.Node
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	for _, name := range o.Sources {
		n, err := o.Open(OpenSpec{Name: name, Format: o.SourceFormat, ImageOpts: o.SourceImageOpts,
			ForceShare: o.ForceShare, ReadOnly: true, Cache: srcCache})
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		d := n.Disk
		s.src = append(s.src, d)
		sectors := (d.Size() + sectorSize - 1) / sectorSize
		s.srcSectors = append(s.srcSectors, sectors)
		align := (d.Limits().RequestAlignment + sectorSize - 1) / sectorSize
		if inf, err := d.Info(); err == nil && inf.ClusterSize > 0 {
			align = max(align, inf.ClusterSize/sectorSize)
		}
		s.srcAlign = append(s.srcAlign, max(align, 1))
		s.total += sectors
	}
	if snap.opts {
		if err := snap.load(nodes[0]); err != nil {
			return err
		}
	} else if snap.given {
		if len(o.Sources) > 1 {
			return errorf(ErrInvalidOptions, "No support for concatenating multiple snapshot")
		}
		if err := snap.load(nodes[0]); err != nil {
			return err
		}
	}

	backing, backingFmt := o.BackingFile, o.BackingFormat
	var createOpts map[string]string
	if !o.NoCreate {
		if !FormatKnown(outFmt) {
			return errorf(ErrInvalidOptions, "Unknown file format '%s'", outFmt)
		}
		createOpts, err = parseCreateOptions(outFmt, o.CreateOptions)
		if err != nil {
			return err
		}
		if backing != "" && outFmt != "qcow2" {
			return errorf(ErrInvalidOptions, "Backing file not supported for file format '%s'", outFmt)
		}
		if backingFmt != "" && outFmt != "qcow2" {
			return errorf(ErrInvalidOptions, "Backing file format not supported for file format '%s'", outFmt)
		}
		if backing != "" {
			createOpts["backing_file"] = backing
		}
		if backingFmt != "" {
			createOpts["backing_fmt"] = backingFmt
		}
		if v, ok := createOpts["backing_file"]; ok {
			backing = v
		}
	}
	s.targetHasBacking = backing != ""
	if s.hasZeroInit && s.targetHasBacking {
		e := errorf(ErrInvalidOptions, "Cannot use --target-is-zero when the destination image has a backing file")
		e.Exit0 = true
		return e
	}
	if len(o.Sources) > 1 && backing != "" {
		return errorf(ErrInvalidOptions, "Having a backing file for the target makes no sense when concatenating multiple input images")
	}
	if _, ok := createOpts["backing_file"]; ok {
		if _, ok := createOpts["backing_fmt"]; !ok {
			return errorf(ErrInvalidOptions, "Use of backing file requires explicit backing format")
		}
	}
	if s.compressed {
		if createOpts != nil && outFmt != "qcow2" {
			return errorf(ErrInvalidOptions, "Compression not supported for this file format")
		}
		if createOpts["encryption"] == "on" || createOpts["encrypt.format"] != "" {
			return errorf(ErrInvalidOptions, "Compression and encryption not supported at the same time")
		}
		if p, ok := createOpts["preallocation"]; ok && p != "off" {
			return errorf(ErrInvalidOptions, "Compression and preallocation not supported at the same time")
		}
	}
	if o.Bitmaps {
		if len(o.Sources) > 1 {
			return errorf(ErrInvalidOptions, "Copying bitmaps only possible with single source")
		}
		if err = checkBitmaps(nodes[0], o.SkipBroken); err != nil {
			return err
		}
	}
	if !o.NoCreate {
		err := raw.CheckCreateLock(o.Target)
		if err == nil && usesFile(nodes, o.Target) {
			// a raw source shares writes (goqio's raw format node takes
			// no NO_SHARE lock), but qemu-img's source refuses them
			err = fmt.Errorf("Failed to get \"write\" lock\nIs another process using the image [%s]?", o.Target)
		}
		if err != nil {
			return errorf(wrapErr{ErrCreate, err}, "%s: error while converting %s: %v", o.Target, outFmt, err)
		}
		if err := createTarget(outFmt, o.Target, s.total*sectorSize, createOpts, o.stderr(), o.prog(), o.Graph); err != nil {
			return errorf(wrapErr{ErrCreate, err}, "%s: error while converting %s: %v", o.Target, outFmt, err)
		}
	}
	s.targetIsNew = !o.NoCreate

	cache := o.Cache
	if cache == "" {
		cache = "unsafe"
	}
	var tf commands.OpenFlags
	if !commands.ParseCacheMode(cache, &tf) {
		return errorf(ErrInvalidOptions, "Invalid cache option: %s", cache)
	}
	var tn *formats.Node
	if o.NoCreate {
		tn, err = o.Open(OpenSpec{Name: o.Target, Format: outFmt, ImageOpts: o.TargetImageOpts,
			Cache: cache, Unmap: s.minSparse != 0})
	} else {
		// img_add_key_secrets: the target opens with the -o options
		// that name its secrets
		secrets := map[string]string{}
		for k, v := range createOpts {
			if strings.HasSuffix(k, "key-secret") {
				secrets[k] = v
			}
		}
		tn, err = o.Open(OpenSpec{Name: o.Target, Format: outFmt, Cache: cache, Unmap: s.minSparse != 0, Options: secrets})
	}
	if err != nil {
		return err
	}
	defer func() {
		if cerr := tn.Close(); cerr != nil && err == nil {
			err = errorf(cerr, "%s", image.StrerrorOf(cerr))
		}
	}()
	if tf.NoCache {
		tn.GrantResize()
	}
	s.target = tn.Disk
	tinfo, infoErr := s.target.Info()
	if o.Bitmaps {
		if tinfo.FormatName != "qcow2" || specific(tinfo, "compat") == "0.10" {
			return errorf(ErrInvalidOptions, "Format driver '%s' does not support bitmaps", tinfo.FormatName)
		}
	}
	if s.compressed {
		if _, ok := s.target.Driver().(image.Compressor); !ok {
			return errorf(ErrInvalidOptions, "Compression not supported for this file format")
		}
		s.precomp, _ = s.target.Driver().(precompressor)
	}
	lim := s.target.Limits()
	s.bufSectors = min(maxBufSectors, max(s.bufSectors, lim.DiscardAlignment/sectorSize))
	if inf := tinfo; infoErr == nil && inf.FormatName == "qcow2" {
		// qcow2's pdiscard_alignment is its cluster size
		s.bufSectors = min(maxBufSectors, max(s.bufSectors, inf.ClusterSize/sectorSize))
	}
	s.alignment = max(pow2floor(s.minSparse), (lim.RequestAlignment+sectorSize-1)/sectorSize)
	if o.NoCreate {
		out := (s.target.Size() + sectorSize - 1) / sectorSize
		if out < s.total {
			return errorf(ErrTargetTooSmall, "output file is smaller than input file")
		}
	}
	s.targetBackingSectors = -1
	if s.targetHasBacking && s.targetIsNew {
		if b := image.BackingChainNext(s.target); b != nil {
			s.targetBackingSectors = (b.Size() + sectorSize - 1) / sectorSize
		}
	}
	if infoErr != nil || tinfo.ClusterSize == 0 {
		if s.compressed {
			return errorf(ErrInvalidOptions, "could not get block driver info")
		}
	} else {
		s.clusterSectors = tinfo.ClusterSize / sectorSize
	}
	if !s.hasZeroInit && s.targetIsNew && s.minSparse != 0 && !s.targetHasBacking {
		s.hasZeroInit = hasZeroInit(tn)
	}
	if o.RateLimit > 0 {
		s.rate = &rateLimiter{rate: o.RateLimit, start: time.Now()}
	}
	if err := s.doCopy(); err != nil {
		return err
	}
	if o.Bitmaps {
		return copyBitmaps(nodes[0], tn, o.SkipBroken, func(m string) {
			fmt.Fprintf(o.stderr(), "%s: warning: %s\n", o.prog(), m)
		})
	}
	return nil
}

// hasZeroInit is bdrv_has_zero_init of a new target: a new file reads as
// zeroes, and so does a new qcow2 image (preallocated or not, its file
// is new) unless it is preallocated and encrypted.
func hasZeroInit(n *formats.Node) bool {
	if n.Disk.Backing() != nil {
		return false
	}
	switch n.Drv.Name {
	case "raw", "file":
		return true
	case "qcow2":
		if q, ok := image.SkipFilters(n.Disk).Driver().(*qcow2.Driver); ok {
			return q.HasZeroInit()
		}
		return true
	}
	return false
}

func specific(inf image.Info, key string) string {
	for _, kv := range inf.Specific {
		if kv.Key == key {
			return kv.Value
		}
	}
	return ""
}

// checkBitmaps is convert_check_bitmaps.
func checkBitmaps(n *formats.Node, skipBroken bool) error {
	d, ok := image.SkipFilters(n.Disk).Driver().(*qcow2.Driver)
	if inf, err := n.Disk.Info(); !ok || err != nil || specific(inf, "compat") == "0.10" {
		return errorf(ErrInvalidOptions, "Source lacks bitmap support")
	}
	// QEMU's list of a node's bitmaps has the last loaded first
	list := d.PersistentBitmaps()
	for i := len(list) - 1; i >= 0; i-- {
		bm := list[i]
		if bm.Inconsistent && !skipBroken {
			e := errorf(ErrInvalidOptions, "Cannot copy inconsistent bitmap '%s'", bm.Name)
			e.Hint = "Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it\n"
			return e
		}
	}
	return nil
}

// copyBitmaps is convert_copy_bitmaps: every persistent bitmap of the
// source added to the target with its bits, the inconsistent ones
// skipped with a warning (skipBroken).
func copyBitmaps(src, dst *formats.Node, skipBroken bool, warn func(string)) error {
	sd, ok := image.SkipFilters(src.Disk).Driver().(*qcow2.Driver)
	dd, ok2 := image.SkipFilters(dst.Disk).Driver().(*qcow2.Driver)
	if !ok || !ok2 {
		return nil
	}
	// QEMU walks the source's bitmaps last loaded first and adds each at
	// the head of the target's list, which it stores from the head: the
	// target stores them in the source's order. The warnings come in the
	// walk's order, the first error stops the walk.
	list := sd.PersistentBitmaps()
	var add []string
	for i := len(list) - 1; i >= 0; i-- {
		bm := list[i]
		if skipBroken && bm.Inconsistent {
			warn(fmt.Sprintf("Skipping inconsistent bitmap '%s'", bm.Name))
			continue
		}
		add = append(add, bm.Name)
	}
	if len(add) > 0 && src.Disk.Size() != dst.Disk.Size() {
		return errorf(ErrInvalidOptions, "Failed to populate bitmap %s: Bitmaps are of different sizes (destination size is %d, source size is %d) and can't be merged",
			add[0], dst.Disk.Size(), src.Disk.Size())
	}
	for i := len(add) - 1; i >= 0; i-- {
		if err := qcow2.CopyBitmap(dd, sd, add[i]); err != nil {
			return errorf(err, "Failed to create bitmap %s: %v", add[i], err)
		}
	}
	return nil
}

// rateLimiter is -r: the data written is held to rate bytes per second.
type rateLimiter struct {
	mu    sync.Mutex
	rate  int64
	start time.Time
	done  int64
}

func (r *rateLimiter) wait(ctx context.Context, n int64) {
	r.mu.Lock()
	r.done += n
	due := r.start.Add(time.Duration(float64(r.done) / float64(r.rate) * float64(time.Second)))
	r.mu.Unlock()
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(min(d, time.Duration(math.MaxInt64)))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}
