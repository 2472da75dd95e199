package image_test

import (
	"errors"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/imagetest"
)

// capDriver is a MemDriver with compressed writes and a VM state area,
// recording what reaches them.
type capDriver struct {
	*imagetest.MemDriver
	dead     bool
	ops      []string
	flushes  int
	vmstate  []byte
	lastComp []byte
}

func (c *capDriver) Dead() bool { return c.dead }

func (c *capDriver) Flush() error { c.flushes++; return c.MemDriver.Flush() }

func (c *capDriver) WriteCompressed(p []byte, off int64) error {
	c.ops = append(c.ops, "compressed")
	c.lastComp = append([]byte(nil), p...)
	return nil
}

func (c *capDriver) ReadVMState(p []byte, pos int64) error {
	c.ops = append(c.ops, "vmread")
	copy(p, c.vmstate[pos:])
	return nil
}

func (c *capDriver) WriteVMState(p []byte, pos int64) error {
	c.ops = append(c.ops, "vmwrite")
	copy(c.vmstate[pos:], p)
	return nil
}

func newCap(opts image.Options) (*capDriver, *image.Disk) {
	c := &capDriver{MemDriver: imagetest.NewMem(1<<20, image.Limits{}, false), vmstate: make([]byte, 4096)}
	return c, image.New(c, "cap", opts)
}

// Compressed writes are Disk operations: checked as writes (read-only,
// usable, in bounds) before the driver sees them, and refused with
// ErrNotSupported by a driver that cannot compress, as QEMU's
// blk_pwrite_compressed.
func TestWriteCompressed(t *testing.T) {
	c, d := newCap(image.Options{})
	if err := d.WriteCompressed(make([]byte, 65536), 0); err != nil || len(c.ops) != 1 {
		t.Fatalf("in range: err %v, ops %v", err, c.ops)
	}
	if err := d.WriteCompressed(nil, 1<<20); err != nil || len(c.ops) != 2 {
		t.Fatalf("zero length at the end reaches the driver: err %v, ops %v", err, c.ops)
	}
	for _, r := range []struct{ off, n int64 }{{1<<20 - 512, 1024}, {1<<20 + 512, 0}, {-512, 512}} {
		if err := d.WriteCompressed(make([]byte, r.n), r.off); !errors.Is(err, image.ErrOutOfRange) {
			t.Errorf("%d+%d: got %v, want ErrOutOfRange", r.off, r.n, err)
		}
	}
	c.dead = true
	if err := d.WriteCompressed(make([]byte, 512), 2<<20); !errors.Is(err, image.ErrNoMedium) {
		t.Errorf("unusable image: got %v, want ErrNoMedium (before the bounds)", err)
	}
	c, ro := newCap(image.Options{ReadOnly: true})
	if err := ro.WriteCompressed(make([]byte, 512), 0); !errors.Is(err, image.ErrReadOnly) {
		t.Errorf("read-only: got %v", err)
	}
	if len(c.ops) != 0 {
		t.Errorf("refused requests reached the driver: %v", c.ops)
	}
	// QEMU's compressed path has no FUA: no flush after it
	c, wt := newCap(image.Options{WriteThrough: true})
	if err := wt.WriteCompressed(make([]byte, 512), 0); err != nil || c.flushes != 0 {
		t.Errorf("write-through: err %v, %d flushes", err, c.flushes)
	}
	plain := image.New(imagetest.NewMem(1<<20, image.Limits{}, false), "mem", image.Options{})
	if err := plain.WriteCompressed(make([]byte, 512), 0); !errors.Is(err, image.ErrNotSupported) {
		t.Errorf("no compression: got %v, want ErrNotSupported", err)
	}
}

// VM state reads and writes are Disk operations as QEMU's blk_load_vmstate
// and blk_save_vmstate: an unusable image is ENOMEDIUM, a position past
// BDRV_MAX_LENGTH EIO, a driver without VM state ENOTSUP, and a
// write-through Disk flushes after a write.
func TestVMState(t *testing.T) {
	c, d := newCap(image.Options{WriteThrough: true})
	if err := d.WriteVMState([]byte{1, 2, 3}, 100); err != nil {
		t.Fatal(err)
	}
	if c.flushes != 1 {
		t.Errorf("write-through: %d flushes after a VM state write, want 1", c.flushes)
	}
	p := make([]byte, 3)
	if err := d.ReadVMState(p, 100); err != nil || string(p) != "\x01\x02\x03" {
		t.Errorf("read back: %v %v", p, err)
	}
	for _, r := range []struct{ pos, n int64 }{{-1, 1}, {image.MaxLength - 1, 2}, {image.MaxLength + 1, 0}} {
		if err := d.ReadVMState(make([]byte, r.n), r.pos); !errors.Is(err, image.ErrOutOfRange) {
			t.Errorf("read %d+%d: got %v, want ErrOutOfRange", r.pos, r.n, err)
		}
		if err := d.WriteVMState(make([]byte, r.n), r.pos); !errors.Is(err, image.ErrOutOfRange) {
			t.Errorf("write %d+%d: got %v, want ErrOutOfRange", r.pos, r.n, err)
		}
	}
	c.dead = true
	if err := d.ReadVMState(p, 0); !errors.Is(err, image.ErrNoMedium) {
		t.Errorf("unusable image: got %v", err)
	}
	if err := d.WriteVMState(p, 0); !errors.Is(err, image.ErrNoMedium) {
		t.Errorf("unusable image: got %v", err)
	}
	if len(c.ops) != 2 {
		t.Errorf("refused requests reached the driver: %v", c.ops)
	}
	_, ro := newCap(image.Options{ReadOnly: true})
	if err := ro.WriteVMState(p, 0); !errors.Is(err, image.ErrReadOnly) {
		t.Errorf("read-only: got %v", err)
	}
	plain := image.New(imagetest.NewMem(1<<20, image.Limits{}, false), "mem", image.Options{})
	if err := plain.ReadVMState(p, 0); !errors.Is(err, image.ErrNotSupported) {
		t.Errorf("no VM state: got %v", err)
	}
	if err := plain.WriteVMState(p, 0); !errors.Is(err, image.ErrNotSupported) {
		t.Errorf("no VM state: got %v", err)
	}
}
