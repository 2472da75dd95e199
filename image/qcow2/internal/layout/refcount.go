package layout

// A refcount block is a cluster of refcounts of 1 << order bits each
// (order 0 to 6: 1 to 64 bits). Entries narrower than a byte are packed
// from the least significant bit of each byte; wider ones are big-endian.

// RefcountGet is entry i of the refcount block b of refcount order order.
func RefcountGet(b []byte, order uint, i int64) uint64 {
	switch order {
	case 0:
		return uint64(b[i/8]>>(i%8)) & 1
	case 1:
		return uint64(b[i/4]>>(2*(i%4))) & 3
	case 2:
		return uint64(b[i/2]>>(4*(i%2))) & 15
	case 3:
		return uint64(b[i])
	case 4:
		return uint64(be.Uint16(b[2*i:]))
	case 5:
		return uint64(be.Uint32(b[4*i:]))
	}
	return be.Uint64(b[8*i:])
}

// RefcountSet writes entry i of the refcount block b of refcount order
// order; v is truncated to the entry's width (the caller checks it fits).
func RefcountSet(b []byte, order uint, i int64, v uint64) {
	switch order {
	case 0:
		b[i/8] = b[i/8]&^(1<<(i%8)) | byte(v&1)<<(i%8)
	case 1:
		s := 2 * (i % 4)
		b[i/4] = b[i/4]&^(3<<s) | byte(v&3)<<s
	case 2:
		s := 4 * (i % 2)
		b[i/2] = b[i/2]&^(15<<s) | byte(v&15)<<s
	case 3:
		b[i] = byte(v)
	case 4:
		be.PutUint16(b[2*i:], uint16(v))
	case 5:
		be.PutUint32(b[4*i:], uint32(v))
	default:
		be.PutUint64(b[8*i:], v)
	}
}

// RefcountMax is the largest refcount of order order.
func RefcountMax(order uint) uint64 {
	if order >= 6 {
		return ^uint64(0)
	}
	return 1<<(1<<order) - 1
}
