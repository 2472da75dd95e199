package differential

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// randomOps is a seeded list of qemu-io commands for an image of size
// bytes with clusters of cl bytes: data, zero (-u), discard, compressed.
func randomOps(rng *rand.Rand, size, cl int64, n int) []string {
	var cmds []string
	for i := 0; i < n; i++ {
		gran := []int64{1, 512, 4096, cl}[rng.Intn(4)]
		off := rng.Int63n(size/gran) * gran
		ln := max(1, min(rng.Int63n(4*max(cl, 4096)/gran+2)*gran, size-off))
		switch k := rng.Intn(20); {
		case k < 8:
			cmds = append(cmds, fmt.Sprintf("write -P 0x%02x %d %d", 1+rng.Intn(255), off, ln))
		case k < 12:
			u := ""
			if rng.Intn(3) == 0 {
				u = "-u "
			}
			cmds = append(cmds, fmt.Sprintf("write -z %s%d %d", u, off, ln))
		case k < 15:
			cmds = append(cmds, fmt.Sprintf("discard %d %d", off, ln))
		case k < 17:
			cmds = append(cmds, fmt.Sprintf("write -c -P 3 %d %d", off/cl*cl, cl))
		case k < 18:
			cmds = append(cmds, "flush")
		default:
			cmds = append(cmds, fmt.Sprintf("read -v %d %d", off, min(ln, 32)))
		}
	}
	return cmds
}

var dates = regexp.MustCompile(`20\d\d-\d\d-\d\d \d\d:\d\d:\d\d`)

// TestRandomBitmaps: seeded sessions on images with one to three
// persistent bitmaps (granularities 512 B to 1 MiB, some disabled; lazy
// refcounts and extended L2 sometimes; truncates in between) leave files
// byte-identical to qemu-io's, with equal output, check and info.
func TestRandomBitmaps(t *testing.T) {
	tl := setup(t)
	n := 24
	if testing.Short() {
		n = 8
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "bin", "qemu-io")
	os.Mkdir(filepath.Dir(link), 0o755)
	if err := os.Symlink(tl.goqio, link); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < n; k++ {
		rng := rand.New(rand.NewSource(int64(7000 + k)))
		cl := []int64{512, 4096, 65536, 65536}[rng.Intn(4)]
		size := int64(4+4*rng.Intn(3)) << 20
		opts := fmt.Sprintf("cluster_size=%d", cl)
		if cl >= 16384 && rng.Intn(3) == 0 {
			opts += ",extended_l2=on"
		}
		if rng.Intn(5) == 0 {
			opts += ",lazy_refcounts=on"
		}
		base := filepath.Join(dir, fmt.Sprintf("b%d.qcow2", k))
		if _, e, rc := sh(t, dir, "", tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", opts, base, fmt.Sprint(size)); rc != 0 {
			t.Fatal(e)
		}
		for b := 0; b < 1+rng.Intn(3); b++ {
			args := []string{"bitmap", "--add"}
			if rng.Intn(2) == 0 {
				args = append(args, "-g", fmt.Sprint([]int{512, 4096, 65536, 1 << 20}[rng.Intn(4)]))
			}
			if rng.Intn(5) == 0 {
				args = append(args, "--disable")
			}
			sh(t, dir, "", tl.qemuImg, append(args, base, fmt.Sprintf("b%d", b))...)
		}
		cmds := randomOps(rng, size, cl, 2+rng.Intn(10))
		if rng.Intn(4) == 0 {
			cmds = append(cmds, "truncate "+fmt.Sprint([]int64{size / 2, size * 2}[rng.Intn(2)]), "write -P 9 0 4k")
		}
		orig, _ := os.ReadFile(base)
		var outs [2]string
		var files [2][]byte
		for i, prog := range []string{tl.qemuIO, link} {
			d := filepath.Join(dir, fmt.Sprintf("%d-%d", k, i))
			os.Mkdir(d, 0o755)
			os.WriteFile(filepath.Join(d, "t.qcow2"), orig, 0o644)
			var a []string
			for _, c := range cmds {
				a = append(a, "-c", c)
			}
			o, e, rc := sh(t, d, "", prog, append(a, "t.qcow2")...)
			c, ce, _ := sh(t, d, "", tl.qemuImg, "check", "t.qcow2")
			in, _, _ := sh(t, d, "", tl.qemuImg, "info", "t.qcow2")
			outs[i] = diskSize.ReplaceAllString(timing.ReplaceAllString(fmt.Sprintf("%s%s[%d]\n%s%s%s", o, e, rc, c, ce, in), "OPS"), "")
			files[i], _ = os.ReadFile(filepath.Join(d, "t.qcow2"))
		}
		if outs[0] != outs[1] || !bytes.Equal(files[0], files[1]) {
			t.Errorf("case %d (%s, %q): outputs equal %v, files equal %v\nqemu-io:\n%s\ngoqio:\n%s", k, opts, cmds,
				outs[0] == outs[1], bytes.Equal(files[0], files[1]), outs[0], outs[1])
		}
	}
}

// TestRandomSnapshots: seeded sequences of goqio snapshot -c/-a/-d (by
// name and ID) between qemu-io writes, zero writes, discards and
// compressed writes leave files byte-identical to qemu-img snapshot's but
// for the snapshots' dates, with equal messages, check and listing.
func TestRandomSnapshots(t *testing.T) {
	tl := setup(t)
	n := 24
	if testing.Short() {
		n = 8
	}
	dir := t.TempDir()
	for k := 0; k < n; k++ {
		rng := rand.New(rand.NewSource(int64(9000 + k)))
		cl := []int64{512, 4096, 65536}[rng.Intn(3)]
		size := int64(4+4*rng.Intn(2)) << 20
		opts := "cluster_size=" + strconv.FormatInt(cl, 10)
		switch r := rng.Intn(10); {
		case r < 2:
			opts += ",compat=0.10"
		case r < 4 && cl >= 16384:
			opts += ",extended_l2=on"
		case r < 5:
			opts += fmt.Sprintf(",refcount_bits=%d", []int{1, 8, 64}[rng.Intn(3)])
		}
		type step struct {
			io   []string
			snap []string
		}
		var steps []step
		for i := 0; i < 3+rng.Intn(8); i++ {
			switch x := rng.Intn(20); {
			case x < 9:
				steps = append(steps, step{io: randomOps(rng, size, cl, 1+rng.Intn(4))})
			case x < 14:
				steps = append(steps, step{snap: []string{"-c", []string{"s1", "s2", "s3"}[rng.Intn(3)]}})
			case x < 17:
				steps = append(steps, step{snap: []string{"-a", []string{"s1", "s2", "s3", "1", "2"}[rng.Intn(5)]}})
			default:
				steps = append(steps, step{snap: []string{"-d", []string{"s1", "s2", "s3"}[rng.Intn(3)]}})
			}
		}
		var logs [2]string
		var files [2][]byte
		for i, prog := range []string{tl.qemuImg, tl.goqio} {
			d := filepath.Join(dir, fmt.Sprintf("%d-%d", k, i))
			os.Mkdir(d, 0o755)
			if _, e, rc := sh(t, d, "", tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", opts, "t.qcow2", fmt.Sprint(size)); rc != 0 {
				t.Fatal(e)
			}
			var b strings.Builder
			for _, s := range steps {
				if s.io != nil {
					var a []string
					for _, c := range s.io {
						a = append(a, "-c", c)
					}
					o, e, rc := sh(t, d, "", tl.qemuIO, append(a, "t.qcow2")...)
					fmt.Fprintf(&b, "io %q: %s%s[%d]\n", s.io, o, e, rc)
					continue
				}
				o, e, rc := sh(t, d, "", prog, append(append([]string{"snapshot"}, s.snap...), "t.qcow2")...)
				fmt.Fprintf(&b, "snapshot %v: %s[%d]\n", s.snap, strings.ReplaceAll(o+e, filepath.Base(prog)+":", "PROG:"), rc)
			}
			c, ce, _ := sh(t, d, "", tl.qemuImg, "check", "t.qcow2")
			l, _, _ := sh(t, d, "", tl.qemuImg, "snapshot", "-l", "t.qcow2")
			logs[i] = dates.ReplaceAllString(timing.ReplaceAllString(b.String()+c+ce+l, "OPS"), "DATE")
			files[i] = maskSnapshotDates(t, filepath.Join(d, "t.qcow2"))
		}
		if logs[0] != logs[1] || !bytes.Equal(files[0], files[1]) {
			t.Errorf("case %d (%s): outputs equal %v, files equal %v\nqemu-img:\n%s\ngoqio:\n%s", k, opts,
				logs[0] == logs[1], bytes.Equal(files[0], files[1]), logs[0], logs[1])
		}
	}
}
