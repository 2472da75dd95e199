package qcrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	//lint:ignore SA1019 LUKS volumes use it; QEMU supports it
	"golang.org/x/crypto/cast5"
	//lint:ignore SA1019 LUKS volumes use it; QEMU supports it
	"golang.org/x/crypto/twofish"
)

// Cipher algorithms, modes and IV generators are QEMU's QAPI enums
// (QCryptoCipherAlgorithm, QCryptoCipherMode, QCryptoIVGenAlgorithm), by
// their names.

// cipherAlg is one QCryptoCipherAlgorithm: its name, key and block length.
type cipherAlg struct {
	name     string
	keyLen   int
	blockLen int
}

// CipherAlgs are QEMU 7.2's cipher algorithm names, in QAPI order.
var CipherAlgs = []string{"aes-128", "aes-192", "aes-256", "des", "3des", "cast5-128",
	"serpent-128", "serpent-192", "serpent-256", "twofish-128", "twofish-192", "twofish-256"}

// CipherModes, IVGenAlgs and HashAlgs are the other enums.
var (
	CipherModes = []string{"ecb", "cbc", "xts", "ctr"}
	IVGenAlgs   = []string{"plain", "plain64", "essiv"}
	HashAlgs    = []string{"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "ripemd160"}
)

func lookupAlg(name string) (cipherAlg, bool) {
	switch name {
	case "aes-128", "serpent-128", "twofish-128":
		return cipherAlg{name, 16, 16}, true
	case "aes-192", "serpent-192", "twofish-192":
		return cipherAlg{name, 24, 16}, true
	case "aes-256", "serpent-256", "twofish-256":
		return cipherAlg{name, 32, 16}, true
	case "cast5-128":
		return cipherAlg{name, 16, 8}, true
	case "des":
		return cipherAlg{name, 8, 8}, true
	case "3des":
		return cipherAlg{name, 24, 8}, true
	}
	return cipherAlg{}, false
}

// newBlock is the block cipher of alg with key (qcrypto_cipher_new's
// backend part).
func newBlock(alg string, key []byte) (cipher.Block, error) {
	switch alg {
	case "aes-128", "aes-192", "aes-256":
		return aes.NewCipher(key)
	case "cast5-128":
		return cast5.NewCipher(key)
	case "twofish-128", "twofish-192", "twofish-256":
		return twofish.NewCipher(key)
	case "serpent-128", "serpent-192", "serpent-256":
		return newSerpent(key)
	}
	// des and 3des: LUKS has no name for them (QEMU refuses them before
	// any cipher is made: "Algorithm 'des' not supported")
	return nil, fmt.Errorf("Unsupported cipher algorithm %s", alg)
}

// ivgen is QEMU's QCryptoIVGen: the IV of a sector.
type ivgen struct {
	alg   string       // plain, plain64, essiv
	essiv cipher.Block // essiv's ECB cipher
}

// iv writes the IV of sector into iv (len niv), as QEMU's
// qcrypto_ivgen_calculate.
func (g *ivgen) iv(sector uint64, iv []byte) {
	clear(iv)
	switch g.alg {
	case "plain":
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(sector))
		copy(iv, b[:])
	case "plain64":
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], sector)
		copy(iv, b[:])
	case "essiv":
		data := make([]byte, g.essiv.BlockSize())
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], sector)
		copy(data, b[:])
		g.essiv.Encrypt(data, data)
		copy(iv, data)
	}
}

// newIVGen is qcrypto_ivgen_new: for essiv, the salt is the hash of key,
// cut to the key length of the ivgen cipher.
func newIVGen(alg, ivCipher, hash string, key []byte) (*ivgen, error) {
	g := &ivgen{alg: alg}
	if alg != "essiv" {
		return g, nil
	}
	h := hashFunc(hash)
	if h == nil {
		return nil, fmt.Errorf("Unknown hash algorithm %s", hash)
	}
	hh := h()
	hh.Write(key)
	salt := hh.Sum(nil)
	ca, _ := lookupAlg(ivCipher)
	salt = salt[:min(len(salt), ca.keyLen)]
	b, err := newBlock(ivCipher, salt)
	if err != nil {
		return nil, err
	}
	g.essiv = b
	return g, nil
}

// sectorCipher en/decrypts sectors: QEMU's QCryptoCipher with the IV
// generator reset at every sector (do_qcrypto_block_cipher_encdec).
// It is safe for concurrent use.
type sectorCipher struct {
	mode  string
	block cipher.Block // ecb, cbc, ctr; xts: the data key
	tweak cipher.Block // xts: the tweak key
	ivg   *ivgen
	niv   int
}

// newSectorCipher is qcrypto_cipher_new and the block's ivgen; key is
// the whole key (both halves for xts).
func newSectorCipher(alg, mode string, key []byte, ivg *ivgen) (*sectorCipher, error) {
	ca, ok := lookupAlg(alg)
	if !ok {
		return nil, fmt.Errorf("Cipher algorithm %s out of range", alg)
	}
	c := &sectorCipher{mode: mode, ivg: ivg}
	switch mode {
	case "xts":
		if ca.blockLen != 16 {
			return nil, fmt.Errorf("Unsupported cipher mode %s", mode)
		}
		if len(key)%2 != 0 {
			return nil, errors.New("XTS cipher key length should be a multiple of 2")
		}
		if len(key)/2 != ca.keyLen {
			return nil, fmt.Errorf("Cipher key length %d should be %d", len(key), ca.keyLen*2)
		}
		var err error
		if c.block, err = newBlock(alg, key[:len(key)/2]); err != nil {
			return nil, err
		}
		if c.tweak, err = newBlock(alg, key[len(key)/2:]); err != nil {
			return nil, err
		}
		c.niv = 16
	case "ecb", "cbc", "ctr":
		if len(key) != ca.keyLen {
			return nil, fmt.Errorf("Cipher key length %d should be %d", len(key), ca.keyLen)
		}
		b, err := newBlock(alg, key)
		if err != nil {
			return nil, err
		}
		c.block = b
		if mode != "ecb" {
			c.niv = ca.blockLen
		}
	default:
		return nil, fmt.Errorf("Unsupported cipher mode %s", mode)
	}
	return c, nil
}

// cryptSector en/decrypts one sector (len a multiple of the block size).
func (c *sectorCipher) cryptSector(buf []byte, sector uint64, encrypt bool) {
	var ivb [16]byte
	iv := ivb[:c.niv]
	if c.niv > 0 {
		c.ivg.iv(sector, iv)
	}
	switch c.mode {
	case "xts":
		xtsSector(c.block, c.tweak, iv, buf, encrypt)
	case "cbc":
		if encrypt {
			cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(buf, buf)
		} else {
			cipher.NewCBCDecrypter(c.block, iv).CryptBlocks(buf, buf)
		}
	case "ctr":
		cipher.NewCTR(c.block, iv).XORKeyStream(buf, buf)
	case "ecb":
		bs := c.block.BlockSize()
		for i := 0; i+bs <= len(buf); i += bs {
			if encrypt {
				c.block.Encrypt(buf[i:i+bs], buf[i:i+bs])
			} else {
				c.block.Decrypt(buf[i:i+bs], buf[i:i+bs])
			}
		}
	}
}

// xtsSector is XTS (IEEE P1619) on one sector of at most 512 bytes,
// its tweak the encrypted IV: the same as x/crypto/xts for plain64 IVs
// (the test checks it), but with the tweaks of the sector computed
// first and applied with vectorised XORs, which halves its cost, and
// with any IV (ESSIV's is a whole block).
func xtsSector(k1, k2 cipher.Block, iv []byte, buf []byte, encrypt bool) {
	var tw [512]byte
	n := len(buf) &^ 15
	var t [16]byte
	k2.Encrypt(t[:], iv)
	lo, hi := binary.LittleEndian.Uint64(t[:8]), binary.LittleEndian.Uint64(t[8:])
	for i := 0; i < n; i += 16 {
		binary.LittleEndian.PutUint64(tw[i:], lo)
		binary.LittleEndian.PutUint64(tw[i+8:], hi)
		// multiply the tweak by x in GF(2^128)
		carry := hi >> 63
		hi = hi<<1 | lo>>63
		lo = lo<<1 ^ carry*0x87
	}
	b := buf[:n]
	subtle.XORBytes(b, b, tw[:n])
	for i := 0; i < n; i += 16 {
		if encrypt {
			k1.Encrypt(b[i:i+16], b[i:i+16])
		} else {
			k1.Decrypt(b[i:i+16], b[i:i+16])
		}
	}
	subtle.XORBytes(b, b, tw[:n])
}

// crypt en/decrypts len(buf) bytes (a multiple of sectorSize) starting
// at sector, in parallel for large buffers.
func (c *sectorCipher) crypt(buf []byte, sector uint64, sectorSize int, encrypt bool) {
	n := (len(buf) + sectorSize - 1) / sectorSize // a short last sector is cut (key material)
	const perWorker = 64                          // sectors: below this the goroutines cost more than they save
	workers := min(runtime.GOMAXPROCS(0), n/perWorker)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			c.cryptSector(buf[i*sectorSize:min((i+1)*sectorSize, len(buf))], sector+uint64(i), encrypt)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, n)
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				c.cryptSector(buf[i*sectorSize:min((i+1)*sectorSize, len(buf))], sector+uint64(i), encrypt)
			}
		}()
	}
	wg.Wait()
}
