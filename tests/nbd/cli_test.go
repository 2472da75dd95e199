package nbd

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCommandLine: qemu-nbd's messages and exit status for its command
// line, from goqio as from qemu-nbd (cases that end before serving, or
// serve on a unix socket and fail to open the image).
func TestCommandLine(t *testing.T) {
	srv := servers(t)
	dir := t.TempDir()
	sh(t, dir, chainSetup)
	long := strings.Repeat("x", 4097)
	cases := [][]string{
		{}, {"--bogus"}, {"-p"}, {"-V"}, {"--version"}, {"-h"}, {"--help"}, {"a", "b"},
		{"--detect-zeroes=foo", "x"}, {"--detect-zeroes=unmap", "x"}, {"--discard=unmap", "--detect-zeroes=unmap", "-k", dir + "/s1", "nonexist"},
		{"-e", "-1", "x"}, {"-e", "abc", "x"}, {"-k", "rel", "x"}, {"--cache=foo", "x"}, {"--aio=foo", "x"},
		{"--discard=foo", "x"}, {"-n", "-n", "x"}, {"-n", "--cache=none", "x"}, {"--aio=native", "--aio=native", "x"},
		{"--discard=unmap", "--discard=unmap", "x"}, {"-x", long, "x"}, {"-D", long, "x"}, {"-o", "abc", "x"},
		{"-L", "x"}, {"-L", "-x", "foo"}, {"-L", "--fork"}, {"-L", "-k", dir + "/nonexist"},
		{"--tls-hostname", "foo", "x"}, {"--tls-authz", "foo", "x"}, {"--tls-creds", "nope", "x"},
		{"--object", "secret,id=s0,data=x", "--tls-creds", "s0", "x"},
		{"--object", "tls-creds-x509,id=t0,dir=" + dir, "--tls-creds", "t0", "x"},
		{"--object", "tls-creds-x509,id=t0,dir=" + dir, "--tls-creds", "t0", "-c", "/dev/nbd0", "x"},
		{"--object", "tls-creds-x509,id=t0,dir=" + dir, "--tls-creds", "t0", "--tls-hostname", "h", "x"},
		{"--object", "help"}, {"--object", "secret,id=1x,data=x", "x"}, {"--object", "nosuch,id=x", "x"},
		{"--selinux-label", "l", "x"}, {"-d", dir + "/nonexist"},
		{"-k", dir + "/s2", "nonexist.img"}, {"-k", dir + "/s3", "-f", "qcow2", "r.img"},
		{"-k", dir + "/s4", "--image-opts", "-f", "raw", "r.img"}, {"-k", dir + "/s5", "-B", "nope", "-f", "qcow2", "bm.qcow2"},
		{"-k", dir + "/nodir/s.sock", "r.img"}, {"-k", dir + "/s6", "--image-opts", "driver=qcow2,file.filename=t.qcow2,bogus=1"},
		{"-k", dir + "/s7", "-f", "nosuchfmt", "r.img"},
		{"-l", "snapshot.foo=1", "x"}, {"-l", "snapshot.id=1,bogus", "x"}, {"-k", dir + "/s8", "-l", "nope", "t.qcow2"},
		{"-k", dir + "/s9", "-l", "snapshot.id=", "t.qcow2"}, {"-k", dir + "/s10", "-l", "s1", "-f", "raw", "r.img"},
	}
	if _, err := os.Stat("/dev/nbd0"); err != nil {
		// qemu-nbd's message where the kernel's device is missing
		cases = append(cases, []string{"-c", "/dev/nbd0", "-f", "raw", "r.img"}, []string{"-v", "-c", "/dev/nbd0", "-f", "raw", "r.img"})
	}
	for _, args := range cases {
		var res [2]string
		for i, name := range []string{"qemu", "goqio"} {
			cmd := exec.Command(srv[name], args...)
			cmd.Args[0] = "qemu-nbd"
			cmd.Dir = dir
			var o, e bytes.Buffer
			cmd.Stdout, cmd.Stderr = &o, &e
			err := cmd.Run()
			rc := 0
			if ee, ok := err.(*exec.ExitError); ok {
				rc = ee.ExitCode()
			}
			res[i] = "stdout:\n" + o.String() + "stderr:\n" + e.String() + "rc=" + string(rune('0'+rc))
		}
		if res[0] != res[1] {
			t.Errorf("qemu-nbd %q:\nqemu-nbd:\n%s\ngoqio:\n%s", args, res[0], res[1])
		}
	}
}
