package qcrypto

import (
	"bytes"
	"crypto/aes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/pbkdf2"
	"golang.org/x/crypto/xts"
)

func TestMain(m *testing.M) {
	// no PBKDF2 benchmark in tests: 1000 iterations per 10 ms
	IterationsPerSecond = func(string) uint64 { return 100000 }
	os.Exit(m.Run())
}

// memIO is a HeaderIO over a byte slice that grows.
type memIO struct{ b []byte }

func (m *memIO) ReadAt(p []byte, off int64) error {
	if off+int64(len(p)) > int64(len(m.b)) {
		return errors.New("Could not read encryption header: Input/output error")
	}
	copy(p, m.b[off:])
	return nil
}

func (m *memIO) WriteAt(p []byte, off int64) error {
	if n := off + int64(len(p)); n > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, n-int64(len(m.b)))...)
	}
	copy(m.b[off:], p)
	return nil
}

func secrets(kv ...string) Lookup {
	return func(id string) ([]byte, error) {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == id {
				return []byte(kv[i+1]), nil
			}
		}
		return nil, fmt.Errorf("No secret with id '%s'", id)
	}
}

func u64(v uint64) *uint64 { return &v }

func create(t *testing.T, o CreateOptions) (*Block, *memIO) {
	t.Helper()
	m := &memIO{}
	if o.Format == "" {
		o.Format = "luks"
	}
	if o.KeySecret == "" {
		o.KeySecret = "sec0"
	}
	if o.Lookup == nil {
		o.Lookup = secrets("sec0", "123456", "sec1", "other")
	}
	if o.IterTime == nil {
		o.IterTime = u64(10)
	}
	b, err := Create(o, func(n int64) (HeaderIO, error) { m.b = make([]byte, n); return m, nil })
	if err != nil {
		t.Fatal(err)
	}
	return b, m
}

func TestRoundTrip(t *testing.T) {
	// where QEMU 7.2 aborts: key material of part of a sector
	for _, alg := range []string{"aes-192", "serpent-192", "twofish-192"} {
		_, err := Create(CreateOptions{Format: "luks", CipherAlg: alg, CipherMode: "cbc", KeySecret: "s",
			Lookup: secrets("s", "x"), IterTime: u64(10)}, func(n int64) (HeaderIO, error) { return &memIO{b: make([]byte, n)}, nil })
		if err == nil || !strings.Contains(err.Error(), "is not a whole number of 512-byte sectors") {
			t.Errorf("%s-cbc: %v", alg, err)
		}
	}
	for _, c := range []struct{ alg, mode, ivgen, hash string }{
		{"", "", "", ""},
		{"aes-128", "cbc", "essiv", "sha1"},
		{"aes-192", "xts", "plain", "sha512"},
		// (serpent in xts and with longer keys: tests/differential,
		// against QEMU's images; it is slow under -race)
		{"serpent-128", "cbc", "essiv", "sha1"},
		{"aes-256", "ecb", "plain64", "ripemd160"},
		{"twofish-128", "xts", "plain64", "sha224"},
		{"cast5-128", "cbc", "plain64", "md5"},
		{"aes-256", "xts", "essiv", "sha384"},
		{"aes-128", "ctr", "plain64", "sha256"},
	} {
		t.Run(c.alg+"-"+c.mode+"-"+c.ivgen+"-"+c.hash, func(t *testing.T) {
			t.Parallel()
			b, m := create(t, CreateOptions{CipherAlg: c.alg, CipherMode: c.mode, IVGenAlg: c.ivgen, HashAlg: c.hash})
			data := bytes.Repeat([]byte("goqio encrypts!!"), 256)
			enc := append([]byte(nil), data...)
			if err := b.Encrypt(4096, enc); err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(enc, data) {
				t.Fatal("not encrypted")
			}
			b2, err := Open(OpenOptions{Format: "luks", KeySecret: "sec0", Lookup: secrets("sec0", "123456")}, m)
			if err != nil {
				t.Fatal(err)
			}
			if err := b2.Decrypt(4096, enc); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, data) {
				t.Fatal("decrypted data differs")
			}
			_, err = Open(OpenOptions{Format: "luks", KeySecret: "sec1", Lookup: secrets("sec1", "wrong")}, m)
			if err == nil || err.Error() != "Invalid password, cannot unlock any keyslot" {
				t.Fatalf("wrong password: %v", err)
			}
		})
	}
}

func TestCreateErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		o    CreateOptions
		want string
	}{
		{CreateOptions{CipherAlg: "des"}, "Algorithm 'des' not supported"},
		{CreateOptions{CipherAlg: "cast5-128", CipherMode: "xts"}, "Unsupported cipher mode xts"},
		{CreateOptions{CipherAlg: "foo"}, "Parameter 'cipher-alg' does not accept value 'foo'"},
		{CreateOptions{KeySecret: "nope"}, "No secret with id 'nope'"},
		{CreateOptions{IVGenAlg: "essiv", IVGenHashAlg: "sha512", CipherAlg: "aes-128"}, "No AES cipher with key size 64 available"},
	} {
		o := c.o
		o.Format = "luks"
		if o.KeySecret == "" {
			o.KeySecret = "sec0"
		}
		o.Lookup = secrets("sec0", "x")
		o.IterTime = u64(10)
		_, err := Create(o, func(n int64) (HeaderIO, error) { return &memIO{b: make([]byte, n)}, nil })
		if err == nil || err.Error() != c.want {
			t.Errorf("%+v: got %v, want %q", c.o, err, c.want)
		}
	}
}

// TestDamagedHeaders: each damage gets QEMU's message, never a panic.
func TestDamagedHeaders(t *testing.T) {
	t.Parallel()
	_, m := create(t, CreateOptions{})
	put32 := func(b []byte, off int, v uint32) {
		b[off], b[off+1], b[off+2], b[off+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	}
	for _, c := range []struct {
		name   string
		damage func(b []byte)
		want   string
	}{
		{"magic", func(b []byte) { b[0] = 'X' }, "Volume is not in LUKS format"},
		{"version", func(b []byte) { b[7] = 2 }, "LUKS version 2 is not supported"},
		{"cipher name", func(b []byte) { copy(b[8:40], bytes.Repeat([]byte("a"), 32)) }, "LUKS header cipher name is not NUL terminated"},
		{"payload", func(b []byte) { put32(b, 104, 1) }, "LUKS payload is overlapping with the header"},
		{"mk iters", func(b []byte) { put32(b, 164, 0) }, "LUKS key iteration count is zero"},
		{"huge mk iters", func(b []byte) { put32(b, 164, 0xffffffff) }, "LUKS key iteration count 4294967295 is too large (goqio allows at most 134217728)"},
		{"stripes", func(b []byte) { put32(b, 208+48*3+44, 0x7fffffff) }, "Keyslot 3 is corrupted (stripes 2147483647 != 4000)"},
		{"state", func(b []byte) { put32(b, 208+48*1, 7) }, "Keyslot 1 state (active/disable) is corrupted"},
		{"slot iters zero", func(b []byte) { put32(b, 208+4, 0) }, "Keyslot 0 iteration count is zero"},
		{"huge slot iters", func(b []byte) { put32(b, 208+4, 0xfffffff0) }, "Keyslot 0 iteration count 4294967280 is too large (goqio allows at most 134217728)"},
		{"slot in header", func(b []byte) { put32(b, 208+40, 1) }, "Keyslot 0 is overlapping with the LUKS header"},
		{"slot in payload", func(b []byte) { put32(b, 208+48*7+40, 0xfffff000) }, "Keyslot 7 is overlapping with the encrypted payload"},
		{"slots overlap", func(b []byte) { put32(b, 208+48*2+40, 8+100) }, "Keyslots 0 and 2 are overlapping in the header"},
		{"mode format", func(b []byte) { copy(b[40:72], "xts\x00") }, "Unexpected cipher mode string format 'xts'"},
		{"mode", func(b []byte) { copy(b[40:72], "gcm-plain64\x00") }, "Cipher mode 'gcm' not supported"},
		{"key size", func(b []byte) { put32(b, 108, 20) }, "Algorithm 'aes' with key size 10 bytes not supported"},
		{"hash", func(b []byte) { copy(b[72:104], "whirlpool\x00") }, "Hash algorithm 'whirlpool' not supported"},
		{"ivgen", func(b []byte) { copy(b[40:72], "xts-benbi\x00") }, "IV generator 'benbi' not supported"},
		{"essiv hash", func(b []byte) { copy(b[40:72], "xts-essiv\x00") }, "Missing IV generator hash specification"},
		{"serpent", func(b []byte) { copy(b[8:40], "serpent\x00") }, "Invalid password, cannot unlock any keyslot"},
		{"truncated", func(b []byte) {}, "Could not read encryption header: Input/output error"},
	} {
		b := append([]byte(nil), m.b...)
		c.damage(b)
		if c.name == "truncated" {
			b = b[:8192]
		}
		_, err := Open(OpenOptions{Format: "luks", KeySecret: "sec0", Lookup: secrets("sec0", "123456")}, &memIO{b: b})
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}

func TestQcowAES(t *testing.T) {
	t.Parallel()
	b, err := Open(OpenOptions{Format: "qcow", KeySecret: "s", Lookup: secrets("s", "12345678901234567890")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1024)
	if err := b.Encrypt(512, data); err != nil {
		t.Fatal(err)
	}
	b2, _ := Open(OpenOptions{Format: "qcow", KeySecret: "s", Lookup: secrets("s", "1234567890123456")}, nil)
	if err := b2.Decrypt(512, data); err != nil || !bytes.Equal(data, make([]byte, 1024)) {
		t.Fatal("only 16 bytes of the password make the key")
	}
	if _, err := Open(OpenOptions{Format: "qcow", Prefix: "encrypt."}, nil); err == nil || err.Error() != "Parameter 'encrypt.key-secret' is required for cipher" {
		t.Fatal(err)
	}
}

func TestAmend(t *testing.T) {
	t.Parallel()
	lookup := secrets("sec0", "123456", "sec1", "other", "sec2", "third")
	b, m := create(t, CreateOptions{Lookup: lookup})
	s := func(v string) *string { return &v }
	i := func(v int64) *int64 { return &v }
	steps := []struct {
		o     AmendOptions
		force bool
		want  string
	}{
		{AmendOptions{State: "active"}, false, "'new-secret' is required to activate a keyslot"},
		{AmendOptions{State: "active", NewSecret: s("sec1"), OldSecret: s("sec0")}, false, "'old-secret' must not be given when activating keyslots"},
		{AmendOptions{State: "active", NewSecret: s("sec1"), Keyslot: i(8)}, false, "Invalid keyslot 8 specified, must be between 0 and 7"},
		{AmendOptions{State: "active", NewSecret: s("sec1"), Keyslot: i(0)}, false, "Refusing to overwrite active keyslot 0 - please erase it first"},
		{AmendOptions{State: "active", NewSecret: s("sec1"), Secret: s("sec2")}, false, "Invalid password, cannot unlock any keyslot\nFailed to retrieve the master key"},
		{AmendOptions{State: "active", NewSecret: s("sec1"), IterTime: u64(10)}, false, ""},
		{AmendOptions{State: "active", NewSecret: s("sec2"), Keyslot: i(5), IterTime: u64(10)}, false, ""},
		{AmendOptions{State: "inactive"}, false, "To erase keyslot(s), either explicit keyslot index or the password currently contained in them must be given"},
		{AmendOptions{State: "inactive", Keyslot: i(3)}, false, "Given keyslot 3 is already erased (inactive) "},
		{AmendOptions{State: "inactive", Keyslot: i(5), OldSecret: s("sec1")}, false, "Given keyslot 5 doesn't contain the given old password for erase operation"},
		{AmendOptions{State: "inactive", OldSecret: s("sec0")}, false, ""},
		{AmendOptions{State: "inactive", Keyslot: i(5)}, false, ""},
		{AmendOptions{State: "inactive", Keyslot: i(1)}, false, "Attempt to erase the only active keyslot 1 which will erase all the data in the image irreversibly - refusing operation"},
		{AmendOptions{State: "inactive", OldSecret: s("sec1")}, false, "All the active keyslots match the (old) password that was given and erasing them will erase all the data in the image irreversibly - refusing operation"},
		{AmendOptions{State: "inactive", OldSecret: s("sec2")}, false, "No keyslots match given (old) password for erase operation"},
	}
	for n, st := range steps {
		st.o.Lookup = lookup
		err := b.Amend(st.o, st.force, m)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != st.want {
			t.Fatalf("step %d: got %q, want %q", n, got, st.want)
		}
	}
	// slot 1 (sec1) is the only one left
	if _, err := Open(OpenOptions{Format: "luks", KeySecret: "sec0", Lookup: lookup}, m); err == nil {
		t.Fatal("erased password still opens")
	}
	if _, err := Open(OpenOptions{Format: "luks", KeySecret: "sec1", Lookup: lookup}, m); err != nil {
		t.Fatal(err)
	}
}

// fileIO reads a raw LUKS volume.
type fileIO struct{ f *os.File }

func (f fileIO) ReadAt(p []byte, off int64) error  { _, err := f.f.ReadAt(p, off); return err }
func (f fileIO) WriteAt(p []byte, off int64) error { _, err := f.f.WriteAt(p, off); return err }

// TestCryptsetupInterop: volumes cryptsetup makes open here, and
// cryptsetup reads the ones made here.
func TestCryptsetupInterop(t *testing.T) {
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		t.Skip("cryptsetup not installed")
	}
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []string{"aes-xts-plain64", "aes-cbc-essiv:sha256"} {
		p := filepath.Join(dir, strings.ReplaceAll(c, ":", "_")+".luks")
		if err := os.WriteFile(p, make([]byte, 4<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("cryptsetup", "luksFormat", "--type", "luks1", "--batch-mode", "--cipher", c,
			"--pbkdf-force-iterations", "1000", "--key-file", "-", p)
		cmd.Stdin = strings.NewReader("cspass")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("cryptsetup luksFormat: %v: %s", err, out)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Open(OpenOptions{Format: "luks", KeySecret: "s", Lookup: secrets("s", "cspass")}, fileIO{f})
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if b.PayloadOffset() == 0 {
			t.Fatalf("%s: no payload offset", c)
		}
	}
	// ours, dumped by cryptsetup
	_, m := create(t, CreateOptions{})
	p := filepath.Join(dir, "goqio.luks")
	if err := os.WriteFile(p, append(m.b, make([]byte, 1<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("cryptsetup", "luksDump", p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Cipher mode:   \txts-plain64") || !strings.Contains(string(out), "Key Slot 0: ENABLED") {
		t.Fatalf("luksDump: %v\n%s", err, out)
	}
	cmd := exec.Command("cryptsetup", "luksOpen", "--test-passphrase", "--key-file", "-", p)
	cmd.Stdin = strings.NewReader("123456")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cryptsetup --test-passphrase: %v\n%s", err, out)
	}
}

// TestPBKDF2Blocks: the parallel blocks are x/crypto's PBKDF2.
func TestPBKDF2Blocks(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"sha1", "sha256", "sha512", "ripemd160"} {
		a := pbkdf2Key(h, []byte("pw"), []byte("salt"), 1500, 64)
		b := pbkdf2.Key([]byte("pw"), []byte("salt"), 1500, 64, hashFunc(h))
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: parallel PBKDF2 differs", h)
		}
	}
}

func TestParseAmendOptions(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"new-secret": "s1"}, "Parameter 'state' is missing"},
		{map[string]string{"state": "foo"}, "Parameter 'state' does not accept value 'foo'"},
		{map[string]string{"state": "active", "keyslot": "x"}, "Parameter 'encrypt.keyslot' expects a number"},
		{map[string]string{"state": "active", "keyslot": "3", "new-secret": "s1", "iter-time": "10"}, ""},
	} {
		_, err := ParseAmendOptions(func(k string) (string, bool) { v, ok := c.opts[k]; return v, ok }, "encrypt.")
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%v: got %q, want %q", c.opts, got, c.want)
		}
	}
}

// TestXTS: goqio's sector XTS is x/crypto/xts for plain64 IVs.
func TestXTS(t *testing.T) {
	t.Parallel()
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i * 7)
	}
	ref, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := newSectorCipher("aes-256", "xts", key, &ivgen{alg: "plain64"})
	if err != nil {
		t.Fatal(err)
	}
	for _, sector := range []uint64{0, 1, 0xffffffff, 1 << 40} {
		src := bytes.Repeat([]byte{byte(sector), 0x5a, 0xa5, 3}, 128)
		want := make([]byte, 512)
		ref.Encrypt(want, src, sector)
		got := append([]byte(nil), src...)
		sc.cryptSector(got, sector, true)
		if !bytes.Equal(got, want) {
			t.Fatalf("sector %d: encryption differs from x/crypto/xts", sector)
		}
		sc.cryptSector(got, sector, false)
		if !bytes.Equal(got, src) {
			t.Fatalf("sector %d: decryption", sector)
		}
	}
}
