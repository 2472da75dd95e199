package commands

import (
	"math"
	"testing"
)

// The expectations were checked against qemu-io 7.2 (see also golden 005).
func TestParseSize(t *testing.T) {
	good := map[string]uint64{
		"0": 0, "1b": 1, "1B": 1, "1k": 1024, "1K": 1024, "1.5k": 1536, "1.k": 1024, "1.": 1,
		"0x10": 16, "0X1f": 31, "08": 8, "010": 10, "1m": 1 << 20, "7.5M": 7864320, "+5": 5,
		"0x1k": 1024, "1.e": 1 << 60, "1.5e": 3 << 59, "0.5k": 512, "1.0009765625k": 1025, "0x1b": 27,
		"8E": 8 << 60,
	}
	for in, want := range good {
		got, err := parseSize(in, nil)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := map[string]error{
		"1x": errNumInvalid, "1.5": errNumInvalid, "1e3": errNumInvalid, "1.5e3": errNumInvalid,
		"-1": errNumInvalid, "0x": errNumInvalid, "0x.5": errNumInvalid, "1kk": errNumInvalid,
		"k": errNumInvalid, "": errNumInvalid, "1.5b": errNumInvalid, "-0": errNumInvalid,
		"16E": errNumRange, "99999999999999999999": errNumRange, "0xffffffffffffffffff": errNumRange,
	}
	for in, want := range bad {
		if _, err := parseSize(in, nil); err != want {
			t.Errorf("parseSize(%q) error %v, want %v", in, err, want)
		}
	}
	var warned string
	parseSize("0x1k", func(s string) { warned = s })
	if warned != "Using a multiplier suffix on hex numbers is deprecated: 0x1k" {
		t.Errorf("hex suffix warning %q", warned)
	}
	if _, err := ParseSize("9E"); err != errNumRange {
		t.Errorf("9E is above INT64_MAX for cvtnum: %v", err)
	}
}

func TestStrtol(t *testing.T) {
	for in, want := range map[string]struct {
		v   int64
		all bool
	}{
		"0101": {65, true}, "0x41": {65, true}, "65": {65, true}, "08": {0, false}, "0x": {0, false},
		"": {0, true}, "-1": {-1, true}, "+7": {7, true}, "-0": {0, true}, "x": {0, false}, " 5": {5, true},
		"99999999999999999999": {math.MaxInt64, true}, "1k": {1, false},
	} {
		v, all := strtol(in)
		if v != want.v || all != want.all {
			t.Errorf("strtol(%q) = %d, %v; want %d, %v", in, v, all, want.v, want.all)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1k", "0x10", "1.5M", "99999999999999999999", "1.e", "-1", "0x1k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseSize(s, nil)
		if err == nil && s == "" {
			t.Fatal("empty string parsed")
		}
		_ = v
	})
}
