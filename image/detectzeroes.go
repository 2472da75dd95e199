package image

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/goqio/goqio/blkalign"
)

// DetectZeroes is the value of QEMU's detect-zeroes option.
type DetectZeroes uint8

const (
	DetectZeroesOff   DetectZeroes = iota // data writes stay data writes
	DetectZeroesOn                        // a write of zeroes becomes a zero write
	DetectZeroesUnmap                     // ... that may unmap (BDRV_REQ_MAY_UNMAP)
)

// String returns QEMU's name of the mode.
func (z DetectZeroes) String() string {
	switch z {
	case DetectZeroesOn:
		return "on"
	case DetectZeroesUnmap:
		return "unmap"
	}
	return "off"
}

// ParseDetectZeroes is QEMU's bdrv_parse_detect_zeroes: value is the
// option's value ("off", "on" or "unmap", case-sensitive) and unmap whether
// the node is opened with discard=unmap. The errors are QEMU's texts.
func ParseDetectZeroes(value string, unmap bool) (DetectZeroes, error) {
	var z DetectZeroes
	switch value {
	case "off":
		z = DetectZeroesOff
	case "on":
		z = DetectZeroesOn
	case "unmap":
		z = DetectZeroesUnmap
	default:
		return DetectZeroesOff, fmt.Errorf("invalid parameter value: %s", value)
	}
	if z == DetectZeroesUnmap && !unmap {
		return z, errors.New("setting detect-zeroes to unmap is not allowed without setting discard operation to unmap")
	}
	return z, nil
}

// detectZeroes is the test of QEMU's bdrv_aligned_pwritev: whether a data
// write of bufs becomes a zero write, and the flags it adds.
func (d *Disk) detectZeroes(bufs [][]byte) (ZeroFlags, bool) {
	if d.opts.DetectZeroes == DetectZeroesOff {
		return 0, false
	}
	if _, ok := d.drv.(Zeroer); !ok {
		return 0, false
	}
	for _, b := range bufs {
		if !isZero(b) {
			return 0, false
		}
	}
	if d.opts.DetectZeroes == DetectZeroesUnmap {
		return ZeroMayUnmap, true
	}
	return 0, true
}

// isZero is QEMU's buffer_is_zero.
func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroes))
		if !bytes.Equal(b[:n], zeroes[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// DetectZeroWrite is what QEMU's bdrv_aligned_pwritev does first with a
// compressed write (qemu-io write -c), which goqio hands to the driver
// itself: with detect-zeroes, a request of zeroes (padding included, as for
// WriteAt) to a driver that can zero becomes a zero write, done here, and
// DetectZeroWrite reports true; before the driver could refuse the request
// as misaligned or compression as unsupported. Otherwise it does nothing and
// reports false. The caller has checked the range.
func (d *Disk) DetectZeroWrite(p []byte, off int64, fua bool) (bool, error) {
	if _, ok := d.detectZeroes([][]byte{p}); !ok {
		return false, nil
	}
	n := int64(len(p))
	if err := d.checkWrite(off, n); err != nil {
		return true, err
	}
	fua = fua || d.opts.WriteThrough
	lim := d.Limits()
	pad := blkalign.Pad(off, n, lim.RequestAlignment)
	if d.opts.RawFormat || !pad.Needed() {
		zf, _ := d.detectZeroes(nil)
		if n > 0 {
			d.markDirty(off, n)
			d.trace("detect-zeroes: write off=%#x size=%#x became a zero write flags=%s", off, n, zf)
		}
		return true, d.zeroWrite(off, n, zf, fua, lim)
	}
	d.serial.RLock()
	defer d.serial.RUnlock()
	req := d.trackSerialising(pad.Start(), pad.Length(), lim.RequestAlignment)
	defer d.untrack(req)
	r, err := d.rmwRead(pad, lim)
	if err != nil {
		return true, err
	}
	head := r.buf[:pad.Head]
	tail := r.tailBuf[lim.RequestAlignment-pad.Tail:]
	zf, ok := d.detectZeroes(nonEmpty(head, p, tail))
	if !ok {
		return false, nil
	}
	d.markDirty(off, n)
	d.trace("detect-zeroes: write off=%#x size=%#x became a zero write flags=%s", pad.Start(), pad.Length(), zf)
	return true, d.zeroAligned(pad.Start(), pad.Length(), zf, fua, lim)
}
