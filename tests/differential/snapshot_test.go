package differential

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSnapshots: on images with internal snapshots made by qemu-img,
// goqio's writes keep every snapshot intact (applying it with qemu-img
// afterwards gives the snapshot's data back), goqio snapshot -l lists what
// qemu-img snapshot -l lists, and goqio check agrees with qemu-img check.
func TestSnapshots(t *testing.T) {
	tl := setup(t)
	dir := t.TempDir()
	var imgs [2]string
	for i, prog := range []string{tl.qemuIO, tl.goqio} {
		p := filepath.Join(dir, fmt.Sprintf("s%d.qcow2", i))
		imgs[i] = p
		run := func(name string, args ...string) string {
			o, e, rc := sh(t, dir, "", name, args...)
			if rc != 0 {
				t.Fatalf("%s %v: %s%s", name, args, o, e)
			}
			return o
		}
		run(tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", p, "4M")
		run(prog, "-c", "write -P 1 0 64k", "-c", "write -P 2 1M 16k", p)
		run(tl.qemuImg, "snapshot", "-c", "first", p)
		run(prog, "-c", "write -P 3 0 8k", "-c", "write -z 1M 4k", "-c", "discard 1028k 4k", "-c", "write -P 4 2M 4k", p)
		run(tl.qemuImg, "snapshot", "-c", "a rather long snapshot name", p)
		run(prog, "-c", "write -P 5 60k 8k", "-c", "write -zu 0 4k", p)
	}
	for _, args := range [][]string{{"snapshot", "-l"}, {"check"}} {
		var outs [2]string
		for i, prog := range []string{tl.qemuImg, tl.goqio} {
			o, e, rc := sh(t, dir, "", prog, append(args, imgs[1])...)
			outs[i] = strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", o, e, rc), filepath.Base(prog)+":", "PROG:")
		}
		if outs[0] != outs[1] {
			t.Errorf("%v:\nqemu-img:\n%s\ngoqio:\n%s", args, outs[0], outs[1])
		}
	}
	// the dates differ, everything else must not
	l0, _, _ := sh(t, dir, "", tl.qemuImg, "snapshot", "-l", imgs[0])
	l1, _, _ := sh(t, dir, "", tl.qemuImg, "snapshot", "-l", imgs[1])
	if len(strings.Split(l0, "\n")) != len(strings.Split(l1, "\n")) {
		t.Errorf("snapshot lists differ:\n%s\n%s", l0, l1)
	}
	// every snapshot's content, and the current one, equal to QEMU's
	for _, snap := range []string{"", "a rather long snapshot name", "first"} {
		var data [2][]byte
		for i, p := range imgs {
			q := filepath.Join(dir, fmt.Sprintf("apply%d.qcow2", i))
			b, _ := os.ReadFile(p)
			os.WriteFile(q, b, 0o644)
			if snap != "" {
				if o, e, rc := sh(t, dir, "", tl.qemuImg, "snapshot", "-a", snap, q); rc != 0 {
					t.Fatalf("apply %q: %s%s", snap, o, e)
				}
			}
			r := filepath.Join(dir, fmt.Sprintf("apply%d.raw", i))
			if o, e, rc := sh(t, dir, "", tl.qemuImg, "convert", "-O", "raw", q, r); rc != 0 {
				t.Fatalf("convert: %s%s", o, e)
			}
			data[i], _ = os.ReadFile(r)
		}
		if !bytes.Equal(data[0], data[1]) {
			t.Errorf("snapshot %q: content differs between the image qemu-io wrote and the one goqio wrote", snap)
		}
	}
}

// TestSnapshotCommands: goqio snapshot -c, -a and -d leave the image as
// qemu-img snapshot does (byte for byte but for the snapshots' dates):
// copies of the L1 table, refcounts, COPIED flags, the snapshot table, the
// size restored by -a; also their refusals.
func TestSnapshotCommands(t *testing.T) {
	tl := setup(t)
	dir := t.TempDir()
	// (one compressed cluster only: QEMU compresses several in parallel, so
	// their places in the file vary from run to run)
	for _, tc := range []struct{ opts, cl string }{{"cluster_size=4096", "4k"}, {"cluster_size=65536,extended_l2=on", "64k"},
		{"cluster_size=512,refcount_bits=8", "512"}, {"compat=0.10", "64k"}} {
		opts := tc.opts
		t.Run(opts, func(t *testing.T) {
			var logs [2]string
			var files [2][]byte
			for i, prog := range []string{tl.qemuImg, tl.goqio} {
				wd := filepath.Join(dir, fmt.Sprintf("%s-%d", strings.NewReplacer("=", "", ",", "").Replace(opts), i))
				os.Mkdir(wd, 0o755)
				p := "t.qcow2"
				var b strings.Builder
				step := func(name string, args ...string) {
					o, e, rc := sh(t, wd, "", name, args...)
					fmt.Fprintf(&b, "%s %v: %s%s[%d]\n", filepath.Base(name), args, o, e, rc)
				}
				snap := func(args ...string) { // the command under test
					o, e, rc := sh(t, wd, "", prog, append([]string{"snapshot"}, args...)...)
					o = strings.ReplaceAll(o+e, filepath.Base(prog), "PROG")
					fmt.Fprintf(&b, "snapshot %v: %s[%d]\n", args, o, rc)
				}
				io := func(cmds ...string) {
					var a []string
					for _, c := range cmds {
						a = append(a, "-c", c)
					}
					step(tl.qemuIO, append(a, p)...)
				}
				step(tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", opts, p, "4M")
				io("write -P 1 0 64k", "write -P 2 1M 16k", "write -c -P 3 2M "+tc.cl)
				snap("-c", "first", p)
				io("write -P 4 0 8k", "write -z 1M 4k", "discard 1028k 4k")
				snap("-c", "second", p)
				io("write -P 5 60k 8k", "truncate 6M", "write -P 7 5M 4k")
				snap("-a", "first", p)
				io("write -P 6 8k 4k", "read -P 1 0 8k", "read -P 6 8k 4k")
				snap("-d", "second", p)
				snap("-a", "1", p)
				snap("-d", "1", p)
				snap("-d", "nope", p)
				snap("-a", "nope", p)
				snap("-c", "third", p)
				snap("-c", "first", p)
				snap("-d", "first", p)
				snap("-c", "a", "-d", "b", p)
				step(tl.qemuImg, "check", p)
				step(tl.qemuImg, "map", "--output=json", p)
				logs[i] = timing.ReplaceAllString(b.String(), "OPS")
				files[i] = maskSnapshotDates(t, filepath.Join(wd, p))
			}
			if logs[0] != logs[1] {
				t.Errorf("qemu-img:\n%s\ngoqio:\n%s", logs[0], logs[1])
			}
			if !bytes.Equal(files[0], files[1]) {
				t.Errorf("the images differ (snapshot dates aside)")
			}
		})
	}
}

// maskSnapshotDates returns the image file with the date fields of its
// snapshot table entries zeroed.
func maskSnapshotDates(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	nb, off := int(be.Uint32(b[60:])), int(be.Uint64(b[64:]))
	for i := 0; i < nb && off+40 <= len(b); i++ {
		off = (off + 7) &^ 7
		h := b[off:]
		idl, nl, ex := int(be.Uint16(h[12:])), int(be.Uint16(h[14:])), int(be.Uint32(h[36:]))
		clear(h[16:24])
		off += 40 + ex + idl + nl
	}
	return b
}

// TestSnapshotL1Invalid: with overlap-check.inactive-l2=on, every metadata
// write reads the snapshots' L1 tables; a snapshot whose L1 table offset
// is unaligned or whose size is too large makes the write fail with
// EINVAL or EFBIG (qcow2_validate_table in the overlap check), and the
// refcount flush at close reports it, as qemu-io does; the image is left
// as qemu-io leaves it.
func TestSnapshotL1Invalid(t *testing.T) {
	tl := setup(t)
	for _, c := range []struct {
		name  string
		field int64 // offset in the snapshot table entry
		value []byte
	}{
		{"offset", 0, []byte{0, 0, 0, 0, 0, 0x40, 2, 0}},
		{"size", 8, []byte{0x10, 0, 0, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var outs, checks [2]string
			for i, prog := range []string{tl.qemuIO, tl.goqio} {
				p := filepath.Join(dir, fmt.Sprintf("i%d.qcow2", i))
				for _, args := range [][]string{
					{tl.qemuImg, "create", "-q", "-f", "qcow2", p, "64M"},
					{tl.qemuIO, "-c", "write 0 512", p},
					{tl.qemuImg, "snapshot", "-c", "test", p},
				} {
					if o, e, rc := sh(t, dir, "", args[0], args[1:]...); rc != 0 {
						t.Fatalf("%v: %s%s", args, o, e)
					}
				}
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				snapOff := int64(binary.BigEndian.Uint64(b[64:]))
				copy(b[snapOff+c.field:], c.value)
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				o, e, rc := sh(t, dir, "", prog, "-c", "open -o overlap-check.inactive-l2=on "+p, "-c", "write 0 4k")
				outs[i] = strings.ReplaceAll(strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", e, o, rc), p, "IMG"),
					filepath.Base(prog)+":", "PROG:")
				o, e, rc = sh(t, dir, "", tl.qemuImg, "check", p)
				checks[i] = strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", e, o, rc), p, "IMG")
			}
			if outs[0] != outs[1] {
				t.Errorf("qemu-io:\n%s\ngoqio:\n%s", outs[0], outs[1])
			}
			if checks[0] != checks[1] {
				t.Errorf("check after qemu-io:\n%s\nafter goqio:\n%s", checks[0], checks[1])
			}
		})
	}
}
