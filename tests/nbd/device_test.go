package nbd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDevice: -c and -d as qemu-nbd runs them, on a "device" that is a
// regular file (no machine here has to have the nbd module): -c serves
// the image on qemu-nbd's socket (/var/lock/qemu-nbd-NAME, or -k),
// connects to it as the kernel's client would be, opens the device and
// fails at NBD_SET_SOCK, with and without -v, --fork and -k; -d on a
// missing and on an existing device; a missing image.
func TestDevice(t *testing.T) {
	if st, err := os.Stat("/var/lock"); err != nil || !st.IsDir() {
		t.Skip("no /var/lock")
	}
	outs := map[string]string{}
	for name, prog := range servers(t) {
		dir := t.TempDir()
		sh(t, dir, chainSetup)
		// a name of this run's own: the default socket is per device name
		dev := filepath.Join(dir, "goqio-test-"+filepath.Base(dir))
		if err := os.WriteFile(dev, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, args := range [][]string{
			{"-c", dev, "-f", "qcow2", "t.qcow2"},
			{"-v", "-c", dev, "-f", "raw", "r.img"},
			{"--fork", "-c", dev, "-f", "qcow2", "t.qcow2"},
			{"-k", filepath.Join(dir, "d.sock"), "-c", dev, "-f", "qcow2", "t.qcow2"},
			{"-c", dev + ".missing", "-f", "qcow2", "t.qcow2"},
			{"-c", dev, "-f", "qcow2", "missing.qcow2"},
			{"-c", dev, "-r", "-f", "qcow2", "t.qcow2"},
			{"-d", dev}, {"-d", dev + ".missing"},
		} {
			out := runNBD(dir, prog, args...)
			b.WriteString(strings.Join(args, " ") + ": " + strings.ReplaceAll(out, dir, "DIR"))
		}
		if _, err := os.Stat("/var/lock/qemu-nbd-" + filepath.Base(dev)); err == nil {
			b.WriteString("socket left behind\n")
			os.Remove("/var/lock/qemu-nbd-" + filepath.Base(dev))
		}
		outs[name] = strings.ReplaceAll(b.String(), filepath.Base(dir), "N")
	}
	if outs["qemu"] != outs["goqio"] {
		t.Errorf("qemu-nbd:\n%s\ngoqio:\n%s", outs["qemu"], outs["goqio"])
	}
}
