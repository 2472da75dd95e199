package formats

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/goqio/goqio/image/qdict"
)

// OptType is a QemuOpt type.
type OptType int

const (
	OptString OptType = iota
	OptBool
	OptNumber
	OptSize
)

// OptDesc describes one runtime option of a driver (QemuOptDesc).
type OptDesc struct {
	Name string
	Type OptType
}

// Opts are the options a driver took from its options dictionary
// (QemuOpts after qemu_opts_absorb_qdict): validated texts by name.
type Opts struct {
	vals map[string]string
	num  map[string]uint64
	bool map[string]bool
}

// Absorb is qemu_opts_absorb_qdict: every entry of d whose key descs
// name and whose value is a scalar is validated, taken into the result and
// deleted from d, in d's iteration order; the first invalid value fails.
func Absorb(descs []OptDesc, d *qdict.Dict) (*Opts, error) {
	o := &Opts{vals: map[string]string{}, num: map[string]uint64{}, bool: map[string]bool{}}
	for _, k := range d.Keys() {
		var desc *OptDesc
		for i := range descs {
			if descs[i].Name == k {
				desc = &descs[i]
				break
			}
		}
		if desc == nil {
			continue
		}
		s, ok := qdict.ScalarString(d.Get(k))
		if !ok {
			continue
		}
		if err := o.set(desc, s); err != nil {
			return nil, err
		}
		d.Del(k)
	}
	return o, nil
}

func (o *Opts) set(desc *OptDesc, s string) error {
	switch desc.Type {
	case OptBool:
		b, ok := ParseBool(s)
		if !ok {
			return fmt.Errorf("Parameter '%s' expects 'on' or 'off'", desc.Name)
		}
		o.bool[desc.Name] = b
	case OptNumber:
		n, err := parseU64(s, 0)
		if err == strconv.ErrRange {
			return fmt.Errorf("Value '%s' is too large for parameter '%s'", s, desc.Name)
		}
		if err != nil {
			return fmt.Errorf("Parameter '%s' expects a number", desc.Name)
		}
		o.num[desc.Name] = n
	case OptSize:
		n, err := ParseSizeQemu(s)
		if err == strconv.ErrRange {
			return fmt.Errorf("Value '%s' is out of range for parameter '%s'", s, desc.Name)
		}
		if err != nil {
			return &Error{Msg: fmt.Sprintf("Parameter '%s' expects a non-negative number below 2^64", desc.Name),
				Hint: "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n"}
		}
		o.num[desc.Name] = n
	}
	o.vals[desc.Name] = s
	return nil
}

// Has reports whether the option was given.
func (o *Opts) Has(name string) bool { _, ok := o.vals[name]; return ok }

// Str returns the option's text, or "" and false.
func (o *Opts) Str(name string) (string, bool) { s, ok := o.vals[name]; return s, ok }

// Bool returns a boolean option, or def.
func (o *Opts) Bool(name string, def bool) bool {
	if b, ok := o.bool[name]; ok {
		return b
	}
	return def
}

// Num returns a number or size option, or def.
func (o *Opts) Num(name string, def uint64) uint64 {
	if n, ok := o.num[name]; ok {
		return n
	}
	return def
}

// ParseBool is qapi_bool_parse.
func ParseBool(s string) (bool, bool) {
	switch s {
	case "on", "yes", "true", "y":
		return true, true
	case "off", "no", "false", "n":
		return false, true
	}
	return false, false
}

// parseU64 is qemu_strtou64 over the whole string.
func parseU64(s string, base int) (uint64, error) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	neg := strings.HasPrefix(t, "-")
	if neg {
		t = t[1:]
	}
	if t == "" {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseUint(t, base, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, strconv.ErrRange
		}
		return 0, strconv.ErrSyntax
	}
	if neg {
		n = -n
	}
	return n, nil
}

// ParseSizeQemu is qemu_strtosz: a non-negative number (a decimal fraction
// allowed with a suffix), optionally followed by one of B, k/K, M, G, T, P, E.
func ParseSizeQemu(s string) (uint64, error) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') {
		i++
	}
	if i == 0 {
		// a hexadecimal or negative value is invalid; so is no number
		return 0, strconv.ErrSyntax
	}
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		n, err := strconv.ParseUint(s[2:], 16, 64)
		if err != nil {
			return 0, strconv.ErrSyntax
		}
		return n, nil
	}
	whole, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, strconv.ErrRange
	}
	frac := 0.0
	rest := s[i:]
	if strings.HasPrefix(rest, ".") {
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		f, err := strconv.ParseFloat("0"+rest[:j], 64)
		if err != nil {
			return 0, strconv.ErrSyntax
		}
		frac = f
		rest = rest[j:]
	}
	mul := uint64(1)
	if rest != "" {
		switch rest[0] {
		case 'B', 'b':
		case 'k', 'K':
			mul = 1 << 10
		case 'M', 'm':
			mul = 1 << 20
		case 'G', 'g':
			mul = 1 << 30
		case 'T', 't':
			mul = 1 << 40
		case 'P', 'p':
			mul = 1 << 50
		case 'E', 'e':
			mul = 1 << 60
		default:
			return 0, strconv.ErrSyntax
		}
		rest = rest[1:]
	}
	if rest != "" {
		return 0, strconv.ErrSyntax
	}
	if frac != 0 && mul == 1 {
		return 0, strconv.ErrSyntax
	}
	if whole > ^uint64(0)/mul {
		return 0, strconv.ErrRange
	}
	v := whole*mul + uint64(frac*float64(mul))
	if v < whole*mul {
		return 0, strconv.ErrRange
	}
	return v, nil
}
