package formats

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/goqio/goqio/image"
)

// Objects are QEMU's user-creatable objects (--object), by id: secrets for
// encrypted images and throttle groups for the throttle filter.
type Objects struct {
	byID map[string]*Object
}

// Object is one --object.
type Object struct {
	Type, ID string
	Props    map[string]string
	// Secret is a secret's value (decoded from base64 when so given).
	Secret []byte
	// Throttle is a throttle group's state (throttle_object.go).
	Throttle *ThrottleGroup
}

// ObjectTypes are the user-creatable object types of qemu-io 7.2, as
// "--object help" lists them.
var ObjectTypes = []string{"authz-list", "authz-list-file", "authz-simple", "main-loop", "pr-manager-helper",
	"secret", "secret_keyring", "thread-context", "throttle-group", "tls-cipher-suites", "tls-creds-anon",
	"tls-creds-psk", "tls-creds-x509"}

// objectProps are the properties of the types goqio checks (others take
// any property), with their QAPI types as "TYPE,help" prints them.
var objectProps = map[string][][2]string{
	"secret": {{"data", "string"}, {"file", "string"}, {"format", "QCryptoSecretFormat"}, {"iv", "string"}, {"keyid", "string"}},
	"throttle-group": func() [][2]string {
		p := [][2]string{{"limits", "ThrottleLimits"}}
		for _, k := range []string{"bps-read", "bps-total", "bps-write", "iops-read", "iops-size", "iops-total", "iops-write"} {
			if k == "iops-size" {
				p = append(p, [2]string{"x-" + k, "int"})
				continue
			}
			p = append(p, [2]string{"x-" + k + "-max-length", "int"}, [2]string{"x-" + k + "-max", "int"}, [2]string{"x-" + k, "int"})
		}
		return p
	}(),
}

// ErrHelp is returned by Add when the definition asked for help; the help
// text was written.
var ErrHelp = errors.New("help printed")

// Get returns the object with id, or nil.
func (o *Objects) Get(id string) *Object {
	if o == nil || o.byID == nil {
		return nil
	}
	return o.byID[id]
}

// Add is user_creatable_process_cmdline: def is "TYPE,id=ID,prop=value,..."
// (or qom-type=TYPE,...); "help" and "TYPE,help" print what QEMU prints to
// help and return ErrHelp.
func (o *Objects) Add(def string, help func(string)) error {
	if o.byID == nil {
		o.byID = map[string]*Object{}
	}
	var keys []string
	props := map[string]string{}
	for i, part := range SplitOptions(def) {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			if i == 0 {
				k, v = "qom-type", part
			} else if part == "help" || part == "?" {
				k, v = "help", "on"
			} else {
				k, v = part, "on"
			}
		}
		if _, dup := props[k]; !dup {
			keys = append(keys, k)
		}
		props[k] = v
	}
	typ, hasType := props["qom-type"]
	if typ == "help" || typ == "?" {
		help("List of user creatable objects:\n")
		for _, t := range ObjectTypes {
			help("  " + t + "\n")
		}
		return ErrHelp
	}
	if !hasType {
		return errors.New("Parameter 'qom-type' is missing")
	}
	known := false
	for _, t := range ObjectTypes {
		known = known || t == typ
	}
	if !known {
		return fmt.Errorf("Parameter 'qom-type' does not accept value '%s'", typ)
	}
	if _, ok := props["help"]; ok {
		help(typ + " options:\n")
		var lines []string
		for _, p := range objectProps[typ] {
			lines = append(lines, fmt.Sprintf("  %s=<%s>\n", p[0], p[1]))
		}
		sort.Strings(lines) // QEMU sorts the printed lines
		for _, l := range lines {
			help(l)
		}
		return ErrHelp
	}
	if typ == "throttle-group" {
		return o.addThrottleGroup(def)
	}
	id, ok := props["id"]
	if !ok {
		return errors.New("Parameter 'id' is missing")
	}
	if !idWellformed(id) {
		return &Error{Msg: "Parameter 'id' expects an identifier",
			Hint: "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n"}
	}
	if typ == "main-loop" || typ == "thread-context" {
		return errors.New("qemu aio context not ready")
	}
	obj := &Object{Type: typ, ID: id, Props: map[string]string{}}
	if pl, ok := objectProps[typ]; ok {
		for _, k := range keys {
			if k == "qom-type" || k == "id" {
				continue
			}
			found := ""
			for _, p := range pl {
				if p[0] == k {
					found = p[1]
				}
			}
			if found == "" {
				return fmt.Errorf("Parameter '%s' is unexpected", k)
			}
			if found == "int" {
				if _, err := strconv.ParseInt(props[k], 10, 64); err != nil {
					return fmt.Errorf("Parameter '%s' expects integer", k)
				}
			}
			obj.Props[k] = props[k]
		}
	} else {
		for _, k := range keys {
			if k != "qom-type" && k != "id" {
				obj.Props[k] = props[k]
			}
		}
	}
	if typ == "secret" {
		if err := o.loadSecret(obj); err != nil {
			return err
		}
	}
	if (typ == "tls-creds-x509" || typ == "tls-creds-psk") && obj.Props["dir"] == "" {
		return errors.New("Missing 'dir' property value")
	}
	if typ == "tls-creds-x509" {
		if err := checkX509Object(obj); err != nil {
			return err
		}
	}
	if o.byID[id] != nil {
		return fmt.Errorf("attempt to add duplicate property '%s' to object (type 'container')", id)
	}
	o.byID[id] = obj
	return nil
}

// Secret is qcrypto_secret_lookup: the data of the secret with id, or
// QEMU's message.
func (o *Objects) Secret(id string) ([]byte, error) {
	obj := o.Get(id)
	if obj == nil {
		return nil, fmt.Errorf("No secret with id '%s'", id)
	}
	if obj.Type != "secret" {
		return nil, fmt.Errorf("Object with id '%s' is not a secret", id)
	}
	return obj.Secret, nil
}

// loadSecret is qcrypto_secret_load_data and the checks of
// qcrypto_secret_complete.
func (o *Objects) loadSecret(obj *Object) error {
	data, hasData := obj.Props["data"]
	file, hasFile := obj.Props["file"]
	switch f := obj.Props["format"]; f {
	case "", "raw", "base64":
	default:
		return fmt.Errorf("Parameter 'format' does not accept value '%s'", f)
	}
	if hasData && hasFile {
		return errors.New("'file' and 'data' are mutually exclusive")
	}
	if !hasData && !hasFile {
		return errors.New("Either 'file' or 'data' must be provided")
	}
	if k, ok := obj.Props["keyid"]; ok && o.byID[k] == nil {
		return fmt.Errorf("No secret with id '%s'", k)
	}
	val := []byte(data)
	if hasFile {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("Unable to read %s: Failed to open file \u201c%s\u201d: %s", file, file, Strerror(image.Errno(err)))
		}
		val = b
	}
	if k, ok := obj.Props["keyid"]; ok {
		b, err := o.decryptSecret(obj, k, val)
		if err != nil {
			return err
		}
		val = b
	} else if obj.Props["format"] == "base64" {
		b, err := qbase64(string(val))
		if err != nil {
			return err
		}
		val = b
	}
	obj.Secret = val
	return nil
}

// decryptSecret is qcrypto_secret_decrypt: AES-256-CBC with the key of
// secret keyid and the base64 iv, then PKCS#7 padding removed.
func (o *Objects) decryptSecret(obj *Object, keyid string, in []byte) ([]byte, error) {
	key := o.byID[keyid]
	if key.Type != "secret" {
		return nil, fmt.Errorf("Object with id '%s' is not a secret", keyid)
	}
	if len(key.Secret) != 32 {
		return nil, errors.New("Key should be 32 bytes in length")
	}
	ivText, ok := obj.Props["iv"]
	if !ok {
		return nil, errors.New("IV is required to decrypt secret")
	}
	iv, err := qbase64(ivText)
	if err != nil {
		return nil, err
	}
	if len(iv) != 16 {
		return nil, fmt.Errorf("IV should be 16 bytes in length not %d", len(iv))
	}
	ct := in
	if obj.Props["format"] == "base64" {
		if ct, err = qbase64(string(in)); err != nil {
			return nil, err
		}
	}
	if len(ct)%16 != 0 {
		return nil, fmt.Errorf("Length %d must be a multiple of block size %d", len(ct), 16)
	}
	if len(ct) == 0 {
		return nil, nil // QEMU reads before its buffer here and goes on
	}
	blk, err := aes.NewCipher(key.Secret)
	if err != nil {
		return nil, err
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(blk, iv).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad > 16 || pad > len(pt) {
		return nil, fmt.Errorf("Incorrect number of padding bytes (%d) found on decrypted data", pad)
	}
	return pt[:len(pt)-pad], nil
}

// qbase64 is qbase64_decode: QEMU's character check, then glib's lenient
// decoding (a trailing partial group is dropped).
func qbase64(s string) ([]byte, error) {
	const valid = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n"
	if strings.ContainsRune(s, 0) {
		return nil, errors.New("Base64 data contains embedded NUL characters")
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(valid, rune(s[i])) {
			return nil, errors.New("Base64 data contains invalid characters")
		}
	}
	t := strings.ReplaceAll(s, "\n", "")
	t = t[:len(t)/4*4] // glib drops a trailing partial group
	b, err := base64.StdEncoding.DecodeString(t)
	if err != nil {
		// glib decodes what it can
		b, _ = base64.RawStdEncoding.DecodeString(strings.TrimRight(t, "="))
	}
	return b, nil
}

// SplitOptions splits a QemuOpts string at its commas (",," is a comma);
// an empty string gives one empty part.
func SplitOptions(s string) []string {
	var parts []string
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				b.WriteByte(',')
				i++
				continue
			}
			parts = append(parts, b.String())
			b.Reset()
			continue
		}
		b.WriteByte(s[i])
	}
	return append(parts, b.String())
}
