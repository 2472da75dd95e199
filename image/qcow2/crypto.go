package qcow2

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qcow2/internal/layout"
	"github.com/goqio/goqio/image/qcrypto"
	"github.com/goqio/goqio/image/qdict"
)

// Encryption (QEMU's crypt_method header field and the crypto header
// extension): crypt_method 1 is the legacy AES-CBC scheme (no header;
// sectors are encrypted with their guest offset as IV), 2 is LUKS (the
// LUKS header and key material in the clusters the extension points
// at, sectors encrypted with their host offset as IV). Data clusters
// hold ciphertext; zero clusters read as zeroes and compressed clusters
// are stored in the clear, as QEMU stores them. Encryption works on
// 512-byte sectors: the request alignment is 512.

const (
	cryptNone = 0
	cryptAES  = 1
	cryptLUKS = 2
	// maxCryptClusters is QCOW_MAX_CRYPT_CLUSTERS: the most one write
	// round encrypts.
	maxCryptClusters = 32
)

// cryptoState is the encryption part of an open image.
type cryptoState struct {
	crypto *qcrypto.Block
	// the crypto header extension (offset 0: none)
	hdrOff, hdrLen uint64
	ready          bool // the main extension pass: open the crypto context
}

// cryptHeaderIO is qcow2_crypto_hdr_read_func/write_func: the LUKS
// header region of the image file.
type cryptHeaderIO struct{ d *Driver }

func (c cryptHeaderIO) ReadAt(p []byte, off int64) error {
	if uint64(off)+uint64(len(p)) > c.d.cs.hdrLen {
		return errors.New("Request for data outside of extension header")
	}
	if err := c.d.file.ReadAt(p, int64(c.d.cs.hdrOff)+off); err != nil {
		return fmt.Errorf("Could not read encryption header: %s", image.StrerrorOf(err))
	}
	return nil
}

func (c cryptHeaderIO) WriteAt(p []byte, off int64) error {
	if uint64(off)+uint64(len(p)) > c.d.cs.hdrLen {
		return errors.New("Request for data outside of extension header")
	}
	if err := c.d.file.WriteAt(p, int64(c.d.cs.hdrOff)+off, false); err != nil {
		return fmt.Errorf("Could not read encryption header: %s", image.StrerrorOf(err))
	}
	return nil
}

// checkEncryptOptions is the encryption part of
// qcow2_update_options_prepare.
func (d *Driver) checkEncryptOptions(r RuntimeOptions) error {
	f := r.EncryptFormat
	switch d.hdr.CryptMethod {
	case cryptNone:
		if f != "" {
			return fmt.Errorf("No encryption in image header, but options specified format '%s'", f)
		}
	case cryptAES:
		if f != "" && f != "aes" {
			return fmt.Errorf("Header reported 'aes' encryption format but options specify '%s'", f)
		}
	case cryptLUKS:
		if f != "" && f != "luks" {
			return fmt.Errorf("Header reported 'luks' encryption format but options specify '%s'", f)
		}
	default:
		return fmt.Errorf("Unsupported encryption method %d", d.hdr.CryptMethod)
	}
	return nil
}

func (d *Driver) cryptoOpenOptions(format string) qcrypto.OpenOptions {
	return qcrypto.OpenOptions{Format: format, KeySecret: d.opts.Runtime.EncryptKeySecret, Prefix: "encrypt.",
		NoIO: d.opts.NoIO, Lookup: d.opts.Secrets}
}

// readCryptoExt is the QCOW2_EXT_MAGIC_CRYPTO_HEADER case of
// qcow2_read_extensions: the LUKS header is opened (and unlocked).
func (d *Driver) readCryptoExt(data []byte) error {
	if !d.cs.ready {
		return nil
	}
	if d.hdr.CryptMethod != cryptLUKS {
		return errors.New("CRYPTO header extension only expected with LUKS encryption method")
	}
	ext, ok := layout.DecodeCryptoExt(data)
	if !ok {
		return fmt.Errorf("CRYPTO header extension size %d, but expected size 16", len(data))
	}
	d.cs.hdrOff, d.cs.hdrLen = ext.Offset, ext.Length
	if d.cs.hdrOff%uint64(d.clusterSize) != 0 {
		return fmt.Errorf("Encryption header offset '%d' is not a multiple of cluster size '%d'", d.cs.hdrOff, d.clusterSize)
	}
	b, err := qcrypto.Open(d.cryptoOpenOptions("luks"), cryptHeaderIO{d})
	if err != nil {
		return err
	}
	d.cs.crypto = b
	return nil
}

// openCryptoLate is the check after the data file in qcow2_do_open:
// AES needs no header; LUKS without its extension is refused.
func (d *Driver) openCryptoLate() error {
	if d.hdr.CryptMethod == cryptNone || d.cs.crypto != nil {
		return nil
	}
	if d.hdr.CryptMethod == cryptAES {
		b, err := qcrypto.Open(d.cryptoOpenOptions("qcow"), nil)
		if err != nil {
			return err
		}
		d.cs.crypto = b
		return nil
	}
	if !d.opts.NoIO {
		return fmt.Errorf("Missing CRYPTO header for crypt method %d", d.hdr.CryptMethod)
	}
	return nil
}

// encrypted reports whether data clusters are encrypted (bs->encrypted).
func (d *Driver) encrypted() bool { return d.hdr.CryptMethod != cryptNone }

// Encrypted reports whether the image is encrypted (qemu-img info's
// "encrypted: yes").
func (d *Driver) Encrypted() bool { return d.encrypted() }

// cryptOffset is the offset whose sectors number the IVs: the host
// offset for LUKS, the guest offset for AES (crypt_physical_offset).
func (d *Driver) cryptOffset(host, guest int64) int64 {
	if d.hdr.CryptMethod == cryptAES {
		return guest
	}
	return host
}

// decryptData is qcow2_co_decrypt on data read from host (guest offset
// guest).
func (d *Driver) decryptData(p []byte, host, guest int64) error {
	if d.cs.crypto == nil || !d.cs.crypto.HasKey() {
		return errors.New("qcow2: no encryption key")
	}
	if err := d.cs.crypto.Decrypt(d.cryptOffset(host, guest), p); err != nil {
		return syscall.EIO
	}
	return nil
}

// encryptData is qcow2_co_encrypt into a copy of p (the caller's buffer
// stays clear text).
func (d *Driver) encryptData(p []byte, host, guest int64) ([]byte, error) {
	if d.cs.crypto == nil || !d.cs.crypto.HasKey() {
		return nil, errors.New("qcow2: no encryption key")
	}
	q := append([]byte(nil), p...)
	if err := d.cs.crypto.Encrypt(d.cryptOffset(host, guest), q); err != nil {
		return nil, syscall.EIO
	}
	return q, nil
}

// cryptoExt is the crypto header extension's data, nil when none.
func (d *Driver) cryptoExt() []byte {
	if d.cs.hdrOff == 0 {
		return nil
	}
	return layout.CryptoExt{Offset: d.cs.hdrOff, Length: d.cs.hdrLen}.Encode()
}

// encryptInfo is the "encrypt" member of the format-specific info
// (qcrypto_block_get_info), nil when the image is not encrypted or its
// header could not be read.
func (d *Driver) encryptInfo() *qdict.Dict {
	if d.cs.crypto == nil {
		return nil
	}
	return d.cs.crypto.Info()
}

func (d *Driver) encryptInfoLines() []string {
	if d.cs.crypto == nil {
		return nil
	}
	return d.cs.crypto.InfoLines()
}

// setUpEncryption is qcow2_set_up_encryption: the LUKS header in new
// clusters (zero-filled), or just the AES method in the header.
func (d *Driver) setUpEncryption(o qcrypto.CreateOptions) error {
	method := uint32(cryptLUKS)
	switch o.Format {
	case "luks":
	case "qcow":
		method = cryptAES
	default:
		return errors.New("Crypto format not supported in qcow2")
	}
	d.hdr.CryptMethod = method
	o.Prefix = "encrypt."
	b, err := qcrypto.Create(o, func(n int64) (qcrypto.HeaderIO, error) {
		off, err := d.allocClusters(n)
		if err != nil {
			return nil, fmt.Errorf("Cannot allocate cluster for LUKS header size %d: %s", n, image.StrerrorOf(err))
		}
		d.cs.hdrOff, d.cs.hdrLen = uint64(off), uint64(n)
		cl := (n + d.clusterSize - 1) &^ (d.clusterSize - 1)
		if err := d.file.WriteZeroes(off, cl, 0, false); err != nil {
			return nil, fmt.Errorf("Could not zero fill encryption header: %s", image.StrerrorOf(err))
		}
		return cryptHeaderIO{d}, nil
	})
	if err != nil {
		return err
	}
	d.cs.crypto = b
	if err := d.updateHeader(); err != nil {
		return fmt.Errorf("Could not write encryption header: %s", image.StrerrorOf(err))
	}
	return nil
}

// AmendEncryptionOptions is the encryption part of qcow2_amend_options
// for qemu-img amend: opts are the encrypt.* options with the prefix
// removed ("state", "keyslot", "new-secret", "old-secret", "iter-time",
// "secret"), force is --force. It refuses images without encryption
// or with legacy AES, with QEMU's messages.
func (d *Driver) AmendEncryptionOptions(opts map[string]string, force bool) error {
	if d.cs.crypto == nil {
		return errors.New("Can't amend encryption options - encryption not present")
	}
	if d.hdr.CryptMethod != cryptLUKS {
		return errors.New("Only LUKS encryption options can be amended")
	}
	o, err := qcrypto.ParseAmendOptions(func(k string) (string, bool) { v, ok := opts[k]; return v, ok }, "encrypt.")
	if err != nil {
		return err
	}
	return d.AmendEncryption(o, force)
}

// AmendEncryption changes the LUKS key slots of an encrypted image
// (qcow2_amend_options with encrypt.* options: qcrypto_block_amend_options
// on the image's header). The image must have been opened with its key
// (encrypt.key-secret) and read-write. force is qemu-img amend's --force.
func (d *Driver) AmendEncryption(o qcrypto.AmendOptions, force bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hdr.CryptMethod != cryptLUKS || d.cs.crypto == nil {
		return errors.New("Amending encryption options is only supported for LUKS encrypted images")
	}
	if d.opts.ReadOnly {
		return errors.New("Cannot amend a read-only image")
	}
	if o.Lookup == nil {
		o.Lookup = d.opts.Secrets
	}
	if err := d.cs.crypto.Amend(o, force, cryptHeaderIO{d}); err != nil {
		return err
	}
	return d.file.Flush()
}

// HasZeroInit is qcow2_has_zero_init: a new image reads as zeroes
// unless it is preallocated (its first L1 entry set) and encrypted (its
// preallocated clusters then hold noise) or its data file does not.
// dataFileZero is the data file's answer.
func (d *Driver) HasZeroInit(dataFileZero bool) bool {
	d.mu.Lock()
	preallocated := len(d.l1) > 0 && d.l1[0] != 0
	d.mu.Unlock()
	switch {
	case !preallocated:
		return true
	case d.encrypted():
		return false
	}
	return dataFileZero
}
