package commands

import (
	"fmt"
	"io"
	"os"

	"github.com/goqio/goqio/image"
)

var writeCmd = &Command{
	Name: "write", Alias: "w", Opts: "bcCfnpP:qs:uz", ArgMin: 2, ArgMax: -1, Perm: permWrite,
	Args:    str("[-bcCfnquz] [-P pattern | -s source_file] off len"),
	OneLine: "writes a number of bytes at a specified offset",
	Help: `
 writes a range of bytes from the given offset

 Example:
 'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 -b, -- write to the VM state rather than the virtual disk
 -c, -- write compressed data with blk_write_compressed
 -f, -- use Force Unit Access semantics
 -n, -- with -z, don't allow slow fallback
 -p, -- ignored for backwards compatibility
 -P, -- use different pattern to fill file
 -s, -- use a pattern file to fill the write buffer
 -C, -- report statistics in a machine parsable format
 -q, -- quiet mode, do not show I/O statistics
 -u, -- with -z, allow unmapping
 -z, -- write zeroes using blk_co_pwrite_zeroes

`,
}

func init() { writeCmd.Run = runWrite; register(writeCmd) }

func runWrite(s *Session, argv []string) error {
	var machine, quiet, bflag, pflag, zflag, cflag, sflag, fua, noFallback, unmap bool
	pattern := byte(0xcd)
	var fileName string
	g := s.getopt(argv, writeCmd.Opts)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case 'b':
			bflag = true
		case 'c':
			cflag = true
		case 'C':
			machine = true
		case 'f':
			fua = true
		case 'n':
			noFallback = true
		case 'p':
		case 'P':
			pflag = true
			p, ok := s.parsePattern(arg)
			if !ok {
				return ErrFailed
			}
			pattern = p
		case 'q':
			quiet = true
		case 's':
			sflag = true
			fileName = arg
		case 'u':
			unmap = true
		case 'z':
			zflag = true
		default:
			return s.usage(writeCmd)
		}
	}
	args := g.Operands()
	if len(args) != 2 {
		return s.usage(writeCmd)
	}
	if bflag && zflag {
		s.printf("-b and -z cannot be specified at the same time\n")
		return ErrFailed
	}
	if fua && (bflag || cflag) {
		s.printf("-f and -b or -c cannot be specified at the same time\n")
		return ErrFailed
	}
	if noFallback && !zflag {
		s.printf("-n requires -z to be specified\n")
		return ErrFailed
	}
	if unmap && !zflag {
		s.printf("-u requires -z to be specified\n")
		return ErrFailed
	}
	if b2i(zflag)+b2i(pflag)+b2i(sflag) > 1 {
		s.printf("Only one of -z, -P, and -s can be specified at the same time\n")
		return ErrFailed
	}
	offset, err := s.cvtnum(args[0])
	if err != nil {
		s.printCvtnumErr(err, args[0])
		return ErrFailed
	}
	count, err := s.cvtnum(args[1])
	if err != nil {
		s.printCvtnumErr(err, args[1])
		return ErrFailed
	}
	if count > image.MaxRequest && !noFallback {
		s.printf("length cannot exceed %d without -n, given %s\n", image.MaxRequest, args[1])
		return ErrFailed
	}
	if (bflag || cflag) && !s.sectorAligned(offset, count) {
		return ErrFailed
	}
	if count >= streamMin && !zflag && !sflag && !bflag && !cflag {
		start := s.Now()
		err := streamWrite(s.disk, pattern, offset, count, fua, s.interrupted)
		if s.reportInterrupted("write", "written", err, offset, count) {
			return ErrFailed
		}
		return s.writeDone("write", "wrote", err, s.elapsed(start), offset, count, quiet, machine)
	}
	var buf []byte
	if !zflag {
		if sflag {
			buf = s.bufFromFile(count, fileName)
			if buf == nil {
				return ErrFailed
			}
		} else {
			buf = newBuf(count, pattern)
		}
	}
	start := s.Now()
	switch {
	case bflag:
		err = s.disk.WriteVMState(buf, offset)
	case zflag:
		var flags image.ZeroFlags
		if unmap {
			flags |= image.ZeroMayUnmap
		}
		if noFallback {
			flags |= image.ZeroNoFallback
		}
		err = s.disk.WriteZeroes(offset, count, flags, fua)
	case cflag:
		if offset < 0 || offset > s.disk.Size() || s.disk.Size()-offset < int64(len(buf)) {
			err = image.ErrOutOfRange
		} else if done, derr := s.disk.DetectZeroWrite(buf, offset, fua); done {
			err = derr
		} else {
			err = s.disk.WriteCompressed(buf, offset)
		}
	default:
		err = s.disk.WriteAt(buf, offset, fua)
	}
	return s.writeDone("write", "wrote", err, s.elapsed(start), offset, count, quiet, machine)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// bufFromFile is qemu_io_alloc_from_file: the file's first bytes repeated
// to fill count bytes. Errors go to stderr as perror prints them.
func (s *Session) bufFromFile(count int64, name string) []byte {
	f, err := os.Open(name)
	if err != nil {
		fmt.Fprintf(s.Err, "%s: %s\n", name, Strerror(err))
		return nil
	}
	defer f.Close()
	buf := make([]byte, count)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		fmt.Fprintf(s.Err, "%s: %s\n", name, Strerror(err))
		return nil
	}
	if n == 0 {
		fmt.Fprintf(s.Err, "%s: file is empty\n", name)
		return nil
	}
	for i := n; i < len(buf); i += n {
		copy(buf[i:], buf[:n])
	}
	return buf
}
