package commands

import "github.com/goqio/goqio/image"

// VMStater is implemented by drivers that store VM state (qcow2). Raw
// images have none, and qemu-io answers "Operation not supported".
type VMStater interface {
	ReadVMState(p []byte, pos int64) error
	WriteVMState(p []byte, pos int64) error
}

// vmstate reads or writes the VM state area (read -b, write -b).
func (s *Session) vmstate(write bool, buf []byte, pos int64) error {
	vs, ok := s.disk.Driver().(VMStater)
	if !ok {
		return image.ErrNotSupported
	}
	if write {
		if err := vs.WriteVMState(buf, pos); err != nil {
			return err
		}
		if s.disk.WriteThrough() {
			return s.disk.Flush()
		}
		return nil
	}
	return vs.ReadVMState(buf, pos)
}
