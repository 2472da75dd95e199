package qcow2

import "golang.org/x/sys/unix"

// detectMetadataPreallocation is QEMU's qcow2_detect_metadata_preallocation,
// run at the first block status query: an image whose refcounts claim
// clearly more clusters than the file really stores was preallocated
// (preallocation=metadata), and its data clusters are then checked in the
// file for holes (StatusRecurse). The refcount walk can meet corruption,
// which is reported as QEMU reports it.
func (d *Driver) detectMetadataPreallocation() bool {
	var st unix.Stat_t
	if err := unix.Stat(d.name, &st); err != nil {
		return false
	}
	realClusters := st.Blocks * 512 / d.clusterSize
	threshold := max(realClusters*10/9, realClusters+2)
	end := d.sizeToClusters(d.file.Size())
	count := int64(0)
	for i := int64(0); i < end && count <= threshold; i++ {
		rc, err := d.getRefcount(i)
		if err != nil {
			return false
		}
		if rc != 0 {
			count++
		}
	}
	return count > threshold
}
