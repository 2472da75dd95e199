package formats

import (
	"fmt"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcrypto"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/image/raw"
)

// The luks format (block/crypto.c): a raw LUKS v1 volume, its header
// and key material first, the encrypted payload at the header's payload
// offset. Sectors are encrypted with their guest offset as IV (the
// payload offset is not part of it), as dm-crypt and QEMU do.

// luksDriverDef is the luks BlockDriver (registered in drivers.go, in
// QEMU's order).
func luksDriverDef() *BlockDriver {
	return &BlockDriver{Name: "luks", IsFormat: true, Probe: probeLUKS, Open: openLUKS, ReopenPrepare: reopenLUKS}
}

// probeLUKS is block_crypto_probe_luks: the magic and version 1.
func probeLUKS(b []byte, _ string) int {
	if len(b) >= 8 && string(b[:6]) == "LUKS\xba\xbe" && b[6] == 0 && b[7] == 1 {
		return 100
	}
	return 0
}

var luksOpts = []OptDesc{{"key-secret", OptString}}

// luksHeaderIO is block_crypto_read_func/write_func on the file child.
type luksHeaderIO struct{ file *image.Disk }

func (l luksHeaderIO) ReadAt(p []byte, off int64) error {
	if off+int64(len(p)) > l.file.Size() {
		return fmt.Errorf("Could not read encryption header: %s", Strerror(syscall.EINVAL))
	}
	if err := l.file.ReadAt(p, off); err != nil {
		return fmt.Errorf("Could not read encryption header: %s", Strerror(image.Errno(err)))
	}
	return nil
}

func (l luksHeaderIO) WriteAt(p []byte, off int64) error {
	if err := l.file.WriteAt(p, off, false); err != nil {
		return fmt.Errorf("Could not write encryption header: %s", Strerror(image.Errno(err)))
	}
	return nil
}

// openLUKS is block_crypto_open_luks.
func openLUKS(g *Graph, n *Node, opts *qdict.Dict) error {
	file, err := g.OpenChild(opts, "file", n, RoleImage, false)
	if err != nil {
		return err
	}
	l := raw.Lock{Perm: raw.PermConsistentRead}
	if n.Flags&FlagRDWR != 0 {
		l.Perm |= raw.PermWrite
	}
	if err := attachLock(file, l); err != nil {
		return errorf(err, "%v", err)
	}
	o, err := Absorb(luksOpts, opts)
	if err != nil {
		return err
	}
	secret, _ := o.Str("key-secret")
	b, err := qcrypto.Open(qcrypto.OpenOptions{Format: "luks", KeySecret: secret, NoIO: n.Flags&FlagNoIO != 0,
		Lookup: g.Objects.Secret}, luksHeaderIO{file.Disk})
	if err != nil {
		return errorf(nil, "%v", err)
	}
	n.ident = file.ident
	n.Impl = &luksDriver{file: file.Disk, block: b, payload: b.PayloadOffset()}
	return nil
}

// reopenLUKS is block_crypto_reopen_prepare: the options are checked
// (key-secret may not change: it is a strong option).
func reopenLUKS(n *Node, opts *qdict.Dict, flags Flags) error {
	_, err := Absorb(luksOpts, opts)
	return err
}

// luksDriver is an open luks node.
type luksDriver struct {
	file    *image.Disk
	block   *qcrypto.Block
	payload int64
}

var (
	_ image.Driver    = (*luksDriver)(nil)
	_ image.Truncater = (*luksDriver)(nil)
)

// maxIO is BLOCK_CRYPTO_MAX_IO_SIZE: the bounce buffer's size.
const luksMaxIO = 1 << 20

func (d *luksDriver) ReadAt(p []byte, off int64) (int, error) {
	for done := 0; done < len(p); {
		q := p[done:min(len(p), done+luksMaxIO)]
		if err := d.file.ReadAt(q, d.payload+off+int64(done)); err != nil {
			return done, err
		}
		if err := d.block.Decrypt(off+int64(done), q); err != nil {
			return done, syscall.EIO
		}
		done += len(q)
	}
	return len(p), nil
}

func (d *luksDriver) WriteAt(p []byte, off int64) (int, error) {
	buf := make([]byte, min(len(p), luksMaxIO))
	for done := 0; done < len(p); {
		q := buf[:copy(buf, p[done:])]
		if err := d.block.Encrypt(off+int64(done), q); err != nil {
			return done, syscall.EIO
		}
		if err := d.file.WriteAt(q, d.payload+off+int64(done), false); err != nil {
			return done, err
		}
		done += len(q)
	}
	return len(p), nil
}

// Size is block_crypto_getlength (0 when the file is shorter than the
// header, where QEMU fails with EIO).
func (d *luksDriver) Size() int64 { return max(d.file.Size()-d.payload, 0) }

// Limits: no sub-sector I/O (block_crypto_refresh_limits).
func (d *luksDriver) Limits() image.Limits {
	return image.Limits{RequestAlignment: d.block.SectorSize(), MaxTransfer: d.file.Limits().MaxTransfer}
}

func (d *luksDriver) Flush() error { return d.file.Flush() }
func (d *luksDriver) Close() error { return nil }

// Truncate is block_crypto_co_truncate.
func (d *luksDriver) Truncate(size int64, p image.Prealloc) error {
	if d.payload > 1<<63-1-size {
		return &Error{Msg: "The requested file size is too large", Err: syscall.EFBIG}
	}
	return d.file.Truncate(size+d.payload, p)
}

// Info is block_crypto_get_info_luks and the specific information.
func (d *luksDriver) Info() (image.Info, error) {
	info := image.Info{FormatName: "luks"}
	for _, k := range d.SpecificInfo().Keys() {
		v := d.SpecificInfo().Get(k)
		key := stringsReplaceDash(k)
		switch v.(type) {
		case *qdict.Dict, *qdict.List:
			info.Specific = append(info.Specific, image.KeyValue{Key: key, Sub: qcrypto.DumpLines(v)})
		default:
			s, _ := qdict.ScalarString(v)
			info.Specific = append(info.Specific, image.KeyValue{Key: key, Value: s})
		}
	}
	return info, nil
}

// SpecificInfo is block_crypto_get_specific_info_luks (QCryptoBlockInfoLUKS).
func (d *luksDriver) SpecificInfo() *qdict.Dict { return d.block.LUKSInfo() }

// Block is the node's encryption context (for amend).
func (d *luksDriver) Block() *qcrypto.Block { return d.block }

func stringsReplaceDash(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == '-' {
			b[i] = ' '
		}
	}
	return string(b)
}

// LUKSInfo returns the format-specific information of a luks node, nil
// for another node.
func LUKSInfo(n *Node) *qdict.Dict {
	if d, ok := n.Impl.(*luksDriver); ok {
		return d.SpecificInfo()
	}
	return nil
}

// AmendLUKS changes the key slots of a luks node opened read-write with
// its key (block_crypto_amend_options_luks); force is qemu-img amend's
// --force.
func AmendLUKS(g *Graph, n *Node, o qcrypto.AmendOptions, force bool) error {
	d, ok := n.Impl.(*luksDriver)
	if !ok {
		return fmt.Errorf("not a luks node")
	}
	if o.Lookup == nil {
		o.Lookup = g.Objects.Secret
	}
	if err := d.block.Amend(o, force, luksHeaderIO{d.file}); err != nil {
		return err
	}
	return d.file.Flush()
}
