package qemunbd

import (
	"fmt"

	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/nbd/server"
)

// findBitmap is -B's lookup in nbd_export_create: the bitmap in the node or
// the first of its filtered or backing children that has it (QEMU's
// bdrv_filter_or_cow_bs), usable (not inconsistent).
func findBitmap(n *formats.Node, name string, readOnly bool) (server.Bitmap, error) {
	for bs := n; bs != nil; {
		if q, ok := bs.Impl.(*qcow2.Driver); ok {
			if bm := q.DirtyBitmap(name); bm != nil {
				if bm.Inconsistent() {
					return nil, &formats.Error{Msg: fmt.Sprintf("Bitmap '%s' is inconsistent and cannot be used", name),
						Hint: "Try block-dirty-bitmap-remove to delete this bitmap from disk\n"}
				}
				return bm, nil
			}
		}
		switch {
		case bs.Drv != nil && bs.Drv.IsFilter:
			bs = bs.Child("file")
		default:
			bs = bs.Child("backing")
		}
	}
	return nil, fmt.Errorf("Bitmap '%s' is not found", name)
}
