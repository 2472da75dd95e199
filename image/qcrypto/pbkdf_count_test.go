package qcrypto

import "testing"

// TestCountItersMultiBlock: the PBKDF2 benchmark ends for a key longer
// than one digest (a 64-byte XTS key from SHA-256, the default of
// creation and of adding a key slot). It once timed the parallel
// computation with one thread's CPU clock, saw no time pass, and grew the
// iteration count without end.
func TestCountItersMultiBlock(t *testing.T) {
	if testing.Short() {
		t.Skip("a second of PBKDF2")
	}
	n := countIters("sha256", []byte("password"), make([]byte, 32), 64)
	if n == 0 || n > 1<<40 {
		t.Fatalf("countIters = %d", n)
	}
}
