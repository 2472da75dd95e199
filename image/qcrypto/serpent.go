package qcrypto

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Serpent (Anderson, Biham, Knudsen; the AES finalist), as QEMU 7.2's
// nettle backend has it for LUKS volumes (serpent-128/192/256): 128-bit
// blocks, keys of 16, 24 or 32 bytes, in the byte order of nettle and
// of Linux's "serpent" (little-endian words; NESSIE's test vectors). No
// maintained Go module implements it, so it is here, written from the
// cipher's definition and checked against published test vectors
// (TestSerpentVectors) and against QEMU's images (tests/differential).
//
// The cipher works in bitslice mode: the block is four 32-bit words
// x0..x3, and an S-box maps, at every bit position i, the nibble
// (x3_i x2_i x1_i x0_i) to the nibble of the outputs. Each S-box is
// applied as its algebraic normal form (each output bit an XOR of
// products of input bits), which serpentgen derives from the tables of
// internal/serpenttab and writes out as straight-line code
// (serpent_sbox.go), so that no hand-derived boolean formula can be
// wrong; TestSerpentSboxes checks the generated functions against the
// same tables.

//go:generate go run ./internal/serpentgen

// serpentLT is Serpent's linear transformation.
func serpentLT(x *[4]uint32) {
	x0, x1, x2, x3 := x[0], x[1], x[2], x[3]
	x0 = bits.RotateLeft32(x0, 13)
	x2 = bits.RotateLeft32(x2, 3)
	x1 ^= x0 ^ x2
	x3 ^= x2 ^ x0<<3
	x1 = bits.RotateLeft32(x1, 1)
	x3 = bits.RotateLeft32(x3, 7)
	x0 ^= x1 ^ x3
	x2 ^= x3 ^ x1<<7
	x0 = bits.RotateLeft32(x0, 5)
	x2 = bits.RotateLeft32(x2, 22)
	x[0], x[1], x[2], x[3] = x0, x1, x2, x3
}

// serpentInvLT undoes serpentLT, step by step backwards.
func serpentInvLT(x *[4]uint32) {
	x0, x1, x2, x3 := x[0], x[1], x[2], x[3]
	x2 = bits.RotateLeft32(x2, -22)
	x0 = bits.RotateLeft32(x0, -5)
	x2 ^= x3 ^ x1<<7
	x0 ^= x1 ^ x3
	x3 = bits.RotateLeft32(x3, -7)
	x1 = bits.RotateLeft32(x1, -1)
	x3 ^= x2 ^ x0<<3
	x1 ^= x0 ^ x2
	x2 = bits.RotateLeft32(x2, -3)
	x0 = bits.RotateLeft32(x0, -13)
	x[0], x[1], x[2], x[3] = x0, x1, x2, x3
}

// serpentCipher is Serpent with an expanded key: 33 round keys.
type serpentCipher struct {
	k [33][4]uint32
}

// newSerpent expands a 16, 24 or 32 byte key: shorter keys are padded
// with a 1 bit and zeros to 256 bits, the 132 prekey words come from the
// recurrence with the golden ratio, and round key i is S-box (3-i) mod 8
// of four of them.
func newSerpent(key []byte) (cipher.Block, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("serpent: invalid key length %d", len(key))
	}
	var kb [32]byte
	copy(kb[:], key)
	if len(key) < 32 {
		kb[len(key)] = 1
	}
	var w [8 + 132]uint32
	for i := 0; i < 8; i++ {
		w[i] = binary.LittleEndian.Uint32(kb[4*i:])
	}
	for i := 8; i < len(w); i++ {
		w[i] = bits.RotateLeft32(w[i-8]^w[i-5]^w[i-3]^w[i-1]^0x9e3779b9^uint32(i-8), 11)
	}
	c := &serpentCipher{}
	for i := range c.k {
		c.k[i] = [4]uint32{w[8+4*i], w[9+4*i], w[10+4*i], w[11+4*i]}
		serpentSbox[(3-i)&7](&c.k[i])
	}
	return c, nil
}

func (c *serpentCipher) BlockSize() int { return 16 }

func load4(b []byte) [4]uint32 {
	_ = b[15]
	return [4]uint32{binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]),
		binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint32(b[12:])}
}

func store4(b []byte, x [4]uint32) {
	_ = b[15]
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
}

func xorKey(x *[4]uint32, k *[4]uint32) {
	x[0] ^= k[0]
	x[1] ^= k[1]
	x[2] ^= k[2]
	x[3] ^= k[3]
}

// Encrypt is 32 rounds of key mixing, S-box S(r mod 8) and the linear
// transformation, the last one with a final key in its place.
func (c *serpentCipher) Encrypt(dst, src []byte) {
	x := load4(src)
	k := &c.k
	for r := 0; r < 32; r += 8 {
		xorKey(&x, &k[r])
		sbox0(&x)
		serpentLT(&x)
		xorKey(&x, &k[r+1])
		sbox1(&x)
		serpentLT(&x)
		xorKey(&x, &k[r+2])
		sbox2(&x)
		serpentLT(&x)
		xorKey(&x, &k[r+3])
		sbox3(&x)
		serpentLT(&x)
		xorKey(&x, &k[r+4])
		sbox4(&x)
		serpentLT(&x)
		xorKey(&x, &k[r+5])
		sbox5(&x)
		serpentLT(&x)
		xorKey(&x, &k[r+6])
		sbox6(&x)
		serpentLT(&x)
		xorKey(&x, &k[r+7])
		sbox7(&x)
		if r < 24 {
			serpentLT(&x)
		}
	}
	xorKey(&x, &k[32])
	store4(dst, x)
}

// Decrypt runs Encrypt's rounds backwards with the inverse S-boxes.
func (c *serpentCipher) Decrypt(dst, src []byte) {
	x := load4(src)
	k := &c.k
	xorKey(&x, &k[32])
	for r := 24; r >= 0; r -= 8 {
		if r < 24 {
			serpentInvLT(&x)
		}
		invSbox7(&x)
		xorKey(&x, &k[r+7])
		serpentInvLT(&x)
		invSbox6(&x)
		xorKey(&x, &k[r+6])
		serpentInvLT(&x)
		invSbox5(&x)
		xorKey(&x, &k[r+5])
		serpentInvLT(&x)
		invSbox4(&x)
		xorKey(&x, &k[r+4])
		serpentInvLT(&x)
		invSbox3(&x)
		xorKey(&x, &k[r+3])
		serpentInvLT(&x)
		invSbox2(&x)
		xorKey(&x, &k[r+2])
		serpentInvLT(&x)
		invSbox1(&x)
		xorKey(&x, &k[r+1])
		serpentInvLT(&x)
		invSbox0(&x)
		xorKey(&x, &k[r])
	}
	store4(dst, x)
}
