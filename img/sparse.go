package img

import "bytes"

const sectorSize = 512

// zeroBlock is compared against by isZero.
var zeroBlock = make([]byte, 64<<10)

// isZero reports whether p holds only zeroes (QEMU's buffer_is_zero),
// through bytes.Equal's vectorised comparison.
func isZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroBlock))
		if !bytes.Equal(p[:n], zeroBlock[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// allocatedSectors is qemu-img's is_allocated_sectors: whether the run of
// sectors at the start of buf (n sectors, at sector sector) is data, and
// its length, with the end of the run moved to an alignment boundary
// (alignment in sectors, a power of two) where that saves a
// read-modify-write.
func allocatedSectors(buf []byte, n, sector, alignment int64) (bool, int64) {
	if n <= 0 {
		return false, 0
	}
	zero := isZero(buf[:sectorSize])
	i := int64(1)
	for ; i < n; i++ {
		if isZero(buf[i*sectorSize:(i+1)*sectorSize]) != zero {
			break
		}
	}
	if i == n {
		return !zero, i
	}
	tail := (sector + i) & (alignment - 1)
	if tail != 0 {
		if zero && i <= tail {
			zero = false
		}
		if !zero {
			i = min(i+alignment-tail, n)
		} else {
			i -= tail
		}
	}
	return !zero, i
}

// allocatedSectorsMin is is_allocated_sectors_min: like allocatedSectors,
// but a zero run shorter than minSparse sectors between data counts as
// data.
func allocatedSectorsMin(buf []byte, n, minSparse, sector, alignment int64) (bool, int64) {
	if n < minSparse {
		minSparse = n
	}
	data, pnum := allocatedSectors(buf, n, sector, alignment)
	if !data {
		return false, pnum
	}
	used := pnum
	checked := used
	buf = buf[pnum*sectorSize:]
	n -= pnum
	sector += pnum
	for n > 0 {
		d, p := allocatedSectors(buf, n, sector, alignment)
		buf = buf[p*sectorSize:]
		n -= p
		sector += p
		checked += p
		if d {
			used = checked
		} else if p >= minSparse {
			break
		}
	}
	return true, used
}

// pow2floor is QEMU's pow2floor (0 for 0).
func pow2floor(v int64) int64 {
	if v <= 0 {
		return 0
	}
	p := int64(1)
	for p*2 <= v {
		p *= 2
	}
	return p
}
