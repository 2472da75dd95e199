package img

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Progress receives a long operation's progress (qemu-img -p).
type Progress interface {
	// Report sets the progress, in percent (0 to 100).
	Report(percent float32)
	// End is called once when the operation ends, successfully or not.
	End()
}

// QemuProgress prints progress as qemu-img's util/qemu-progress.c does:
// "    (xx.xx/100%)\r" whenever the value moves by more than MinSkip
// percent (0: one percent) from the last line printed, or reaches 0 or
// 100, and a newline at the end. W should be the process's stdout. With
// Off (qemu-img without -p) it keeps the value and prints nothing.
type QemuProgress struct {
	W         io.Writer
	MinSkip   float32
	Off       bool
	current   float32
	lastPrint float32
}

// Report is qemu_progress_print(percent, 0).
func (p *QemuProgress) Report(percent float32) { p.Print(percent, 0) }

// Print is qemu_progress_print: with max 0, delta is the progress in
// percent; otherwise the progress advances by delta percent of max
// percent. It is a ProgressFunc.
func (p *QemuProgress) Print(delta float32, max int) {
	cur := delta
	if max != 0 {
		cur = p.current + delta/100*float32(max)
	}
	if cur > 100 {
		cur = 100
	}
	p.current = cur
	skip := p.MinSkip
	if skip == 0 {
		skip = 1
	}
	if cur > p.lastPrint+skip || cur < p.lastPrint-skip || cur == 100 || cur == 0 {
		p.lastPrint = p.current
		if p.Off {
			return
		}
		fmt.Fprintf(p.W, "    (%3.2f/100%%)\r", p.current)
		if f, ok := p.W.(interface{ Flush() error }); ok {
			f.Flush()
		}
	}
}

// End is qemu_progress_end.
func (p *QemuProgress) End() {
	if !p.Off {
		fmt.Fprint(p.W, "\n")
	}
}

// BarProgress draws a progress bar with the rate and the time left on a
// terminal, redrawn at most ten times a second. Total is the work in
// bytes the percentages stand for (for the rate); 0 leaves the rate out.
type BarProgress struct {
	W     io.Writer
	Total int64
	Now   func() time.Time // nil: time.Now

	start, last time.Time
	pct         float32
}

func (b *BarProgress) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// SetTotal sets the work the percentages stand for, in bytes; Convert
// calls it when it knows how much it will copy.
func (b *BarProgress) SetTotal(n int64) { b.Total = n }

// Report redraws the bar.
func (b *BarProgress) Report(percent float32) {
	t := b.now()
	if b.start.IsZero() {
		b.start = t
	}
	b.pct = min(percent, 100)
	if percent < 100 && t.Sub(b.last) < 100*time.Millisecond && !b.last.IsZero() {
		return
	}
	b.last = t
	const width = 40
	fill := int(b.pct / 100 * width)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	el := t.Sub(b.start).Seconds()
	line := fmt.Sprintf("\r[%s] %6.2f%%", bar, b.pct)
	if el > 0 && b.pct > 0 {
		if b.Total > 0 {
			rate := float64(b.Total) * float64(b.pct) / 100 / el
			line += fmt.Sprintf("  %s/s", humanBytes(rate))
		}
		left := el * float64(100-b.pct) / float64(b.pct)
		line += fmt.Sprintf("  ETA %s", (time.Duration(left) * time.Second).Round(time.Second))
	}
	fmt.Fprint(b.W, line+"\x1b[K")
}

// End finishes the line.
func (b *BarProgress) End() { fmt.Fprint(b.W, "\n") }

func humanBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

type noProgress struct{}

func (noProgress) Report(float32) {}
func (noProgress) End()           {}
