package img

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
)

// Sentinels of Rebase and Commit.
var (
	// ErrInvalidFormat: the backing format named is not a known driver.
	ErrInvalidFormat = errors.New("invalid format name")
	// ErrOpenBacking: the new backing file could not be opened.
	ErrOpenBacking = errors.New("could not open the new backing file")
	// ErrChangeBacking: the image's header could not name the new
	// backing file (the data is already safe in the overlay then).
	ErrChangeBacking = errors.New("could not change the backing file")
	// ErrBackingFormatRequired: a backing file without its format.
	ErrBackingFormatRequired = errors.New("backing format must be specified")
)

// ProgressFunc receives qemu_progress_print's arguments: with max 0,
// delta is the new percentage; otherwise the percentage grows by
// delta/100*max. (Convert reports through the Progress interface.)
type ProgressFunc func(delta float32, max int)

// RebaseOptions are qemu-img rebase's options.
type RebaseOptions struct {
	// Backing is the new backing file as the image will name it ("" for
	// none, with RemoveBacking or in safe mode: the old chain's data is
	// then copied into the image).
	Backing string
	// BackingFormat is -F; "" names no format, which QEMU refuses with
	// ErrBackingFormatRequired once the data is copied.
	BackingFormat string
	// Unsafe is -u: only the name in the header changes. The image should
	// then have been opened without its backing file.
	Unsafe bool
	// ForceShare opens the new backing file sharing every permission (-U).
	ForceShare bool
	// Graph is where the new backing file is opened (--object definitions
	// live there); nil: the image's own graph, or a new one.
	Graph *formats.Graph
	// Progress, when set, receives the progress (-p).
	Progress ProgressFunc
	// Warn and WarnReport receive what opening the new backing file
	// prints (formats.Options' Warn and WarnReport), or are nil.
	Warn, WarnReport func(string)
}

func (o *RebaseOptions) progress(delta float32, max int) {
	if o.Progress != nil {
		o.Progress(delta, max)
	}
}

// compareBuffers is qemu-img's compare_buffers: whether the first sector
// differs, and how many bytes from the start share that answer.
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

// resolveBacking is bdrv_get_full_backing_filename_from_filename.
func resolveBacking(backed, backing string) (string, error) {
	switch {
	case backing == "":
		return "", nil
	case formats.PathHasProtocol(backing) || strings.HasPrefix(backing, "/"):
		return backing, nil
	case backed == "" || strings.HasPrefix(backed, "json:"):
		return "", fmt.Errorf("Cannot use relative backing file names for '%s'", backed)
	}
	if i := strings.LastIndex(backed, "/"); i >= 0 {
		return backed[:i+1] + backing, nil
	}
	return backing, nil
}

// Rebase is qemu-img rebase on im, opened read-write (without its backing
// file in unsafe mode). In safe mode every range the image does not store
// and where the old backing chain and the new one differ is copied from the
// old chain into the image (as zeroes past the old chain's end), so that
// the guest sees the same data; then the header names the new backing
// file. A cancelled ctx stops the copy: the image's data is then still
// right, and its header still names the old backing file.
func Rebase(ctx context.Context, im *Image, o RebaseOptions) error {
	top := im.Node
	if o.BackingFormat != "" && formats.FindFormat(o.BackingFormat) == nil {
		return &Error{Msg: fmt.Sprintf("Invalid format name: '%s'", o.BackingFormat), Err: ErrInvalidFormat}
	}
	if !o.Unsafe {
		if err := rebaseCopy(ctx, im, o); err != nil {
			return err
		}
	}
	format := o.BackingFormat
	if o.Backing == "" {
		format = ""
	}
	err := changeBacking(top, o.Backing, format, true)
	o.progress(100, 0)
	return err
}

func rebaseCopy(ctx context.Context, im *Image, o RebaseOptions) error {
	top := im.Node
	unfiltered := image.SkipFilters(top.Disk)
	oldBacking := unfiltered.Backing()
	var newBacking *image.Disk
	var prefix *formats.Node
	if o.Backing != "" {
		overlay := top.ExactFilename()
		if overlay == "" {
			overlay = top.Filename
		}
		real, err := resolveBacking(overlay, o.Backing)
		if err != nil {
			return &Error{Msg: "Could not resolve backing filename: " + err.Error(), Err: err}
		}
		if prefix = formats.FindBackingImage(top, real); prefix != nil {
			newBacking = prefix.Disk
		} else {
			g := o.Graph
			if g == nil {
				g = formats.NewGraph(formats.Env{})
			}
			opts := map[string]string{}
			if o.ForceShare {
				opts["force-share"] = "on"
			}
			n, err := formats.OpenNode(real, formats.Options{Format: o.BackingFormat, ReadOnly: true,
				Options: opts, Graph: g, Warn: o.Warn, WarnReport: o.WarnReport})
			if err != nil {
				e := &Error{Msg: fmt.Sprintf("Could not open new backing file '%s': %v", o.Backing, err), Err: ErrOpenBacking}
				var fe *formats.Error
				if errors.As(err, &fe) {
					e.Hint = fe.Hint
				}
				return e
			}
			defer n.Close()
			newBacking = n.Disk
		}
	}
	size := top.Disk.Size()
	var oldSize, newSize int64
	if oldBacking != nil {
		oldSize = oldBacking.Size()
	}
	if newBacking != nil {
		newSize = newBacking.Size()
	}
	var step float32
	if size != 0 {
		step = float32(100) / float32(size/min(size, ioBufSize))
	}
	bufOld, bufNew := make([]byte, ioBufSize), make([]byte, ioBufSize)
	var n int64
	for off := int64(0); off < size; off += n {
		if err := canceled(ctx); err != nil {
			return err
		}
		n = min(ioBufSize, size-off)
		alloc, pnum, err := unfiltered.IsAllocated(off, n)
		if err != nil {
			return &Error{Msg: "error while reading image metadata: " + image.StrerrorOf(err), Err: err}
		}
		n = pnum
		if alloc {
			continue
		}
		if prefix != nil {
			alloc, pnum, err := image.IsAllocatedAbove(oldBacking, prefix.Disk, false, off, n)
			if err != nil {
				return &Error{Msg: "error while reading image metadata: " + image.StrerrorOf(err), Err: err}
			}
			if !alloc && pnum > 0 {
				n = pnum
				continue
			}
			// past the end of the old backing file (pnum 0) the range read
			// as zeroes: compared and kept as such ("qemu-img: rebase:
			// stop when reaching EOF of old backing file", in Debian's 7.2)
			if pnum > 0 {
				n = pnum
			}
		}
		oldIsZero := off >= oldSize
		if !oldIsZero {
			n = min(n, oldSize-off)
		}
		newZero := off >= newSize || newBacking == nil
		if !newZero {
			n = min(n, newSize-off)
		}
		// the two reads run side by side (qemu-img reads one after the
		// other; the result is the same)
		var newErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			if newZero {
				clear(bufNew[:n])
			} else {
				newErr = newBacking.ReadAt(bufNew[:n], off)
			}
		}()
		var oldErr error
		if oldIsZero {
			clear(bufOld[:n])
		} else {
			oldErr = oldBacking.ReadAt(bufOld[:n], off)
		}
		<-done
		if oldErr != nil {
			return &Error{Msg: "error while reading from old backing file", Err: oldErr}
		}
		if newErr != nil {
			return &Error{Msg: "error while reading from new backing file", Err: newErr}
		}
		for w := int64(0); w < n; {
			diff, p := compareBuffers(bufOld[w:n], bufNew[w:n])
			if diff {
				var err error
				if oldIsZero {
					err = top.Disk.WriteZeroes(off+w, int64(p), 0, false)
				} else {
					err = top.Disk.WriteAt(bufOld[w:w+int64(p)], off+w, false)
				}
				if err != nil {
					return &Error{Msg: "Error while writing to COW image: " + image.StrerrorOf(err), Err: err}
				}
			}
			w += int64(p)
		}
		o.progress(step, 100)
	}
	return nil
}

// changeBacking is bdrv_change_backing_file with qemu-img rebase's
// messages; require is rebase's: a backing file needs its format.
func changeBacking(n *formats.Node, backing, format string, require bool) error {
	var err error
	d := image.SkipFilters(n.Disk)
	q, ok := d.Driver().(*qcow2.Driver)
	switch {
	case format != "" && backing == "":
		err = syscall.EINVAL
	case require && backing != "" && format == "":
		err = syscall.EINVAL
	case !ok:
		err = syscall.ENOTSUP
	default:
		err = q.ChangeBackingFile(backing, format)
	}
	if err == nil {
		n.BackingFile, n.BackingFormat = backing, format
		return nil
	}
	shown := backing
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return &Error{Msg: fmt.Sprintf("Could not change the backing file to '%s': No space left in the file header", shown), Err: ErrChangeBacking}
	case errors.Is(err, syscall.EINVAL) && backing != "" && format == "":
		return &Error{Msg: fmt.Sprintf("Could not change the backing file to '%s': backing format must be specified", shown),
			Err: ErrBackingFormatRequired}
	}
	return &Error{Msg: fmt.Sprintf("Could not change the backing file to '%s': %s", shown, image.StrerrorOf(err)), Err: ErrChangeBacking}
}
