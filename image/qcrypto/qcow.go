package qcrypto

import "fmt"

// The legacy qcow/qcow2 AES scheme (crypto/block-qcow.c): AES-128-CBC
// with plain64 IVs, the key the password's first 16 bytes (zero
// padded). It has no header.

const qcowSectorSize = 512

func qcowInit(o OpenOptions) (*Block, error) {
	pw, err := password(o.Lookup, o.KeySecret)
	if err != nil {
		return nil, err
	}
	var key [16]byte
	copy(key[:], pw)
	ivg := &ivgen{alg: "plain64"}
	sc, err := newSectorCipher("aes-128", "cbc", key[:], ivg)
	if err != nil {
		return nil, err
	}
	return &Block{Format: "qcow", sectorSize: qcowSectorSize, cipherAlg: "aes-128", cipherMode: "cbc",
		ivgenAlg: "plain64", sc: sc, secret: o.KeySecret}, nil
}

// openQcow is qcrypto_block_qcow_open.
func openQcow(o OpenOptions) (*Block, error) {
	if o.NoIO {
		return &Block{Format: "qcow", sectorSize: qcowSectorSize}, nil
	}
	if o.KeySecret == "" {
		return nil, fmt.Errorf("Parameter '%skey-secret' is required for cipher", o.Prefix)
	}
	return qcowInit(o)
}

// createQcow is qcrypto_block_qcow_create.
func createQcow(o CreateOptions) (*Block, error) {
	if o.KeySecret == "" {
		return nil, fmt.Errorf("Parameter '%skey-secret' is required for cipher", o.Prefix)
	}
	return qcowInit(OpenOptions{Format: "qcow", KeySecret: o.KeySecret, Prefix: o.Prefix, Lookup: o.Lookup})
}
