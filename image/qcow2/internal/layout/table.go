package layout

// DecodeU64s is a table of big-endian 64-bit words (an L1, refcount or
// bitmap table).
func DecodeU64s(b []byte) []uint64 {
	t := make([]uint64, len(b)/8)
	for i := range t {
		t[i] = be.Uint64(b[8*i:])
	}
	return t
}

// EncodeU64s is the table t as big-endian 64-bit words.
func EncodeU64s(t []uint64) []byte {
	b := make([]byte, 8*len(t))
	for i, e := range t {
		be.PutUint64(b[8*i:], e)
	}
	return b
}
