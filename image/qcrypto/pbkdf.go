package qcrypto

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"hash"
	"runtime"
	"sync"

	"golang.org/x/crypto/pbkdf2"
	//lint:ignore SA1019 LUKS headers name it; QEMU supports it
	"golang.org/x/crypto/ripemd160"
	"golang.org/x/sys/unix"
)

// hashFunc is the hash of a QCryptoHashAlgorithm name, nil for an unknown one.
func hashFunc(name string) func() hash.Hash {
	switch name {
	case "md5":
		return md5.New
	case "sha1":
		return sha1.New
	case "sha224":
		return sha256.New224
	case "sha256":
		return sha256.New
	case "sha384":
		return sha512.New384
	case "sha512":
		return sha512.New
	case "ripemd160":
		return ripemd160.New
	}
	return nil
}

// pbkdf2Key is qcrypto_pbkdf2 (RFC 8018's PBKDF2 with HMAC of the
// hash). A key longer than one digest (a 64-byte XTS key from SHA-256)
// is made of independent blocks: they are computed in parallel, which
// halves the time an open spends unlocking a slot on two cores.
func pbkdf2Key(hashName string, password, salt []byte, iter uint64, n int) []byte {
	h := hashFunc(hashName)
	size := h().Size()
	blocks := (n + size - 1) / size
	if blocks <= 1 || iter < 1000 {
		return pbkdf2.Key(password, salt, int(iter), n, h)
	}
	out := make([]byte, blocks*size)
	var wg sync.WaitGroup
	for b := 1; b <= blocks; b++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pbkdf2Block(h, password, salt, iter, uint32(b), out[(b-1)*size:b*size])
		}()
	}
	wg.Wait()
	return out[:n]
}

// pbkdf2Block is PBKDF2's F(password, salt, iter, i): U1 = PRF(salt ||
// INT(i)), Uj = PRF(Uj-1), T = U1 ^ ... ^ Uiter.
func pbkdf2Block(h func() hash.Hash, password, salt []byte, iter uint64, i uint32, t []byte) {
	prf := hmac.New(h, password)
	prf.Write(salt)
	var ib [4]byte
	binary.BigEndian.PutUint32(ib[:], i)
	prf.Write(ib[:])
	u := prf.Sum(nil)
	copy(t, u)
	for j := uint64(1); j < iter; j++ {
		prf.Reset()
		prf.Write(u)
		u = prf.Sum(u[:0])
		subtle.XORBytes(t, t, u)
	}
}

// threadCPUms is the calling thread's CPU time in milliseconds
// (qcrypto_pbkdf2_get_thread_cpu).
func threadCPUms() uint64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	ms := func(t unix.Timeval) uint64 { return uint64(t.Sec)*1000 + uint64(t.Usec)/1000 }
	return ms(ru.Utime) + ms(ru.Stime)
}

// countIters is qcrypto_pbkdf2_count_iters: how many PBKDF2 iterations
// take one second of this thread's CPU time, measured from 2^15
// iterations up until one run takes more than 500 ms.
func countIters(hashName string, key, salt []byte, nout int) uint64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	iterations := uint64(1 << 15)
	var delta uint64
	h := hashFunc(hashName)
	for {
		start := threadCPUms()
		// sequentially, on this thread: its CPU time is what is measured
		// (pbkdf2Key's parallel blocks would run on other threads, and
		// the count would grow without end)
		pbkdf2.Key(key, salt, int(iterations), nout, h)
		delta = threadCPUms() - start
		if delta > 500 || iterations > 1<<40 {
			break
		} else if delta < 100 {
			iterations *= 10
		} else {
			iterations = iterations * 1000 / delta
		}
	}
	return iterations * 1000 / max(delta, 1)
}

// afHash is qcrypto_afsplit_hash: the block hashed in digest-sized
// pieces, each prefixed with its big-endian index.
func afHash(h func() hash.Hash, block []byte) {
	hh := h()
	d := hh.Size()
	var iv [4]byte
	for i := 0; i*d < len(block); i++ {
		piece := block[i*d : min((i+1)*d, len(block))]
		hh.Reset()
		binary.BigEndian.PutUint32(iv[:], uint32(i))
		hh.Write(iv[:])
		hh.Write(piece)
		copy(piece, hh.Sum(nil))
	}
}

// afSplit is qcrypto_afsplit_encode: in (blocklen bytes) spread over
// stripes blocks of out, all random but the last.
func afSplit(hashName string, in []byte, stripes int, out []byte, random func([]byte) error) error {
	h := hashFunc(hashName)
	bl := len(in)
	block := make([]byte, bl)
	for i := 0; i < stripes-1; i++ {
		s := out[i*bl : (i+1)*bl]
		if err := random(s); err != nil {
			return err
		}
		xorBytes(block, s, block)
		afHash(h, block)
	}
	xorBytes(out[(stripes-1)*bl:stripes*bl], in, block)
	return nil
}

// afMerge is qcrypto_afsplit_decode.
func afMerge(hashName string, in []byte, stripes int, out []byte) {
	h := hashFunc(hashName)
	bl := len(out)
	block := make([]byte, bl)
	for i := 0; i < stripes-1; i++ {
		xorBytes(block, in[i*bl:(i+1)*bl], block)
		afHash(h, block)
	}
	xorBytes(out, in[(stripes-1)*bl:stripes*bl], block)
}

func xorBytes(dst, a, b []byte) {
	for i := range dst {
		dst[i] = a[i] ^ b[i]
	}
}
