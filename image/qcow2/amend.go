package qcow2

import (
	"fmt"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
)

// AmendOptions are qemu-img amend's qcow2 options (qcow2_amend_opts):
// nil (or zero) fields are left as they are.
type AmendOptions struct {
	Version       int // 2 or 3; 0 unchanged
	Size          int64
	BackingFile   *string
	BackingFmt    *string
	LazyRefcounts *bool
	RefcountBits  int // 0 unchanged
	DataFile      *string
	DataFileRaw   *bool
	// Encrypt are the encrypt.* options (without the prefix): LUKS key
	// management, done by AmendEncryptionOptions (crypto.go).
	Encrypt map[string]string
	// Force is --force (for the key management's dangerous operations).
	Force bool
	// Status receives the progress: work done of a total.
	Status func(done, total int64)
}

// AmendError is a failure of Amend with QEMU's message and error hint.
type AmendError struct {
	Msg, Hint string
	Errno     syscall.Errno
}

func (e *AmendError) Error() string { return e.Msg }

// Unwrap makes errors.Is(err, syscall.EINVAL) and the like work.
func (e *AmendError) Unwrap() error { return e.Errno }

func amendErr(errno syscall.Errno, format string, a ...any) *AmendError {
	return &AmendError{Msg: fmt.Sprintf(format, a...), Errno: errno}
}

func amendErrno(err error, what string) error {
	return &AmendError{Msg: what + ": " + image.StrerrorOf(err), Errno: image.Errno(err)}
}

// amendProgress is qcow2_amend_helper_cb: the progress of several
// operations as one.
type amendProgress struct {
	status                  func(done, total int64)
	total, completed        int64
	offsetCompleted         int64
	current, last, lastWork int64
}

func (p *amendProgress) cb(off, work int64) {
	if p.status == nil {
		return
	}
	if p.current != p.last {
		if p.last != 0 {
			p.offsetCompleted += p.lastWork
			p.completed++
		}
		p.last = p.current
	}
	p.lastWork = work
	cur := p.offsetCompleted + work
	projected := cur * (p.total - p.completed - 1) / (p.completed + 1)
	p.status(p.offsetCompleted+off, cur+projected)
}

// Amend is QEMU's qcow2_amend_options: the version upgraded first, the
// encryption and refcount width changed, the data file settings and the
// lazy refcounts set, the image resized, the version downgraded last.
func (d *Driver) Amend(o AmendOptions) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opts.ReadOnly {
		return image.ErrReadOnly
	}
	if d.dead {
		return errNoMedium
	}
	if err := d.evict(); err != nil {
		return err
	}
	oldVersion := int(d.hdr.Version)
	newVersion := oldVersion
	if o.Version != 0 {
		newVersion = o.Version
	}
	lazy := d.rt.lazy
	if o.LazyRefcounts != nil {
		lazy = *o.LazyRefcounts
	}
	refBits := 1 << d.refOrder
	if o.RefcountBits != 0 {
		refBits = o.RefcountBits
		if refBits <= 0 || refBits > 64 || refBits&(refBits-1) != 0 {
			return amendErr(syscall.EINVAL, "Refcount width must be a power of two and may not exceed 64 bits")
		}
	}
	encrypt := len(o.Encrypt) > 0
	if encrypt {
		if d.hdr.CryptMethod == 0 {
			return amendErr(syscall.EINVAL, "Can't amend encryption options - encryption not present")
		}
		if d.hdr.CryptMethod != 2 {
			return amendErr(syscall.ENOTSUP, "Only LUKS encryption options can be amended")
		}
	}
	if o.DataFile != nil && !d.hasDataFile() {
		return amendErr(syscall.EINVAL, "data-file can only be set for images that use an external data file")
	}
	dataFileRaw := d.dataFileRaw()
	if o.DataFileRaw != nil {
		dataFileRaw = *o.DataFileRaw
		if dataFileRaw && !d.dataFileRaw() {
			return amendErr(syscall.EINVAL, "data-file-raw cannot be set on existing images")
		}
	}
	p := &amendProgress{status: o.Status}
	if newVersion != oldVersion {
		p.total++
	}
	if refBits != 1<<d.refOrder {
		p.total++
	}
	if encrypt {
		p.total++
	}
	if newVersion > oldVersion {
		p.current = 1
		if err := d.upgrade(p); err != nil {
			return err
		}
	}
	if encrypt {
		p.current = 2
		d.mu.Unlock()
		err := d.AmendEncryptionOptions(o.Encrypt, o.Force)
		d.mu.Lock()
		if err != nil {
			return err
		}
	}
	if refBits != 1<<d.refOrder {
		if newVersion < 3 && refBits != 16 {
			return amendErr(syscall.EINVAL, "Refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)")
		}
		p.current = 3
		order := uint(0)
		for 1<<order != refBits {
			order++
		}
		if err := d.changeRefcountOrder(order, p); err != nil {
			return err
		}
	}
	if dataFileRaw {
		d.hdr.AutoclearFeatures |= autoclearDataFileRaw
	} else {
		d.hdr.AutoclearFeatures &^= autoclearDataFileRaw
	}
	if o.DataFile != nil {
		d.dataName, d.hasDataName = *o.DataFile, *o.DataFile != ""
	}
	if err := d.flushLocked(); err != nil {
		return amendErrno(err, "Failed to update the image header")
	}
	if err := d.updateHeader(); err != nil {
		return amendErrno(err, "Failed to update the image header")
	}
	if o.BackingFile != nil || o.BackingFmt != nil {
		if !sameOpt(o.BackingFile, d.backingFile) || !sameOpt(o.BackingFmt, d.backingFmt) {
			return &AmendError{Msg: "Cannot amend the backing file", Hint: "You can use 'qemu-img rebase' instead.\n", Errno: syscall.EINVAL}
		}
	}
	if lazy != d.rt.lazy {
		if lazy {
			if newVersion < 3 {
				return amendErr(syscall.EINVAL, "Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)")
			}
			d.hdr.CompatibleFeatures |= compatLazyRefcounts
			if err := d.updateHeader(); err != nil {
				d.hdr.CompatibleFeatures &^= compatLazyRefcounts
				return amendErrno(err, "Failed to update the image header")
			}
			d.rt.lazy = true
		} else {
			if err := d.markClean(); err != nil {
				return amendErrno(err, "Failed to make the image clean")
			}
			d.hdr.CompatibleFeatures &^= compatLazyRefcounts
			if err := d.updateHeader(); err != nil {
				d.hdr.CompatibleFeatures |= compatLazyRefcounts
				return amendErrno(err, "Failed to update the image header")
			}
			d.rt.lazy = false
		}
	}
	if o.Size != 0 {
		d.mu.Unlock()
		err := d.Truncate(o.Size, image.PreallocOff)
		d.mu.Lock()
		if err != nil {
			return err
		}
	}
	if newVersion < oldVersion {
		p.current = 4
		if err := d.downgrade(p); err != nil {
			return err
		}
	}
	return nil
}

// sameOpt is g_strcmp0 of an option given and the image's value (NULL
// for "").
func sameOpt(given *string, have string) bool {
	if given == nil {
		return have == ""
	}
	return *given == have
}

// upgrade is qcow2_upgrade to version 3.
func (d *Driver) upgrade(p *amendProgress) error {
	p.cb(0, 2)
	for _, sn := range d.snaps {
		if sn.ExtraSize < 16 {
			if err := d.writeSnapshots(); err != nil {
				return amendErrno(err, "Failed to update the snapshot table")
			}
			break
		}
	}
	p.cb(1, 2)
	d.hdr.Version = 3
	d.hdr.RefcountOrder = uint32(d.refOrder)
	d.hdr.HeaderLength = headerSize
	if err := d.updateHeader(); err != nil {
		d.hdr.Version = 2
		return amendErrno(err, "Failed to update the image header")
	}
	p.cb(2, 2)
	return nil
}

// downgrade is qcow2_downgrade to version 2.
func (d *Driver) downgrade(p *amendProgress) error {
	if d.refOrder != 4 {
		return amendErr(syscall.ENOTSUP, "compat=0.10 requires refcount_bits=16")
	}
	if d.hasDataFile() {
		return amendErr(syscall.ENOTSUP, "Cannot downgrade an image with a data file")
	}
	for _, sn := range d.snaps {
		if sn.VMStateSize > 0xffffffff || int64(sn.DiskSize) != d.size {
			return amendErr(syscall.ENOTSUP, "Internal snapshots prevent downgrade of image")
		}
	}
	if d.hdr.IncompatibleFeatures&incompatDirty != 0 {
		if err := d.markClean(); err != nil {
			return amendErrno(err, "Failed to make the image clean")
		}
	}
	if f := d.hdr.IncompatibleFeatures &^ incompatCompression; f != 0 {
		return amendErr(syscall.ENOTSUP, "Cannot downgrade an image with incompatible features 0x%x set", f)
	}
	d.hdr.CompatibleFeatures = 0
	d.hdr.AutoclearFeatures = 0
	if err := d.expandZeroClusters(p); err != nil {
		return amendErrno(err, "Failed to turn zero into data clusters")
	}
	if d.hdr.IncompatibleFeatures&incompatCompression != 0 {
		has, err := d.hasCompressedClusters()
		if err != nil {
			return amendErr(syscall.EINVAL, "Failed to check block status")
		}
		if has {
			return amendErr(syscall.ENOTSUP, "Cannot downgrade an image with zstd compression type and existing compressed clusters")
		}
		d.hdr.IncompatibleFeatures &^= incompatCompression
		d.hdr.CompressionType = 0
	}
	d.hdr.Version = 2
	d.hdr.RefcountOrder = 4
	d.hdr.HeaderLength = headerV2Size
	if err := d.flushLocked(); err != nil {
		return amendErrno(err, "Failed to update the image header")
	}
	if err := d.updateHeader(); err != nil {
		d.hdr.Version = 3
		return amendErrno(err, "Failed to update the image header")
	}
	return nil
}

// hasCompressedClusters is qcow2_has_compressed_clusters (active L1).
func (d *Driver) hasCompressedClusters() (bool, error) {
	for off := int64(0); off < d.size; {
		typ, _, n, err := d.hostRun(off, d.size-off)
		if err != nil {
			return false, err
		}
		if typ == clusterCompressed {
			return true, nil
		}
		off += n
	}
	return false, nil
}

// expandZeroClusters is qcow2_expand_zero_clusters: zero clusters become
// zeroed data clusters (or unallocated ones without a backing file), in
// the active L2 tables and then in those of the snapshots.
func (d *Driver) expandZeroClusters(p *amendProgress) error {
	entries := int64(len(d.l1))
	for _, sn := range d.snaps {
		entries += int64(sn.L1Size)
	}
	visited := int64(0)
	if err := d.expandInL1(d.l1, true, &visited, entries, p); err != nil {
		return err
	}
	if err := d.l2c.Flush(); err != nil {
		return err
	}
	d.l2c.Reset()
	for _, sn := range d.snaps {
		if err := d.validateTableReported(sn.L1Offset, uint64(sn.L1Size), 8, maxL1Size, "Snapshot L1 table"); err != nil {
			return err
		}
		b := make([]byte, int64(sn.L1Size)*8)
		if err := d.file.ReadAt(b, int64(sn.L1Offset)); err != nil {
			return err
		}
		if err := d.expandInL1(decodeU64s(b), false, &visited, entries, p); err != nil {
			return err
		}
	}
	return d.flushLocked()
}

func (d *Driver) expandInL1(l1 []uint64, active bool, visited *int64, entries int64, p *amendProgress) error {
	for i, e := range l1 {
		d.safePoint() // one L2 table a step, none held between
		l2off := layout.L1Entry(e).Offset()
		if l2off == 0 {
			*visited++
			p.cb(*visited, entries)
			continue
		}
		if l2off&(d.clusterSize-1) != 0 {
			return d.corruption(fmt.Sprintf("L2 table offset %#x unaligned (L1 index: %#x)", l2off, i))
		}
		l2ref, err := d.getRefcount(l2off >> d.clusterBits)
		if err != nil {
			return err
		}
		var b []byte
		if active {
			if b, err = d.l2c.Get(l2off); err != nil {
				return err
			}
		} else {
			b = make([]byte, d.clusterSize)
			if err := d.file.ReadAt(b, l2off); err != nil {
				return err
			}
		}
		dirty := false
		for j := int64(0); j < d.l2Size; j++ {
			ent := d.getEntry(b, j)
			ct := d.ctype(ent)
			if ct != clusterZeroPlain && ct != clusterZeroAlloc {
				continue
			}
			off := ent.Offset()
			if ct == clusterZeroPlain {
				if d.backing == nil {
					d.setEntry(b, j, 0)
					dirty = true
					continue
				}
				if off, err = d.allocClusters(d.clusterSize); err != nil {
					return err
				}
				if l2ref > 1 {
					if err := d.updateRefcount(off, d.clusterSize, l2ref-1, false, discardOther); err != nil {
						return err
					}
				}
			}
			if err := d.dataDisk().WriteZeroes(off, d.clusterSize, 0, false); err != nil {
				return err
			}
			if l2ref == 1 {
				d.setEntry(b, j, layout.L2At(off))
			} else {
				d.setEntry(b, j, layout.L2Entry(off))
			}
			dirty = true
		}
		if dirty {
			if active {
				d.l2c.MarkDirty(l2off)
				if err := d.l2c.SetDependency(d.rbc); err != nil {
					return err
				}
			} else if err := d.file.WriteAt(b, l2off, false); err != nil {
				return err
			}
		}
		*visited++
		p.cb(*visited, entries)
	}
	return nil
}
