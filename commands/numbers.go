package commands

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Number parsing errors, as qemu_strtosz returns them.
var (
	errNumInvalid = errors.New("non-numeric argument, or extraneous/unrecognized suffix")
	errNumRange   = errors.New("argument too large")
)

func isSpace(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }

// strtoull is C's strtoull for base 10 or 16: leading white space and a sign
// are accepted ('-' negates modulo 2^64), base 16 takes an optional 0x. It
// returns the value, the number of bytes consumed (0: no conversion) and
// whether it overflowed.
func strtoull(s string, base int) (uint64, int, bool) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	if base == 16 && i+1 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') &&
		i+2 < len(s) && hexDigit(s[i+2]) >= 0 {
		i += 2
	}
	start := i
	var v uint64
	over := false
	for i < len(s) {
		d := digitVal(s[i], base)
		if d < 0 {
			break
		}
		hi, lo := bits.Mul64(v, uint64(base))
		lo, carry := bits.Add64(lo, uint64(d), 0)
		if hi != 0 || carry != 0 {
			over = true
		}
		v = lo
		i++
	}
	if i == start {
		return 0, 0, false
	}
	if over {
		return math.MaxUint64, i, true
	}
	if neg {
		v = -v
	}
	return v, i, false
}

func hexDigit(c byte) int { return digitVal(c, 16) }

func digitVal(c byte, base int) int {
	var d int
	switch {
	case c >= '0' && c <= '9':
		d = int(c - '0')
	case c >= 'a' && c <= 'z':
		d = int(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		d = int(c-'A') + 10
	default:
		return -1
	}
	if d >= base {
		return -1
	}
	return d
}

func suffixMul(c byte) uint64 {
	switch c | 0x20 {
	case 'b':
		return 1
	case 'k':
		return 1 << 10
	case 'm':
		return 1 << 20
	case 'g':
		return 1 << 30
	case 't':
		return 1 << 40
	case 'p':
		return 1 << 50
	case 'e':
		return 1 << 60
	}
	return 0
}

// strtod parses the longest prefix of s (which starts with '.') that C's
// strtod accepts as a decimal number, returning the value and the length.
func strtodFraction(s string) (float64, int) {
	i := 1
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 1 {
		return 0, 0 // "." alone is no number
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := j
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		if k > j {
			i = k
		}
	}
	f, _ := strconv.ParseFloat("0"+s[:i], 64)
	return f, i
}

// parseSize is QEMU's qemu_strtosz (util/cutils.c): a decimal number, or hex
// with 0x, an optional fraction (only with a multiplier suffix), and an
// optional suffix B, K, M, G, T, P or E (powers of 1024, any case). warn is
// called for the deprecated suffix on a hex number.
func parseSize(s string, warn func(string)) (uint64, error) {
	val, n, over := strtoull(s, 10)
	if over {
		return 0, errNumRange
	}
	if n == 0 {
		return 0, errNumInvalid
	}
	if strings.Contains(s[:n], "-") {
		return 0, errNumInvalid
	}
	rest := s[n:]
	hex := false
	var valf uint64
	if val == 0 && rest != "" && (rest[0] == 'x' || rest[0] == 'X') {
		val, n, over = strtoull(s, 16)
		if over {
			return 0, errNumRange
		}
		rest = s[n:]
		if rest != "" && rest[0] == '.' {
			return 0, errNumInvalid
		}
		hex = true
	} else if rest != "" && rest[0] == '.' {
		f, m := strtodFraction(rest)
		if m == 0 {
			rest = rest[1:]
		} else {
			if strings.ContainsAny(rest[:m], "eE") {
				return 0, errNumInvalid
			}
			valf = uint64(f * 0x1p64)
			rest = rest[m:]
		}
	}
	mul := uint64(1)
	if rest != "" {
		if m := suffixMul(rest[0]); m > 0 {
			if hex && warn != nil {
				warn(fmt.Sprintf("Using a multiplier suffix on hex numbers is deprecated: %s", s))
			}
			mul = m
			rest = rest[1:]
		}
	}
	if mul == 1 {
		if valf != 0 {
			return 0, errNumInvalid
		}
	} else {
		hi, lo := bits.Mul64(val, mul)
		fhi, _ := bits.Mul64(valf, mul)
		lo, c := bits.Add64(lo, fhi, 0)
		hi += c
		// round half up
		_, flo := bits.Mul64(valf, mul)
		lo, c = bits.Add64(lo, flo>>63, 0)
		hi += c
		if hi != 0 {
			return 0, errNumRange
		}
		val = lo
	}
	if rest != "" {
		return 0, errNumInvalid
	}
	return val, nil
}

// cvtnum is qemu-io's cvtnum: parseSize limited to int64.
func (s *Session) cvtnum(arg string) (int64, error) {
	v, err := parseSize(arg, s.warn)
	if err != nil {
		return 0, err
	}
	if v > math.MaxInt64 {
		return 0, errNumRange
	}
	return int64(v), nil
}

// printCvtnumErr is qemu-io's print_cvtnum_err (on stdout).
func (s *Session) printCvtnumErr(err error, arg string) {
	switch err {
	case errNumInvalid:
		s.printf("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- %s\n", arg)
	case errNumRange:
		s.printf("Parsing error: argument too large -- %s\n", arg)
	default:
		s.printf("Parsing error: %s\n", arg)
	}
}

// strtol is C's strtol(s, &end, 0): it returns the value, clamped to the
// int64 range, and whether the whole string was consumed. An empty string
// gives 0 and true, as it does in C (end == s, *end == '\0').
func strtol(s string) (int64, bool) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	base := 10
	if i < len(s) && s[i] == '0' {
		if i+2 < len(s) && (s[i+1] == 'x' || s[i+1] == 'X') && hexDigit(s[i+2]) >= 0 {
			base = 16
			i += 2
		} else {
			base = 8
		}
	}
	start := i
	var v uint64
	over := false
	for i < len(s) {
		d := digitVal(s[i], base)
		if d < 0 {
			break
		}
		if v > (math.MaxUint64-uint64(d))/uint64(base) {
			over = true
		} else {
			v = v*uint64(base) + uint64(d)
		}
		i++
	}
	if i == start {
		// no digits: no conversion, end points at the start
		return 0, s == ""
	}
	var r int64
	switch {
	case !neg && (over || v > math.MaxInt64):
		r = math.MaxInt64
	case neg && (over || v > 1<<63):
		r = math.MinInt64
	case neg:
		r = -int64(v)
	default:
		r = int64(v)
	}
	return r, i == len(s)
}

// parsePattern is qemu-io's parse_pattern: a byte 0..255 in C's strtol
// syntax (decimal, 0x hex, leading-0 octal), with nothing after it.
func (s *Session) parsePattern(arg string) (byte, bool) {
	v, all := strtol(arg)
	if v < 0 || v > 255 || !all {
		s.printf("%s is not a valid pattern byte\n", arg)
		return 0, false
	}
	return byte(v), true
}

// ParseSize parses a size as qemu-img does (qemu_strtosz), limited to int64.
func ParseSize(s string) (int64, error) {
	v, err := parseSize(s, nil)
	if err != nil {
		return 0, err
	}
	if v > math.MaxInt64 {
		return 0, errNumRange
	}
	return int64(v), nil
}
