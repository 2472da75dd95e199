package qcow2

import (
	"fmt"

	"github.com/goqio/goqio/image"
)

// Preallocation when an image grows (create and truncate with
// preallocation=metadata|falloc|full), as QEMU 7.2's qcow2_co_truncate
// and preallocate_co do it.

// preallocateMetadata is QEMU's preallocate_co: clusters allocated and
// linked for [from, to) without writing data, then the data file (the
// image file without an external one) extended to the last one (with
// mode's preallocation for falloc/full, plainly for metadata).
func (d *Driver) preallocateMetadata(from, to int64, mode image.Prealloc) error {
	var host, cur int64
	for off := from; off < to; {
		d.safePoint() // no table held between allocation rounds
		cur = min(to-off, intMax&^(d.clusterSize-1))
		h, n, metas, err := d.allocHostOffset(off, cur, holdKeep)
		if err != nil {
			return fmt.Errorf("Allocating clusters failed: %s", image.StrerrorOf(err))
		}
		host, cur = h, n
		for _, m := range metas {
			m.prealloc = true
			if err := d.linkL2(m, holdKeep); err != nil {
				return fmt.Errorf("Mapping clusters failed: %s", image.StrerrorOf(err))
			}
		}
		off += n
	}
	// the data clusters are in the data file (the image file, or the
	// external data file), which must reach the last one
	if data := d.dataDisk(); host+cur > data.Size() {
		if mode == image.PreallocMetadata {
			mode = image.PreallocOff
		}
		t, ok := data.Driver().(image.Truncater)
		if !ok {
			return fmt.Errorf("Image format driver does not support resize")
		}
		if err := t.Truncate(host+cur, mode); err != nil {
			return err
		}
	}
	return nil
}

// lastCluster is QEMU's qcow2_get_last_cluster: the last cluster of a file
// of size bytes with a refcount, or -1.
func (d *Driver) lastCluster(size int64) (int64, error) {
	for i := d.sizeToClusters(size) - 1; i >= 0; i-- {
		rc, err := d.getRefcount(i)
		if err != nil {
			return 0, err
		}
		if rc > 0 {
			return i, nil
		}
	}
	return -1, nil
}

// preallocateData is the falloc/full branch of qcow2_co_truncate: new
// refcount structures placed past the file's last used cluster, covering
// the new data clusters (allocated there in one run, the file grown over
// them with mode's preallocation) and their L2 tables; then the L2 entries.
// zeroWrite is BDRV_REQ_ZERO_WRITE (a backing file would show through the
// new area): the grown file reads as zeroes, so the new subclusters are
// marked allocated (QEMU's subclusters_need_allocation, prealloc off).
func (d *Driver) preallocateData(old, size int64, mode image.Prealloc, zeroWrite bool) error {
	last, err := d.lastCluster(d.file.Size())
	if err != nil {
		return err
	}
	if last < 0 {
		return d.corruption("There are no references in the refcount table.")
	}
	oldFileSize := (last + 1) * d.clusterSize
	start := old &^ (d.clusterSize - 1)
	nb := ((size+d.clusterSize-1)&^(d.clusterSize-1) - start) >> d.clusterBits
	nbL2 := divRoundUp(nb, d.l2Size) + 1
	allocStart, err := d.refcountArea(oldFileSize, nb+nbL2, true, 0, 0)
	if err != nil {
		return fmt.Errorf("Failed to resize refcount structures: %s", image.StrerrorOf(err))
	}
	got, err := d.allocClustersAt(allocStart, nb)
	if err != nil {
		return fmt.Errorf("Failed to allocate data clusters: %s", image.StrerrorOf(err))
	}
	if got != nb {
		return fmt.Errorf("Failed to allocate data clusters")
	}
	t, ok := d.file.Driver().(image.Truncater)
	if !ok {
		return image.ErrNotSupported
	}
	if err := t.Truncate(allocStart+nb*d.clusterSize, mode); err != nil {
		return err
	}
	host, guest := allocStart, old
	for nb > 0 {
		n := min(nb, d.l2Size-d.l2Index(guest))
		cowStart := guest & (d.clusterSize - 1)
		guest &^= d.clusterSize - 1
		m := &l2Meta{allocOffset: host, guest: guest, nbClusters: n,
			cowStart: [2]int64{0, cowStart}, cowEnd: [2]int64{n << d.clusterBits, 0}, prealloc: !zeroWrite}
		if err := d.linkL2(m, holdKeep); err != nil {
			return fmt.Errorf("Failed to update L2 tables: %s", image.StrerrorOf(err))
		}
		nb -= n
		host += n << d.clusterBits
		guest += n << d.clusterBits
	}
	return nil
}
