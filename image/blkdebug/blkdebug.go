package blkdebug

import (
	"sync"
	"syscall"

	"github.com/goqio/goqio/image"
)

// Actions of a rule.
const (
	ActionInjectError = iota
	ActionSetState
	ActionSuspend
	nActions
)

// Rule is one blkdebug rule (QEMU's BlkdebugRule).
type Rule struct {
	Event  int // index into Events
	Action int
	State  int // 0: any state
	// inject-error
	IOMask      uint64 // bits of IOTypes
	Errno       int
	Immediately bool
	Once        bool
	Offset      int64 // -1: any offset
	// set-state
	NewState int
	// suspend
	Tag string
}

// DefaultIOMask is the iotypes of an inject-error rule without iotype.
const DefaultIOMask = 1<<ioRead | 1<<ioWrite | 1<<ioWriteZeroes | 1<<ioDiscard | 1<<ioFlush

type suspended struct {
	tag  string
	wake chan struct{}
}

// Driver is a blkdebug node over its image.
type Driver struct {
	file *image.Disk
	lim  image.Limits // overrides: zero fields keep the image's

	mu     sync.Mutex
	state  int
	rules  [][]*Rule // per event, newest first (QLIST_INSERT_HEAD)
	active []*Rule
	susp   []*suspended // newest first
	print  func(string)
	// writeGen and flushedGen are QEMU's write_gen and flushed_gen: a
	// flush with no write since the last one does nothing
	writeGen, flushedGen uint64
}

// New returns a blkdebug node over file with rules added in order and the
// limit overrides lim.
func New(file *image.Disk, rules []*Rule, lim image.Limits) *Driver {
	d := &Driver{file: file, lim: lim, state: 1, rules: make([][]*Rule, len(Events))}
	for _, r := range rules {
		d.addRule(r)
	}
	d.DebugEvent("none")
	return d
}

func (d *Driver) addRule(r *Rule) {
	d.rules[r.Event] = append([]*Rule{r}, d.rules[r.Event]...)
}

// SetPrinter sets where the messages blkdebug prints on stdout go.
func (d *Driver) SetPrinter(p func(string)) {
	d.mu.Lock()
	d.print = p
	d.mu.Unlock()
}

// File returns the image below.
func (d *Driver) File() *image.Disk { return d.file }

func (d *Driver) removeRule(r *Rule) {
	l := d.rules[r.Event]
	for i, x := range l {
		if x == r {
			d.rules[r.Event] = append(l[:i:i], l[i+1:]...)
			break
		}
	}
}

// DebugEvent is blkdebug_debug_event.
func (d *Driver) DebugEvent(ev string) {
	e := EventIndex(ev)
	if e < 0 {
		return
	}
	d.mu.Lock()
	var count [nActions]int
	newState := d.state
	var wake chan struct{}
	for _, r := range append([]*Rule(nil), d.rules[e]...) {
		if r.State != 0 && r.State != d.state {
			continue
		}
		count[r.Action]++
		switch r.Action {
		case ActionInjectError:
			if count[ActionInjectError] == 1 {
				d.active = nil
			}
			d.active = append([]*Rule{r}, d.active...)
		case ActionSetState:
			newState = r.NewState
		case ActionSuspend:
			if wake == nil {
				wake = make(chan struct{}, 64)
			}
			d.removeRule(r)
			d.susp = append([]*suspended{{tag: r.Tag, wake: wake}}, d.susp...)
			if d.print != nil {
				d.print("blkdebug: Suspended request '" + r.Tag + "'\n")
			}
		}
	}
	d.state = newState
	d.mu.Unlock()
	for i := 0; i < count[ActionSuspend]; i++ {
		<-wake
	}
}

// ruleCheck is rule_check: the error an active rule injects into this
// request, or nil.
func (d *Driver) ruleCheck(off, n int64, iotype int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, r := range d.active {
		if (r.Offset == -1 || (n != 0 && r.Offset >= off && r.Offset < off+n)) && r.IOMask&(1<<iotype) != 0 {
			if r.Errno == 0 {
				return nil
			}
			if r.Once {
				d.active = append(d.active[:i:i], d.active[i+1:]...)
				d.removeRule(r)
			}
			return syscall.Errno(r.Errno)
		}
	}
	return nil
}

// Breakpoint is blkdebug_debug_breakpoint.
func (d *Driver) Breakpoint(event, tag string) error {
	e := EventIndex(event)
	if e < 0 {
		return syscall.ENOENT
	}
	d.mu.Lock()
	d.addRule(&Rule{Event: e, Action: ActionSuspend, Tag: tag})
	d.mu.Unlock()
	return nil
}

// resume wakes the newest request suspended with tag; the lock is held.
func (d *Driver) resume(tag string) bool {
	for i, s := range d.susp {
		if s.tag == tag {
			if d.print != nil {
				d.print("blkdebug: Resuming request '" + tag + "'\n")
			}
			d.susp = append(d.susp[:i:i], d.susp[i+1:]...)
			s.wake <- struct{}{}
			return true
		}
	}
	return false
}

// Resume is blkdebug_debug_resume.
func (d *Driver) Resume(tag string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.resume(tag) {
		return syscall.ENOENT
	}
	return nil
}

// RemoveBreakpoint is blkdebug_debug_remove_breakpoint: the breakpoints
// with tag go, and every request suspended with tag resumes.
func (d *Driver) RemoveBreakpoint(tag string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	found := false
	for e := range d.rules {
		for _, r := range append([]*Rule(nil), d.rules[e]...) {
			if r.Action == ActionSuspend && r.Tag == tag {
				d.removeRule(r)
				found = true
			}
		}
	}
	for d.resume(tag) {
		found = true
	}
	if !found {
		return syscall.ENOENT
	}
	return nil
}

// IsSuspended is blkdebug_debug_is_suspended.
func (d *Driver) IsSuspended(tag string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.susp {
		if s.tag == tag {
			return true
		}
	}
	return false
}

// Suspended returns the tags of the suspended requests, newest first.
func (d *Driver) Suspended() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var t []string
	for _, s := range d.susp {
		t = append(t, s.tag)
	}
	return t
}

// HasBreakpoints reports whether a suspend rule is set.
func (d *Driver) HasBreakpoints() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range d.rules {
		for _, r := range l {
			if r.Action == ActionSuspend {
				return true
			}
		}
	}
	return false
}

// ResumeAll wakes every suspended request without a message.
func (d *Driver) ResumeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.susp {
		s.wake <- struct{}{}
	}
	d.susp = nil
}

func (d *Driver) ReadAt(p []byte, off int64) (int, error) {
	if err := d.ruleCheck(off, int64(len(p)), ioRead); err != nil {
		return 0, err
	}
	if err := d.file.ReadAt(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (d *Driver) WriteAt(p []byte, off int64) (int, error) {
	defer d.written()
	if err := d.ruleCheck(off, int64(len(p)), ioWrite); err != nil {
		return 0, err
	}
	if err := d.file.WriteAt(p, off, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (d *Driver) Size() int64 { return d.file.Size() }

// Limits are the image's, with blkdebug's overrides (blkdebug_refresh_limits).
func (d *Driver) Limits() image.Limits {
	l := d.file.Limits()
	if d.lim.RequestAlignment != 0 {
		l.RequestAlignment = d.lim.RequestAlignment
	}
	if d.lim.MaxTransfer != 0 {
		l.MaxTransfer = d.lim.MaxTransfer
	}
	if d.lim.ZeroAlignment != 0 {
		l.ZeroAlignment = d.lim.ZeroAlignment
	}
	if d.lim.MaxZero != 0 {
		l.MaxZero = d.lim.MaxZero
	}
	if d.lim.DiscardAlignment != 0 {
		l.DiscardAlignment = d.lim.DiscardAlignment
	}
	if d.lim.MaxDiscard != 0 {
		l.MaxDiscard = d.lim.MaxDiscard
	}
	return l
}

func (d *Driver) Flush() error {
	d.mu.Lock()
	gen := d.writeGen
	d.mu.Unlock()
	if gen == d.flushedGen {
		return nil
	}
	if err := d.ruleCheck(0, 0, ioFlush); err != nil {
		return err
	}
	if err := d.file.Flush(); err != nil {
		return err
	}
	d.mu.Lock()
	d.flushedGen = gen
	d.mu.Unlock()
	return nil
}

// written counts a write request (bdrv_co_write_req_finish).
func (d *Driver) written() {
	d.mu.Lock()
	d.writeGen++
	d.mu.Unlock()
}

func (d *Driver) Close() error { return nil }

// WriteZeroes is blkdebug_co_pwrite_zeroes: pieces smaller than the zero
// alignment fall back to writes.
func (d *Driver) WriteZeroes(off, n int64, flags image.ZeroFlags) error {
	l := d.Limits()
	if n < max(l.RequestAlignment, l.ZeroAlignment) {
		return image.ErrNotSupported
	}
	defer d.written()
	if err := d.ruleCheck(off, n, ioWriteZeroes); err != nil {
		return err
	}
	return d.file.WriteZeroes(off, n, flags, false)
}

func (d *Driver) SupportedZeroFlags() image.ZeroFlags {
	if z, ok := d.file.Driver().(image.Zeroer); ok {
		return z.SupportedZeroFlags()
	}
	return 0
}

// Discard is blkdebug_co_pdiscard.
func (d *Driver) Discard(off, n int64) error {
	if n < d.Limits().RequestAlignment {
		return image.ErrNotSupported
	}
	defer d.written()
	if err := d.ruleCheck(off, n, ioDiscard); err != nil {
		return err
	}
	return d.file.Discard(off, n)
}

// BlockStatus is blkdebug_co_block_status (bdrv_co_block_status_from_file):
// BDRV_BLOCK_RAW, so the answer is the image node's own, allocation
// included; its backing chain is walked through Backing.
func (d *Driver) BlockStatus(off, n int64, wantZero bool) (image.Extent, error) {
	if err := d.ruleCheck(off, n, ioBlockStatus); err != nil {
		return image.Extent{}, err
	}
	e, err := d.file.BlockStatus(off, n, wantZero)
	if err != nil {
		return e, err
	}
	e.Status &^= image.StatusEOF
	return e, nil
}

// Backing is the image node's backing file: a filter shows its child's
// chain.
func (d *Driver) Backing() *image.Disk {
	if b, ok := d.file.Driver().(image.Backed); ok {
		return b.Backing()
	}
	return nil
}

// Truncate passes to the image, as QEMU does for a filter.
func (d *Driver) Truncate(size int64, p image.Prealloc) error { return d.file.Truncate(size, p) }

// Info is the image's, as bdrv_co_get_info for a filter.
func (d *Driver) Info() (image.Info, error) {
	i, err := d.file.Info()
	i.FormatName, i.ProtocolName = "blkdebug", ""
	return i, err
}
