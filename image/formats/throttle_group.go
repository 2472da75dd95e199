package formats

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Bucket types, as QEMU's BucketType.
const (
	bpsTotal = iota
	bpsRead
	bpsWrite
	opsTotal
	opsRead
	opsWrite
	bucketsCount
)

// throttleValueMax is THROTTLE_VALUE_MAX.
const throttleValueMax = 1000000000000000

// leakyBucket is QEMU's LeakyBucket.
type leakyBucket struct {
	avg, max          uint64
	level, burstLevel float64
	burstLength       uint64
}

// throttleConfig is ThrottleConfig.
type throttleConfig struct {
	buckets [bucketsCount]leakyBucket
	opSize  uint64
}

// newThrottleConfig is throttle_config_init.
func newThrottleConfig() throttleConfig {
	var c throttleConfig
	for i := range c.buckets {
		c.buckets[i].burstLength = 1
	}
	return c
}

// valid is throttle_is_valid.
func (c *throttleConfig) valid() error {
	b := &c.buckets
	bpsFlag := b[bpsTotal].avg != 0 && (b[bpsRead].avg != 0 || b[bpsWrite].avg != 0)
	opsFlag := b[opsTotal].avg != 0 && (b[opsRead].avg != 0 || b[opsWrite].avg != 0)
	bpsMaxFlag := b[bpsTotal].max != 0 && (b[bpsRead].max != 0 || b[bpsWrite].max != 0)
	opsMaxFlag := b[opsTotal].max != 0 && (b[opsRead].max != 0 || b[opsWrite].max != 0)
	if bpsFlag || opsFlag || bpsMaxFlag || opsMaxFlag {
		return objErr("bps/iops/max total values and read/write values cannot be used at the same time")
	}
	if c.opSize != 0 && b[opsTotal].avg == 0 && b[opsRead].avg == 0 && b[opsWrite].avg == 0 {
		return objErr("iops size requires an iops value to be set")
	}
	for i := range b {
		k := &b[i]
		if k.avg > throttleValueMax || k.max > throttleValueMax {
			return objErr("bps/iops/max values must be within [0, %d]", throttleValueMax)
		}
		if k.burstLength == 0 {
			return objErr("the burst length cannot be 0")
		}
		if k.burstLength > 1 && k.max == 0 {
			return objErr("burst length set without burst rate")
		}
		if k.max != 0 && k.burstLength > throttleValueMax/k.max {
			return objErr("burst length too high for this burst rate")
		}
		if k.max != 0 && k.avg == 0 {
			return objErr("bps_max/iops_max require corresponding bps/iops values")
		}
		if k.max != 0 && k.max < k.avg {
			return objErr("bps_max/iops_max cannot be lower than bps/iops")
		}
	}
	return nil
}

// ThrottleGroup is QEMU's throttle-group object: a ThrottleState (the
// configured leaky buckets) shared by the throttle nodes naming the group.
type ThrottleGroup struct {
	name     string
	mu       sync.Mutex
	cfg      throttleConfig
	prevLeak int64 // ns, QEMU_CLOCK_REALTIME
	// members counts the throttle nodes in the group
	members int
}

func newThrottleGroup(name string) *ThrottleGroup {
	return &ThrottleGroup{name: name, cfg: newThrottleConfig()}
}

var clockStart = time.Now()

// now is qemu_clock_get_ns(QEMU_CLOCK_REALTIME), monotonic.
func now() int64 { return int64(time.Since(clockStart)) }

// config is throttle_config: the levels start empty.
func (tg *ThrottleGroup) config(c throttleConfig) {
	tg.cfg = c
	for i := range tg.cfg.buckets {
		tg.cfg.buckets[i].level, tg.cfg.buckets[i].burstLevel = 0, 0
	}
	tg.prevLeak = now()
}

// throttleParam is one of ThrottleParamInfo's x- properties.
type throttleParam struct {
	bucket   int
	category int // 0 avg, 1 max, 2 burst length, 3 iops size
}

var throttleParams = func() map[string]throttleParam {
	m := map[string]throttleParam{}
	for _, k := range []struct {
		kind   string
		bucket [3]int // total, read, write
	}{{"iops", [3]int{opsTotal, opsRead, opsWrite}}, {"bps", [3]int{bpsTotal, bpsRead, bpsWrite}}} {
		for i, rw := range []string{"total", "read", "write"} {
			m["x-"+k.kind+"-"+rw] = throttleParam{k.bucket[i], 0}
			m["x-"+k.kind+"-"+rw+"-max"] = throttleParam{k.bucket[i], 1}
			m["x-"+k.kind+"-"+rw+"-max-length"] = throttleParam{k.bucket[i], 2}
		}
	}
	m["x-iops-size"] = throttleParam{0, 3}
	return m
}()

// setProperty is object_property_set on a throttle group being created:
// throttle_group_set for the x- members, throttle_group_set_limits for
// limits.
func (tg *ThrottleGroup) setProperty(name string, v any) error {
	if name == "limits" {
		return tg.setLimits(v)
	}
	p, ok := throttleParams[name]
	if !ok {
		return objErr("Property '%s' not found", name)
	}
	value, _ := v.(int64)
	if value < 0 {
		return objErr("Property values cannot be negative")
	}
	b := &tg.cfg.buckets[p.bucket]
	switch p.category {
	case 0:
		b.avg = uint64(value)
	case 1:
		b.max = uint64(value)
	case 2:
		if value > math.MaxUint32 {
			return objErr("%s value must be in therange [0, %d]", name, uint32(math.MaxUint32))
		}
		b.burstLength = uint64(value)
	case 3:
		tg.cfg.opSize = uint64(value)
	}
	return nil
}

// setLimits is throttle_group_set_limits with throttle_limits_to_config.
func (tg *ThrottleGroup) setLimits(v any) error {
	d, _ := v.(interface {
		Get(string) any
		Has(string) bool
	})
	if d == nil {
		return nil
	}
	cfg := tg.cfg
	get := func(name string) (int64, bool) {
		if !d.Has(name) {
			return 0, false
		}
		n, _ := d.Get(name).(int64)
		return n, true
	}
	for _, a := range []struct {
		name string
		b    int
	}{{"bps-total", bpsTotal}, {"bps-read", bpsRead}, {"bps-write", bpsWrite},
		{"iops-total", opsTotal}, {"iops-read", opsRead}, {"iops-write", opsWrite}} {
		if n, ok := get(a.name); ok {
			cfg.buckets[a.b].avg = uint64(n)
		}
	}
	for _, a := range []struct {
		name string
		b    int
	}{{"bps-total-max", bpsTotal}, {"bps-read-max", bpsRead}, {"bps-write-max", bpsWrite},
		{"iops-total-max", opsTotal}, {"iops-read-max", opsRead}, {"iops-write-max", opsWrite}} {
		if n, ok := get(a.name); ok {
			cfg.buckets[a.b].max = uint64(n)
		}
	}
	for _, a := range []struct {
		name string
		b    int
	}{{"bps-total-max-length", bpsTotal}, {"bps-read-max-length", bpsRead}, {"bps-write-max-length", bpsWrite},
		{"iops-total-max-length", opsTotal}, {"iops-read-max-length", opsRead}, {"iops-write-max-length", opsWrite}} {
		if n, ok := get(a.name); ok {
			if n > math.MaxUint32 {
				return objErr("%s value must be in the range [0, %d]", a.name, uint32(math.MaxUint32))
			}
			cfg.buckets[a.b].burstLength = uint64(n)
		}
	}
	if n, ok := get("iops-size"); ok {
		cfg.opSize = uint64(n)
	}
	if err := cfg.valid(); err != nil {
		return err
	}
	tg.config(cfg)
	return nil
}

// leak is throttle_do_leak.
func (tg *ThrottleGroup) leak(t int64) {
	delta := t - tg.prevLeak
	tg.prevLeak = t
	if delta <= 0 {
		return
	}
	for i := range tg.cfg.buckets {
		b := &tg.cfg.buckets[i]
		l := float64(b.avg) * float64(delta) / 1e9
		b.level = math.Max(b.level-l, 0)
		if b.burstLength > 1 {
			l = float64(b.max) * float64(delta) / 1e9
			b.burstLevel = math.Max(b.burstLevel-l, 0)
		}
	}
}

// computeWait is throttle_compute_wait, in ns.
func computeWait(b *leakyBucket) int64 {
	if b.avg == 0 {
		return 0
	}
	var bucketSize, burstBucketSize float64
	if b.max == 0 {
		bucketSize = float64(b.avg) / 10
	} else {
		bucketSize = float64(b.max) * float64(b.burstLength)
		burstBucketSize = float64(b.max) / 10
	}
	if extra := b.level - bucketSize; extra > 0 {
		return int64(extra * 1e9 / float64(b.avg))
	}
	if b.burstLength > 1 {
		if extra := b.burstLevel - burstBucketSize; extra > 0 {
			return int64(extra * 1e9 / float64(b.max))
		}
	}
	return 0
}

// waitFor is throttle_compute_wait_for.
func (tg *ThrottleGroup) waitFor(write bool) int64 {
	check := [2][4]int{{bpsTotal, opsTotal, bpsRead, opsRead}, {bpsTotal, opsTotal, bpsWrite, opsWrite}}
	w := 0
	if write {
		w = 1
	}
	var maxWait int64
	for _, i := range check[w] {
		if x := computeWait(&tg.cfg.buckets[i]); x > maxWait {
			maxWait = x
		}
	}
	return maxWait
}

// account is throttle_account.
func (tg *ThrottleGroup) account(write bool, size uint64) {
	sizeB := [2][2]int{{bpsTotal, bpsRead}, {bpsTotal, bpsWrite}}
	unitB := [2][2]int{{opsTotal, opsRead}, {opsTotal, opsWrite}}
	w := 0
	if write {
		w = 1
	}
	units := 1.0
	if tg.cfg.opSize != 0 && size > tg.cfg.opSize {
		units = float64(size) / float64(tg.cfg.opSize)
	}
	for i := 0; i < 2; i++ {
		b := &tg.cfg.buckets[sizeB[w][i]]
		b.level += float64(size)
		if b.burstLength > 1 {
			b.burstLevel += float64(size)
		}
		b = &tg.cfg.buckets[unitB[w][i]]
		b.level += units
		if b.burstLength > 1 {
			b.burstLevel += units
		}
	}
}

// intercept is throttle_group_co_io_limits_intercept for one request of
// bytes: it waits while the group's buckets are full (the leaky bucket's
// timer, as sleeps), then accounts for the request.
func (tg *ThrottleGroup) intercept(bytes int64, write bool) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	for {
		tg.leak(now())
		w := tg.waitFor(write)
		if w <= 0 {
			break
		}
		tg.mu.Unlock()
		time.Sleep(time.Duration(w))
		tg.mu.Lock()
	}
	tg.account(write, uint64(bytes))
}

func (tg *ThrottleGroup) String() string { return fmt.Sprintf("throttle-group %s", tg.name) }
