package formats

import (
	"os"
	"path/filepath"
)

// What qemu-img rebase and commit need of the graph.

// ExactFilename is the node's exact_filename after bdrv_refresh_filename:
// the plain file name that opens it ("" when only options do).
func (n *Node) ExactFilename() string {
	n.refreshFilename()
	return n.exactFilename
}

// BackingChild returns the node's backing file node, skipping filters
// below it (bdrv_backing_chain_next), or nil.
func (n *Node) BackingChild() *Node {
	b := n.Child("backing")
	for b != nil && b.Drv != nil && b.Drv.IsFilter && b.Child("backing") == nil {
		f := b.Child("file")
		if f == nil {
			break
		}
		b = f
	}
	return b
}

// FindBackingImage is bdrv_find_backing_image: the node in the backing
// chain below top that name (as a backing file name is resolved: relative
// to the directory of the image naming it) designates, or nil.
func FindBackingImage(top *Node, name string) *Node {
	if top == nil || name == "" {
		return nil
	}
	isProto := pathHasProtocol(name)
	for cur := top; cur.Child("backing") != nil; cur = cur.BackingChild() {
		below := cur.BackingChild()
		if below == nil {
			return nil
		}
		if cur.autoBackingFile != below.Filename {
			// the backing file was overridden: only its filename can match
			below.refreshFilename()
			if name == below.Filename {
				return below
			}
			continue
		}
		if isProto || pathHasProtocol(cur.BackingFile) {
			if name == cur.BackingFile {
				return below
			}
			if full, err := fullBackingFilename(cur); err == nil && full == name {
				return below
			}
			continue
		}
		abs := name
		if !filepath.IsAbs(name) {
			dir, err := dirname(cur)
			if err != nil {
				continue
			}
			abs = dir + name
		}
		want, err := realpath(abs)
		if err != nil {
			continue
		}
		full, err := fullBackingFilename(cur)
		if err != nil || full == "" {
			continue
		}
		got, err := realpath(full)
		if err != nil {
			continue
		}
		if got == want {
			return below
		}
	}
	return nil
}

// realpath is realpath(3): an absolute path without symbolic links, of a
// file that exists.
func realpath(p string) (string, error) {
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(a)
}

// PathHasProtocol is QEMU's path_has_protocol.
func PathHasProtocol(p string) bool { return pathHasProtocol(p) }
