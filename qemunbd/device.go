package qemunbd

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/goqio/goqio/nbd"
	"github.com/goqio/goqio/nbd/client"
	"golang.org/x/sys/unix"
)

// The kernel NBD client's ioctls (linux/nbd.h).
const (
	nbdSetSock       = 0xab00
	nbdSetBlksize    = 0xab01
	nbdDoIt          = 0xab03
	nbdClearSock     = 0xab04
	nbdClearQue      = 0xab05
	nbdSetSizeBlocks = 0xab07
	nbdDisconnect    = 0xab08
	nbdSetFlags      = 0xab0a
)

// socketPathFor is qemu-nbd's SOCKET_PATH: where the server listens for the
// kernel's client when -c is given without -k.
func socketPathFor(device string) string { return "/var/lock/qemu-nbd-" + filepath.Base(device) }

// ioctl is an NBD ioctl with its argument as a value.
func ioctl(fd uintptr, req uint, arg uint64) error { return unix.IoctlSetInt(int(fd), req, int(arg)) }

// disconnectDevice is -d: nbd_disconnect on the device.
func (e *env) disconnectDevice(dev string) int {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return e.fail("Cannot open %s: %s", dev, sysErr(err))
	}
	defer f.Close()
	// errors ignored, as QEMU ignores them
	ioctl(f.Fd(), nbdClearQue, 0)
	ioctl(f.Fd(), nbdDisconnect, 0)
	ioctl(f.Fd(), nbdClearSock, 0)
	fmt.Fprintf(e.stdout, "%s disconnected\n", dev)
	return 0
}

// deviceClient is qemu-nbd's nbd_client_thread for -c: it connects to the
// server on sockpath, negotiates as the kernel's client would be, hands
// the socket to the device (nbd_init) and runs it until the device is
// disconnected (nbd_client). connected is called once the device runs.
// The result is the thread's: 0 after a clean disconnect, else 1; the
// caller then ends the server, as QEMU's thread does with a SIGTERM.
func (e *env) deviceClient(device, sockpath, srcpath string, verbose bool, connected func()) int {
	conn, err := net.Dial("unix", sockpath)
	if err != nil {
		e.report("Failed to connect to '%s': %s", sockpath, sysErr(err))
		return 1
	}
	defer conn.Close()
	info, err := client.Handshake(conn, client.Options{NoStructuredReply: true, NoMetaContext: true, NoBlockSize: true})
	if err != nil {
		e.report("%v", err)
		return 1
	}
	dev, err := os.OpenFile(device, os.O_RDWR, 0)
	if err != nil {
		e.report("Failed to open %s: %s", device, sysErr(err))
		return 1
	}
	defer dev.Close()
	sock, err := conn.(*net.UnixConn).File() // a blocking descriptor, for the kernel
	if err != nil {
		e.report("Failed to set NBD socket")
		return 1
	}
	defer sock.Close()
	if msg := nbdInit(dev.Fd(), sock.Fd(), info); msg != "" {
		e.report("%s", msg)
		return 1
	}
	// an open() makes the kernel read the partition table
	go func() {
		if f, err := os.OpenFile(device, os.O_RDWR, 0); err == nil {
			f.Close()
		}
	}()
	if verbose {
		fmt.Fprintf(e.stderr, "NBD device %s is now connected to %s\n", device, srcpath)
	} else if connected != nil {
		connected()
	}
	err = ioctl(dev.Fd(), nbdDoIt, 0)
	ioctl(dev.Fd(), nbdClearQue, 0)
	ioctl(dev.Fd(), nbdClearSock, 0)
	if err != nil && err != syscall.EPIPE { // EPIPE: disconnected with NBD_DISCONNECT
		return 1
	}
	return 0
}

// nbdInit is QEMU's nbd_init: the socket, block size, size and flags
// given to the device; the error text, or "".
func nbdInit(dev, sock uintptr, info client.Info) string {
	sector := uint64(max(512, info.MinBlock))
	if err := ioctl(dev, nbdSetSock, uint64(sock)); err != nil {
		return "Failed to set NBD socket"
	}
	if err := ioctl(dev, nbdSetBlksize, sector); err != nil {
		return "Failed setting NBD block size"
	}
	if err := ioctl(dev, nbdSetSizeBlocks, info.Size/sector); err != nil {
		return "Failed setting size (in blocks)"
	}
	if err := ioctl(dev, nbdSetFlags, uint64(info.Flags)); err != nil {
		if err != syscall.ENOTTY {
			return "Failed setting flags"
		}
		ro := int32(0)
		if info.Flags&nbd.FlagReadOnly != 0 {
			ro = 1
		}
		if err := unix.IoctlSetPointerInt(int(dev), unix.BLKROSET, int(ro)); err != nil {
			return "Failed setting read-only attribute"
		}
	}
	return ""
}
