package img

import (
	"context"
	"fmt"
	"strconv"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2"
)

// MeasureOptions are qemu-img measure's options: either Size (a new
// image of that size) or Source (an image to convert), never both.
type MeasureOptions struct {
	Env
	// Size is --size: measure an empty image of this many bytes. A
	// positive Size, or SizeSet, means it was given (SizeSet for a size
	// of 0).
	Size    int64
	SizeSet bool

	Source          string
	SourceFormat    string // -f
	SourceImageOpts bool   // --image-opts
	ForceShare      bool   // -U
	Snapshot        string // -l

	TargetFormat  string // -O ("": raw)
	CreateOptions string // -o
}

// MeasureResult is qemu-img measure's answer (BlockMeasureInfo).
type MeasureResult struct {
	Required       int64 // bytes the new image needs
	FullyAllocated int64 // bytes it takes fully allocated
	// HasBitmaps: Bitmaps is the room for the source's bitmaps.
	HasBitmaps bool
	Bitmaps    int64
}

// Measure is qemu-img measure: how large a new image of the target
// format would be, empty or holding the source's data.
func Measure(ctx context.Context, o MeasureOptions) (MeasureResult, error) {
	var r MeasureResult
	snap, err := parseSnapshotParam(o.Snapshot, func(m string) { fmt.Fprintf(o.stderr(), "%s: warning: %s\n", o.prog(), m) })
	if err != nil {
		return r, err
	}
	hasSize := o.SizeSet || o.Size > 0
	if o.Source == "" && (o.SourceImageOpts || o.SourceFormat != "" || o.Snapshot != "") {
		return r, errorf(ErrInvalidOptions, "--image-opts, -f, and -l require a filename argument.")
	}
	if o.Source != "" && hasSize {
		return r, errorf(ErrInvalidOptions, "--size N cannot be used together with a filename.")
	}
	if o.Source == "" && !hasSize {
		return r, errorf(ErrInvalidOptions, "Either --size N or one filename must be specified.")
	}
	var src *image.Disk
	var srcQcow2 *qcow2.Driver
	if o.Source != "" {
		n, err := o.Open(OpenSpec{Name: o.Source, Format: o.SourceFormat, ImageOpts: o.SourceImageOpts,
			ForceShare: o.ForceShare, ReadOnly: true})
		if err != nil {
			return r, err
		}
		defer n.Close()
		src = n.Disk
		srcQcow2, _ = image.SkipFilters(src).Driver().(*qcow2.Driver)
		if snap.given {
			if err := snap.Load(n); err != nil {
				return r, err
			}
		}
	}
	outFmt := o.TargetFormat
	if outFmt == "" {
		outFmt = "raw"
	}
	if !FormatKnown(outFmt) {
		return r, errorf(ErrInvalidOptions, "Unknown file format '%s'", outFmt)
	}
	opts, err := parseCreateOptions(outFmt, o.CreateOptions)
	if err != nil {
		e := err.(*Error)
		e.Hint = e.Hint + o.prog() + ": Invalid options for file format '" + outFmt + "'\n"
		return r, e
	}
	size := o.Size
	if hasSize {
		opts["size"] = strconv.FormatInt(size, 10)
	}
	if outFmt == "raw" {
		if src != nil {
			r.Required = (src.Size() + sectorSize - 1) &^ (sectorSize - 1)
		} else {
			v, _ := commands.ParseSize(orDefault(opts["size"], "0"))
			r.Required = (v + sectorSize - 1) &^ (sectorSize - 1)
		}
		r.FullyAllocated = r.Required
		return r, nil
	}
	return measureQcow2(ctx, opts, src, srcQcow2)
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// measureQcow2 is qcow2_measure.
func measureQcow2(ctx context.Context, opts map[string]string, src *image.Disk, srcQcow2 *qcow2.Driver) (MeasureResult, error) {
	var r MeasureResult
	extL2 := opts["extended_l2"] == "on"
	cs := int64(65536)
	if v, ok := opts["cluster_size"]; ok {
		cs, _ = commands.ParseSize(v)
	}
	bits := 0
	for bits < 63 && cs>>bits&1 == 0 {
		bits++
	}
	if bits < 9 || bits > 21 || int64(1)<<bits != cs {
		return r, errorf(ErrInvalidOptions, "Cluster size must be a power of two between 512 and 2048k")
	}
	if extL2 && cs < 512*32 {
		return r, errorf(ErrInvalidOptions, "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes")
	}
	version := 3
	if v, ok := opts["compat"]; ok {
		switch v {
		case "0.10":
			version = 2
		case "1.1":
		default:
			return r, errorf(ErrInvalidOptions, "Invalid compatibility level: '%s'", v)
		}
	}
	refBits := uint64(16)
	if v, ok := opts["refcount_bits"]; ok {
		refBits, _ = strconv.ParseUint(v, 0, 64)
	}
	if refBits > 64 || refBits == 0 || refBits&(refBits-1) != 0 {
		return r, errorf(ErrInvalidOptions, "Refcount width must be a power of two and may not exceed 64 bits")
	}
	if version < 3 && refBits != 16 {
		return r, errorf(ErrInvalidOptions, "Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)")
	}
	prealloc := "off"
	if v, ok := opts["preallocation"]; ok {
		switch v {
		case "off", "metadata", "falloc", "full":
			prealloc = v
		default:
			return r, errorf(ErrInvalidOptions, "invalid parameter value: %s", v)
		}
	}
	_, hasBacking := opts["backing_file"]
	if opts["encrypt.format"] == "luks" {
		return r, errorf(image.ErrNotSupported, "measuring LUKS-encrypted qcow2 images is not implemented in goqio yet")
	}
	virt := int64(0)
	if v, ok := opts["size"]; ok {
		virt, _ = commands.ParseSize(v)
	}
	virt = roundUp(virt, cs)
	l2e := int64(8)
	if extL2 {
		l2e = 16
	}
	l2Tables := divRoundUp(virt/cs, cs/l2e)
	if uint64(l2Tables)*8 > 32<<20 {
		return r, errorf(ErrInvalidOptions, "The image size is too large (try using a larger cluster size)")
	}
	required := int64(0)
	if src != nil {
		ssize := src.Size()
		virt = roundUp(ssize, cs)
		if hasBacking {
			required = virt
		} else {
			for off := int64(0); off < ssize; {
				if err := ctx.Err(); err != nil {
					return r, errorf(err, "%v", err)
				}
				e, _, err := image.BlockStatusAbove(src, off, ssize-off, true)
				if err != nil {
					return r, errorf(err, "Unable to get block status: %s", image.StrerrorOf(err))
				}
				pnum := e.Len
				if pnum <= 0 {
					break
				}
				if e.Status&image.StatusZero != 0 {
				} else if e.Status&(image.StatusData|image.StatusAllocated) == image.StatusData|image.StatusAllocated {
					pnum = roundUp(off+pnum, cs) - off
					required += off%cs + pnum
				}
				off += pnum
			}
		}
	}
	if prealloc == "full" || prealloc == "falloc" {
		required = virt
	}
	refOrder := 0
	for uint64(1)<<refOrder != refBits {
		refOrder++
	}
	r.FullyAllocated = preallocSize(virt, cs, refOrder, extL2)
	r.Required = r.FullyAllocated - virt + required
	r.HasBitmaps = version >= 3 && srcQcow2 != nil
	if r.HasBitmaps {
		if inf, err := src.Info(); err != nil || specific(inf, "compat") == "0.10" {
			r.HasBitmaps = false
		}
	}
	if r.HasBitmaps {
		var total, dir int64
		for _, bm := range srcQcow2.PersistentBitmaps() {
			bytes := divRoundUp(divRoundUp(src.Size(), bm.Granularity), 8)
			clusters := divRoundUp(bytes, cs)
			total += clusters * cs
			total += roundUp(clusters*8, cs)
			dir += roundUp(24+int64(len(bm.Name)), 8)
		}
		r.Bitmaps = total + roundUp(dir, cs)
	}
	return r, nil
}

func roundUp(v, a int64) int64    { return (v + a - 1) / a * a }
func divRoundUp(v, a int64) int64 { return (v + a - 1) / a }

// preallocSize is qcow2_calc_prealloc_size.
func preallocSize(total, cs int64, refOrder int, extL2 bool) int64 {
	l2e := int64(8)
	if extL2 {
		l2e = 16
	}
	aligned := roundUp(total, cs)
	meta := cs
	nl2e := roundUp(aligned/cs, cs/l2e)
	meta += nl2e * l2e
	nl1e := roundUp(nl2e*l2e/cs, cs/8)
	meta += nl1e * 8
	meta += refcountMetadataSize((meta+aligned)/cs, cs, refOrder)
	return meta + aligned
}

// refcountMetadataSize is qcow2_refcount_metadata_size without the
// generous increase.
func refcountMetadataSize(clusters, cs int64, refOrder int) int64 {
	perTable := cs / 8
	perBlock := cs * 8 / (1 << refOrder)
	var table, blocks, n int64
	for {
		last := n
		blocks = divRoundUp(clusters+table+blocks, perBlock)
		table = divRoundUp(blocks, perTable)
		n = clusters + blocks + table
		if n == last {
			break
		}
	}
	return (blocks + table) * cs
}
