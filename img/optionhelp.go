package img

import (
	"fmt"
	"sort"
	"strings"
)

// optHelp is a creation option of qemu-img 7.2 (the format's
// and the file protocol's): its type name and help text, as -o help prints them.
type optHelp struct{ name, typ, help string }

var formatOptionHelp = map[string][]optHelp{
	"qcow2": {
		{"backing_file", "str", "File name of a base image"},
		{"backing_fmt", "str", "Image format of the base image"},
		{"cluster_size", "size", "qcow2 cluster size"},
		{"compat", "str", "Compatibility level (v2 [0.10] or v3 [1.1])"},
		{"compression_type", "str", "Compression method used for image cluster compression"},
		{"data_file", "str", "File name of an external data file"},
		{"data_file_raw", "bool (on/off)", "The external data file must stay valid as a raw image"},
		{"encrypt.cipher-alg", "str", "Name of encryption cipher algorithm"},
		{"encrypt.cipher-mode", "str", "Name of encryption cipher mode"},
		{"encrypt.format", "str", "Encrypt the image, format choices: 'aes', 'luks'"},
		{"encrypt.hash-alg", "str", "Name of encryption hash algorithm"},
		{"encrypt.iter-time", "num", "Time to spend in PBKDF in milliseconds"},
		{"encrypt.ivgen-alg", "str", "Name of IV generator algorithm"},
		{"encrypt.ivgen-hash-alg", "str", "Name of IV generator hash algorithm"},
		{"encrypt.key-secret", "str", "ID of secret providing qcow AES key or LUKS passphrase"},
		{"encryption", "bool (on/off)", "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)"},
		{"extended_l2", "bool (on/off)", "Extended L2 tables"},
		{"lazy_refcounts", "bool (on/off)", "Postpone refcount updates"},
		{"preallocation", "str", "Preallocation mode (allowed values: off, metadata, falloc, full)"},
		{"refcount_bits", "num", "Width of a reference count entry in bits"},
		{"size", "size", "Virtual disk size"},
	},
	"raw": {{"size", "size", "Virtual disk size"}},
}

var fileOptionHelp = []optHelp{
	{"extent_size_hint", "size", "Extent size hint for the image file, 0 to disable"},
	{"nocow", "bool (on/off)", "Turn off copy-on-write (valid only on btrfs)"},
	{"preallocation", "str", "Preallocation mode (allowed values: off, falloc, full)"},
	{"size", "size", "Virtual disk size"},
}

// CreateOptionsHelp is qemu-img's print_block_option_help: the creation
// options of format (with those of the protocol of filename, when not
// empty), as -o help prints them.
func CreateOptionsHelp(format, filename string) (string, error) {
	fopts, ok := formatOptionHelp[format]
	if !ok {
		return "", errorf(ErrInvalidOptions, "Unknown file format '%s'", format)
	}
	list := append([]optHelp(nil), fopts...)
	var b strings.Builder
	if filename != "" {
		proto := "file"
		if i := strings.IndexAny(filename, ":/"); i > 0 && filename[i] == ':' {
			proto = filename[:i]
		}
		switch proto {
		case "file":
			for _, o := range fileOptionHelp {
				dup := false
				for _, f := range list {
					dup = dup || f.name == o.name
				}
				if !dup {
					list = append(list, o)
				}
			}
		case "null-co", "null-aio", "nbd", "nbd+unix", "nbd+tcp", "nbd+vsock":
			if strings.HasPrefix(proto, "null") {
				return "", errorf(ErrInvalidOptions, "Protocol driver '%s' does not support image creation", proto)
			}
		default:
			return "", errorf(ErrInvalidOptions, "Unknown protocol '%s'", proto)
		}
		b.WriteString("Supported options:\n")
	} else {
		fmt.Fprintf(&b, "Supported %s options:\n", format)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
	for _, o := range list {
		line := fmt.Sprintf("  %s=<%s>", o.name, o.typ)
		if len(line) < 24 {
			line += strings.Repeat(" ", 24-len(line))
		}
		b.WriteString(line + " - " + o.help + "\n")
	}
	if filename == "" {
		b.WriteString("\nThe protocol level may support further options.\nSpecify the target filename to include those options.\n")
	}
	return b.String(), nil
}
