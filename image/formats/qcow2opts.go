package formats

import (
	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/qdict"
)

var qcow2Opts = func() []OptDesc {
	d := []OptDesc{
		{"lazy-refcounts", OptBool}, {"pass-discard-request", OptBool}, {"pass-discard-snapshot", OptBool},
		{"pass-discard-other", OptBool}, {"overlap-check", OptString}, {"overlap-check.template", OptString},
		{"cache-size", OptSize}, {"l2-cache-size", OptSize}, {"l2-cache-entry-size", OptSize},
		{"refcount-cache-size", OptSize}, {"cache-clean-interval", OptNumber},
	}
	for _, n := range qcow2.OverlapNames {
		d = append(d, OptDesc{"overlap-check." + n, OptBool})
	}
	return d
}()

// qcow2RuntimeOptions takes qcow2's runtime options from opts (the
// encrypt.* keys too, as qcow2_update_options_prepare extracts them).
func qcow2RuntimeOptions(n *Node, opts *qdict.Dict, flags Flags) (qcow2.RuntimeOptions, error) {
	var r qcow2.RuntimeOptions
	enc := opts.ExtractSub("encrypt.")
	r.EncryptFormat, _ = enc.Str("format")
	r.EncryptKeySecret, _ = enc.Str("key-secret")
	o, err := Absorb(qcow2Opts, opts)
	if err != nil {
		return r, err
	}
	num := func(k string) *uint64 {
		if !o.Has(k) {
			return nil
		}
		v := o.Num(k, 0)
		return &v
	}
	boolean := func(k string) *bool {
		if !o.Has(k) {
			return nil
		}
		v := o.Bool(k, false)
		return &v
	}
	str := func(k string) *string {
		v, ok := o.Str(k)
		if !ok {
			return nil
		}
		return &v
	}
	r.CacheSize, r.L2CacheSize, r.RefcountCacheSize = num("cache-size"), num("l2-cache-size"), num("refcount-cache-size")
	r.L2CacheEntrySize, r.CacheCleanInterval = num("l2-cache-entry-size"), num("cache-clean-interval")
	r.LazyRefcounts = boolean("lazy-refcounts")
	r.PassDiscardRequest, r.PassDiscardSnapshot = boolean("pass-discard-request"), boolean("pass-discard-snapshot")
	r.PassDiscardOther = boolean("pass-discard-other")
	r.OverlapCheck, r.OverlapTemplate = str("overlap-check"), str("overlap-check.template")
	r.Overlap = map[string]bool{}
	for _, name := range qcow2.OverlapNames {
		if o.Has("overlap-check." + name) {
			r.Overlap[name] = o.Bool("overlap-check."+name, false)
		}
	}
	if d, ok := n.Impl.(*qcow2.Driver); ok { // a reopen
		if err := d.CheckRuntime(r, flags&FlagUnmap != 0); err != nil {
			return r, errorf(nil, "%v", err)
		}
	}
	return r, nil
}
