package qemuimg

import (
	"fmt"
	"io"
)

// jobProgress is qemu-img's progress (util/qemu-progress.c): with -p,
// "    (NN.NN/100%)\r" lines on stdout whenever the percentage moved by
// more than minSkip (and at 0 and 100), and a newline at the end;
// without it nothing.
type jobProgress struct {
	w                      io.Writer
	on                     bool
	current, last, minSkip float32
}

func newJobProgress(w io.Writer, on bool, minSkip float32) *jobProgress {
	return &jobProgress{w: w, on: on, minSkip: minSkip}
}

// print is qemu_progress_print.
func (p *jobProgress) print(delta float32, max int) {
	cur := delta
	if max != 0 {
		cur = p.current + delta/100*float32(max)
	}
	if cur > 100 {
		cur = 100
	}
	p.current = cur
	if cur > p.last+p.minSkip || cur < p.last-p.minSkip || cur == 100 || cur == 0 {
		p.last = p.current
		if p.on {
			fmt.Fprintf(p.w, "    (%3.2f/100%%)\r", p.current)
			if f, ok := p.w.(interface{ Flush() error }); ok {
				f.Flush()
			}
		}
	}
}

// end is qemu_progress_end.
func (p *jobProgress) end() {
	if p.on {
		fmt.Fprint(p.w, "\n")
	}
}
