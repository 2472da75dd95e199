package qcrypto

import (
	"testing"
)

// FuzzLUKSHeader: any bytes as the LUKS header (and the key material
// after it) open or fail with a message, within bounded time and memory:
// iteration counts are capped low here so that a run stays fast.
func FuzzLUKSHeader(f *testing.F) {
	it := uint64(10)
	m := &memIO{}
	_, err := Create(CreateOptions{Format: "luks", KeySecret: "s", IterTime: &it, Lookup: secrets("s", "pw")},
		func(n int64) (HeaderIO, error) { m.b = make([]byte, n); return m, nil })
	if err != nil {
		f.Fatal(err)
	}
	good := append([]byte(nil), m.b...)
	f.Add(good[:luksHeaderSize])
	f.Add(good[:100])
	f.Fuzz(func(t *testing.T, hdr []byte) {
		b := append([]byte(nil), good...)
		copy(b, hdr)
		if len(hdr) < len(b) && len(hdr) > luksHeaderSize {
			b = b[:len(hdr)] // truncated key material
		}
		o := OpenOptions{Format: "luks", KeySecret: "s", Lookup: secrets("s", "pw"), MaxIterations: 5000}
		blk, err := Open(o, &memIO{b: b})
		if err == nil {
			buf := make([]byte, 1024)
			if err := blk.Decrypt(512, buf); err != nil {
				t.Fatal(err)
			}
			_ = blk.InfoLines()
		}
		o.NoIO = true
		if blk, err := Open(o, &memIO{b: b}); err == nil {
			_ = blk.InfoLines()
		}
	})
}
