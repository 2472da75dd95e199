package create

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcrypto"
	"github.com/goqio/goqio/image/raw"
)

// qcow2EncryptOpts are qcow2's encryption create options in the order
// qemu-img prints them.
var qcow2EncryptOpts = []string{"encryption", "encrypt.format", "encrypt.key-secret", "encrypt.cipher-alg",
	"encrypt.cipher-mode", "encrypt.ivgen-alg", "encrypt.ivgen-hash-alg", "encrypt.hash-alg", "encrypt.iter-time"}

// luksCreateOpts are the luks format's create options (block/crypto.c),
// in the order qemu-img prints them after the size.
var luksCreateOpts = []string{"key-secret", "cipher-alg", "cipher-mode", "ivgen-alg", "ivgen-hash-alg", "hash-alg", "iter-time"}

// parseNumber is QemuOpts' number parser (qemu_strtou64).
func parseNumber(v string) (uint64, error) {
	return strconv.ParseUint(strings.TrimSpace(v), 0, 64)
}

// luksOptions turns the luks create options (names without prefix) into
// qcrypto's, with the QAPI visitor's enum checks.
func luksOptions(r Request, get func(string) (string, bool), prefix string) (*qcrypto.CreateOptions, error) {
	o := &qcrypto.CreateOptions{Format: "luks", Prefix: prefix, Lookup: r.Secrets}
	o.KeySecret, _ = get("key-secret")
	for _, c := range []struct {
		name string
		list []string
		dst  *string
	}{{"cipher-alg", qcrypto.CipherAlgs, &o.CipherAlg}, {"cipher-mode", qcrypto.CipherModes, &o.CipherMode},
		{"ivgen-alg", qcrypto.IVGenAlgs, &o.IVGenAlg}, {"ivgen-hash-alg", qcrypto.HashAlgs, &o.IVGenHashAlg},
		{"hash-alg", qcrypto.HashAlgs, &o.HashAlg}} {
		v, ok := get(c.name)
		if !ok {
			continue
		}
		found := false
		for _, s := range c.list {
			found = found || s == v
		}
		if !found {
			return nil, fail(r.File, "Parameter '%s' does not accept value '%s'", c.name, v)
		}
		*c.dst = v
	}
	if v, ok := get("iter-time"); ok {
		n, _ := parseNumber(v)
		o.IterTime = &n
	}
	if o.Lookup == nil {
		o.Lookup = func(id string) ([]byte, error) { return nil, fmt.Errorf("No secret with id '%s'", id) }
	}
	return o, nil
}

// LUKSHeaderLen is the size of the LUKS header the luks options in opts
// (named with prefix: "" for the luks format, "encrypt." for qcow2's)
// make, with creation's checks and messages (qemu-img measure's
// qcrypto_block_calculate_payload_offset).
func LUKSHeaderLen(opts map[string]string, prefix string, secrets func(string) ([]byte, error)) (int64, error) {
	o, err := luksOptions(Request{Secrets: secrets}, func(k string) (string, bool) { v, ok := opts[prefix+k]; return v, ok }, prefix)
	if err != nil {
		return 0, err
	}
	n, err := qcrypto.HeaderLen(*o)
	if err != nil {
		return 0, &Error{err.Error()}
	}
	return n, nil
}

// qcow2Encryption is the encryption part of qcow2_co_create_opts: the
// legacy encryption=on|off, encrypt.format=aes as the qcow format, and
// the QAPI visitor's checks of encrypt.*.
func qcow2Encryption(r Request, given map[string]string) (*qcrypto.CreateOptions, error) {
	format, hasFormat := given["encrypt.format"]
	if v, ok := given["encryption"]; ok {
		b, _ := onOff(r.File, "encryption", v)
		if b {
			if hasFormat {
				return nil, fail(r.File, "'encrypt.format' and its alias 'encryption' can't be used at the same time")
			}
			format, hasFormat = "qcow", true
		}
	}
	if format == "aes" {
		format = "qcow"
	}
	anyEnc := hasFormat
	for _, k := range qcow2EncryptOpts[2:] {
		if _, ok := given[k]; ok {
			anyEnc = true
		}
	}
	if !anyEnc {
		return nil, nil
	}
	if !hasFormat {
		return nil, fail(r.File, "Parameter 'encrypt.format' is missing")
	}
	switch format {
	case "luks":
		return luksOptions(r, func(k string) (string, bool) { v, ok := given["encrypt."+k]; return v, ok }, "encrypt.")
	case "qcow":
		for _, k := range qcow2EncryptOpts[3:] {
			if _, ok := given[k]; ok {
				return nil, fail(r.File, "Parameter '%s' is unexpected", k)
			}
		}
		lookup := r.Secrets
		if lookup == nil {
			lookup = func(id string) ([]byte, error) { return nil, fmt.Errorf("No secret with id '%s'", id) }
		}
		return &qcrypto.CreateOptions{Format: "qcow", KeySecret: given["encrypt.key-secret"], Prefix: "encrypt.", Lookup: lookup}, nil
	}
	return nil, fail(r.File, "Parameter 'format' does not accept value '%s'", format)
}

// createLUKS is block_crypto_co_create_opts_luks: a raw LUKS volume,
// its header then size bytes of payload.
func createLUKS(r Request, out io.Writer, parseSize func(string) (int64, error)) error {
	given := map[string]string{}
	var fo fileOpts
	optSize := int64(-1)
	for _, k := range sortedKeys(r.Options) {
		v := r.Options[k]
		switch k {
		case "size":
			n, err := parseSize(v)
			if err != nil {
				return fail(r.File, sizeErr, "size")
			}
			optSize = n
		case "iter-time":
			if _, err := parseNumber(v); err != nil {
				return fail(r.File, "Parameter '%s' expects a number", k)
			}
		case "nocow", "extent_size_hint":
			if err := fo.parse(r.File, k, v, parseSize); err != nil {
				return err
			}
			continue
		case "key-secret", "cipher-alg", "cipher-mode", "ivgen-alg", "ivgen-hash-alg", "hash-alg", "preallocation":
		default:
			return fail(r.File, "Invalid parameter '%s'", k)
		}
		given[k] = v
	}
	if err := sizedNoBacking(&r, optSize); err != nil {
		return err
	}
	if !r.Quiet {
		var b strings.Builder
		fmt.Fprintf(&b, "Formatting '%s', fmt=luks size=%d", r.File, r.Size)
		for _, k := range luksCreateOpts {
			if v, ok := given[k]; ok {
				fmt.Fprintf(&b, " %s=%s", k, escapeOpt(v))
			}
		}
		// then the file protocol's options, in its order
		if fo.nocow != "" {
			fmt.Fprintf(&b, " nocow=%s", fo.nocow)
		}
		if v, ok := given["preallocation"]; ok {
			fmt.Fprintf(&b, " preallocation=%s", escapeOpt(v))
		}
		if fo.hasHint {
			fmt.Fprintf(&b, " extent_size_hint=%d", fo.hint)
		}
		fmt.Fprintln(out, b.String())
	}
	if err := fo.check(r.File); err != nil {
		return err
	}
	prealloc := image.PreallocOff
	if v, ok := given["preallocation"]; ok {
		p, ok := parsePrealloc(v)
		if !ok {
			return fail(r.File, "Parameter 'preallocation' does not accept value '%s'", v)
		}
		if p != image.PreallocMetadata {
			prealloc = p
		}
	}
	o, err := luksOptions(r, func(k string) (string, bool) { v, ok := given[k]; return v, ok }, "")
	if err != nil {
		return err
	}
	if err := raw.CreateWith(hostPath(r.File), 0, image.PreallocOff, fo.attrs(r)); err != nil {
		return fail(r.File, "Could not create '%s': %s", hostPath(r.File), image.StrerrorOf(err))
	}
	var f *os.File
	_, err = qcrypto.Create(*o, func(n int64) (qcrypto.HeaderIO, error) {
		if r.Size > 1<<63-1-n {
			return nil, fmt.Errorf("The requested file size is too large")
		}
		if err := raw.Create(hostPath(r.File), r.Size+n, prealloc); err != nil {
			return nil, err
		}
		var err error
		if f, err = os.OpenFile(hostPath(r.File), os.O_RDWR, 0); err != nil {
			return nil, err
		}
		return luksFile{f}, nil
	})
	if err == nil && f != nil {
		err = f.Sync()
	}
	if f != nil {
		f.Close()
	}
	if err != nil {
		os.Remove(hostPath(r.File))
		return fail(r.File, "%v", err)
	}
	return nil
}

// luksFile is block_crypto_create_write_func: the header at the start of
// the file.
type luksFile struct{ f *os.File }

func (l luksFile) ReadAt(p []byte, off int64) error {
	if _, err := l.f.ReadAt(p, off); err != nil {
		return fmt.Errorf("Could not read encryption header: %s", image.StrerrorOf(err))
	}
	return nil
}

func (l luksFile) WriteAt(p []byte, off int64) error {
	if _, err := l.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("Could not write encryption header: %s", image.StrerrorOf(err))
	}
	return nil
}
