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

// TestCheck: goqio check prints what qemu-img check prints, with the same
// exit code, on clean, leaking and corrupted images (human and JSON), and
// repairs leaks as qemu-img check -r leaks does.
func TestCheck(t *testing.T) {
	tl := setup(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	if _, e, rc := sh(t, dir, "", tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", base, "8M"); rc != 0 {
		t.Fatal(e)
	}
	sh(t, dir, "", tl.qemuIO, "-c", "write -P 1 0 100k", "-c", "write -c -P 2 1M 4k", "-c", "write -z 2M 64k", "-c", "write -P 3 3M 4k", base)
	valid, _ := os.ReadFile(base)
	be16 := func(b []byte, off int, v uint16) { binary.BigEndian.PutUint16(b[off:], v) }
	// refcount block at 0x2000 (4 KiB clusters): entry i is at 0x2000+2i
	damages := map[string]func([]byte){
		"clean":         func(b []byte) {},
		"leak":          func(b []byte) { be16(b, 0x2000+2*5, 2) },
		"leak-free":     func(b []byte) { be16(b, 0x2000+2*3, 0); be16(b, 0x2000+2*(len(valid)/4096-1), 7) },
		"corruption":    func(b []byte) { be16(b, 0x2000+2*6, 0) },
		"too-low":       func(b []byte) { be16(b, 0x2000+2*5, 1) },
		"copied-flag":   func(b []byte) { b[0x4000] &^= 0x80 },
		"l1-copied":     func(b []byte) { b[0x3000] &^= 0x80 },
		"shared-twice":  func(b []byte) { be16(b, 0x2000+2*8, 2) },
		"beyond-eof":    func(b []byte) { binary.BigEndian.PutUint64(b[0x4000:], 1<<63|1<<52) },
		"l2-beyond-eof": func(b []byte) { binary.BigEndian.PutUint64(b[0x3000:], 1<<63|1<<44) },
	}
	for name, damage := range damages {
		name, damage := name, damage
		t.Run(name, func(t *testing.T) {
			img := append([]byte(nil), valid...)
			damage(img)
			for _, args := range [][]string{{"check"}, {"check", "--output=json"}, {"check", "-r", "leaks"}, {"check", "-r", "all"}} {
				var outs [2]string
				var files [2][]byte
				for i, prog := range []string{tl.qemuImg, tl.goqio} {
					p := filepath.Join(dir, fmt.Sprintf("%s-%d.qcow2", name, i))
					os.WriteFile(p, img, 0o644)
					o, e, rc := sh(t, dir, "", prog, append(args, filepath.Base(p))...)
					outs[i] = fmt.Sprintf("%s%s[%d]", o, e, rc)
					outs[i] = strings.ReplaceAll(outs[i], filepath.Base(p), "IMG")
					outs[i] = strings.ReplaceAll(outs[i], filepath.Base(prog)+":", "PROG:")
					if len(args) > 1 && args[1] == "-r" {
						co, _, crc := sh(t, dir, "", tl.qemuImg, "check", filepath.Base(p))
						outs[i] += fmt.Sprintf("\nafter repair: %s[%d]", co, crc)
					}
					files[i], _ = os.ReadFile(p)
				}
				if !bytes.Equal(files[0], files[1]) {
					off := 0
					for off < len(files[0]) && off < len(files[1]) && files[0][off] == files[1][off] {
						off++
					}
					t.Errorf("%v: image files differ (sizes %d, %d; first difference at byte %#x)", args, len(files[0]), len(files[1]), off)
				}
				if outs[0] != outs[1] {
					t.Errorf("%v:\nqemu-img:\n%s\ngoqio:\n%s", args, outs[0], outs[1])
				}
			}
		})
	}
}

// TestDirtyRepairOnOpen: a qcow2 image with lazy refcounts whose dirty bit
// is set (a crash) is checked and repaired when opened read-write, as QEMU
// does; what is printed and the repaired file are QEMU's.
func TestDirtyRepairOnOpen(t *testing.T) {
	tl := setup(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	if _, e, rc := sh(t, dir, "", tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096,lazy_refcounts=on", base, "8M"); rc != 0 {
		t.Fatal(e)
	}
	sh(t, dir, "", tl.qemuIO, "-c", "write -P 1 0 40k", "-c", "write -P 3 3M 4k", base)
	valid, _ := os.ReadFile(base)
	damages := map[string]func([]byte){
		"dirty-only": func(b []byte) { b[79] |= 1 },
		"dirty-leak": func(b []byte) { b[79] |= 1; binary.BigEndian.PutUint16(b[0x2000+2*5:], 2) },
		"dirty-zero": func(b []byte) { b[79] |= 1; binary.BigEndian.PutUint16(b[0x2000+2*6:], 0) },
		"dirty-unref": func(b []byte) {
			b[79] |= 1
			binary.BigEndian.PutUint16(b[0x2000+2*7:], 0)
			binary.BigEndian.PutUint16(b[0x2000+2*8:], 0)
		},
	}
	for name, damage := range damages {
		img := append([]byte(nil), valid...)
		damage(img)
		for _, ro := range []bool{false, true} {
			var outs [2]string
			var files [2][]byte
			for i, prog := range []string{tl.qemuIO, tl.goqio} {
				p := filepath.Join(dir, fmt.Sprintf("%s-%d.qcow2", name, i))
				os.WriteFile(p, img, 0o644)
				args := []string{"-c", "read -P 1 0 40k", "-c", "write -P 9 64k 4k", p}
				if ro {
					args = append([]string{"-r"}, args...)
				}
				o, e, rc := sh(t, dir, "", prog, args...)
				outs[i] = strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", o, e, rc), filepath.Base(p), "IMG")
				outs[i] = strings.ReplaceAll(outs[i], filepath.Base(prog)+":", "PROG:")
				co, _, crc := sh(t, dir, "", tl.qemuImg, "check", p)
				outs[i] += fmt.Sprintf("\nqemu-img check: %s[%d]", strings.ReplaceAll(co, filepath.Base(p), "IMG"), crc)
				files[i], _ = os.ReadFile(p)
			}
			outs[0] = filter(outs[0])
			outs[1] = filter(outs[1])
			if outs[0] != outs[1] {
				t.Errorf("%s (ro=%v):\nqemu-io:\n%s\ngoqio:\n%s", name, ro, outs[0], outs[1])
			}
			if !bytes.Equal(files[0], files[1]) {
				t.Errorf("%s (ro=%v): image files differ", name, ro)
			}
		}
	}
}

// TestCheckOddFiles: goqio check on a directory, a missing file and an
// empty file answers as qemu-img check does, read-only and repairing.
func TestCheckOddFiles(t *testing.T) {
	tl := setup(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "adir"), 0o755)
	os.WriteFile(filepath.Join(dir, "empty.img"), nil, 0o644)
	for _, f := range []string{"adir", "missing", "empty.img"} {
		for _, args := range [][]string{{"check"}, {"check", "-r", "all"}, {"check", "-f", "qcow2"}, {"check", "-r", "leaks", "-f", "qcow2"}} {
			var outs [2]string
			for i, prog := range []string{tl.qemuImg, tl.goqio} {
				o, e, rc := sh(t, dir, "", prog, append(args, f)...)
				outs[i] = strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", o, e, rc), filepath.Base(prog)+":", "PROG:")
			}
			if outs[0] != outs[1] {
				t.Errorf("%v %s:\nqemu-img: %s\ngoqio:    %s", args, f, outs[0], outs[1])
			}
		}
	}
}
