package formats

import (
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/image/raw"
)

// openDataFile is the bdrv_open_child calls of qcow2_do_open for the
// "data-file" child of the qcow2 node n (QEMU's child_of_bds with
// BDRV_CHILD_DATA): with name "", the child opts name, if any (nil, nil
// when none); with a name (the one the image's header extension records,
// relative to the current directory as in QEMU 7.2), that file. The child
// is attached to n and its image locks are taken as QEMU's
// bdrv_default_perms_for_storage asks for a data child: the parent's
// permissions (consistent read, and write with resize on a read-write
// node), sharing everything but resize (unless force-share).
func openDataFile(g *Graph, n *Node, opts *qdict.Dict, name string) (*image.Disk, error) {
	child, err := g.openChildNode(name, name != "", opts, "data-file", n, RoleData, name == "")
	if err != nil || child == nil {
		return nil, err
	}
	n.Children = append(n.Children, &Child{Name: "data-file", Role: RoleData, Node: child})
	// While qcow2 opens it, its node has no parent yet: the data child
	// holds no permission and shares all but resize. Then come the
	// permissions of the image's user (QEMU updates them when the
	// BlockBackend attaches the node).
	l := raw.Lock{}
	if !child.ForceShare {
		l.Unshared = raw.PermResize
	}
	if err := attachLock(child, l); err != nil {
		return nil, errorf(err, "%v", err)
	}
	l.Perm = raw.PermConsistentRead
	if n.Flags&FlagRDWR != 0 {
		l.Perm |= raw.PermWrite | raw.PermResize
	}
	if err := attachLock(child, l); err != nil {
		return nil, errorf(err, "%v", err)
	}
	return child.Disk, nil
}
