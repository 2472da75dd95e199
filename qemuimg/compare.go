package qemuimg

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image"
)

// ioBufSize is qemu-img compare's IO_BUF_SIZE: the most it reads at once.
const ioBufSize = 2 << 20

// compareBuffers is qemu-img's compare_buffers: whether the first sector
// differs, and how many bytes from the start share that answer, sector
// by sector.
func compareBuffers(a, b []byte) (bool, int) {
	i := min(len(a), 512)
	res := !bytes.Equal(a[:i], b[:i])
	for i < len(a) {
		n := min(len(a)-i, 512)
		if !bytes.Equal(a[i:i+n], b[i:i+n]) != res {
			break
		}
		i += n
	}
	return res, i
}

func findNonzero(p []byte) int {
	for i, c := range p {
		if c != 0 {
			return i
		}
	}
	return -1
}

// CompareResult is qemu-img compare's verdict.
type CompareResult struct {
	// Code is the exit status: 0 identical, 1 different, 2 an image
	// could not be opened, 3 a block status failed, 4 a read failed.
	Code int
	// Message is what qemu-img prints on stdout (unless -q), with its
	// newline; Err what it reports on stderr ("" for none).
	Message, Err string
}

type compareSide struct {
	d    *image.Disk
	name string
	size int64
}

// checkEmpty is check_empty_sectors.
func checkEmpty(s compareSide, off, n int64, buf []byte) *CompareResult {
	if err := s.d.ReadAt(buf[:n], off); err != nil {
		return &CompareResult{Code: 4, Err: fmt.Sprintf("Error while reading offset %d of %s: %s", off, s.name, image.StrerrorOf(err))}
	}
	if i := findNonzero(buf[:n]); i >= 0 {
		return &CompareResult{Code: 1, Message: fmt.Sprintf("Content mismatch at offset %d!\n", off+int64(i))}
	}
	return nil
}

func status(s compareSide, off int64) (image.Extent, error) {
	e, _, err := image.BlockStatusAbove(s.d, off, s.size-off, false)
	if err == nil && e.Len == 0 {
		err = errors.New("no progress")
	}
	return e, err
}

// Compare is img_compare's walk over two open images, after opening.
func Compare(d1 *image.Disk, name1 string, d2 *image.Disk, name2 string, strict bool) CompareResult {
	a := compareSide{d1, name1, d1.Size()}
	b := compareSide{d2, name2, d2.Size()}
	buf1, buf2 := make([]byte, ioBufSize), make([]byte, ioBufSize)
	total := min(a.size, b.size)
	if strict && a.size != b.size {
		return CompareResult{Code: 1, Message: "Strict mode: Image size mismatch!\n"}
	}
	var off int64
	for off < total {
		s1, err := status(a, off)
		if err != nil {
			return CompareResult{Code: 3, Err: "Sector allocation test failed for " + name1}
		}
		s2, err := status(b, off)
		if err != nil {
			return CompareResult{Code: 3, Err: "Sector allocation test failed for " + name2}
		}
		alloc1, alloc2 := s1.Status&image.StatusAllocated != 0, s2.Status&image.StatusAllocated != 0
		chunk := min(s1.Len, s2.Len)
		if strict && s1.Status != s2.Status {
			return CompareResult{Code: 1, Message: fmt.Sprintf("Strict mode: Offset %d block status mismatch!\n", off)}
		}
		switch {
		case s1.Status&image.StatusZero != 0 && s2.Status&image.StatusZero != 0:
		case alloc1 == alloc2:
			if alloc1 {
				chunk = min(chunk, ioBufSize)
				if err := d1.ReadAt(buf1[:chunk], off); err != nil {
					return CompareResult{Code: 4, Err: fmt.Sprintf("Error while reading offset %d of %s: %s", off, name1, image.StrerrorOf(err))}
				}
				if err := d2.ReadAt(buf2[:chunk], off); err != nil {
					return CompareResult{Code: 4, Err: fmt.Sprintf("Error while reading offset %d of %s: %s", off, name2, image.StrerrorOf(err))}
				}
				diff, pnum := compareBuffers(buf1[:chunk], buf2[:chunk])
				if diff || int64(pnum) != chunk {
					at := off
					if !diff {
						at += int64(pnum)
					}
					return CompareResult{Code: 1, Message: fmt.Sprintf("Content mismatch at offset %d!\n", at)}
				}
			}
		default:
			chunk = min(chunk, ioBufSize)
			s := a
			if !alloc1 {
				s = b
			}
			if r := checkEmpty(s, off, chunk, buf1); r != nil {
				return *r
			}
		}
		off += chunk
	}
	if a.size != b.size {
		msg := "Warning: Image size mismatch!\n"
		over := a
		if b.size > a.size {
			over = b
		}
		for off < over.size {
			e, err := status(over, off)
			if err != nil {
				return CompareResult{Code: 3, Message: msg, Err: "Sector allocation test failed for " + over.name}
			}
			chunk := e.Len
			if e.Status&image.StatusAllocated != 0 && e.Status&image.StatusZero == 0 {
				chunk = min(chunk, ioBufSize)
				if r := checkEmpty(over, off, chunk, buf1); r != nil {
					r.Message = msg + r.Message
					return *r
				}
			}
			off += chunk
		}
		return CompareResult{Code: 0, Message: msg + "Images are identical.\n"}
	}
	return CompareResult{Code: 0, Message: "Images are identical.\n"}
}

func imgCompare(e *env, argv []string) int {
	var fmt1, fmt2 string
	cache := "writeback"
	var quiet, strict, imageOpts, forceShare bool
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "object", HasArg: true, Val: optObject},
		{Name: "image-opts", Val: optImageOpts}, {Name: "force-share", Val: 'U'}}
	ops, ok, code := e.getopt(argv, ":hf:F:T:pqsU", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'f':
			fmt1 = arg
		case 'F':
			fmt2 = arg
		case 'T':
			cache = arg
		case 'q':
			quiet = true
		case 's':
			strict = true
		case 'U':
			forceShare = true
		case optObject:
			ok, code := e.object(arg)
			if !ok && code != 0 {
				code = 2
			}
			return ok, code
		case optImageOpts:
			imageOpts = true
		}
		return true, 0
	})
	if !ok {
		return code
	}
	if len(ops) != 2 {
		return e.errorExit("Expecting two image file names")
	}
	var f commands.OpenFlags
	if !commands.ParseCacheMode(cache, &f) {
		e.report("Invalid source cache option: %s", cache)
		return 2
	}
	n1 := e.open(openReq{name: ops[0], format: fmt1, imageOpts: imageOpts, forceShare: forceShare, readOnly: true})
	if n1 == nil {
		return 2
	}
	defer n1.Close()
	n2 := e.open(openReq{name: ops[1], format: fmt2, imageOpts: imageOpts, forceShare: forceShare, readOnly: true})
	if n2 == nil {
		return 2
	}
	defer n2.Close()
	r := Compare(n1.Disk, ops[0], n2.Disk, ops[1], strict)
	if !quiet {
		fmt.Fprint(e.stdout, r.Message)
	}
	if r.Err != "" {
		e.report("%s", r.Err)
	}
	return r.Code
}
