// Package qdict reproduces the order in which QEMU prints the keys of a
// QDict (qemu-img's JSON output, qemu-io's info): hash buckets in ascending
// order, and within a bucket the most recently inserted key first.
package qdict

import "sort"

const buckets = 512 // QDICT_BUCKET_MAX

// hash is QEMU's tdb_hash.
func hash(key string) uint32 {
	v := uint32(0x238F13AF) * uint32(len(key))
	for i := 0; i < len(key); i++ {
		v += uint32(key[i]) << (uint(i) * 5 % 24)
	}
	return 1103515243*v + 12345
}

// Order returns keys (given in insertion order) in QDict iteration order.
func Order(keys []string) []string {
	type k struct {
		name   string
		bucket uint32
		pos    int
	}
	ks := make([]k, len(keys))
	for i, name := range keys {
		ks[i] = k{name, hash(name) % buckets, i}
	}
	sort.SliceStable(ks, func(i, j int) bool {
		if ks[i].bucket != ks[j].bucket {
			return ks[i].bucket < ks[j].bucket
		}
		return ks[i].pos > ks[j].pos
	})
	out := make([]string, len(ks))
	for i, x := range ks {
		out[i] = x.name
	}
	return out
}
