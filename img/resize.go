package img

import (
	"context"
	"errors"

	"github.com/goqio/goqio/image"
)

// Sentinels of Resize.
var (
	// ErrSizeNotPositive: the new size is zero or negative.
	ErrSizeNotPositive = errors.New("New image size must be positive")
	// ErrPreallocShrink: preallocation was asked for a size that does
	// not grow the image.
	ErrPreallocShrink = errors.New("Preallocation can only be used for growing images")
	// ErrShrinkNotAllowed: the new size is smaller and Shrink is not set.
	ErrShrinkNotAllowed = errors.New("Use the --shrink option to perform a shrink operation.")
)

// ShrinkWarning is what qemu-img warns after ErrShrinkNotAllowed.
const ShrinkWarning = "Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there."

// ResizeOptions are qemu-img resize's options.
type ResizeOptions struct {
	// Size is the new size, or with Relative the change (+1 grows by
	// Size, -1 shrinks by Size).
	Size     int64
	Relative int
	// Shrink allows a smaller size (--shrink).
	Shrink bool
	// Prealloc is --preallocation (off by default).
	Prealloc image.Prealloc
}

// Resize is qemu-img resize on an image opened read-write: it returns the
// new size. The image must have been opened with the resize permission
// (qemu-img's BDRV_O_RESIZE; Resize asks for it on the node).
func Resize(ctx context.Context, im *Image, o ResizeOptions) (int64, error) {
	if err := canceled(ctx); err != nil {
		return 0, err
	}
	cur := im.Size()
	total := o.Size
	switch {
	case o.Relative > 0:
		total = cur + o.Size
	case o.Relative < 0:
		total = cur - o.Size
	}
	if total <= 0 {
		return 0, ErrSizeNotPositive
	}
	if total <= cur && o.Prealloc != image.PreallocOff {
		return 0, ErrPreallocShrink
	}
	if total < cur && !o.Shrink {
		return 0, ErrShrinkNotAllowed
	}
	im.Node.GrantResize()
	if err := im.Node.Disk.Truncate(total, o.Prealloc); err != nil {
		return 0, err
	}
	return total, nil
}
