package raw

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/goqio/goqio/image"
)

// Permission bits of QEMU's block layer, as used in its image locks.
const (
	PermConsistentRead = 1 << iota
	PermWrite
	PermWriteUnchanged
	PermResize
)

var permNames = []string{"consistent read", "write", "write unchanged", "resize"}

// Lock says which permissions an open image holds and which it refuses to
// share. QEMU expresses both as OFD read locks on single bytes of the image
// file: 100+bit for a permission held, 200+bit for one not shared; another
// process that wants a permission tests the 200 byte, one that refuses to
// share tests the 100 byte. goqio takes the same locks, so a qemu-io (or
// QEMU) and a goqio process on the same image exclude each other.
type Lock struct {
	Perm     uint
	Unshared uint
}

const (
	lockPermBase   = 100
	lockSharedBase = 200
)

// lockError is QEMU's message for a lock conflict.
type lockError struct{ msg string }

func (e *lockError) Error() string { return e.msg }

func ofd(fd int, cmd int, typ int16, off int64) (unix.Flock_t, error) {
	fl := unix.Flock_t{Type: typ, Whence: 0, Start: off, Len: 1}
	err := unix.FcntlFlock(uintptr(fd), cmd, &fl)
	return fl, err
}

// applyLock takes the lock bytes and checks for conflicts with other
// processes, as QEMU's raw_apply_lock_bytes and raw_check_lock_bytes.
// A file system without OFD locks gets no locking, as QEMU's locking=auto.
func applyLock(fd int, l Lock, name string) error {
	for i := 0; i < len(permNames); i++ {
		if l.Perm&(1<<i) != 0 {
			if _, err := ofd(fd, unix.F_OFD_SETLK, unix.F_RDLCK, int64(lockPermBase+i)); err != nil {
				if err == unix.EINVAL || err == unix.ENOTSUP || err == unix.ENOLCK {
					return nil
				}
				return lockErr(fmt.Sprintf("Failed to lock byte %d", lockPermBase+i), err, name)
			}
		}
	}
	for i := 0; i < len(permNames); i++ {
		if l.Unshared&(1<<i) != 0 {
			if _, err := ofd(fd, unix.F_OFD_SETLK, unix.F_RDLCK, int64(lockSharedBase+i)); err != nil {
				return lockErr(fmt.Sprintf("Failed to lock byte %d", lockSharedBase+i), err, name)
			}
		}
	}
	for i := 0; i < len(permNames); i++ {
		if l.Perm&(1<<i) != 0 {
			fl, err := ofd(fd, unix.F_OFD_GETLK, unix.F_WRLCK, int64(lockSharedBase+i))
			if err == nil && fl.Type != unix.F_UNLCK {
				err = unix.EAGAIN
			}
			if err != nil {
				return lockErr(fmt.Sprintf("Failed to get \"%s\" lock", permNames[i]), err, name)
			}
		}
	}
	for i := 0; i < len(permNames); i++ {
		if l.Unshared&(1<<i) != 0 {
			fl, err := ofd(fd, unix.F_OFD_GETLK, unix.F_WRLCK, int64(lockPermBase+i))
			if err == nil && fl.Type != unix.F_UNLCK {
				err = unix.EAGAIN
			}
			if err != nil {
				return lockErr(fmt.Sprintf("Failed to get shared \"%s\" lock", permNames[i]), err, name)
			}
		}
	}
	return nil
}

func lockErr(msg string, err error, name string) error {
	var b strings.Builder
	b.WriteString(msg)
	if err == unix.EAGAIN || err == unix.EACCES {
		fmt.Fprintf(&b, "\nIs another process using the image [%s]?", name)
	} else {
		fmt.Fprintf(&b, ": %s", image.StrerrorOf(err))
	}
	return &lockError{b.String()}
}

// CheckCreateLock is the lock check of QEMU's raw_co_create before it
// truncates an existing file: write and resize taken, resize unshared.
// An image another user has open (the source of qemu-img convert, say)
// fails with QEMU's message, and the file is left as it was. A missing
// file passes.
func CheckCreateLock(path string) error {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	return applyLock(fd, Lock{Perm: PermWrite | PermResize, Unshared: PermResize}, path)
}
