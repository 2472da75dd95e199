// Package check is goqio check: qemu-img check's verdicts, messages and
// exit codes for qcow2 images (0 clean, 1 check failed, 2 corruptions,
// 3 leaks, 63 for formats without checks).
package check

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/qdict"
)

// Request is one check.
type Request struct {
	File   string
	Format string // "" probes
	Repair string // "", "leaks" or "all"
	JSON   bool
	Quiet  bool
	Prog   string // for messages ("qemu-img" style prefix)
	// Options, when set, are --image-opts' options (File is then the
	// option string, as the report names it); the image is opened from
	// them alone.
	Options map[string]string
	// Graph holds the --object definitions (the secrets of encrypted
	// images); nil: none.
	Graph *formats.Graph
	// ForceShare is -U.
	ForceShare bool
}

// Run checks the image, writing the report to out and the findings to
// errw, and returns qemu-img check's exit status.
func Run(r Request, out, errw io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(errw, "%s: %s\n", r.Prog, fmt.Sprintf(format, a...))
		return 1
	}
	if r.Options != nil {
		if r.Format != "" {
			return fail("--image-opts and --format are mutually exclusive")
		}
		return r.checkNode("", errw, out, fail)
	}
	// a read-only open of a directory succeeds, and then QEMU's file driver
	// refuses it (a read-write open already fails with EISDIR)
	if st, err := os.Stat(r.File); err == nil && st.IsDir() {
		if r.Repair == "" {
			return fail("Could not open '%s': 'file' driver requires '%s' to be a regular file", r.File, r.File)
		}
		return fail("Could not open '%s': Could not open '%s': %s", r.File, r.File, formats.Strerror(syscall.EISDIR))
	}
	format := r.Format
	if strings.HasPrefix(r.File, "json:") {
		// the options name the driver, or the graph probes the file
		return r.checkNode(r.File, errw, out, fail)
	}
	if format == "" && formats.IsNBDFilename(r.File) {
		// an NBD export is probed through its protocol driver
		d, err := formats.Open(r.File, formats.Options{Format: "raw", ReadOnly: true, Prog: r.Prog})
		if err != nil {
			return fail("Could not open '%s': %v", r.File, err)
		}
		head := make([]byte, min(512, d.Size()))
		err = d.ReadAt(head, 0)
		d.Close()
		if err != nil {
			return fail("Could not open '%s': Could not read image for determining its format: %s", r.File, image.StrerrorOf(err))
		}
		format = formats.Probe(head)
	} else if format == "" {
		f, err := os.Open(r.File)
		if err != nil {
			return fail("Could not open '%s': Could not open '%s': %s", r.File, r.File, image.StrerrorOf(err))
		}
		head := make([]byte, 512)
		n, _ := io.ReadFull(f, head)
		f.Close()
		format = formats.Probe(head[:n])
		if format == "raw" && r.Repair != "" {
			// qemu-img opens a probed raw image read-write to repair it
			fmt.Fprintf(errw, "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"+
				"         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n"+
				"         Specify the 'raw' format explicitly to remove the restrictions.\n", r.File)
		}
	}
	if format == "luks" {
		// opened (with its key) to find it has no checks
		return r.checkNode(r.File, errw, out, fail)
	}
	if format != "qcow2" {
		if format == "raw" || format == "file" {
			fmt.Fprintf(errw, "%s: This image format does not support checks\n", r.Prog)
			return 63
		}
		return fail("Could not open '%s': Unknown driver '%s'", r.File, format)
	}
	r.Format = "qcow2"
	return r.checkNode(r.File, errw, out, fail)
}

// checkNode opens the image (path, or r.Options) as qemu-img check's
// img_open does and checks it: a node of another format than qcow2
// has no checks (63).
func (r Request) checkNode(path string, errw, out io.Writer, fail func(string, ...any) int) int {
	var mode qcow2.CheckMode
	switch r.Repair {
	case "":
	case "leaks":
		mode = qcow2.FixLeaks
	case "all":
		mode = qcow2.FixLeaks | qcow2.FixErrors
	default:
		return fail("Unknown option value for -r (expecting 'leaks' or 'all'): %s", r.Repair)
	}
	// the whole chain is opened, as qemu-img check opens it (a missing
	// or locked backing file fails the check)
	n, err := formats.OpenNode(path, formats.Options{Format: r.Format, Options: r.Options, ReadOnly: mode == 0, Check: true,
		ForceShare: r.ForceShare, Graph: r.Graph, Stderr: errw, Prog: r.Prog})
	if err != nil {
		fail("Could not open '%s': %v", r.File, err)
		var fe *formats.Error
		if errors.As(err, &fe) && fe.Hint != "" {
			fmt.Fprint(errw, fe.Hint)
		}
		return 1
	}
	defer n.Close()
	d, ok := n.Impl.(*qcow2.Driver) // bdrv_check: a filter has no checks either
	if !ok {
		fmt.Fprintf(errw, "%s: This image format does not support checks\n", r.Prog)
		return 63
	}
	res, err := d.Check(errw, mode)
	if err == nil && (res.LeaksFixed != 0 || res.CorruptionsFixed != 0) {
		if !r.JSON && !r.Quiet {
			fmt.Fprintf(out, "The following inconsistencies were found and repaired:\n\n"+
				"    %d leaked clusters\n    %d corruptions\n\nDouble checking the fixed image now...\n",
				res.LeaksFixed, res.CorruptionsFixed)
		}
		lf, cf := res.LeaksFixed, res.CorruptionsFixed
		res, err = d.Check(errw, 0)
		res.LeaksFixed, res.CorruptionsFixed = lf, cf
	}
	if err == nil && !r.Quiet {
		if r.JSON {
			printJSON(out, res, r.File)
		} else {
			printHuman(out, res)
		}
	}
	if err != nil || res.CheckErrors != 0 {
		if err != nil {
			var rb *qcow2.RebuildError
			if errors.As(err, &rb) {
				fmt.Fprintf(errw, "%s: %v\n", r.Prog, rb)
			}
			fmt.Fprintf(errw, "%s: Check failed: %s\n", r.Prog, image.StrerrorOf(err))
		} else {
			fmt.Fprintf(errw, "%s: Check failed\n", r.Prog)
		}
		return 1
	}
	switch {
	case res.Corruptions != 0:
		return 2
	case res.Leaks != 0:
		return 3
	}
	return 0
}

// printHuman is qemu-img's dump_human_image_check.
func printHuman(w io.Writer, c qcow2.CheckResult) {
	if c.Corruptions == 0 && c.Leaks == 0 && c.CheckErrors == 0 {
		fmt.Fprintf(w, "No errors were found on the image.\n")
	} else {
		if c.Corruptions != 0 {
			fmt.Fprintf(w, "\n%d errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n", c.Corruptions)
		}
		if c.Leaks != 0 {
			fmt.Fprintf(w, "\n%d leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n", c.Leaks)
		}
		if c.CheckErrors != 0 {
			fmt.Fprintf(w, "\n%d internal errors have occurred during the check.\n", c.CheckErrors)
		}
	}
	if c.TotalClusters != 0 && c.AllocatedClusters != 0 {
		fmt.Fprintf(w, "%d/%d = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
			c.AllocatedClusters, c.TotalClusters,
			float64(c.AllocatedClusters)*100/float64(c.TotalClusters),
			float64(c.FragmentedClusters)*100/float64(c.AllocatedClusters),
			float64(c.CompressedClusters)*100/float64(c.AllocatedClusters))
	}
	if c.ImageEndOffset != 0 {
		fmt.Fprintf(w, "Image end offset: %d\n", c.ImageEndOffset)
	}
}

// printJSON is qemu-img's dump_json_image_check: the ImageCheck fields
// that are set, in QDict order, pretty-printed.
func printJSON(w io.Writer, c qcow2.CheckResult, file string) {
	vals := map[string]string{
		"filename": fmt.Sprintf("%q", file), "format": `"qcow2"`,
		"check-errors": fmt.Sprint(c.CheckErrors),
	}
	keys := []string{"filename", "format", "check-errors"}
	opt := func(k string, v int64) {
		if v != 0 {
			keys = append(keys, k)
			vals[k] = fmt.Sprint(v)
		}
	}
	opt("image-end-offset", c.ImageEndOffset)
	opt("corruptions", c.Corruptions)
	opt("leaks", c.Leaks)
	opt("corruptions-fixed", c.CorruptionsFixed)
	opt("leaks-fixed", c.LeaksFixed)
	opt("total-clusters", c.TotalClusters)
	opt("allocated-clusters", c.AllocatedClusters)
	opt("fragmented-clusters", c.FragmentedClusters)
	opt("compressed-clusters", c.CompressedClusters)
	var lines []string
	for _, k := range qdict.Order(keys) {
		lines = append(lines, fmt.Sprintf("    %q: %s", k, vals[k]))
	}
	fmt.Fprintf(w, "{\n%s\n}\n", strings.Join(lines, ",\n"))
}
