package commands

import (
	"fmt"
	"strings"
	"time"
)

// Cvtstr is qemu-io's cvtstr: a size with a binary unit, three decimals, and
// the first ".000" replaced by the unit (so 65536 is "64 KiB", 1536 is
// "1.500 KiB"); below 1 KiB six decimals and " bytes" ("512 bytes").
func Cvtstr(v float64) string {
	units := []struct {
		min  float64
		name string
	}{
		{1 << 60, " EiB"}, {1 << 50, " PiB"}, {1 << 40, " TiB"},
		{1 << 30, " GiB"}, {1 << 20, " MiB"}, {1 << 10, " KiB"},
	}
	var s, suffix string
	for _, u := range units {
		if v >= u.min {
			s, suffix = fmt.Sprintf("%.3f", v/u.min), u.name
			break
		}
	}
	if suffix == "" {
		s, suffix = fmt.Sprintf("%f", v), " bytes"
	}
	if i := strings.Index(s, ".000"); i >= 0 {
		return s[:i] + suffix
	}
	return s + suffix
}

// timestr is qemu-io's timestr: "SS.ss sec" below a second, H:MM:SS.ss
// above or in the machine format.
func timestr(d time.Duration, fixed bool) string {
	sec := int64(d / time.Second)
	frac := float64(d%time.Second) / 1e9
	if fixed || sec != 0 {
		return fmt.Sprintf("%d:%02d:%05.2f", sec/3600, (sec%3600)/60, float64(sec%60)+frac)
	}
	return fmt.Sprintf("%05.2f sec", frac)
}

// printReport prints qemu-io's statistics: two lines, or one with -C.
func (s *Session) printReport(op string, d time.Duration, offset, count, total int64, cnt int, machine bool) {
	if d <= 0 {
		d = 1 // never divide by zero: qemu-io would print inf or nan
	}
	secs := d.Seconds()
	ts := timestr(d, machine)
	if !machine {
		s.printf("%s %d/%d bytes at offset %d\n", op, total, count, offset)
		s.printf("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n",
			Cvtstr(float64(total)), cnt, ts, Cvtstr(float64(total)/secs), float64(cnt)/secs)
		return
	}
	s.printf("%d,%d,%s,%.3f,%.3f\n", total, cnt, ts, float64(total)/secs, float64(cnt)/secs)
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// dumpBuffer is qemu-io's dump_buffer (read -v): 16 bytes a line, the
// absolute offset in hex, the bytes, and the alphanumeric ones as text.
func (s *Session) dumpBuffer(buf []byte, offset int64) {
	line := make([]byte, 0, 80)
	for i := 0; i < len(buf); i += 16 {
		end := min(i+16, len(buf))
		line = fmt.Appendf(line[:0], "%08x:  ", offset+int64(i))
		for _, c := range buf[i:end] {
			line = fmt.Appendf(line, "%02x ", c)
		}
		line = append(line, ' ')
		for _, c := range buf[i:end] {
			if isAlnum(c) {
				line = append(line, c)
			} else {
				line = append(line, '.')
			}
		}
		line = append(line, '\n')
		s.Out.Write(line)
	}
}
