package qcow2

import (
	"testing"

	"github.com/goqio/goqio/image"
)

// A VM state request is checked again at its place in the VM state area,
// as QEMU's qcow2_check_vmstate_request: past BDRV_MAX_LENGTH it is EIO,
// not a host write that fails with EFBIG.
func TestVMStateRequestBounds(t *testing.T) {
	p := create(t, CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16})
	d, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	vo := d.vmStateOffset()
	buf := make([]byte, 512)
	for _, pos := range []int64{image.MaxLength - 512, image.MaxLength - vo - 256, 1<<63 - 1 - vo + 1} {
		if err := d.WriteVMState(buf, pos); err != image.ErrOutOfRange {
			t.Errorf("write at %d: got %v, want ErrOutOfRange", pos, err)
		}
		if err := d.ReadVMState(buf, pos); err != image.ErrOutOfRange {
			t.Errorf("read at %d: got %v, want ErrOutOfRange", pos, err)
		}
	}
	if err := d.WriteVMState(buf, 512); err != nil {
		t.Error(err)
	}
}
