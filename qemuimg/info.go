package qemuimg

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/snapshot"
)

// ImageInfo is QEMU 7.2's ImageInfo for one image, as qemu-img info
// collects it (bdrv_query_image_info).
type ImageInfo struct {
	Filename    string
	Format      string
	VirtualSize int64
	// ActualSize is the space the image's files take on disk, -1 when
	// the driver cannot tell.
	ActualSize  int64
	ClusterSize int64 // 0: none reported
	Encrypted   bool  // bs->encrypted: "encrypted: yes"
	HasDirty    bool  // the driver reported its state (bdrv_get_info)
	Dirty       bool
	// BackingFilename is the name in the image; FullBackingFilename the
	// one it resolves to ("" when it cannot be determined).
	BackingFilename, FullBackingFilename, BackingFormat string
	Snapshots                                           []qcow2.Snapshot
	// Specific is format-specific's data (nil: none), FormatType its type.
	Specific   *qdict.Dict
	FormatType string
}

// QueryImageInfo is bdrv_query_image_info for an open node.
func QueryImageInfo(n *formats.Node) (*ImageInfo, error) {
	n.RefreshFilename()
	info := &ImageInfo{Filename: n.Filename, Format: n.Drv.Name, VirtualSize: n.Disk.Size()}
	info.ActualSize = allocatedFileSize(n)
	info.ClusterSize, info.Dirty, info.HasDirty = driverInfo(n)
	if d, ok := n.Impl.(*qcow2.Driver); ok {
		info.Specific, info.FormatType = d.SpecificInfo(), "qcow2"
		snaps, err := d.Snapshots()
		if err != nil {
			return nil, err
		}
		info.Snapshots = snaps
		info.Encrypted = d.Encrypted()
	}
	if s := formats.LUKSInfo(n); s != nil {
		info.Specific, info.FormatType, info.Encrypted = s, "luks", true
	}
	if n.BackingFile != "" {
		info.BackingFilename = n.BackingFile
		if f, err := formats.FullBackingFilename(n); err == nil {
			info.FullBackingFilename = f
		}
		info.BackingFormat = n.BackingFormat
	}
	return info, nil
}

// driverInfo is bdrv_get_info: the cluster size and dirty bit, and
// whether the driver answers at all.
func driverInfo(n *formats.Node) (int64, bool, bool) {
	switch d := n.Impl.(type) {
	case *qcow2.Driver:
		info, _ := n.Disk.Info()
		return info.ClusterSize, d.Dirty(), true
	}
	switch n.Drv.Name {
	case "file", "host_device", "host_cdrom":
		return 0, false, true
	case "raw", "luks": // luks: block_crypto_get_info_luks asks its file
		if f := n.Child("file"); f != nil {
			return driverInfo(f)
		}
	}
	return 0, false, false
}

// allocatedFileSize is bdrv_get_allocated_file_size.
func allocatedFileSize(n *formats.Node) int64 {
	switch n.Drv.Name {
	case "file", "host_device", "host_cdrom":
		name, _ := n.Options.Str("filename")
		var st syscall.Stat_t
		if err := syscall.Stat(name, &st); err != nil {
			return -int64(err.(syscall.Errno))
		}
		return st.Blocks * 512
	case "null-co", "null-aio":
		return 0
	}
	if n.Drv.Protocol != "" || n.Drv.FileOpen {
		return -int64(syscall.ENOTSUP)
	}
	if n.Drv.IsFilter {
		for _, c := range n.Children {
			if c.Role&(formats.RoleFiltered|formats.RolePrimary) != 0 {
				return allocatedFileSize(c.Node)
			}
		}
	}
	var sum int64
	for _, c := range n.Children {
		if c.Role&(formats.RoleData|formats.RoleMetadata|formats.RoleFiltered) == 0 {
			continue
		}
		s := allocatedFileSize(c.Node)
		if s < 0 {
			return s
		}
		sum += s
	}
	return sum
}

// Dict is the QAPI visitor's output for the ImageInfo: what qemu-img
// info --output=json prints.
func (info *ImageInfo) Dict() *qdict.Dict {
	d := qdict.New()
	d.Put("filename", info.Filename)
	d.Put("format", info.Format)
	if info.HasDirty {
		d.Put("dirty-flag", info.Dirty)
	}
	if info.ActualSize >= 0 {
		d.Put("actual-size", info.ActualSize)
	}
	d.Put("virtual-size", info.VirtualSize)
	if info.ClusterSize != 0 {
		d.Put("cluster-size", info.ClusterSize)
	}
	if info.Encrypted {
		d.Put("encrypted", true)
	}
	if info.BackingFilename != "" {
		d.Put("backing-filename", info.BackingFilename)
		if info.FullBackingFilename != "" {
			d.Put("full-backing-filename", info.FullBackingFilename)
		}
		if info.BackingFormat != "" {
			d.Put("backing-filename-format", info.BackingFormat)
		}
	}
	if len(info.Snapshots) > 0 {
		l := &qdict.List{}
		for _, s := range info.Snapshots {
			sd := qdict.New()
			sd.Put("id", s.ID)
			sd.Put("name", s.Name)
			sd.Put("vm-state-size", int64(s.VMStateSize))
			sd.Put("date-sec", int64(s.DateSec))
			sd.Put("date-nsec", int64(s.DateNsec))
			sd.Put("vm-clock-sec", int64(s.VMClockNsec/1e9))
			sd.Put("vm-clock-nsec", int64(s.VMClockNsec%1e9))
			if s.ICount != -1 {
				sd.Put("icount", s.ICount)
			}
			l.Items = append(l.Items, sd)
		}
		d.Put("snapshots", l)
	}
	if info.Specific != nil {
		fs := qdict.New()
		fs.Put("type", info.FormatType)
		fs.Put("data", info.Specific)
		d.Put("format-specific", fs)
	}
	return d
}

// DumpHuman is bdrv_image_info_dump: qemu-img info's human output.
func (info *ImageInfo) DumpHuman(w io.Writer) {
	dsize := "unavailable"
	if info.ActualSize >= 0 {
		dsize = snapshot.Size(uint64(info.ActualSize))
	}
	fmt.Fprintf(w, "image: %s\nfile format: %s\nvirtual size: %s (%d bytes)\ndisk size: %s\n",
		info.Filename, info.Format, snapshot.Size(uint64(info.VirtualSize)), info.VirtualSize, dsize)
	if info.Encrypted {
		fmt.Fprintf(w, "encrypted: yes\n")
	}
	if info.ClusterSize != 0 {
		fmt.Fprintf(w, "cluster_size: %d\n", info.ClusterSize)
	}
	if info.HasDirty && info.Dirty {
		fmt.Fprintf(w, "cleanly shut down: no\n")
	}
	if info.BackingFilename != "" {
		fmt.Fprintf(w, "backing file: %s", info.BackingFilename)
		if info.FullBackingFilename == "" {
			fmt.Fprintf(w, " (cannot determine actual path)")
		} else if info.FullBackingFilename != info.BackingFilename {
			fmt.Fprintf(w, " (actual path: %s)", info.FullBackingFilename)
		}
		fmt.Fprintf(w, "\n")
		if info.BackingFormat != "" {
			fmt.Fprintf(w, "backing file format: %s\n", info.BackingFormat)
		}
	}
	if len(info.Snapshots) > 0 {
		fmt.Fprintf(w, "Snapshot list:\n")
		fmt.Fprintf(w, "%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT")
		for _, s := range info.Snapshots {
			date := time.Unix(int64(s.DateSec), 0).Format("2006-01-02 15:04:05")
			secs := s.VMClockNsec / 1e9
			clock := fmt.Sprintf("%02d:%02d:%02d.%03d", secs/3600, (secs/60)%60, secs%60, (s.VMClockNsec/1e6)%1000)
			icount := ""
			if s.ICount != -1 {
				icount = strconv.FormatInt(s.ICount, 10)
			}
			fmt.Fprintf(w, "%-9s %-16s %8s%20s%13s%11s\n", s.ID, s.Name, snapshot.Size(s.VMStateSize), date, clock, icount)
		}
	}
	if info.Specific != nil {
		fmt.Fprintf(w, "Format specific information:\n")
		dumpQObject(w, 1, info.Specific)
	}
}

// dumpQObject is block/qapi.c's dump_qobject.
func dumpQObject(w io.Writer, indent int, v any) {
	switch x := v.(type) {
	case *qdict.Dict:
		for _, k := range x.Keys() {
			val := x.Get(k)
			composite := isComposite(val)
			sep := " "
			if composite {
				sep = "\n"
			}
			fmt.Fprintf(w, "%s%s:%s", strings.Repeat("    ", indent), strings.ReplaceAll(k, "-", " "), sep)
			dumpQObject(w, indent+1, val)
			if !composite {
				fmt.Fprintln(w)
			}
		}
	case *qdict.List:
		for i, val := range x.Items {
			composite := isComposite(val)
			sep := " "
			if composite {
				sep = "\n"
			}
			fmt.Fprintf(w, "%s[%d]:%s", strings.Repeat("    ", indent), i, sep)
			dumpQObject(w, indent+1, val)
			if !composite {
				fmt.Fprintln(w)
			}
		}
	case bool:
		fmt.Fprint(w, strconv.FormatBool(x))
	default:
		s, _ := qdict.ScalarString(v)
		fmt.Fprint(w, s)
	}
}

func isComposite(v any) bool {
	switch v.(type) {
	case *qdict.Dict, *qdict.List:
		return true
	}
	return false
}

func imgInfo(e *env, argv []string) int {
	var fmtName, output string
	var chain, imageOpts, forceShare bool
	long := []commands.LongOption{{Name: "help", Val: 'h'}, {Name: "format", HasArg: true, Val: 'f'},
		{Name: "output", HasArg: true, Val: optOutput}, {Name: "backing-chain", Val: optBackingChain},
		{Name: "object", HasArg: true, Val: optObject}, {Name: "image-opts", Val: optImageOpts},
		{Name: "force-share", Val: 'U'}}
	ops, ok, code := e.getopt(argv, ":f:hU", long, func(c rune, arg string) (bool, int) {
		switch c {
		case 'f':
			fmtName = arg
		case 'U':
			forceShare = true
		case optOutput:
			output = arg
		case optBackingChain:
			chain = true
		case optObject:
			return e.object(arg)
		case optImageOpts:
			imageOpts = true
		}
		return true, 0
	})
	if !ok {
		return code
	}
	if len(ops) != 1 {
		return e.errorExit("Expecting one image file name")
	}
	json, ok := e.outputJSON(output)
	if !ok {
		return 1
	}
	var list []*ImageInfo
	seen := map[string]bool{}
	filename := ops[0]
	for filename != "" {
		if seen[filename] {
			e.report("Backing file '%s' creates an infinite loop.", filename)
			return 1
		}
		seen[filename] = true
		n := e.open(openReq{name: filename, format: fmtName, imageOpts: imageOpts, forceShare: forceShare,
			readOnly: true, noBacking: true, noIO: true})
		if n == nil {
			return 1
		}
		info, err := QueryImageInfo(n)
		n.Close()
		if err != nil {
			e.report("%v", err)
			return 1
		}
		list = append(list, info)
		filename, fmtName, imageOpts = "", "", false
		if chain {
			if info.FullBackingFilename != "" {
				filename = info.FullBackingFilename
			} else if info.BackingFilename != "" {
				e.report("Could not determine absolute backing filename, but backing filename '%s' present", info.BackingFilename)
				return 1
			}
			fmtName = info.BackingFormat
		}
	}
	switch {
	case !json:
		for i, info := range list {
			if i > 0 {
				fmt.Fprintln(e.stdout)
			}
			info.DumpHuman(e.stdout)
		}
	case chain:
		l := &qdict.List{}
		for _, info := range list {
			l.Items = append(l.Items, info.Dict())
		}
		fmt.Fprintln(e.stdout, formats.ToJSONPretty(l))
	default:
		fmt.Fprintln(e.stdout, formats.ToJSONPretty(list[0].Dict()))
	}
	return 0
}
