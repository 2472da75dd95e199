package qcrypto

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// AmendOptions are QCryptoBlockAmendOptionsLUKS (qemu-img amend's
// encrypt.state, encrypt.keyslot, encrypt.new-secret, encrypt.old-secret,
// encrypt.iter-time, encrypt.secret); nil means not given.
type AmendOptions struct {
	State     string // "active" (add a key) or "inactive" (erase keys)
	Keyslot   *int64
	NewSecret *string
	OldSecret *string
	Secret    *string // the secret unlocking the master key (default: the one opened with)
	IterTime  *uint64
	Lookup    Lookup
}

// Amend is qcrypto_block_amend_options for LUKS: adds or erases key
// slots, writing the header through w. force is qemu-img amend's
// --force (overwrite an active slot, erase the last one). On error the
// header is as it was unless the error says a write failed.
func (b *Block) Amend(o AmendOptions, force bool, rw HeaderIO) error {
	if b.Format != "luks" || b.hdr == nil {
		return errors.New("Crypto format not supported")
	}
	switch o.State {
	case "active":
		return b.addKeyslot(o, force, rw)
	case "inactive":
		return b.eraseKeyslots(o, force, rw)
	}
	return fmt.Errorf("Parameter 'state' does not accept value '%s'", o.State)
}

func (b *Block) activeSlots() int {
	n := 0
	for _, s := range b.hdr.slots {
		if s.active == luksSlotEnabled {
			n++
		}
	}
	return n
}

// hint appends QEMU's error_append_hint text (qemu-img prints hints on
// the next line).
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() + "\n" + e.hint }
func (e *hintError) Unwrap() error { return e.err }

// Hint returns an error's hint (error_append_hint), "" when none; the
// error's text without it is Unwrap's.
func Hint(err error) string {
	var h *hintError
	if errors.As(err, &h) {
		return h.hint
	}
	return ""
}

// addKeyslot is qcrypto_block_luks_amend_add_keyslot.
func (b *Block) addKeyslot(o AmendOptions, force bool, rw HeaderIO) error {
	iterTime := uint64(luksDefaultIterMs)
	if o.IterTime != nil {
		iterTime = *o.IterTime
	}
	secret := b.secret
	if o.Secret != nil {
		secret = *o.Secret
	}
	if o.NewSecret == nil {
		return errors.New("'new-secret' is required to activate a keyslot")
	}
	if o.OldSecret != nil {
		return errors.New("'old-secret' must not be given when activating keyslots")
	}
	var slot int
	if o.Keyslot != nil {
		k := *o.Keyslot
		if k < 0 || k >= luksNumSlots {
			return fmt.Errorf("Invalid keyslot %d specified, must be between 0 and %d", uint32(k), luksNumSlots-1)
		}
		slot = int(k)
	} else {
		slot = -1
		for i, s := range b.hdr.slots {
			if s.active != luksSlotEnabled {
				slot = i
				break
			}
		}
		if slot < 0 {
			return errors.New("Can't add a keyslot - all keyslots are in use")
		}
	}
	if !force && b.hdr.slots[slot].active == luksSlotEnabled {
		return fmt.Errorf("Refusing to overwrite active keyslot %d - please erase it first", slot)
	}
	oldPw, err := password(o.Lookup, secret)
	if err != nil {
		return err
	}
	mk := make([]byte, b.hdr.keyLen)
	if _, err := b.findKey(oldPw, mk, rw); err != nil {
		return &hintError{err, "Failed to retrieve the master key"}
	}
	newPw, err := password(o.Lookup, *o.NewSecret)
	if err != nil {
		return err
	}
	saved := *b.hdr
	if err := b.storeKey(slot, newPw, mk, iterTime, rw); err != nil {
		*b.hdr = saved
		return &hintError{err, fmt.Sprintf("Failed to write to keyslot %d", slot)}
	}
	return nil
}

// eraseKeyslots is qcrypto_block_luks_amend_erase_keyslots.
func (b *Block) eraseKeyslots(o AmendOptions, force bool, rw HeaderIO) error {
	if o.NewSecret != nil {
		return errors.New("'new-secret' must not be given when erasing keyslots")
	}
	if o.IterTime != nil {
		return errors.New("'iter-time' must not be given when erasing keyslots")
	}
	if o.Secret != nil {
		return errors.New("'secret' must not be given when erasing keyslots")
	}
	var oldPw []byte
	if o.OldSecret != nil {
		var err error
		if oldPw, err = password(o.Lookup, *o.OldSecret); err != nil {
			return err
		}
	}
	tmp := make([]byte, b.hdr.keyLen)
	switch {
	case o.Keyslot != nil:
		k := *o.Keyslot
		if k < 0 || k >= luksNumSlots {
			return fmt.Errorf("Invalid keyslot %d specified, must be between 0 and %d", int32(k), luksNumSlots-1)
		}
		slot := int(k)
		if o.OldSecret != nil {
			ok, err := b.loadKey(slot, oldPw, tmp, rw)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("Given keyslot %d doesn't contain the given old password for erase operation", slot)
			}
		}
		if !force && b.hdr.slots[slot].active != luksSlotEnabled {
			return fmt.Errorf("Given keyslot %d is already erased (inactive) ", slot)
		}
		if !force && b.activeSlots() == 1 {
			return fmt.Errorf("Attempt to erase the only active keyslot %d which will erase all the data in the image irreversibly - refusing operation", slot)
		}
		if err := b.eraseKey(slot, rw); err != nil {
			return &hintError{err, fmt.Sprintf("Failed to erase keyslot %d", slot)}
		}
	case o.OldSecret != nil:
		var erase []int
		for i := 0; i < luksNumSlots; i++ {
			ok, err := b.loadKey(i, oldPw, tmp, rw)
			if err != nil {
				return err
			}
			if ok {
				erase = append(erase, i)
			}
		}
		if len(erase) == 0 {
			return errors.New("No keyslots match given (old) password for erase operation")
		}
		if !force && len(erase) == b.activeSlots() {
			return errors.New("All the active keyslots match the (old) password that was given and erasing them will erase all the data in the image irreversibly - refusing operation")
		}
		for _, i := range erase {
			if err := b.eraseKey(i, rw); err != nil {
				return &hintError{err, fmt.Sprintf("Failed to erase keyslot %d", i)}
			}
		}
	default:
		return errors.New("To erase keyslot(s), either explicit keyslot index or the password currently contained in them must be given")
	}
	return nil
}

// ParseAmendOptions is block_crypto_amend_opts_init over qemu-img
// amend's options: get returns an option by its name without prefix
// ("state", "keyslot", "new-secret", "old-secret", "iter-time",
// "secret"); prefix ("encrypt." for qcow2) names them in the number
// errors QemuOpts reports.
func ParseAmendOptions(get func(name string) (string, bool), prefix string) (AmendOptions, error) {
	var o AmendOptions
	num := func(k string) (*uint64, error) {
		v, ok := get(k)
		if !ok {
			return nil, nil
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 0, 64)
		if err != nil {
			return nil, fmt.Errorf("Parameter '%s%s' expects a number", prefix, k)
		}
		return &n, nil
	}
	ks, err := num("keyslot")
	if err != nil {
		return o, err
	}
	if o.IterTime, err = num("iter-time"); err != nil {
		return o, err
	}
	st, ok := get("state")
	if !ok {
		return o, errors.New("Parameter 'state' is missing")
	}
	if st != "active" && st != "inactive" {
		return o, fmt.Errorf("Parameter 'state' does not accept value '%s'", st)
	}
	o.State = st
	if ks != nil {
		k := int64(*ks)
		o.Keyslot = &k
	}
	str := func(k string) *string {
		if v, ok := get(k); ok {
			return &v
		}
		return nil
	}
	o.NewSecret, o.OldSecret, o.Secret = str("new-secret"), str("old-secret"), str("secret")
	return o, nil
}
