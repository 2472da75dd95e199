package qcrypto

import (
	"bytes"
	"crypto/cipher"
	"encoding/hex"
	"testing"

	"github.com/goqio/goqio/image/qcrypto/internal/serpenttab"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSerpentVectors: NESSIE's known answers (sets 1, 3 and 4 of the
// verified test vectors, each key size) and nettle's Serpent-256 CBC
// answer, in the byte order QEMU's nettle backend uses.
func TestSerpentVectors(t *testing.T) {
	t.Parallel()
	for _, v := range []struct{ key, pt, ct string }{
		{"80000000000000000000000000000000", "00000000000000000000000000000000", "264e5481eff42a4606abda06c0bfda3d"},
		{"40000000000000000000000000000000", "00000000000000000000000000000000", "4a231b3bc727993407ac6ec8350e8524"},
		{"000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff", "563e2cf8740a27c164804560391e9b27"},
		{"800000000000000000000000000000000000000000000000", "00000000000000000000000000000000", "9e274ead9b737bb21efcfca548602689"},
		{"100000000000000000000000000000000000000000000000", "00000000000000000000000000000000", "bec1e37824cf721e5d87f6cb4ebfb9be"},
		{"000102030405060708090a0b0c0d0e0f1011121314151617", "00112233445566778899aabbccddeeff", "6ab816c82de53b93005008afa2246a02"},
		{"0101010101010101010101010101010101010101010101010101010101010101", "01010101010101010101010101010101", "ec9723b15b2a6489f84c4524fffc2748"},
		{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "00112233445566778899aabbccddeeff", "2868b7a2d28ecd5e4fdefac3c4330074"},
	} {
		c, err := newSerpent(unhex(t, v.key))
		if err != nil {
			t.Fatal(err)
		}
		pt, want := unhex(t, v.pt), unhex(t, v.ct)
		got := make([]byte, 16)
		c.Encrypt(got, pt)
		if !bytes.Equal(got, want) {
			t.Errorf("key %s: encrypt %x, want %x", v.key, got, want)
		}
		c.Decrypt(got, want)
		if !bytes.Equal(got, pt) {
			t.Errorf("key %s: decrypt %x, want %x", v.key, got, pt)
		}
	}
	c, err := newSerpent(unhex(t, "0123456789abcdeffedcba987654321000112233445566778899aabbccddeeff"))
	if err != nil {
		t.Fatal(err)
	}
	pt := unhex(t, "0000000000000000000000000000000011111111111111111111111111111111")
	got := make([]byte, len(pt))
	cipher.NewCBCEncrypter(c, unhex(t, "00112233445566778899aabbccddeeff")).CryptBlocks(got, pt)
	if want := unhex(t, "c170ed586cfda8fe084f01ef04475883b9eb25819813023f2938e97bdf4597c8"); !bytes.Equal(got, want) {
		t.Errorf("CBC: %x, want %x", got, want)
	}
	if _, err := newSerpent(make([]byte, 20)); err == nil {
		t.Error("a 20-byte key was taken")
	}
}

// TestSerpentSboxes: the generated S-box functions are the tables, all
// sixteen inputs at once (bit position p holds input p).
func TestSerpentSboxes(t *testing.T) {
	t.Parallel()
	for i, s := range serpenttab.Sboxes {
		var in [4]uint32
		for p := 0; p < 16; p++ {
			for j := range in {
				in[j] |= uint32(p>>j&1) << p
			}
		}
		x, y := in, in
		serpentSbox[i](&x)
		for p := 0; p < 16; p++ {
			got := 0
			for j := range x {
				got |= int(x[j]>>p&1) << j
			}
			if got != int(s[p]) {
				t.Fatalf("S%d(%d) = %d, want %d", i, p, got, s[p])
			}
		}
		serpentInvSbox[i](&x)
		if x != in {
			t.Fatalf("S%d: the inverse does not undo it", i)
		}
		serpentInvSbox[i](&y)
		serpentSbox[i](&y)
		if y != in {
			t.Fatalf("S%d: it does not undo the inverse", i)
		}
	}
}

func BenchmarkSerpent(b *testing.B) {
	c, _ := newSerpent(make([]byte, 32))
	buf := make([]byte, 16)
	b.SetBytes(16)
	for i := 0; i < b.N; i++ {
		c.Encrypt(buf, buf)
	}
}
