package differential

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// External data files: the same commands through goqio and the real
// qemu-io on qcow2 images whose data lives in img.data (created by
// qemu-img create -o data_file=img.data), with and without data-file-raw.
// Both files must come out byte for byte the same, with the same output,
// exit code, qemu-img map --output=json and qemu-img check.

// dfCase is one differential case on an image with an external data file.
type dfCase struct {
	Opts string // extra qemu-img create -o options ("" for none)
	Size string
	// Backing, when set, is the size of a qcow2 base.img made first and
	// filled with 0x55; img then gets -b base.img -F qcow2.
	Backing string
	// NoDataFile makes img an ordinary qcow2 image (for the error cases).
	NoDataFile bool
	Setup      []string // qemu-io commands run by the real qemu-io first
	// Prepare, when set, edits the directory after Setup (on both sides).
	Prepare func(t *testing.T, dir string)
	Args    []string // qemu-io arguments
	Stdin   string
}

func (tl tools) runDF(t *testing.T, c dfCase) {
	t.Helper()
	top := t.TempDir()
	bin := filepath.Join(top, "bin")
	os.Mkdir(bin, 0o755)
	link := filepath.Join(bin, "qemu-io")
	if err := os.Symlink(tl.goqio, link); err != nil {
		t.Fatal(err)
	}
	var res, maps, checks [2]string
	dirs := [2]string{filepath.Join(top, "qemu"), filepath.Join(top, "goqio")}
	for i, prog := range []string{tl.qemuIO, link} {
		d := dirs[i]
		os.Mkdir(d, 0o755)
		create := []string{"create", "-q", "-f", "qcow2"}
		opts := c.Opts
		if !c.NoDataFile {
			opts = strings.TrimSuffix("data_file=img.data,"+opts, ",")
		}
		if opts != "" {
			create = append(create, "-o", opts)
		}
		if c.Backing != "" {
			if _, e, rc := sh(t, d, "", tl.qemuImg, "create", "-q", "-f", "qcow2", "base.img", c.Backing); rc != 0 {
				t.Fatalf("qemu-img create base: %s", e)
			}
			sh(t, d, "", tl.qemuIO, "-c", "write -P 0x55 0 "+c.Backing, "base.img")
			create = append(create, "-b", "base.img", "-F", "qcow2")
		}
		create = append(create, "img", c.Size)
		if _, e, rc := sh(t, d, "", tl.qemuImg, create...); rc != 0 {
			t.Fatalf("qemu-img %q: %s", create, e)
		}
		for _, s := range c.Setup {
			sh(t, d, "", tl.qemuIO, "-c", s, "img")
		}
		if c.Prepare != nil {
			c.Prepare(t, d)
		}
		o, e, rc := sh(t, d, c.Stdin, prog, c.Args...)
		res[i] = fmt.Sprintf("%s[exit %d]\n%s", filter(o), rc, filter(e))
		m, me, _ := sh(t, d, "", tl.qemuImg, "map", "--output=json", "img")
		maps[i] = normalizeMap(m) + me
		co, ce, crc := sh(t, d, "", tl.qemuImg, "check", "img")
		checks[i] = fmt.Sprintf("%s%s[exit %d]", co, ce, crc)
	}
	if res[0] != res[1] {
		t.Errorf("args %q stdin %q:\nqemu-io:\n%s\ngoqio:\n%s", c.Args, c.Stdin, res[0], res[1])
	}
	for _, f := range []string{"img", "img.data"} {
		if same, qn, gn := sameFile(filepath.Join(dirs[0], f), filepath.Join(dirs[1], f)); !same {
			t.Errorf("args %q: %s differs (%d vs %d bytes)", c.Args, f, qn, gn)
		}
	}
	if maps[0] != maps[1] {
		t.Errorf("args %q: maps differ:\nqemu-io: %s\ngoqio:   %s", c.Args, maps[0], maps[1])
	}
	if checks[0] != checks[1] {
		t.Errorf("args %q: qemu-img check differs:\nqemu-io's image:\n%s\ngoqio's image:\n%s", c.Args, checks[0], checks[1])
	}
}

// TestDataFile: the paths of guest I/O through an external data file,
// named one by one: writes (in place, allocating, partial clusters with
// copy-on-write, across L2 tables), zero writes (-z, -zu, -zn, partial),
// discards, compressed writes (refused), backing files, data-file-raw,
// and the ways of naming the data file.
func TestDataFile(t *testing.T) {
	tl := setup(t)
	q := []string{"-f", "qcow2"}
	io := func(flags []string, cs ...string) []string { return cmds(append(q, flags...), cs...) }
	const null = `json:{"driver":"qcow2","file":{"filename":"img"},"data-file":{"driver":"null-co","size":"4294967296"}}`
	var cases []dfCase
	for _, opts := range []string{"", "data_file_raw=on", "cluster_size=4096", "data_file_raw=on,cluster_size=512", "extended_l2=on", "data_file_raw=on,extended_l2=on,cluster_size=16k", "lazy_refcounts=on"} {
		cases = append(cases,
			dfCase{Opts: opts, Size: "4M", Args: io(nil, "info", "write -P 1 0 64k", "write -P 2 100000 3000", "write -P 3 1M 1", "read -P 1 0 64k",
				"read -P 2 100000 3000", "read -v 1048575 3", "map", "alloc 0 4M", "write -z 0 4k", "write -zu 64k 64k",
				"write -z 200k 300k", "write -zn 8k 4k", "read -P 0 0 4k", "discard 1M 64k", "discard 0 1", "read -v 0 16", "map")},
			dfCase{Opts: opts, Size: "3000000", Setup: []string{"write -P 9 0 3000000"}, Args: io(nil, "write -P 4 2999000 1000", "write -zu 2M 999936",
				"discard 0 1M", "read -P 0 0 1M", "read -P 9 1M 1M", "write -P 5 5 10", "map", "alloc 0 3000000")},
			dfCase{Opts: opts, Size: "4M", Args: io([]string{"-d", "unmap"}, "write -P 1 0 4M", "discard 64k 192k", "write -zu 1M 1M", "write -z 3M 512k",
				"read -P 0 64k 192k", "read -P 1 0 64k", "map")},
			dfCase{Opts: opts, Size: "4M", Args: io([]string{"-t", "none"}, "write -P 6 512 4096", "writev -P 7 1000 100 200", "read -P 7 1000 300", "write -zu 0 4M", "map")},
			dfCase{Opts: opts, Size: "4M", Args: io(nil, "write -c 0 64k", "write -c -P 1 64k 64k", "read -P 0 0 128k", "map")},
			dfCase{Opts: opts, Size: "4M", Args: io(nil, "truncate 8M", "write -P 1 6M 64k", "truncate 3M", "truncate -m metadata 5M", "map", "info")},
		)
		if !strings.Contains(opts, "raw") {
			cases = append(cases,
				dfCase{Opts: opts, Size: "4M", Backing: "3M", Args: io(nil, "write -P 1 4k 512", "read -P 0x55 0 4k", "read -P 1 4k 512",
					"read -P 0x55 4608 60928", "write -z 128k 64k", "write -zu 512k 1M", "discard 2M 64k", "read -P 0 128k 64k", "read -P 0x55 2M 64k", "map")},
				dfCase{Opts: opts, Size: "4M", Backing: "4M", Args: io(nil, "write -P 2 1000 100000", "write -z 3M 1000", "read -v 3M 16", "map")},
			)
		}
	}
	cases = append(cases,
		// the ways of naming the data file
		dfCase{Size: "1M", Setup: []string{"write -P 7 0 64k"}, Args: []string{"-c", "open -o data-file.filename=img.data,file.filename=img", "-c", "read -P 7 0 4k", "-c", "write -P 8 4k 4k", "-c", "info"}},
		dfCase{Size: "1M", Setup: []string{"write -P 7 0 64k"}, Args: []string{"--image-opts", "-c", "read -P 7 0 4k", "-c", "write -P 8 64k 1", "-c", "map", "driver=qcow2,file.filename=img,data-file.filename=img.data"}},
		dfCase{Size: "1M", Args: []string{"--image-opts", "-c", "write 0 1", "driver=qcow2,file.filename=img,data-file.driver=file,data-file.filename=img.data,data-file.locking=off"}},
		dfCase{Size: "4G", Opts: "cluster_size=2M", Args: []string{"-c", "write -P 1 768 100000", "-c", "read -P 1 768 100000", "-c", "write -zu 2M 2M", "-c", "map", null}},
		dfCase{Size: "4G", Opts: "cluster_size=2M", Backing: "4G", Args: []string{"-c", "write 768 3000000", "-c", "map", null}},
		dfCase{Size: "1M", Args: []string{"-r", "-c", "read 0 64k", "-c", "write 0 1", "img"}},
		dfCase{Size: "1M", Args: []string{"-U", "-r", "-c", "read 0 64k", "-c", "info", "img"}},
		dfCase{Size: "1M", Args: []string{"-s", "-c", "write -P 3 0 64k", "-c", "read -P 3 0 64k", "img"}},
		dfCase{Size: "1M", Args: []string{"-C", "-c", "read 0 64k", "-c", "map", "img"}},
		dfCase{Size: "1M", Args: []string{"-f", "qcow2", "img"}, Stdin: "write -P 1 0 4k\nclose\nopen -o driver=qcow2,file.filename=img,data-file.filename=img.data\nread -P 1 0 4k\n"},
		// errors
		dfCase{Size: "1M", Prepare: func(t *testing.T, d string) { os.Remove(filepath.Join(d, "img.data")) }, Args: []string{"-c", "read 0 4k", "img"}},
		dfCase{Size: "1M", Args: []string{"-c", "open -o data-file.filename=nonexist,file.filename=img", "-c", "read 0 4k"}},
		dfCase{Size: "1M", NoDataFile: true, Args: []string{"--image-opts", "-c", "read 0 4k", "driver=qcow2,file.filename=img,data-file.filename=img"}},
		dfCase{Size: "1M", NoDataFile: true, Args: []string{"-c", "read 0 4k", `json:{"driver":"qcow2","file":{"filename":"img"},"data-file":{"driver":"null-co"}}`}},
		dfCase{Size: "1M", Args: []string{"--image-opts", "-c", "read 0 4k", "driver=qcow2,file.filename=img,data-file=nonode"}},
		dfCase{Size: "1M", Args: []string{"--image-opts", "-c", "read 0 4k", "driver=qcow2,file.filename=img,data-file.driver=bogus"}},
		dfCase{Size: "1M", Args: []string{"--image-opts", "-c", "read 0 4k", "driver=qcow2,file.filename=img,data-file.filename=img.data,data-file.bogus=1"}},
		dfCase{Size: "1M", Args: []string{"--image-opts", "-c", "read 0 4k", "driver=qcow2,file.filename=img,data-file.filename=img.data,data-file.force-share=on"}},
		// the data file is named relative to the current directory
		dfCase{Size: "1M", Prepare: func(t *testing.T, d string) {
			os.Mkdir(filepath.Join(d, "sub"), 0o755)
			os.Rename(filepath.Join(d, "img"), filepath.Join(d, "sub", "img"))
			os.Rename(filepath.Join(d, "img.data"), filepath.Join(d, "sub", "img.data"))
		}, Args: []string{"-c", "read 0 4k", "sub/img"}},
		// no data file header extension: the data-file option is required
		dfCase{Size: "1M", Prepare: func(t *testing.T, d string) {
			if _, e, rc := sh(t, d, "", tl.qemuImg, "amend", "-o", "data_file=", "--image-opts", "data-file.filename=img.data,file.filename=img"); rc != 0 {
				t.Fatal(e)
			}
		}, Args: []string{"-c", "read 0 4k", "-c", "open -o data-file.filename=img.data,file.filename=img", "-c", "write -P 1 0 4k", "-c", "info"}},
		// data-file-raw without the data-file bit
		dfCase{Size: "1M", NoDataFile: true, Prepare: func(t *testing.T, d string) { setByte(t, filepath.Join(d, "img"), 95, 2) },
			Args: []string{"-c", "read 0 4k", "img"}},
		// a data file header extension without the data-file bit is ignored, and dropped by a header rewrite
		dfCase{Size: "1M", Prepare: func(t *testing.T, d string) { setByte(t, filepath.Join(d, "img"), 79, 0) },
			Args: []string{"-c", "info", "-c", "write -P 1 0 4k", "img"}},
	)
	for i, c := range cases {
		c := c
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			tl.runDF(t, c)
		})
	}
}

// setByte sets byte off of file to v.
func setByte(t *testing.T, file string, off int64, v byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{v}, off); err != nil {
		t.Fatal(err)
	}
}

// l2EntryOffset is where the L2 entry for guest offset guest lies in the
// qcow2 file (64 KiB clusters, no extended L2).
func l2EntryOffset(t *testing.T, file string, guest int64) int64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	l1 := int64(binary.BigEndian.Uint64(b[40:]))
	l2 := int64(binary.BigEndian.Uint64(b[l1+8*(guest>>29):]) & 0x00fffffffffffe00)
	return l2 + 8*((guest>>16)&8191)
}

// TestDataFileCorrupt: images whose metadata contradicts the data file
// (a compressed cluster, a host offset other than the guest offset, a
// missing COPIED flag, internal snapshots) read, write, check and repair
// as with QEMU.
func TestDataFileCorrupt(t *testing.T) {
	tl := setup(t)
	setEntry := func(guest int64, v uint64) func(*testing.T, string) {
		return func(t *testing.T, d string) {
			p := filepath.Join(d, "img")
			off := l2EntryOffset(t, p, guest)
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], v)
			f.WriteAt(b[:], off)
		}
	}
	// an ordinary image made a data-file image: the bit set, the header
	// extension added by qemu-img amend through the data-file option
	toDataFile := func(t *testing.T, d string) {
		setByte(t, filepath.Join(d, "img"), 79, 4)
		os.WriteFile(filepath.Join(d, "img.data"), make([]byte, 1<<20), 0o644)
		if _, e, rc := sh(t, d, "", tl.qemuImg, "amend", "-o", "data_file=img.data", "--image-opts", "driver=qcow2,data-file.filename=img.data,file.filename=img"); rc != 0 {
			t.Fatal(e)
		}
	}
	tmp := t.TempDir()
	sh(t, tmp, "", tl.qemuImg, "create", "-q", "-f", "qcow2", "img", "1M")
	sh(t, tmp, "", tl.qemuIO, "-c", "write -P 3 0 64k", "img")
	if _, e, rc := sh(t, tmp, "", tl.qemuImg, "snapshot", "-c", "s1", "img"); rc != 0 {
		t.Fatal(e)
	}
	snapImg, _ := os.ReadFile(filepath.Join(tmp, "img"))
	rw := []string{"-c", "read 0 64k", "-c", "write -P 1 64k 64k", "-c", "read -P 1 64k 64k", "-c", "map", "img"}
	ro := append([]string{"-r"}, rw...)
	cases := []dfCase{
		{Size: "1M", Setup: []string{"write -P 1 0 64k", "write -P 2 128k 64k"}, Prepare: setEntry(128<<10, 1<<63|3<<16), Args: rw},
		{Size: "1M", Setup: []string{"write -P 1 0 64k", "write -P 2 128k 64k"}, Prepare: setEntry(128<<10, 1<<63|3<<16), Args: ro},
		{Size: "1M", Setup: []string{"write -P 1 0 64k", "write -P 2 128k 64k"}, Prepare: setEntry(128<<10, 2<<16), Args: rw},
		{Size: "1M", Setup: []string{"write -P 1 0 64k"}, Prepare: setEntry(0, 0), Args: rw},
		{Size: "1M", NoDataFile: true, Setup: []string{"write -c -P 3 0 64k"}, Prepare: toDataFile, Args: rw},
		{Size: "1M", NoDataFile: true, Setup: []string{"write -c -P 3 0 64k"}, Prepare: toDataFile, Args: ro},
		{Size: "1M", NoDataFile: true, Prepare: func(t *testing.T, d string) {
			// one image for both sides: the snapshot records the time
			if err := os.WriteFile(filepath.Join(d, "img"), snapImg, 0o644); err != nil {
				t.Fatal(err)
			}
			toDataFile(t, d)
		}, Args: rw},
	}
	for i, c := range cases {
		c := c
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			tl.runDF(t, c)
		})
	}
	// goqio check against qemu-img check on the same damaged images
	for i, c := range cases {
		if c.Args[0] == "-r" {
			continue
		}
		c := c
		t.Run(fmt.Sprint("check", i), func(t *testing.T) {
			t.Parallel()
			for _, args := range [][]string{{"check"}, {"check", "-r", "all"}} {
				var outs [2]string
				var files [2][]byte
				for j, prog := range []string{tl.qemuImg, tl.goqio} {
					d := filepath.Join(t.TempDir(), "x")
					os.Mkdir(d, 0o755)
					create := []string{"create", "-q", "-f", "qcow2"}
					if !c.NoDataFile {
						create = append(create, "-o", "data_file=img.data")
					}
					sh(t, d, "", tl.qemuImg, append(create, "img", c.Size)...)
					for _, s := range c.Setup {
						sh(t, d, "", tl.qemuIO, "-c", s, "img")
					}
					c.Prepare(t, d)
					o, e, rc := sh(t, d, "", prog, append(args, "img")...)
					outs[j] = strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", o, e, rc), filepath.Base(prog)+":", "PROG:")
					files[j], _ = os.ReadFile(filepath.Join(d, "img"))
				}
				if outs[0] != outs[1] {
					t.Errorf("%v:\nqemu-img:\n%s\ngoqio:\n%s", args, outs[0], outs[1])
				}
				if !bytes.Equal(files[0], files[1]) {
					t.Errorf("%v: image files differ", args)
				}
			}
		})
	}
}

// randomDFCase makes writes, zero writes, discards and reads at random
// (often unaligned) places on a data-file image with random cluster size,
// data-file-raw, extended L2 and, sometimes, a backing file.
func randomDFCase(seed int64) dfCase {
	rng := rand.New(rand.NewSource(seed))
	size := int64([]int{4, 8, 16}[rng.Intn(3)]) << 20
	if rng.Intn(4) == 0 {
		size -= 512 * rng.Int63n(200)
	}
	cl := []int64{512, 4096, 65536, 65536, 2 << 20}[rng.Intn(5)]
	opts := fmt.Sprintf("cluster_size=%d", cl)
	if cl >= 16384 && rng.Intn(4) == 0 {
		opts += ",extended_l2=on"
	}
	c := dfCase{Size: fmt.Sprint(size)}
	raw := rng.Intn(3) == 0
	if raw {
		opts += ",data_file_raw=on"
	} else if rng.Intn(3) == 0 {
		c.Backing = fmt.Sprint(size - (size/4)&^511)
	}
	if rng.Intn(4) == 0 {
		opts += ",lazy_refcounts=on"
	}
	c.Opts = opts
	if rng.Intn(3) == 0 {
		c.Setup = append(c.Setup, fmt.Sprintf("write -P 0x%02x 0 %d", rng.Intn(256), size/2))
	}
	var cs []string
	for i := 0; i < 4+rng.Intn(14); i++ {
		gran := []int64{1, 512, 512, 4096, cl}[rng.Intn(5)]
		off := rng.Int63n(size/gran) * gran
		n := max(1, min(rng.Int63n(4*max(cl, 4096)/gran+2)*gran, size-off))
		switch rng.Intn(12) {
		case 0, 1, 2:
			cs = append(cs, fmt.Sprintf("write -P 0x%02x %d %d", rng.Intn(256), off, n))
		case 3, 4:
			cs = append(cs, fmt.Sprintf("write %s %d %d", []string{"-z", "-zu", "-zn", "-z -f"}[rng.Intn(4)], off, n))
		case 5:
			cs = append(cs, fmt.Sprintf("discard %d %d", off, n))
		case 6:
			cs = append(cs, fmt.Sprintf("read -v %d %d", off, min(n, 32)))
		case 7:
			cs = append(cs, fmt.Sprintf("alloc %d %d", off, n))
		case 8:
			cs = append(cs, fmt.Sprintf("writev -P %d %d %d %d", rng.Intn(256), off, n/2, n-n/2))
		case 9:
			cs = append(cs, fmt.Sprintf("read -P 0 %d %d", off, n))
		case 10:
			cs = append(cs, "map")
		default:
			cs = append(cs, fmt.Sprintf("write -c %d %d", off&^(cl-1), min(cl, size-off&^(cl-1))))
		}
	}
	flags := []string{"-f", "qcow2"}
	switch rng.Intn(5) {
	case 0:
		flags = append(flags, "-d", "unmap")
	case 1:
		flags = append(flags, "-t", "none")
	case 2:
		flags = append(flags, "-d", "ignore")
	}
	c.Args = cmds(flags, cs...)
	return c
}

// TestRandomDataFile runs generated cases (seeds 1..n; GOQIO_DIFF_RANDOM
// sets n).
func TestRandomDataFile(t *testing.T) {
	runSeeds(t, 60, 15, func(t *testing.T, tl tools, seed int64) { tl.runDF(t, randomDFCase(seed)) })
}

// TestCreateDataFile: goqio create -o data_file=... writes the qcow2 file
// and the data file qemu-img create writes, and refuses what it refuses,
// with its messages.
func TestCreateDataFile(t *testing.T) {
	tl := setup(t)
	for i, opts := range []string{
		"data_file=d", "data_file=d,data_file_raw=on", "data_file=d,data_file_raw=on,preallocation=full",
		"data_file=d,preallocation=metadata", "data_file=d,preallocation=falloc", "data_file=d,preallocation=full,cluster_size=4k",
		"data_file=d,extended_l2=on", "data_file=d,data_file_raw=on,extended_l2=on,cluster_size=16k", "data_file=d,lazy_refcounts=on",
		"data_file=d,compression_type=zstd", "data_file=d,backing_file=base,backing_fmt=raw", "data_file=d,data_file_raw=off",
		"data_file=d,data_file_raw=yes", "data_file=sub/d", "data_file=d,cluster_size=512,refcount_bits=1",
		// refusals
		"compat=0.10,data_file=d", "data_file_raw=on", "data_file=d,data_file_raw=on,backing_file=base,backing_fmt=raw",
		"data_file=d,data_file_raw=bad", "data_file=", "data_file=,cluster_size=1000", "data_file=nonexist/d",
		"data_file=d,cluster_size=1000", "data_file=d,compat=0.10,compression_type=zstd", "data_file_raw=off",
		"data_file=d,lazy_refcounts=on,compat=0.10,refcount_bits=3",
	} {
		for _, size := range []string{"100000", "64M"} {
			opts, size := opts, size
			t.Run(fmt.Sprint(i, "-", size), func(t *testing.T) {
				t.Parallel()
				var outs [2]string
				dirs := [2]string{t.TempDir(), t.TempDir()}
				for j, prog := range []string{tl.qemuImg, tl.goqio} {
					d := dirs[j]
					os.Mkdir(filepath.Join(d, "sub"), 0o755)
					os.WriteFile(filepath.Join(d, "d"), []byte("old contents"), 0o644)
					if _, e, rc := sh(t, d, "", tl.qemuImg, "create", "-q", "-f", "raw", "base", "1M"); rc != 0 {
						t.Fatal(e)
					}
					o, e, rc := sh(t, d, "", prog, "create", "-f", "qcow2", "-o", opts, "img", size)
					outs[j] = strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", o, e, rc), filepath.Base(prog)+":", "PROG:")
				}
				if outs[0] != outs[1] {
					t.Errorf("create -o %s %s:\nqemu-img:\n%s\ngoqio:\n%s", opts, size, outs[0], outs[1])
				}
				for _, f := range []string{"img", "d", "sub/d"} {
					if same, qn, gn := sameFile(filepath.Join(dirs[0], f), filepath.Join(dirs[1], f)); !same {
						t.Errorf("create -o %s %s: %s differs (%d vs %d bytes)", opts, size, f, qn, gn)
					}
				}
			})
		}
	}
}

// TestDataFileSnapshots: qemu-img snapshot refuses internal snapshots on
// an image with a data file; goqio snapshot too.
func TestDataFileSnapshots(t *testing.T) {
	tl := setup(t)
	for _, args := range [][]string{{"-l"}, {"-c", "s1"}, {"-a", "s1"}, {"-d", "s1"}} {
		var outs [2]string
		var files [2][]byte
		for j, prog := range []string{tl.qemuImg, tl.goqio} {
			d := t.TempDir()
			sh(t, d, "", tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", "data_file=img.data", "img", "1M")
			o, e, rc := sh(t, d, "", prog, append(append([]string{"snapshot"}, args...), "img")...)
			outs[j] = strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", o, e, rc), filepath.Base(prog)+":", "PROG:")
			files[j], _ = os.ReadFile(filepath.Join(d, "img"))
		}
		if outs[0] != outs[1] {
			t.Errorf("snapshot %q:\nqemu-img:\n%s\ngoqio:\n%s", args, outs[0], outs[1])
		}
		if !bytes.Equal(files[0], files[1]) {
			t.Errorf("snapshot %q: image files differ", args)
		}
	}
}

// TestDataFileLocking: the data file is locked as QEMU locks it: others
// may read and write it while an image uses it, not resize it (another
// image using it read-write needs to); read-only users share it.
func TestDataFileLocking(t *testing.T) {
	tl := setup(t)
	dir := t.TempDir()
	if _, e, rc := sh(t, dir, "", tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", "data_file=L.data", "L.qcow2", "1M"); rc != 0 {
		t.Fatal(e)
	}
	if _, e, rc := sh(t, dir, "", tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", "data_file=L2.data", "L2.qcow2", "1M"); rc != 0 {
		t.Fatal(e)
	}
	progs := map[string]string{"qemu-io": tl.qemuIO, "goqio": tl.goqio}
	seconds := []string{"-f raw -c length L.data", "-r -f raw -c length L.data", "-c length L.qcow2",
		"--image-opts -c length driver=qcow2,file.filename=L2.qcow2,data-file.filename=L.data",
		"-r --image-opts -c length driver=qcow2,file.filename=L2.qcow2,data-file.filename=L.data"}
	results := map[string]map[string]string{}
	for _, a := range []string{"qemu-io", "goqio"} {
		for _, b := range []string{"qemu-io", "goqio"} {
			pair := a + "/" + b
			results[pair] = map[string]string{}
			for _, first := range []string{"", "-r", "-U -r"} {
				// the holder sleeps until killed below
				holder := exec.Command(progs[a], append(strings.Fields(first), "-c", "sleep 60000", "L.qcow2")...)
				holder.Dir = dir
				if err := holder.Start(); err != nil {
					t.Fatal(err)
				}
				waitLocked(t, filepath.Join(dir, "L.qcow2"), 10*time.Second)
				for _, second := range seconds {
					o, e, rc := sh(t, dir, "", progs[b], strings.Fields(second)...)
					e = strings.ReplaceAll(e, filepath.Base(progs[b])+":", "PROG:")
					results[pair][first+" / "+second] = fmt.Sprintf("%s%s[%d]", o, e, rc)
				}
				holder.Process.Kill()
				holder.Wait()
			}
		}
	}
	want := results["qemu-io/qemu-io"]
	if !strings.Contains(want[" / --image-opts -c length driver=qcow2,file.filename=L2.qcow2,data-file.filename=L.data"], `"resize" lock`) {
		t.Fatalf("qemu-io did not lock the data file against resizing: %q", want)
	}
	for pair, got := range results {
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s %s: got %q, qemu-io/qemu-io gives %q", pair, k, got[k], w)
			}
		}
	}
}

// TestDataFileCheck: goqio check on data-file images prints what
// qemu-img check prints: clean (human, JSON, repair), and a data file
// that is missing.
func TestDataFileCheck(t *testing.T) {
	tl := setup(t)
	for _, tc := range []struct {
		args    []string
		missing bool
	}{{[]string{"check"}, false}, {[]string{"check", "--output=json"}, false}, {[]string{"check", "-r", "all"}, false}, {[]string{"check"}, true}, {[]string{"check", "-r", "leaks"}, true}} {
		var outs [2]string
		for j, prog := range []string{tl.qemuImg, tl.goqio} {
			d := t.TempDir()
			sh(t, d, "", tl.qemuImg, "create", "-q", "-f", "qcow2", "-o", "data_file=img.data", "img", "4M")
			sh(t, d, "", tl.qemuIO, "-c", "write -P 1 0 100k", "-c", "write -z 1M 64k", "-c", "write -P 2 3M 1", "img")
			if tc.missing {
				os.Remove(filepath.Join(d, "img.data"))
			}
			o, e, rc := sh(t, d, "", prog, append(tc.args, "img")...)
			outs[j] = strings.ReplaceAll(fmt.Sprintf("%s%s[%d]", o, e, rc), filepath.Base(prog)+":", "PROG:")
		}
		if outs[0] != outs[1] {
			t.Errorf("%q (data file missing: %v):\nqemu-img:\n%s\ngoqio:\n%s", tc.args, tc.missing, outs[0], outs[1])
		}
	}
}

// waitLocked waits (at most max) until some process holds an OFD lock on
// file, as a holder started in the background does once it has opened it:
// a fixed delay is too short on a loaded machine or under -race.
func waitLocked(t *testing.T, file string, max time.Duration) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil {
		t.Fatal(err)
	}
	ino := fmt.Sprintf(":%d ", st.Ino)
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile("/proc/locks")
		if strings.Contains(string(b), ino) {
			time.Sleep(100 * time.Millisecond) // the holder finishes taking its locks
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
