package img

import (
	"context"
	"errors"
	"fmt"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2"
)

// BitmapOp is one qemu-img bitmap action.
type BitmapOp int

const (
	BitmapAdd BitmapOp = iota
	BitmapRemove
	BitmapClear
	BitmapEnable
	BitmapDisable
	BitmapMerge
)

var bitmapOpNames = []string{"add", "remove", "clear", "enable", "disable", "merge"}

func (op BitmapOp) String() string { return bitmapOpNames[op] }

// BitmapAction is an action of qemu-img bitmap; Source is --merge's
// bitmap name.
type BitmapAction struct {
	Op     BitmapOp
	Source string
}

// BitmapOptions are qemu-img bitmap's options.
type BitmapOptions struct {
	// Granularity is -g (--add only); 0: the image's default (its
	// cluster size, between 4k and 64k).
	Granularity int64
	// Source is the image --merge takes its bitmap from (-b), opened by
	// the caller; nil: the image itself.
	Source *Image
}

// ErrBitmap: a bitmap action failed (the error says which and why).
var ErrBitmap = errors.New("bitmap operation failed")

// Bitmaps runs qemu-img bitmap's actions, in order, on the persistent
// bitmap name of im (opened read-write, without its backing file). The
// first failure stops: "Operation OP on bitmap NAME failed: ...". What the
// actions changed is stored when im is closed.
func Bitmaps(ctx context.Context, im *Image, name string, actions []BitmapAction, o BitmapOptions) error {
	node := im.Node
	q, ok := image.SkipFilters(node.Disk).Driver().(*qcow2.Driver)
	var src *qcow2.Driver
	if o.Source != nil {
		src, _ = image.SkipFilters(o.Source.Node.Disk).Driver().(*qcow2.Driver)
	} else {
		src = q
	}
	for _, a := range actions {
		if err := canceled(ctx); err != nil {
			return err
		}
		var err error
		switch {
		case !ok && a.Op == BitmapAdd:
			if name == "" {
				err = errors.New("Bitmap name cannot be empty")
			} else {
				err = fmt.Errorf("Can't store persistent bitmaps to %s: Operation not supported", node.NodeName)
			}
		case !ok:
			err = fmt.Errorf("Dirty bitmap '%s' not found", name)
		default:
			switch a.Op {
			case BitmapAdd:
				err = q.AddBitmap(name, o.Granularity, o.Granularity != 0, node.NodeName)
			case BitmapRemove:
				err = q.RemoveBitmap(name)
			case BitmapClear:
				err = q.ClearBitmap(name)
			case BitmapEnable, BitmapDisable:
				err = q.EnableBitmap(name, a.Op == BitmapEnable)
			case BitmapMerge:
				if src == nil {
					err = fmt.Errorf("Dirty bitmap '%s' not found", a.Source)
				} else {
					err = q.MergeBitmap(name, src, a.Source)
				}
			}
		}
		if err != nil {
			e := &Error{Msg: fmt.Sprintf("Operation %s on bitmap %s failed: %v", a.Op, name, err), Err: ErrBitmap}
			var be *qcow2.BitmapError
			if errors.As(err, &be) {
				e.Hint = be.Hint
			}
			return e
		}
	}
	return nil
}
