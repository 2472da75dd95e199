package qcow2

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/goqio/goqio/image/qcrypto"
)

func init() {
	// no PBKDF2 benchmark in tests
	qcrypto.IterationsPerSecond = func(string) uint64 { return 100000 }
}

func testSecrets(id string) ([]byte, error) {
	switch id {
	case "sec0":
		return []byte("123456"), nil
	case "sec1":
		return []byte("abcdef"), nil
	}
	return nil, fmt.Errorf("No secret with id '%s'", id)
}

func openEncrypted(t *testing.T, path, secret string, ro bool) (*Driver, error) {
	t.Helper()
	return Open(path, Options{ReadOnly: ro, Secrets: testSecrets, Runtime: RuntimeOptions{EncryptKeySecret: secret}})
}

// TestEncryptedRoundTrip: data written through an encrypted image reads
// back, is not stored in the clear, and survives a COW of a partial
// cluster; key slots are added and erased through AmendEncryption.
func TestEncryptedRoundTrip(t *testing.T) {
	for _, format := range []string{"luks", "qcow"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "enc.qcow2")
			it := uint64(10)
			o := CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16,
				Encrypt: &qcrypto.CreateOptions{Format: format, KeySecret: "sec0", IterTime: &it, Lookup: testSecrets}}
			if err := Create(path, o); err != nil {
				t.Fatal(err)
			}
			if _, err := openEncrypted(t, path, "", false); err == nil || err.Error() != "Parameter 'encrypt.key-secret' is required for cipher" {
				t.Fatalf("no key: %v", err)
			}
			d, err := openEncrypted(t, path, "sec0", false)
			if err != nil {
				t.Fatal(err)
			}
			if d.Limits().RequestAlignment != 512 {
				t.Fatal("encrypted images take sectors")
			}
			data := bytes.Repeat([]byte{0x5a}, 4096)
			if _, err := d.WriteAt(data, 8192); err != nil {
				t.Fatal(err)
			}
			if _, err := d.WriteAt(data[:512], 70*1024); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 65536)
			if _, err := d.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			want := make([]byte, 65536)
			copy(want[8192:], data)
			if !bytes.Equal(got, want) {
				t.Fatal("read back differs")
			}
			e, err := d.BlockStatus(0, 65536, false)
			if err != nil || e.Offset != 0 || e.File != "" {
				t.Fatalf("block status shows a host offset: %+v %v", e, err)
			}
			if format == "luks" {
				if err := d.AmendEncryption(qcrypto.AmendOptions{State: "active", NewSecret: ptr("sec1"), IterTime: &it}, false); err != nil {
					t.Fatal(err)
				}
				if err := d.AmendEncryption(qcrypto.AmendOptions{State: "inactive", OldSecret: ptr("sec0")}, false); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			raw, err := Open(path, Options{ReadOnly: true, NoIO: true})
			if err != nil {
				t.Fatal(err)
			}
			if !raw.Encrypted() || raw.SpecificInfo().Get("encrypt") == nil {
				t.Fatal("no encrypt info without the key")
			}
			raw.Close()
			key := "sec0"
			if format == "luks" {
				key = "sec1"
				if _, err := openEncrypted(t, path, "sec0", true); err == nil || err.Error() != "Invalid password, cannot unlock any keyslot" {
					t.Fatalf("erased key: %v", err)
				}
			}
			d, err = openEncrypted(t, path, key, true)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			clear(got)
			if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read after reopen: %v", err)
			}
			// the file holds ciphertext
			host := make([]byte, d.file.Size())
			if err := d.file.ReadAt(host, 0); err != nil || bytes.Contains(host, data[:64]) {
				t.Fatal("clear text in the file")
			}
		})
	}
}

func ptr(s string) *string { return &s }
