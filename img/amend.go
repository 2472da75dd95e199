package img

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/qcrypto"
	"github.com/goqio/goqio/image/qdict"
)

// Sentinels of Amend.
var (
	// ErrAmendNotSupported: the image's format has no amendable options.
	ErrAmendNotSupported = errors.New("format driver does not support option amendment")
	// ErrInvalidOption: an -o option amend does not know, or a bad value.
	ErrInvalidOption = errors.New("invalid amend option")
)

// AmendOptions are qemu-img amend's -o options for qcow2 (nil or zero:
// unchanged) and its flags.
type AmendOptions struct {
	Compat        string // "0.10"/"v2" or "1.1"/"v3"
	Size          int64
	BackingFile   *string
	BackingFmt    *string
	LazyRefcounts *bool
	RefcountBits  int
	DataFile      *string
	DataFileRaw   *bool
	// Encrypt are the encrypt.* options (key management of LUKS images),
	// keyed without the prefix.
	Encrypt map[string]string
	// Force is --force.
	Force bool
	// Progress receives the progress (-p).
	Progress ProgressFunc
}

// qcow2AmendOpts is qcow2_amend_opts, in the order QEMU's help lists it.
var qcow2AmendOpts = []formats.OptDesc{
	{Name: "backing_file"}, {Name: "backing_fmt"}, {Name: "compat"}, {Name: "data_file"},
	{Name: "data_file_raw", Type: formats.OptBool},
	{Name: "encrypt.iter-time", Type: formats.OptNumber}, {Name: "encrypt.keyslot", Type: formats.OptNumber},
	{Name: "encrypt.new-secret"}, {Name: "encrypt.old-secret"}, {Name: "encrypt.state"},
	{Name: "lazy_refcounts", Type: formats.OptBool}, {Name: "refcount_bits", Type: formats.OptNumber},
	{Name: "size", Type: formats.OptSize},
}

// qcow2CreateOnly are the qcow2 create options amend does not take.
var qcow2CreateOnly = []string{"cluster_size", "preallocation", "extended_l2", "compression_type",
	"encrypt.format", "encrypt.cipher-alg", "encrypt.cipher-mode", "encrypt.ivgen-alg",
	"encrypt.ivgen-hash-alg", "encrypt.hash-alg", "encrypt.key-secret", "encryption"}

// Qcow2AmendHelp is what qemu-img amend -o help prints for qcow2.
const Qcow2AmendHelp = `Amend options for 'qcow2':
  backing_file=<str>     - File name of a base image
  backing_fmt=<str>      - Image format of the base image
  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])
  data_file=<str>        - File name of an external data file
  data_file_raw=<bool (on/off)> - The external data file must stay valid as a raw image
  encrypt.iter-time=<num> - Time to spend in PBKDF in milliseconds
  encrypt.keyslot=<num>  - Select a single keyslot to modify explicitly
  encrypt.new-secret=<str> - New secret to set in the matching keyslots. Empty string to erase
  encrypt.old-secret=<str> - Select all keyslots that match this password
  encrypt.state=<str>    - Select new state of affected keyslots (active/inactive)
  lazy_refcounts=<bool (on/off)> - Postpone refcount updates
  refcount_bits=<num>    - Width of a reference count entry in bits
  size=<size>            - Virtual disk size
`

// ParseAmendOptions parses an -o list (qemu_opts_do_parse on the qcow2
// amend options) with QEMU's messages.
func ParseAmendOptions(list string) (AmendOptions, error) {
	var o AmendOptions
	for _, part := range formats.SplitOptions(list) {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			v = "on"
			if strings.HasPrefix(k, "no") {
				k, v = k[2:], "off"
			}
		}
		var desc *formats.OptDesc
		for i := range qcow2AmendOpts {
			if qcow2AmendOpts[i].Name == k {
				desc = &qcow2AmendOpts[i]
			}
		}
		if desc == nil {
			e := &Error{Msg: fmt.Sprintf("Invalid parameter '%s'", k), Err: ErrInvalidOption}
			for _, c := range qcow2CreateOnly {
				if c == k {
					e.Hint = "This option is only supported for image creation\n"
				}
			}
			return o, e
		}
		d := qdict.New()
		d.Put(k, v)
		opts, err := formats.Absorb([]formats.OptDesc{*desc}, d)
		if err != nil {
			e := &Error{Msg: err.Error(), Err: ErrInvalidOption}
			var fe *formats.Error
			if errors.As(err, &fe) {
				e.Hint = fe.Hint
			}
			return o, e
		}
		s := v
		switch k {
		case "backing_file":
			o.BackingFile = &s
		case "backing_fmt":
			o.BackingFmt = &s
		case "compat":
			o.Compat = v
		case "data_file":
			o.DataFile = &s
		case "data_file_raw":
			b := opts.Bool(k, false)
			o.DataFileRaw = &b
		case "lazy_refcounts":
			b := opts.Bool(k, false)
			o.LazyRefcounts = &b
		case "refcount_bits":
			o.RefcountBits = int(opts.Num(k, 0))
			if o.RefcountBits == 0 {
				o.RefcountBits = -1 // an explicit 0 is refused
			}
		case "size":
			o.Size = int64(opts.Num(k, 0))
		default:
			if o.Encrypt == nil {
				o.Encrypt = map[string]string{}
			}
			o.Encrypt[strings.TrimPrefix(k, "encrypt.")] = v
		}
	}
	return o, nil
}

// Amend is qemu-img amend on an image opened read-write: QEMU's
// qcow2_amend_options (upgrade to compat=1.1 first, downgrade to 0.10 last
// with zero clusters expanded, lazy_refcounts, data_file, data_file_raw,
// size; the backing file cannot be changed: use Rebase; encrypt.* go to
// the encryption's key management, qcow2.AmendEncryption).
func Amend(ctx context.Context, im *Image, o AmendOptions) error {
	if err := canceled(ctx); err != nil {
		return err
	}
	d := image.SkipFilters(im.Node.Disk)
	q, ok := d.Driver().(*qcow2.Driver)
	if !ok {
		name := im.Node.Drv.Name
		return &Error{Msg: fmt.Sprintf("Format driver '%s' does not support option amendment", name), Err: ErrAmendNotSupported}
	}
	qo := qcow2.AmendOptions{Size: o.Size, BackingFile: o.BackingFile, BackingFmt: o.BackingFmt,
		LazyRefcounts: o.LazyRefcounts, RefcountBits: o.RefcountBits, DataFile: o.DataFile,
		DataFileRaw: o.DataFileRaw, Encrypt: o.Encrypt, Force: o.Force}
	switch o.Compat {
	case "":
	case "0.10", "v2":
		qo.Version = 2
	case "1.1", "v3":
		qo.Version = 3
	default:
		return &Error{Msg: fmt.Sprintf("Unknown compatibility level %s", o.Compat), Err: ErrInvalidOption}
	}
	if o.Progress != nil {
		qo.Status = func(done, total int64) { o.Progress(100*float32(done)/float32(total), 0) }
	}
	if o.Size != 0 {
		im.Node.GrantResize()
	}
	if err := q.Amend(qo); err != nil {
		var ae *qcow2.AmendError
		if errors.As(err, &ae) {
			return &Error{Msg: ae.Msg, Hint: ae.Hint, Err: err}
		}
		return err
	}
	return nil
}

// luksAmendOpts is block_crypto_amend_opts_luks, in QEMU's help order;
// luksCreateOnly are the luks create options amend does not take.
var (
	luksAmendOpts = []formats.OptDesc{
		{Name: "iter-time", Type: formats.OptNumber}, {Name: "keyslot", Type: formats.OptNumber},
		{Name: "new-secret"}, {Name: "old-secret"}, {Name: "state"},
	}
	luksCreateOnly = []string{"key-secret", "cipher-alg", "cipher-mode", "ivgen-alg", "ivgen-hash-alg",
		"hash-alg", "size", "preallocation"}
)

// LUKSAmendHelp is what qemu-img amend -o help prints for luks.
const LUKSAmendHelp = `Amend options for 'luks':
  iter-time=<num>        - Time to spend in PBKDF in milliseconds
  keyslot=<num>          - Select a single keyslot to modify explicitly
  new-secret=<str>       - New secret to set in the matching keyslots. Empty string to erase
  old-secret=<str>       - Select all keyslots that match this password
  state=<str>            - Select new state of affected keyslots (active/inactive)
`

// ParseLUKSAmendOptions parses an -o list for a luks image (qemu-img
// amend's qemu_opts_do_parse on the luks amend options, then
// block_crypto_amend_opts_init's conversion): the key slot change, with
// QEMU's messages. An option only creation takes gets QEMU's hint.
func ParseLUKSAmendOptions(list string) (qcrypto.AmendOptions, error) {
	known := func(names []formats.OptDesc, extra []string, k string) bool {
		for _, d := range names {
			if d.Name == k {
				return true
			}
		}
		for _, n := range extra {
			if n == k {
				return true
			}
		}
		return false
	}
	parts := formats.SplitOptions(list)
	vals := map[string]string{}
	for _, part := range parts {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			v = "on"
			if strings.HasPrefix(k, "no") {
				k, v = k[2:], "off"
			}
		}
		if !known(luksAmendOpts, nil, k) {
			e := &Error{Msg: fmt.Sprintf("Invalid parameter '%s'", k), Err: ErrInvalidOption}
			// the hint when the list parses as create options
			all := true
			for _, p := range parts {
				pk, _, _ := strings.Cut(p, "=")
				all = all && known(luksAmendOpts, luksCreateOnly, pk)
			}
			if all {
				e.Hint = "This option is only supported for image creation\n"
			}
			return qcrypto.AmendOptions{}, e
		}
		for _, d := range luksAmendOpts {
			if d.Name == k {
				q := qdict.New()
				q.Put(k, v)
				if _, err := formats.Absorb([]formats.OptDesc{d}, q); err != nil {
					return qcrypto.AmendOptions{}, &Error{Msg: err.Error(), Err: ErrInvalidOption}
				}
			}
		}
		vals[k] = v
	}
	o, err := qcrypto.ParseAmendOptions(func(k string) (string, bool) { v, ok := vals[k]; return v, ok }, "")
	if err != nil {
		return o, &Error{Msg: err.Error(), Err: ErrInvalidOption}
	}
	return o, nil
}
