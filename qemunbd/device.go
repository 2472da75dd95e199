package qemunbd

import (
	"fmt"
	"os"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
)

// disconnectDevice is -d: the kernel device's NBD_DISCONNECT.
func (e *env) disconnectDevice(dev string) int {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return e.fail("Cannot open %s: %s", dev, sysErr(err))
	}
	defer f.Close()
	nbdDisconnect(f)
	fmt.Fprintf(e.stdout, "%s disconnected\n", dev)
	return 0
}

// connectDevice is -c: the image served to the kernel's NBD client on dev.
func (e *env) connectDevice(cfg *config, graph *formats.Graph, src string) int {
	f, err := os.OpenFile(cfg.device, os.O_RDWR, 0)
	if err != nil {
		return e.fail("Failed to open %s: %s", cfg.device, sysErr(err))
	}
	f.Close()
	_ = image.DetectZeroesOff
	return e.fail("Failed to open %s: goqio does not drive kernel NBD devices yet", cfg.device)
}

func nbdDisconnect(f *os.File) {}
