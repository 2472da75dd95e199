package img

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/create"
)

// optType is a QemuOpts type of a creation option.
type optType int

const (
	optString optType = iota
	optBool
	optNumber
	optSize
)

// createOptions are the creation options qemu-img 7.2 knows for a format
// (the format's create_opts and the file protocol's), with their types.
var createOptions = map[string]map[string]optType{
	"raw": {"size": optSize, "preallocation": optString, "nocow": optBool, "extent_size_hint": optSize},
	"qcow2": {"size": optSize, "compat": optString, "backing_file": optString, "backing_fmt": optString,
		"data_file": optString, "data_file_raw": optBool, "encryption": optBool, "encrypt.format": optString,
		"encrypt.key-secret": optString, "encrypt.cipher-alg": optString, "encrypt.cipher-mode": optString,
		"encrypt.ivgen-alg": optString, "encrypt.ivgen-hash-alg": optString, "encrypt.hash-alg": optString,
		"encrypt.iter-time": optNumber, "cluster_size": optSize, "preallocation": optString,
		"lazy_refcounts": optBool, "refcount_bits": optNumber, "compression_type": optString,
		"extended_l2": optBool, "nocow": optBool, "extent_size_hint": optSize},
}

// measureOptions are the creation options of the formats goqio measures
// but does not create through this package (luks: block/crypto.c's
// create options, and the file protocol's).
var measureOptions = map[string]map[string]optType{
	"luks": {"size": optSize, "key-secret": optString, "cipher-alg": optString, "cipher-mode": optString,
		"ivgen-alg": optString, "ivgen-hash-alg": optString, "hash-alg": optString, "iter-time": optNumber,
		"preallocation": optString, "nocow": optBool, "extent_size_hint": optSize},
}

// FormatKnown reports whether goqio can create images of format.
func FormatKnown(format string) bool { return createOptions[format] != nil }

// AccumulateOptions is qemu-img's accumulate_options: -o values joined
// with ','; the error is "Invalid option list: ...".
func AccumulateOptions(prev, add string) (string, error) {
	if !validOptionList(add) {
		return prev, errorf(ErrInvalidOptions, "Invalid option list: %s", add)
	}
	if prev == "" {
		return add, nil
	}
	return prev + "," + add, nil
}

func validOptionList(s string) bool {
	if s == "" || s[0] == ',' {
		return false
	}
	i := len(s)
	for i > 0 && s[i-1] == ',' {
		i--
	}
	return (len(s)-i)%2 == 0
}

// HasHelpOption is qemu-img's has_help_option.
func HasHelpOption(options string) bool {
	pairs, err := commands.ParseOptionList(options, "", nil)
	if err != nil {
		return false
	}
	for _, kv := range pairs {
		if kv[0] == "help" || kv[0] == "?" {
			return true
		}
	}
	return false
}

const sizeErrText = "Parameter '%s' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively."

// parseCreateOptions is qemu_opts_do_parse of -o against the format's
// options: the first unknown name or mistyped value fails, with
// QemuOpts' message. Later keys win.
func parseCreateOptions(format, options string) (map[string]string, error) {
	known := createOptions[format]
	if known == nil {
		known = measureOptions[format]
	}
	out := map[string]string{}
	if options == "" {
		return out, nil
	}
	pairs, err := commands.ParseOptionList(options, "", nil)
	if err != nil {
		return nil, errorf(ErrInvalidOptions, "%v", err)
	}
	for _, kv := range pairs {
		k, v := kv[0], kv[1]
		t, ok := known[k]
		if !ok {
			return nil, errorf(ErrInvalidOptions, "Invalid parameter '%s'", k)
		}
		switch t {
		case optBool:
			if v != "on" && v != "off" {
				return nil, errorf(ErrInvalidOptions, "Parameter '%s' expects 'on' or 'off'", k)
			}
		case optNumber:
			if _, err := strconv.ParseUint(v, 0, 64); err != nil {
				return nil, errorf(ErrInvalidOptions, "Parameter '%s' expects a number", k)
			}
		case optSize:
			if _, err := commands.ParseSize(v); err != nil {
				return nil, errorf(ErrInvalidOptions, sizeErrText, k)
			}
		}
		out[k] = v
	}
	return out, nil
}

// createTarget is bdrv_create for convert and dd: the image with the
// options given (size set), with no "Formatting" line. The error is the
// driver's message without a prefix.
func createTarget(format, file string, size int64, opts map[string]string, secrets func(string) ([]byte, error), stderr io.Writer, prog string) error {
	o := map[string]string{}
	for k, v := range opts {
		switch k {
		case "size":
			continue
		}
		o[k] = v
	}
	req := create.Request{Format: format, File: file, Size: size, Options: o, Quiet: true,
		NoBackingOpen: true, Secrets: secrets, Stderr: stderr, Prog: prog}
	err := create.Create(req, io.Discard, commands.ParseSize)
	if err == nil {
		return nil
	}
	msg := strings.TrimPrefix(err.Error(), file+": ")
	return fmt.Errorf("%s", msg)
}
