package qcow2

import (
	"errors"
	"fmt"
)

// RuntimeOptions are qcow2's runtime options as given (nil: not given),
// already type-checked by the caller (QEMU's qcow2_runtime_opts). The
// driver checks them as qcow2_update_options_prepare does, once it knows
// the image's geometry.
type RuntimeOptions struct {
	CacheSize, L2CacheSize, RefcountCacheSize, L2CacheEntrySize *uint64
	CacheCleanInterval                                          *uint64
	LazyRefcounts                                               *bool
	OverlapCheck, OverlapTemplate                               *string
	// Overlap holds the overlap-check.* booleans by metadata name
	// ("main-header", "active-l1", ...).
	Overlap                                                   map[string]bool
	PassDiscardRequest, PassDiscardSnapshot, PassDiscardOther *bool
	// EncryptFormat is encrypt.format, "" when not given;
	// EncryptKeySecret is encrypt.key-secret.
	EncryptFormat, EncryptKeySecret string
}

// OverlapNames are the overlap-check.* option names, in QEMU's bit order.
var OverlapNames = []string{"main-header", "active-l1", "active-l2", "refcount-table", "refcount-block",
	"snapshot-table", "inactive-l1", "inactive-l2", "bitmap-directory"}

const (
	olConstant = olMainHeader | olActiveL1 | olRefcountTable | olSnapshotTable | olBitmapDirectory
	olCached   = olConstant | olActiveL2 | olRefcountBlock | olInactiveL1
	olAll      = olCached | olInactiveL2
)

// runtime is what the options decide.
type runtimeState struct {
	l2Tables, refcountTables int // cache capacities, in tables
	lazy                     bool
	overlap                  int
	passRequest, passOther   bool
	passSnapshot             bool
}

// prepareRuntime is qcow2_update_options_prepare (with read_cache_sizes).
// unmap is the node's discard=unmap.
func (d *Driver) prepareRuntime(r RuntimeOptions, unmap bool) (runtimeState, error) {
	var rt runtimeState
	cs := uint64(d.clusterSize)
	minRefcountCache := uint64(4) * cs
	maxL2Entries := (uint64(d.size) + cs - 1) / cs
	maxL2Cache := (maxL2Entries*uint64(d.l2EntrySize) + cs - 1) / cs * cs
	val := func(p *uint64, def uint64) uint64 {
		if p != nil {
			return *p
		}
		return def
	}
	combined := val(r.CacheSize, 0)
	l2Max := val(r.L2CacheSize, 32<<20)
	refcount := val(r.RefcountCacheSize, 0)
	entry := val(r.L2CacheEntrySize, cs)
	l2 := min(maxL2Cache, l2Max)
	if r.CacheSize != nil {
		switch {
		case r.L2CacheSize != nil && r.RefcountCacheSize != nil:
			return rt, errors.New("cache-size, l2-cache-size and refcount-cache-size may not be set at the same time")
		case r.L2CacheSize != nil && l2Max > combined:
			return rt, errors.New("l2-cache-size may not exceed cache-size")
		case refcount > combined:
			return rt, errors.New("refcount-cache-size may not exceed cache-size")
		}
		switch {
		case r.L2CacheSize != nil:
			refcount = combined - l2
		case r.RefcountCacheSize != nil:
			l2 = combined - refcount
		case combined >= maxL2Cache+minRefcountCache:
			l2 = maxL2Cache
			refcount = combined - l2
		default:
			refcount = min(combined, minRefcountCache)
			l2 = combined - refcount
		}
	}
	if l2 < maxL2Cache && r.L2CacheEntrySize == nil {
		entry = min(cs, 4096)
	}
	if entry < 1<<minClusterBits || entry > cs || entry&(entry-1) != 0 {
		return rt, fmt.Errorf("L2 cache entry size must be a power of two between %d and the cluster size (%d)", 1<<minClusterBits, cs)
	}
	l2 /= entry
	if l2 < 2 {
		l2 = 2
	}
	if l2 > 1<<31-1 {
		return rt, errors.New("L2 cache size too big")
	}
	refcount /= cs
	if refcount < 4 {
		refcount = 4
	}
	if refcount > 1<<31-1 {
		return rt, errors.New("Refcount cache size too big")
	}
	// goqio caches whole tables: the same memory as QEMU's entries
	rt.l2Tables = max(2, int(l2*entry/cs))
	rt.refcountTables = int(refcount)
	if v := val(r.CacheCleanInterval, 600); v > 1<<32-1 {
		return rt, errors.New("Cache clean interval too big")
	}
	rt.lazy = d.hdr.CompatibleFeatures&compatLazyRefcounts != 0
	if r.LazyRefcounts != nil {
		rt.lazy = *r.LazyRefcounts
	}
	if rt.lazy && d.hdr.Version < 3 {
		return rt, errors.New("Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level")
	}
	oc, tpl := "", ""
	if r.OverlapCheck != nil {
		oc = *r.OverlapCheck
	}
	if r.OverlapTemplate != nil {
		tpl = *r.OverlapTemplate
	}
	if r.OverlapCheck != nil && r.OverlapTemplate != nil && oc != tpl {
		return rt, fmt.Errorf("Conflicting values for qcow2 options 'overlap-check' ('%s') and 'overlap-check.template' ('%s')", oc, tpl)
	}
	if r.OverlapCheck == nil {
		oc = "cached"
		if r.OverlapTemplate != nil {
			oc = tpl
		}
	}
	var template int
	switch oc {
	case "none":
	case "constant":
		template = olConstant
	case "cached":
		template = olCached
	case "all":
		template = olAll
	default:
		return rt, fmt.Errorf("Unsupported value '%s' for qcow2 option 'overlap-check'. Allowed are any of the following: none, constant, cached, all", oc)
	}
	for i, name := range OverlapNames {
		on := template&(1<<i) != 0
		if b, ok := r.Overlap[name]; ok {
			on = b
		}
		if on {
			rt.overlap |= 1 << i
		}
	}
	rt.passRequest = unmap
	if r.PassDiscardRequest != nil {
		rt.passRequest = *r.PassDiscardRequest
	}
	rt.passSnapshot = true
	if r.PassDiscardSnapshot != nil {
		rt.passSnapshot = *r.PassDiscardSnapshot
	}
	if r.PassDiscardOther != nil {
		rt.passOther = *r.PassDiscardOther
	}
	if err := d.checkEncryptOptions(r); err != nil {
		return rt, err
	}
	return rt, nil
}

// CheckRuntime checks new runtime options for a reopen (qcow2_reopen_prepare).
func (d *Driver) CheckRuntime(r RuntimeOptions, unmap bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, err := d.prepareRuntime(r, unmap)
	return err
}
