package img

import (
	"context"
	"math"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/raw"
)

// DdOptions are qemu-img dd's options. The zero value copies the whole
// input in 512-byte blocks into a new raw image.
type DdOptions struct {
	Env
	Input          string // if=
	InputFormat    string // -f
	InputImageOpts bool   // --image-opts
	ForceShare     bool   // -U
	Output         string // of=
	OutputFormat   string // -O ("": raw)
	BlockSize      int64  // bs= (0: 512)
	Count          int64  // count= blocks
	CountSet       bool   // count= was given
	Skip           int64  // skip= blocks of the input
	SkipSet        bool   // skip= was given
}

// Dd is qemu-img dd: it creates the output image, of the size of what is
// copied, and copies the input's blocks into it. A skip past the end of
// the input creates an empty image and returns an *Error with Exit0 set
// (qemu-img reports it and exits with status 0).
func Dd(ctx context.Context, o DdOptions) error {
	bs := o.BlockSize
	if bs == 0 {
		bs = 512
	}
	in, err := o.Open(OpenSpec{Name: o.Input, Format: o.InputFormat, ImageOpts: o.InputImageOpts,
		ForceShare: o.ForceShare, ReadOnly: true})
	if err != nil {
		return err
	}
	defer in.Close()
	outFmt := o.OutputFormat
	if outFmt == "" {
		outFmt = "raw"
	}
	if !FormatKnown(outFmt) {
		return errorf(ErrInvalidOptions, "Unknown file format")
	}
	// blk_getlength: whole sectors
	size := roundUp(in.Disk.Size(), sectorSize)
	if o.CountSet && o.Count <= math.MaxInt64/bs && o.Count*bs < size {
		size = o.Count * bs
	}
	skipPast := o.SkipSet && (o.Skip > math.MaxInt64/bs || size < bs*o.Skip)
	outSize := int64(0)
	if !skipPast {
		outSize = size - bs*o.Skip
	}
	if err := raw.CheckCreateLock(o.Output); err != nil {
		return errorf(wrapErr{ErrCreate, err}, "%s: error while creating output image: %v", o.Output, err)
	}
	if usesFile([]*formats.Node{in}, o.Output) {
		return errorf(ErrCreate, "%s: error while creating output image: Failed to get \"write\" lock\nIs another process using the image [%s]?", o.Output, o.Output)
	}
	if err := createTarget(outFmt, o.Output, outSize, map[string]string{}, o.stderr(), o.prog(), o.Graph); err != nil {
		return errorf(wrapErr{ErrCreate, err}, "%s: error while creating output image: %v", o.Output, err)
	}
	out, err := o.Open(OpenSpec{Name: o.Output, Format: outFmt})
	if err != nil {
		return err
	}
	defer out.Close()
	var skipErr error
	inPos := o.Skip * bs
	if skipPast {
		e := errorf(image.ErrOutOfRange, "%s: cannot skip to specified offset", o.Input)
		e.Exit0 = true
		skipErr = e
		inPos = size
	}
	buf := make([]byte, bs)
	for outPos := int64(0); inPos < size; {
		if err := ctx.Err(); err != nil {
			return errorf(err, "%v", err)
		}
		n := min(bs, size-inPos)
		if err := readPadded(in.Disk, buf[:n], inPos); err != nil {
			return errorf(err, "error while reading from input image file: %s", image.StrerrorOf(err))
		}
		inPos += n
		if err := out.Disk.WriteAt(buf[:n], outPos, false); err != nil {
			return errorf(err, "error while writing to output image file: %s", image.StrerrorOf(err))
		}
		outPos += n
	}
	if err := out.Close(); err != nil {
		return errorf(err, "%s", image.StrerrorOf(err))
	}
	return skipErr
}
