// Package crafted makes the corpus of damaged qcow2 images in
// testdata/crafted: one valid image, made by goqio's own qcow2 code, and a
// list of mutations of it (truncated headers, huge table sizes, cluster
// bits out of range, tables past the end of the file or overlapping, bad
// entries, unknown feature bits, a looping backing chain, ...). The
// reliability tests run qemu-io and goqio on each; the fuzz targets start
// from them. `go generate ./internal/crafted` rewrites the corpus (and,
// with qemu-io and qemu-img installed, QEMU's answers to it).
package crafted

//go:generate go run ./gen -dir ../../testdata/crafted

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goqio/goqio/image/qcow2"
)

// Mutation patches a copy of the valid image.
type Mutation struct {
	Name  string
	Apply func(img []byte) []byte
}

// Valid is the identity mutation: the valid image itself.
var Valid = Mutation{"valid", func(b []byte) []byte { return b }}

// All is Valid and then every mutation.
func All() []Mutation { return append([]Mutation{Valid}, Mutations()...) }

// File is the corpus file name of a mutation.
func (m Mutation) File() string { return strings.ReplaceAll(m.Name, " ", "_") + ".qcow2.gz" }

func be64(b []byte, off int, v uint64) { binary.BigEndian.PutUint64(b[off:], v) }
func be32(b []byte, off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }
func rd64(b []byte, off int) uint64    { return binary.BigEndian.Uint64(b[off:]) }

// Base makes the valid image every mutation starts from, as
// `qemu-img create -f qcow2 t.qcow2 4M` and `qemu-io -c 'write -P 1 0 192k'`
// make it (the reliability tests check that the bytes are the same).
func Base() ([]byte, error) {
	return makeImage(false, func(d *qcow2.Driver) error {
		_, err := d.WriteAt(bytes.Repeat([]byte{1}, 192<<10), 0)
		return err
	})
}

// BaseExt makes the valid image with extended L2 entries that the ext
// mutations start from, as `qemu-img create -f qcow2 -o extended_l2=on
// t.qcow2 4M` and `qemu-io -c 'write -P 1 0 4k' -c 'write -c -P 2 64k 64k'`
// make it: L2 table at 0x40000 (16-byte entries), data cluster 0x50000
// with subclusters 0-1 allocated, a compressed cluster at 0x60000.
func BaseExt() ([]byte, error) {
	b, err := baseExt()
	return bytes.Clone(b), err
}

// baseExt is made once: every ext mutation starts from it.
var baseExt = sync.OnceValues(func() ([]byte, error) {
	return makeImage(true, func(d *qcow2.Driver) error {
		if _, err := d.WriteAt(bytes.Repeat([]byte{1}, 4096), 0); err != nil {
			return err
		}
		return d.WriteCompressed(bytes.Repeat([]byte{2}, 65536), 65536)
	})
})

// makeImage creates a 4 MiB qcow2 image (64 KiB clusters, with extended
// L2 entries when asked) with goqio's own code, lets fill write to it,
// and returns the file.
func makeImage(extL2 bool, fill func(*qcow2.Driver) error) ([]byte, error) {
	dir, err := os.MkdirTemp("", "goqio-crafted-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "t.qcow2")
	if err := qcow2.Create(p, qcow2.CreateOptions{Size: 4 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16, ExtendedL2: extL2}); err != nil {
		return nil, err
	}
	d, err := qcow2.Open(p, qcow2.Options{})
	if err != nil {
		return nil, err
	}
	if err := fill(d); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.Close(); err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// extMutation patches the extended-L2 image (whatever image it is given).
func extMutation(name string, off int, v uint64) Mutation {
	return Mutation{name, func([]byte) []byte {
		b, err := BaseExt()
		if err != nil {
			panic(err)
		}
		be64(b, off, v)
		return b
	}}
}

// snapMutation appends a one-entry snapshot table (a snapshot "1" named
// "s" whose L1 table is the active one, 24 bytes of extra data) as a new
// cluster at the end of the image, points the header at it, and lets edit
// change the entry. The new cluster has no refcount (a leak or worse, as
// check reports).
func snapMutation(name string, edit func(entry []byte)) Mutation {
	return Mutation{name, func(b []byte) []byte {
		at := (len(b) + 0xffff) &^ 0xffff
		b = append(b, make([]byte, at+0x10000-len(b))...)
		e := b[at:]
		be64(e, 0, rd64(b, 40)) // the active L1 table
		be32(e, 8, binary.BigEndian.Uint32(b[36:]))
		binary.BigEndian.PutUint16(e[12:], 1)
		binary.BigEndian.PutUint16(e[14:], 1)
		be32(e, 36, 24)
		be64(e, 48, 4<<20) // disk size
		e[64], e[65] = '1', 's'
		edit(e)
		be32(b, 60, 1)
		be64(b, 64, uint64(at))
		return b
	}}
}

// withBitmap adds a persistent dirty bitmap "b0" (granularity 64 KiB,
// enabled, no bits set) to the valid image as QEMU lays one out: its table
// in a new cluster at 0x80000, the directory in one at 0x90000, both
// counted in the refcount block, the bitmaps header extension before the
// end of the extensions, the autoclear bit set. edit then damages it.
func withBitmap(name string, edit func(b []byte)) Mutation {
	return Mutation{name, func(b []byte) []byte {
		b = append(b, make([]byte, 0xa0000-len(b))...)
		binary.BigEndian.PutUint16(b[0x20000+2*8:], 1)
		binary.BigEndian.PutUint16(b[0x20000+2*9:], 1)
		d := b[0x90000:]
		be64(d, 0, 0x80000) // table offset
		be32(d, 8, 1)       // table size
		be32(d, 12, 2)      // flags: auto
		d[16], d[17] = 1, 16
		binary.BigEndian.PutUint16(d[18:], 2)
		copy(d[24:], "b0")
		// the extension goes where the end marker is (after the feature table)
		end := 0x1f8
		be32(b, end, 0x23852875)
		be32(b, end+4, 24)
		be32(b, end+8, 1)
		be64(b, end+16, 32)
		be64(b, end+24, 0x90000)
		be64(b, end+32, 0) // the new end marker
		be64(b, 88, 1)     // autoclear: bitmaps
		edit(b)
		return b
	}}
}

// Build returns the damaged image of m.
func Build(base []byte, m Mutation) []byte { return m.Apply(bytes.Clone(base)) }

// Gzip compresses an image for the corpus (the images are mostly zeroes).
func Gzip(img []byte) []byte {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	w.Write(img)
	w.Close()
	return b.Bytes()
}

// Load reads a corpus file.
func Load(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// The test image: 64 KiB clusters, 4 MiB, data in clusters 0-2 of the
// guest: header 0, reftable 0x10000, refblock 0x20000, L1 0x30000, L2
// 0x40000, data 0x50000...
func Mutations() []Mutation {
	l2 := func(img []byte) int { return int(rd64(img, 0x30000) & 0x00fffffffffffe00) }
	set64 := func(name string, off int, v uint64) Mutation {
		return Mutation{name, func(b []byte) []byte { be64(b, off, v); return b }}
	}
	set32 := func(name string, off int, v uint32) Mutation {
		return Mutation{name, func(b []byte) []byte { be32(b, off, v); return b }}
	}
	ms := []Mutation{
		set32("version 1", 4, 1), set32("version 4", 4, 4), set32("cluster bits 8", 20, 8),
		set32("cluster bits 22", 20, 22), set32("cluster bits 63", 20, 63), set32("l1 size huge", 36, 0x7fffffff),
		set32("l1 size 0", 36, 0), set64("l1 offset unaligned", 40, 0x30008), set64("l1 offset past eof", 40, 1<<40),
		set64("l1 offset huge", 40, 1<<62), set64("reftable unaligned", 48, 0x10200), set64("reftable past eof", 48, 1<<40),
		set32("reftable clusters 0", 56, 0), set32("reftable clusters huge", 56, 0x7fffffff), set32("snapshots huge", 60, 0x7fffffff),
		set32("snapshots 1 bad offset", 60, 1), set64("incompat unknown", 72, 1<<20), set64("incompat all", 72, 0xffffffffffffffff),
		set32("refcount order 7", 96, 7), set32("header length 0", 100, 0), set32("header length huge", 100, 0x7ffffff0),
		set32("header length 1000", 100, 1000), set64("backing offset past cluster", 8, 0x20000),
		Mutation{"backing name too long", func(b []byte) []byte { be64(b, 8, 0x1000); be32(b, 16, 5000); return b }},
		Mutation{"backing name loops", func(b []byte) []byte {
			copy(b[0x1000:], "t.qcow2")
			be64(b, 8, 0x1000)
			be32(b, 16, 7)
			return b
		}},
		set32("crypt aes", 32, 1), set64("size huge", 24, 1<<62), set32("compression bit without type", 72+4, 8),
		Mutation{"extension too long", func(b []byte) []byte { be32(b, 0x70+4, 0x100000); return b }},
		Mutation{"l1 entry unaligned", func(b []byte) []byte { be64(b, 0x30000, rd64(b, 0x30000)|0x200); return b }},
		Mutation{"l1 entry past eof", func(b []byte) []byte { be64(b, 0x30000, 1<<63|1<<40); return b }},
		Mutation{"l1 entry points at header", func(b []byte) []byte { be64(b, 0x30000, 1<<63); return b }},
		Mutation{"l1 entry reserved bits", func(b []byte) []byte { be64(b, 0x30000, rd64(b, 0x30000)|1<<60); return b }},
		Mutation{"l2 entry unaligned", func(b []byte) []byte { o := l2(b); be64(b, o, rd64(b, o)|0x200); return b }},
		Mutation{"l2 entry past eof", func(b []byte) []byte { be64(b, l2(b), 1<<63|1<<40); return b }},
		Mutation{"l2 entry points at l1", func(b []byte) []byte { be64(b, l2(b), 1<<63|0x30000); return b }},
		Mutation{"l2 entry points at reftable", func(b []byte) []byte { be64(b, l2(b), 1<<63|0x10000); return b }},
		Mutation{"l2 entry points at header", func(b []byte) []byte { be64(b, l2(b)+8, 1<<63|0x1); be64(b, l2(b), 1<<63); return b }},
		Mutation{"l2 entry reserved bits", func(b []byte) []byte { o := l2(b); be64(b, o, rd64(b, o)|1<<57); return b }},
		Mutation{"l2 compressed garbage", func(b []byte) []byte { be64(b, l2(b), 1<<62|0x50000); return b }},
		Mutation{"l2 compressed past eof", func(b []byte) []byte { be64(b, l2(b), 1<<62|1<<40); return b }},
		Mutation{"refblock entry unaligned", func(b []byte) []byte { be64(b, 0x10000, 0x20200); return b }},
		Mutation{"refblock past eof", func(b []byte) []byte { be64(b, 0x10000, 1<<40); return b }},
		Mutation{"refcounts zero", func(b []byte) []byte { clear(b[0x20000:0x30000]); return b }},
		snapMutation("snapshot extra data too large", func(e []byte) { be32(e, 36, 2000) }),
		snapMutation("snapshot entry incomplete", func(e []byte) { be32(e, 36, 8) }),
		snapMutation("snapshot l1 unaligned", func(e []byte) { be64(e, 0, 0x30200) }),
		snapMutation("snapshot l1 too large", func(e []byte) { be32(e, 8, 0x10000000) }),
		snapMutation("snapshot l1 shared", func(e []byte) {}),
		Mutation{"no feature table", func(b []byte) []byte { clear(b[0x70 : 0x70+8+384]); return b }},
		Mutation{"no feature table l2 entry unaligned", func(b []byte) []byte {
			clear(b[0x70 : 0x70+8+384])
			o := l2(b)
			be64(b, o, rd64(b, o)|0x200)
			return b
		}},
		withBitmap("bitmap valid", func([]byte) {}),
		withBitmap("bitmap in use", func(b []byte) { be32(b, 0x90000+12, 3) }),
		withBitmap("bitmap autoclear cleared", func(b []byte) { be64(b, 88, 0) }),
		withBitmap("bitmap zero bitmaps", func(b []byte) { be32(b, 0x1f8+8, 0) }),
		withBitmap("bitmap two announced", func(b []byte) { be32(b, 0x1f8+8, 2) }),
		withBitmap("bitmap directory unaligned", func(b []byte) { be64(b, 0x1f8+24, 0x90008) }),
		withBitmap("bitmap directory huge", func(b []byte) { be64(b, 0x1f8+16, 1<<40) }),
		withBitmap("bitmap directory past eof", func(b []byte) { be64(b, 0x1f8+24, 1<<40) }),
		withBitmap("bitmap granularity 8", func(b []byte) { b[0x90000+17] = 8 }),
		withBitmap("bitmap table entry reserved bits", func(b []byte) { be64(b, 0x80000, 0x100) }),
		withBitmap("bitmap table entry all ones", func(b []byte) { be64(b, 0x80000, 1) }),
		withBitmap("bitmap table entry points at header", func(b []byte) { be64(b, 0x80000, 0x200) }),
		withBitmap("bitmap table entry past eof", func(b []byte) { be64(b, 0x80000, 1<<40) }),
		withBitmap("bitmap extension short", func(b []byte) { be32(b, 0x1f8+4, 16) }),
		extMutation("ext valid", 0, 0x514649fb00000003),
		extMutation("ext bitmap alloc and zero", 0x40008, 0x0000000100000001),
		extMutation("ext unallocated with alloc bits", 0x40028, 5),
		extMutation("ext compressed with bitmap", 0x40018, 1),
		Mutation{"truncated header", func(b []byte) []byte { return b[:100] }},
		Mutation{"truncated to 64k", func(b []byte) []byte { return b[:0x10000] }},
		Mutation{"empty", func(b []byte) []byte { return b[:0] }},
	}
	return ms
}

// IOArgs is the qemu-io command line the tests run on every image (named
// t.qcow2 in the current directory): reads, a map, writes, info.
var IOArgs = []string{"-f", "qcow2", "-c", "read -P 1 0 64k", "-c", "map", "-c", "write -P 2 64k 4k", "-c", "read -P 2 64k 4k", "-c", "write -P 3 1M 64k", "-c", "info", "t.qcow2"}

// CheckArgs are the qemu-img check command lines the tests run.
var CheckArgs = map[string][]string{
	"check":  {"check", "-f", "qcow2", "t.qcow2"},
	"repair": {"check", "-r", "all", "-f", "qcow2", "t.qcow2"},
}

// Result is how a run ended: its output (stdout and stderr together, the
// timing of read/write reports replaced by OPS, the program's name by
// PROG), its exit code, whether it was still running at the time limit,
// and (for repairs) the digest of the file afterwards.
type Result struct {
	Out     string
	Code    int
	Timeout bool
	File    string // sha256 and size of the image afterwards, "" unless asked
}

// Encode writes r as a golden file: the output, then one line "exit: N"
// (or "exit: timeout"), then "file: ..." when known.
func (r Result) Encode() []byte {
	var b strings.Builder
	b.WriteString(r.Out)
	if r.Out != "" && !strings.HasSuffix(r.Out, "\n") {
		b.WriteString("\n\\ no newline\n")
	}
	if r.Timeout {
		b.WriteString("exit: timeout\n")
	} else {
		b.WriteString("exit: " + strconv.Itoa(r.Code) + "\n")
	}
	if r.File != "" {
		b.WriteString("file: " + r.File + "\n")
	}
	return []byte(b.String())
}

// Decode reads a golden file written by Encode.
func Decode(b []byte) (Result, bool) {
	var r Result
	s := string(b)
	if i := strings.LastIndex(s, "file: "); i >= 0 && (i == 0 || s[i-1] == '\n') {
		r.File = strings.TrimSuffix(s[i+6:], "\n")
		s = s[:i]
	}
	i := strings.LastIndex(s, "exit: ")
	if i < 0 || (i > 0 && s[i-1] != '\n') {
		return r, false
	}
	code := strings.TrimSuffix(s[i+6:], "\n")
	s = s[:i]
	if code == "timeout" {
		r.Timeout = true
	} else {
		n, err := strconv.Atoi(code)
		if err != nil {
			return r, false
		}
		r.Code = n
	}
	s = strings.TrimSuffix(s, "\n\\ no newline\n")
	r.Out = s
	return r, true
}

var timing = regexp.MustCompile(`[0-9]* ops; .*`)

// Limit is how long Run lets a program run before it counts as hanging:
// generous, because qemu-img takes about 5 s for some repairs (4095
// snapshot table entries) on an idle machine, and a test run with -race
// on 2 busy cores is many times slower.
const Limit = 60 * time.Second

// Run runs prog (with argv[0] set to argv0 when not empty) in dir, where
// the image is t.qcow2, for at most Limit. With digest, the result
// records the image file's digest afterwards.
func Run(prog, argv0, dir string, args []string, digest bool) Result {
	ctx, cancel := context.WithTimeout(context.Background(), Limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = dir
	if argv0 != "" {
		cmd.Args[0] = argv0
	}
	out, err := cmd.CombinedOutput()
	name := argv0
	if name == "" {
		name = filepath.Base(prog)
	}
	s := timing.ReplaceAllString(string(out), "OPS")
	s = strings.ReplaceAll(s, name+":", "PROG:")
	r := Result{Out: s, Timeout: ctx.Err() != nil}
	if e, ok := err.(*exec.ExitError); ok {
		r.Code = e.ExitCode()
	} else if err != nil {
		r.Code = -1
	}
	if digest {
		r.File = FileDigest(filepath.Join(dir, "t.qcow2"))
	}
	return r
}

// FileDigest is "sha256:HEX size:N" of a file, or "missing". A file a
// repair grew past 64 MiB (a sparse file reaching a far refcount block) is
// described by its size only.
func FileDigest(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	if st.Size() > 64<<20 {
		return "size:" + strconv.FormatInt(st.Size(), 10)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "unreadable"
	}
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:]) + " size:" + strconv.FormatInt(st.Size(), 10)
}

// SaveGolden writes r to path, or gzipped to path.gz when it is large.
func SaveGolden(path string, r Result) error {
	b := r.Encode()
	os.Remove(path)
	os.Remove(path + ".gz")
	if len(b) > 64<<10 {
		return os.WriteFile(path+".gz", Gzip(b), 0o644)
	}
	return os.WriteFile(path, b, 0o644)
}

// LoadGolden reads what SaveGolden wrote; ok is false when there is none.
func LoadGolden(path string) (r Result, ok bool, err error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		if b, err = Load(path + ".gz"); os.IsNotExist(err) {
			return r, false, nil
		}
	}
	if err != nil {
		return r, false, err
	}
	r, ok = Decode(b)
	if !ok {
		return r, false, fmt.Errorf("%s: no exit line", path)
	}
	return r, true, nil
}
