package commands

import (
	"fmt"
	"strings"

	"github.com/goqio/goqio/image/formats"
)

var openCmd = &Command{
	Name: "open", Alias: "o", Opts: "snCro:ki:t:d:U", ArgMin: 1, ArgMax: -1, Flags: flagNoFile,
	Args:    str("[-rsCnkU] [-t cache] [-d discard] [-o options] [path]"),
	OneLine: "open the file specified by path",
	Help: `
 opens a new file in the requested mode

 Example:
 'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached

 Opens a file for subsequent use by all of the other qemu-io commands.
 -r, -- open file read-only
 -s, -- use snapshot file
 -C, -- use copy-on-read
 -n, -- disable host cache, short for -t none
 -U, -- force shared permissions
 -k, -- use kernel AIO implementation (Linux only, prefer use of -i)
 -i, -- use AIO mode (threads, native or io_uring)
 -t, -- use the given cache mode for the image
 -d, -- use the given discard mode for the image
 -o, -- options to be given to the block driver
`,
}

var closeCmd = &Command{
	Name: "close", Alias: "c",
	OneLine: "close the current open file",
}

func init() {
	openCmd.Run = runOpen
	closeCmd.Run = runClose
	register(openCmd)
	register(closeCmd)
}

// ParseCacheMode is QEMU's bdrv_parse_cache_mode: it updates f for mode and
// reports whether mode is known.
func ParseCacheMode(mode string, f *OpenFlags) bool {
	switch mode {
	case "off", "none":
		f.NoCache, f.NoFlush, f.WriteThrough = true, false, false
	case "directsync":
		f.NoCache, f.NoFlush, f.WriteThrough = true, false, true
	case "writeback":
		f.NoCache, f.NoFlush, f.WriteThrough = false, false, false
	case "unsafe":
		f.NoCache, f.NoFlush, f.WriteThrough = false, true, false
	case "writethrough":
		f.NoCache, f.NoFlush, f.WriteThrough = false, false, true
	default:
		return false
	}
	return true
}

// ParseDiscard is QEMU's bdrv_parse_discard_flags.
func ParseDiscard(mode string, f *OpenFlags) bool {
	switch mode {
	case "off", "ignore":
		f.Unmap = false
	case "on", "unmap":
		f.Unmap = true
	default:
		return false
	}
	return true
}

// ParseAIO is QEMU's bdrv_parse_aio.
func ParseAIO(mode string, f *OpenFlags) bool {
	switch mode {
	case "native":
		f.NativeAIO = true
	case "io_uring", "threads":
		f.NativeAIO = false
	default:
		return false
	}
	return true
}

// ParseOptions parses a QEMU option string "key=value,key2=value2" (",," is
// a literal comma). implied names the key of a leading bare value (the
// "file" of --image-opts); a bare word elsewhere is "word=on", with QEMU's
// deprecation warning.
func ParseOptions(s string, implied string, warn func(string)) (map[string]string, error) {
	pairs, err := ParseOptionList(s, implied, warn)
	if err != nil {
		return nil, err
	}
	opts := map[string]string{}
	for _, kv := range pairs {
		opts[kv[0]] = kv[1]
	}
	return opts, nil
}

// ParseOptionList is ParseOptions keeping the order of the keys, as
// QemuOpts keep a list (a later key wins over an earlier one).
func ParseOptionList(s string, implied string, warn func(string)) ([][2]string, error) {
	var out [][2]string
	if s == "" {
		return nil, nil
	}
	first := true
	for _, p := range formats.SplitOptions(s) {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			if first && implied != "" {
				k, v = implied, p
			} else if k == "" {
				first = false
				continue
			} else {
				if warn != nil {
					warn(fmt.Sprintf("short-form boolean option '%s' deprecated\nPlease use %s=on instead", k, k))
				}
				v = "on"
				if strings.HasPrefix(k, "no") {
					k, v = k[2:], "off"
				}
			}
		}
		if k == "" {
			return nil, fmt.Errorf("Invalid parameter ''")
		}
		out = append(out, [2]string{k, v})
		first = false
	}
	return out, nil
}

func runOpen(s *Session, argv []string) error {
	f := DefaultOpenFlags()
	var opts map[string]string
	g := s.getopt(argv, openCmd.Opts)
	for {
		c, arg := g.Next()
		if c == -1 {
			break
		}
		switch c {
		case 's':
			f.Snapshot = true
		case 'n':
			f.NoCache, f.NoFlush, f.WriteThrough = true, false, false
		case 'C':
			f.CopyOnRead = true
		case 'r':
			f.ReadOnly = true
		case 'k':
			f.NativeAIO = true
		case 't':
			if !ParseCacheMode(arg, &f) {
				s.errorf("Invalid cache option: %s", arg)
				return ErrFailed
			}
		case 'd':
			if !ParseDiscard(arg, &f) {
				s.errorf("Invalid discard option: %s", arg)
				return ErrFailed
			}
		case 'i':
			if !ParseAIO(arg, &f) {
				s.errorf("Invalid aio option: %s", arg)
				return ErrFailed
			}
		case 'o':
			if s.ImageOpts {
				s.printf("--image-opts and 'open -o' are mutually exclusive\n")
				return ErrFailed
			}
			o, err := ParseOptions(arg, "", s.warn)
			if err != nil {
				s.errorf("%v", err)
				return ErrFailed
			}
			if opts == nil {
				opts = map[string]string{}
			}
			for k, v := range o {
				opts[k] = v
			}
		case 'U':
			f.ForceShare = true
		default:
			return s.usage(openCmd)
		}
	}
	args := g.Operands()
	if len(args) > 1 {
		return s.usage(openCmd)
	}
	name := ""
	if len(args) == 1 {
		name = args[0]
		if s.ImageOpts {
			o, err := ParseOptions(name, "", s.warn)
			if err != nil {
				s.errorf("%v", err)
				return ErrFailed
			}
			return s.OpenImageOpts(o, f)
		}
	}
	return s.Open(name, f, opts)
}

// OpenImageOpts opens an image described by --image-opts options
// (driver=..., file.filename=...), with no file name operand.
func (s *Session) OpenImageOpts(o map[string]string, f OpenFlags) error {
	return s.Open("", f, o)
}

func runClose(s *Session, argv []string) error {
	s.Close()
	return nil
}
