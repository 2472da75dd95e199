package qcow2

import (
	"encoding/binary"
	"fmt"
	"syscall"
)

// Snapshot is one entry of the internal snapshot table.
type Snapshot struct {
	ID, Name          string
	L1Offset          int64
	L1Size            int64
	DateSec, DateNsec uint32
	VMClockNsec       uint64
	VMStateSize       uint64 // the 64-bit size from the extra data when present
	// ICount is the instruction count, -1 when the entry has none.
	ICount int64
}

// maxSnapshotExtra bounds the extra data of one entry, as QEMU does.
const maxSnapshotExtra = 1024

// Snapshots reads the snapshot table. Every length is checked against
// the table's bounds before anything is allocated.
func (d *Driver) Snapshots() ([]Snapshot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Snapshot
	off := int64(d.hdr.SnapshotsOffset)
	fileLen := d.file.Size()
	for i := uint32(0); i < d.hdr.NbSnapshots; i++ {
		if off < 0 || off+40 > fileLen {
			return nil, fmt.Errorf("snapshot table entry %d is outside the file: %w", i, syscall.EFBIG)
		}
		h := make([]byte, 40)
		if err := d.file.ReadAt(h, off); err != nil {
			return nil, err
		}
		s := Snapshot{
			L1Offset:    int64(binary.BigEndian.Uint64(h[0:])),
			L1Size:      int64(binary.BigEndian.Uint32(h[8:])),
			DateSec:     binary.BigEndian.Uint32(h[16:]),
			DateNsec:    binary.BigEndian.Uint32(h[20:]),
			VMClockNsec: binary.BigEndian.Uint64(h[24:]),
			VMStateSize: uint64(binary.BigEndian.Uint32(h[32:])),
			ICount:      -1,
		}
		idLen := int64(binary.BigEndian.Uint16(h[12:]))
		nameLen := int64(binary.BigEndian.Uint16(h[14:]))
		extra := int64(binary.BigEndian.Uint32(h[36:]))
		if extra > maxSnapshotExtra {
			return nil, fmt.Errorf("too much extra metadata in snapshot table entry %d: %w", i, syscall.EFBIG)
		}
		rest := extra + idLen + nameLen
		if off+40+rest > fileLen {
			return nil, fmt.Errorf("snapshot table entry %d is outside the file: %w", i, syscall.EFBIG)
		}
		b := make([]byte, rest)
		if err := d.file.ReadAt(b, off+40); err != nil {
			return nil, err
		}
		if extra >= 8 {
			s.VMStateSize = binary.BigEndian.Uint64(b[0:])
		}
		if extra >= 24 {
			s.ICount = int64(binary.BigEndian.Uint64(b[16:]))
		}
		s.ID = string(b[extra : extra+idLen])
		s.Name = string(b[extra+idLen:])
		out = append(out, s)
		off = (off + 40 + rest + 7) &^ 7
	}
	return out, nil
}
