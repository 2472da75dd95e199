package differential

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goqio/goqio/image/qcow2"
	"github.com/goqio/goqio/image/qcrypto"
	"github.com/goqio/goqio/internal/testbin"
)

// Encrypted images (issue 17): images goqio encrypts are read by the
// real qemu-io and qemu-img and the other way round, with equal guest
// data, clean checks and equal maps; wrong passwords and missing
// secrets get QEMU's messages. PBKDF2 is kept cheap: iter-time=10 and,
// for goqio's own creation, no benchmark (GOQIO_PBKDF2_ITERS_PER_SEC).

// cryptoEnv runs one tool in dir with goqio's benchmark knob and returns
// stdout+stderr (timing filtered) and the exit code.
func cryptoRun(t *testing.T, dir, prog string, args ...string) (string, int) {
	t.Helper()
	return cryptoRunStdin(t, dir, prog, "", args...)
}

// cryptoRunStdin is cryptoRun with a standard input.
func cryptoRunStdin(t *testing.T, dir, prog, stdin string, args ...string) (string, int) {
	t.Helper()
	for try := 0; ; try++ {
		out, rc := cryptoRun1(t, dir, prog, stdin, args...)
		if try < 10 && rc != 0 && testbin.QEMUFlake(out) {
			continue
		}
		return out, rc
	}
}

func cryptoRun1(t *testing.T, dir, prog, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	cmd.Args[0] = filepath.Base(prog)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOQIO_PBKDF2_ITERS_PER_SEC=100000")
	out, err := cmd.CombinedOutput()
	rc := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %q: %v", prog, args, err)
		}
		rc = ee.ExitCode()
	}
	return filter(string(out)), rc
}

type cryptoTools struct{ io, img, gio, gimg string }

func cryptoSetup(t *testing.T) cryptoTools {
	qio, qimg := testbin.QEMU(t)
	g := testbin.Goqio(t)
	bin := t.TempDir()
	for _, n := range []string{"qemu-io", "qemu-img"} {
		if err := os.Symlink(g, filepath.Join(bin, n)); err != nil {
			t.Fatal(err)
		}
	}
	return cryptoTools{qio, qimg, filepath.Join(bin, "qemu-io"), filepath.Join(bin, "qemu-img")}
}

const sec0 = "secret,id=sec0,data=astrochicken"

func init() {
	// the library's key slots in this process: no PBKDF2 benchmark
	qcrypto.IterationsPerSecond = func(string) uint64 { return 100000 }
}

func TestEncryptedInterop(t *testing.T) {
	tl := cryptoSetup(t)
	for _, c := range []struct {
		name, fmt, create, spec string
	}{
		{"qcow2-luks", "qcow2", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", "driver=qcow2,encrypt.key-secret=sec0,file.filename=img"},
		{"qcow2-luks-essiv-4k", "qcow2", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,cluster_size=4k", "driver=qcow2,encrypt.key-secret=sec0,file.filename=img"},
		{"qcow2-v2-aes", "qcow2", "encryption=on,encrypt.key-secret=sec0,compat=0.10", "driver=qcow2,encrypt.key-secret=sec0,file.filename=img"},
		{"luks", "luks", "key-secret=sec0,iter-time=10", "driver=luks,key-secret=sec0,file.filename=img"},
		{"luks-twofish", "luks", "key-secret=sec0,iter-time=10,cipher-alg=twofish-256,hash-alg=sha512", "driver=luks,key-secret=sec0,file.filename=img"},
		{"qcow2-luks-serpent-cbc", "qcow2", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,encrypt.cipher-alg=serpent-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv", "driver=qcow2,encrypt.key-secret=sec0,file.filename=img"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			// [0]: made by QEMU, [1]: made by goqio; each written by the
			// other side's qemu-io, then by its own, and read by both
			for side, creator := range []string{tl.img, tl.gimg} {
				dir := t.TempDir()
				if out, rc := cryptoRun(t, dir, creator, "create", "-q", "-f", c.fmt, "--object", sec0, "-o", c.create, "img", "4M"); rc != 0 {
					t.Fatalf("create: %s", out)
				}
				writers := []string{tl.gio, tl.io}
				if side == 1 {
					writers = []string{tl.io, tl.gio}
				}
				io := func(prog string, cmds ...string) string {
					args := []string{"--object", sec0}
					for _, c := range cmds {
						args = append(args, "-c", c)
					}
					out, rc := cryptoRun(t, dir, prog, append(args, "--image-opts", c.spec)...)
					if rc != 0 {
						t.Fatalf("%s %q: rc %d\n%s", prog, cmds, rc, out)
					}
					return out
				}
				io(writers[0], "write -P 0xa1 0 64k", "write -P 0xa2 70000 5000", "write -z 1M 128k", "write -P 0xa3 2M 1M")
				io(writers[1], "write -P 0xb1 512 1536", "discard 2M 64k")
				want := []string{"read -P 0xa1 0 512", "read -P 0xb1 512 1536", "read -P 0xa1 2k 62k", "read -P 0xa2 70000 5000",
					"read -P 0 1M 128k", "read -P 0xa3 2112k 960k"}
				if c.fmt == "qcow2" {
					// a raw LUKS volume has no unallocated clusters: what
					// was never written (or discarded) reads as noise
					want = append(want, "read -P 0 2M 64k", "read -P 0 3M 1M")
				}
				a, b := io(tl.io, want...), io(tl.gio, want...)
				if a != b || strings.Contains(a, "failed") {
					t.Fatalf("side %d: reads differ or fail:\nqemu-io:\n%s\ngoqio:\n%s", side, a, b)
				}
				if c.fmt == "qcow2" {
					chk, rc := cryptoRun(t, dir, tl.img, "check", "--object", sec0, "--image-opts", c.spec)
					if rc != 0 {
						t.Fatalf("side %d: check: %s", side, chk)
					}
					m1, _ := cryptoRun(t, dir, tl.img, "map", "--output=json", "--object", sec0, "--image-opts", c.spec)
					m2, _ := cryptoRun(t, dir, tl.gimg, "map", "--output=json", "--object", sec0, "--image-opts", c.spec)
					if m1 != m2 {
						t.Fatalf("side %d: map differs:\n%s\n%s", side, m1, m2)
					}
				}
				// info without the key (qemu-img opens with NO_IO), and
				// qemu-io's info with it; uuid and iterations are the
				// image's own, the same for both readers
				i1, _ := cryptoRun(t, dir, tl.img, "info", "img")
				i2, _ := cryptoRun(t, dir, tl.gimg, "info", "img")
				i1 = strings.Join(strings.Split(i1, "\n")[4:], "\n") // disk size may differ
				i2 = strings.Join(strings.Split(i2, "\n")[4:], "\n")
				if i1 != i2 {
					t.Fatalf("side %d: qemu-img info differs:\n%s\n%s", side, i1, i2)
				}
				if x, y := io(tl.io, "info"), io(tl.gio, "info"); x != y {
					t.Fatalf("side %d: qemu-io info differs:\n%s\n%s", side, x, y)
				}
				// a wrong password and no key
				for _, args := range [][]string{
					{"--object", "secret,id=sec0,data=wrong", "-c", "read 0 512", "--image-opts", c.spec},
					{"-c", "read 0 512", "--image-opts", c.spec},
					{"-c", "read 0 512", "img"},
				} {
					x, xrc := cryptoRun(t, dir, tl.io, args...)
					y, yrc := cryptoRun(t, dir, tl.gio, args...)
					if x != y || xrc != yrc {
						t.Fatalf("side %d %q: qemu-io (%d):\n%s\ngoqio (%d):\n%s", side, args, xrc, x, yrc, y)
					}
				}
			}
		})
	}
}

// TestEncryptedBacking is iotest 198's shape: an encrypted overlay on an
// encrypted base with another key; copy-on-write through both.
func TestEncryptedBacking(t *testing.T) {
	tl := cryptoSetup(t)
	t.Parallel()
	dir := t.TempDir()
	const sec1 = "secret,id=sec1,data=hadron"
	run := func(prog string, args ...string) string {
		out, rc := cryptoRun(t, dir, prog, args...)
		if rc != 0 {
			t.Fatalf("%s %q: %s", prog, args, out)
		}
		return out
	}
	run(tl.gimg, "create", "-q", "-f", "qcow2", "--object", sec0, "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", "base", "1M")
	base := "driver=qcow2,encrypt.key-secret=sec0,file.filename=base"
	run(tl.io, "--object", sec0, "-c", "write -P 0xa 0 1M", "--image-opts", base)
	run(tl.img, "create", "-q", "-f", "qcow2", "--object", sec1, "-o", "encrypt.format=luks,encrypt.key-secret=sec1,encrypt.iter-time=10", "-b", "base", "-F", "qcow2", "-u", "top", "1M")
	top := "driver=qcow2,encrypt.key-secret=sec1,file.filename=top,backing.driver=qcow2,backing.encrypt.key-secret=sec0,backing.file.filename=base"
	run(tl.gio, "--object", sec0, "--object", sec1, "-c", "write -P 0x9 1000 2000", "--image-opts", top)
	cmds := []string{"-c", "read -P 0xa 0 512", "-c", "read -P 0x9 1000 2000", "-c", "read -P 0xa 3000 62536", "-c", "read -P 0xa 64k 960k"}
	a := run(tl.io, append(append([]string{"--object", sec0, "--object", sec1}, cmds...), "--image-opts", top)...)
	b := run(tl.gio, append(append([]string{"--object", sec0, "--object", sec1}, cmds...), "--image-opts", top)...)
	if a != b || strings.Contains(a, "failed") {
		t.Fatalf("reads differ:\n%s\n%s", a, b)
	}
	// goqio's qemu-img commit writes the overlay into the encrypted base
	// (the base reopened for writing needs its secret too)
	run(tl.gimg, "commit", "--object", sec0, "--object", sec1, "--image-opts", top)
	base0 := []string{"--object", sec0, "--image-opts", base}
	if out := run(tl.io, append([]string{"-c", "read -P 0xa 0 512", "-c", "read -P 0x9 1000 2000", "-c", "read -P 0xa 3000 62536"}, base0...)...); strings.Contains(out, "failed") {
		t.Fatalf("base after commit:\n%s", out)
	}
	run(tl.img, append([]string{"check"}, base0...)...)
}

// TestEncryptedAmend: key slots goqio adds and erases (what qemu-img
// amend's encrypt.* options call) are what the real qemu-io unlocks.
func TestEncryptedAmend(t *testing.T) {
	tl := cryptoSetup(t)
	t.Parallel()
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	if out, rc := cryptoRun(t, dir, tl.img, "create", "-q", "-f", "qcow2", "--object", sec0, "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", "img", "1M"); rc != 0 {
		t.Fatal(out)
	}
	if out, rc := cryptoRun(t, dir, tl.io, "--object", sec0, "-c", "write -P 0x33 0 64k", "--image-opts", "driver=qcow2,encrypt.key-secret=sec0,file.filename=img"); rc != 0 {
		t.Fatal(out)
	}
	secrets := func(id string) ([]byte, error) {
		switch id {
		case "sec0":
			return []byte("astrochicken"), nil
		case "sec1":
			return []byte("hadron"), nil
		}
		return nil, fmt.Errorf("No secret with id '%s'", id)
	}
	d, err := qcow2.Open(img, qcow2.Options{Secrets: secrets, Runtime: qcow2.RuntimeOptions{EncryptKeySecret: "sec0"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []map[string]string{
		{"state": "active", "keyslot": "3", "new-secret": "sec1", "iter-time": "10"},
		{"state": "inactive", "old-secret": "sec0"},
	} {
		if err := d.AmendEncryptionOptions(o, false); err != nil {
			t.Fatalf("%v: %v", o, err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	const sec1 = "secret,id=sec1,data=hadron"
	out, rc := cryptoRun(t, dir, tl.io, "--object", sec1, "-c", "read -P 0x33 0 64k", "--image-opts", "driver=qcow2,encrypt.key-secret=sec1,file.filename=img")
	if rc != 0 || strings.Contains(out, "failed") {
		t.Fatalf("new key: %s", out)
	}
	out, _ = cryptoRun(t, dir, tl.io, "--object", sec0, "-c", "read 0 512", "--image-opts", "driver=qcow2,encrypt.key-secret=sec0,file.filename=img")
	if !strings.Contains(out, "Invalid password, cannot unlock any keyslot") {
		t.Fatalf("erased key still opens: %s", out)
	}
	info, _ := cryptoRun(t, dir, tl.img, "info", "img")
	if !strings.Contains(info, "[3]:\n                active: true") || !strings.Contains(info, "[0]:\n                active: false") {
		t.Fatalf("slots:\n%s", info)
	}
	if out, rc := cryptoRun(t, dir, tl.img, "check", "--object", sec1, "--image-opts", "driver=qcow2,encrypt.key-secret=sec1,file.filename=img"); rc != 0 {
		t.Fatal(out)
	}
}

// TestEncryptedCheckInfo: qemu-img check and info of encrypted images
// (qcow2 with LUKS and with legacy AES, raw LUKS volumes, with several
// key slots active and other ciphers) print, as goqio's qemu-img, what
// the real ones print, with the same exit codes: with the key
// (--object and --image-opts, json: filenames), without it, with -f,
// in human and JSON output, and a repair of each on its own copy.
func TestEncryptedCheckInfo(t *testing.T) {
	tl := cryptoSetup(t)
	const sec1, sec2 = "secret,id=sec1,data=hadron", "secret,id=sec2,data=boson"
	for _, c := range []struct {
		name, fmt, create string
		amend             []string // -o lists for qemu-img amend, in turn
		key               string   // the key option's name
	}{
		{"qcow2-luks", "qcow2", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
			[]string{"encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10,encrypt.keyslot=3",
				"encrypt.state=active,encrypt.new-secret=sec2,encrypt.iter-time=10"}, "encrypt.key-secret"},
		{"qcow2-luks-serpent", "qcow2", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,encrypt.cipher-alg=serpent-256,encrypt.hash-alg=sha1,cluster_size=4k",
			nil, "encrypt.key-secret"},
		{"qcow2-aes", "qcow2", "encrypt.format=aes,encrypt.key-secret=sec0", nil, "encrypt.key-secret"},
		{"luks", "luks", "key-secret=sec0,iter-time=10",
			[]string{"state=active,new-secret=sec1,iter-time=10,keyslot=5", "state=active,new-secret=sec2,iter-time=10,keyslot=7"}, "key-secret"},
		{"luks-twofish-essiv", "luks", "key-secret=sec0,iter-time=10,cipher-alg=twofish-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256", nil, "key-secret"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			run := func(prog string, args ...string) string {
				out, rc := cryptoRun(t, dir, prog, args...)
				if rc != 0 {
					t.Fatalf("%s %q: %s", prog, args, out)
				}
				return out
			}
			// made and given key slots by goqio (TestEncryptedInterop and
			// TestLUKSAmend compare those steps with QEMU's; its PBKDF2
			// benchmarks take seconds)
			run(tl.gimg, "create", "-q", "-f", c.fmt, "--object", sec0, "-o", c.create, "img", "1M")
			spec := "driver=" + c.fmt + "," + c.key + "=sec0,file.filename=img"
			for _, o := range c.amend {
				run(tl.gimg, "amend", "--object", sec0, "--object", sec1, "--object", sec2, "-o", o, "--image-opts", spec)
			}
			run(tl.io, "--object", sec0, "-c", "write -P 0x5a 0 100k", "-c", "write -z 300k 64k", "--image-opts", spec)
			json := fmt.Sprintf(`json:{"driver":%q,%q:"sec0","file":{"driver":"file","filename":"img"}}`, c.fmt, c.key)
			obj := []string{"--object", sec0}
			for _, args := range [][]string{
				append(append([]string{"check"}, obj...), "--image-opts", spec),
				append(append([]string{"check", "--output=json"}, obj...), "--image-opts", spec),
				append(append([]string{"check", "-q"}, obj...), "--image-opts", spec),
				append(append([]string{"check"}, obj...), json),
				append(append([]string{"check", "--output=json", "-f", c.fmt}, obj...), json),
				{"check", "img"},
				{"check", "-f", c.fmt, "img"},
				append(append([]string{"check"}, obj...), "img"),
				{"check", "--object", "secret,id=sec0,data=wrong", "--image-opts", spec},
				{"check", "--image-opts", spec},
				append(append([]string{"check", "-f", c.fmt}, obj...), "--image-opts", spec),
				{"info", "img"},
				{"info", "--output=json", "img"},
				{"info", "-f", c.fmt, "--output=json", "img"},
				append(append([]string{"info"}, obj...), "--image-opts", spec),
				append(append([]string{"info", "--output=json"}, obj...), json),
			} {
				x, xrc := cryptoRun(t, dir, tl.img, args...)
				y, yrc := cryptoRun(t, dir, tl.gimg, args...)
				if x != y || xrc != yrc {
					t.Errorf("%q:\nqemu-img (%d):\n%s\ngoqio (%d):\n%s", args, xrc, x, yrc, y)
				}
			}
			// a repair, each tool on its own copy: the same report and file;
			// a qcow2 image first loses the refcount of its last cluster
			// (a rebuild of the refcount structure, the LUKS header's
			// clusters counted)
			src, err := os.ReadFile(filepath.Join(dir, "img"))
			if err != nil {
				t.Fatal(err)
			}
			if c.fmt == "qcow2" {
				rb := binary.BigEndian.Uint64(src[binary.BigEndian.Uint64(src[48:]):])
				cs := 1 << binary.BigEndian.Uint32(src[20:])
				for i := int(rb) + cs - 2; i >= int(rb); i -= 2 {
					if src[i] != 0 || src[i+1] != 0 {
						src[i], src[i+1] = 0, 0
						break
					}
				}
			}
			var outs [2]string
			var files [2][]byte
			for i, prog := range []string{tl.img, tl.gimg} {
				name := fmt.Sprintf("copy%d", i)
				if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
					t.Fatal(err)
				}
				out, rc := cryptoRun(t, dir, prog, append(append([]string{"check", "-r", "all", "--output=json"}, obj...),
					"--image-opts", strings.ReplaceAll(spec, "filename=img", "filename="+name))...)
				outs[i] = fmt.Sprintf("rc %d\n%s", rc, strings.ReplaceAll(out, name, "COPY"))
				if files[i], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			if c.fmt == "qcow2" && !strings.Contains(outs[0], `"corruptions-fixed": 1`) {
				t.Errorf("check -r all repaired nothing:\n%s", outs[0])
			}
			if outs[0] != outs[1] || string(files[0]) != string(files[1]) {
				t.Errorf("check -r all:\nqemu-img:\n%s\ngoqio:\n%s\nfiles equal: %v", outs[0], outs[1], string(files[0]) == string(files[1]))
			}
		})
	}
}

// TestEncryptedCreateConvert: qemu-img create over an encrypted backing
// file needs no key (BDRV_O_NO_IO), and convert to an encrypted,
// preallocated qcow2 (iotest 188) writes the zeroes its noise would
// otherwise show and opens the new image with the key it was made
// with: the same messages, map and guest data as qemu-img's.
func TestEncryptedCreateConvert(t *testing.T) {
	tl := cryptoSetup(t)
	t.Parallel()
	const sec1 = "secret,id=sec1,data=hadron"
	var dirs [2]string
	var outs [2]string
	for i, prog := range []string{tl.img, tl.gimg} {
		dirs[i] = t.TempDir()
		run := func(prog string, args ...string) string {
			out, rc := cryptoRun(t, dirs[i], prog, args...)
			return fmt.Sprintf("exit %d\n%s", rc, out)
		}
		// the same base for both (made by goqio: no PBKDF2 benchmark)
		run(tl.gimg, "create", "-q", "-f", "qcow2", "--object", sec0, "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", "base", "1M")
		run(tl.io, "--object", sec0, "-c", "write -P 0x77 64k 64k", "--image-opts", "driver=qcow2,encrypt.key-secret=sec0,file.filename=base")
		if err := os.WriteFile(filepath.Join(dirs[i], "src"), append(make([]byte, 64<<10), bytes.Repeat([]byte{9}, 64<<10)...), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filepath.Join(dirs[i], "src"), 1<<20); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		b.WriteString(run(prog, "create", "-f", "qcow2", "--object", sec1, "-o", "encrypt.format=luks,encrypt.key-secret=sec1,encrypt.iter-time=10", "-b", "base", "-F", "qcow2", "top"))
		b.WriteString(run(prog, "create", "-f", "qcow2", "-b", "base", "top2"))
		b.WriteString(run(prog, "convert", "-O", "qcow2", "--object", sec0, "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,preallocation=metadata", "src", "conv"))
		b.WriteString(run(prog, "convert", "-O", "qcow2", "--object", sec0, "-o", "encrypt.format=luks,encrypt.key-secret=sec9", "src", "conv2"))
		b.WriteString(run(tl.img, "compare", "--object", sec0, "--image-opts", "driver=raw,file.filename=src", "driver=qcow2,encrypt.key-secret=sec0,file.filename=conv"))
		b.WriteString(run(tl.img, "map", "--output=json", "--object", sec0, "--image-opts", "driver=qcow2,encrypt.key-secret=sec0,file.filename=conv"))
		b.WriteString(run(tl.io, "--object", sec0, "--object", sec1, "-c", "read -P 0x77 64k 64k", "-c", "read -P 0 0 64k", "--image-opts",
			"driver=qcow2,encrypt.key-secret=sec1,file.filename=top,backing.driver=qcow2,backing.encrypt.key-secret=sec0,backing.file.filename=base"))
		outs[i] = b.String()
	}
	if outs[0] != outs[1] {
		t.Errorf("QEMU:\n%s\ngoqio:\n%s", outs[0], outs[1])
	}
}
