package formats

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/qdict"
	"github.com/goqio/goqio/image/raw"
)

func TestArrayEntries(t *testing.T) {
	for _, c := range []struct {
		keys []string
		want int
	}{
		{nil, 0},
		{[]string{"x", "y"}, 0},
		{[]string{"children"}, 0},
		{[]string{"children.0"}, 1},
		{[]string{"children.0.driver", "children.0.filename", "children.1"}, 2},
		{[]string{"children.0", "children.0.driver"}, -1},
		{[]string{"children.1.driver"}, -1},
		{[]string{"children.0.driver", "children.2.driver"}, -1},
		{[]string{"children.0", "children.x"}, -1},
		{[]string{"children.0", "childrenx", "vote-threshold"}, 1},
		{[]string{"children.00"}, -1},
	} {
		d := qdict.New()
		for _, k := range c.keys {
			d.Put(k, "v")
		}
		if got := arrayEntries(d, "children."); got != c.want {
			t.Errorf("arrayEntries(%q) = %d, want %d", c.keys, got, c.want)
		}
	}
}

func TestVoteWinner(t *testing.T) {
	// the newest version wins among equals, as in QEMU's vote list
	var vs votes[int]
	for i, v := range []int{7, 8, 9} {
		vs.count(v, i)
	}
	if w := vs.winner(); w.value != 9 || w.index != 2 {
		t.Errorf("winner of a three-way tie: %+v", w)
	}
	vs = nil
	for i, v := range []int{7, 8, 7, 8, 8} {
		vs.count(v, i)
	}
	if w := vs.winner(); w.value != 8 || w.index != 1 || len(w.items) != 3 || w.items[0] != 4 {
		t.Errorf("winner: %+v", w)
	}
	if err := voteError([]error{syscall.EIO, nil, syscall.ENOSPC}); err != syscall.ENOSPC {
		t.Errorf("voteError tie: %v", err)
	}
	if err := voteError([]error{syscall.EIO, syscall.ENOSPC, syscall.EIO}); err != syscall.EIO {
		t.Errorf("voteError majority: %v", err)
	}
}

// quorumFiles makes n 64 KiB files of byte 0xab in dir, and applies edits
// ("i:off:byte:len").
func quorumFiles(t *testing.T, n int, edits ...string) []string {
	t.Helper()
	dir := t.TempDir()
	var names []string
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("c%d.raw", i))
		if err := os.WriteFile(p, bytes.Repeat([]byte{0xab}, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, p)
	}
	for _, e := range edits {
		var i, off, l int
		var b byte
		fmt.Sscanf(e, "%d:%d:%d:%d", &i, &off, &b, &l)
		f, err := os.OpenFile(names[i], os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt(bytes.Repeat([]byte{b}, l), int64(off))
		f.Close()
	}
	return names
}

func quorumJSON(opts string, files []string) string {
	var cs []string
	for _, f := range files {
		cs = append(cs, fmt.Sprintf(`{"driver":"file","filename":%q}`, f))
	}
	return fmt.Sprintf(`json:{"driver":"quorum",%s"children":[%s]}`, opts, strings.Join(cs, ","))
}

// openQuorumNode opens name; the node is closed at the end of the test
// unless the caller closes it first (done).
func openQuorumNode(t *testing.T, name string, ro bool) *Node {
	t.Helper()
	n, err := OpenNode(name, Options{ReadOnly: ro})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestQuorumReads: the vote (majority, ties, no quorum), fifo, and
// rewrite-corrupted, in process.
func TestQuorumReads(t *testing.T) {
	files := quorumFiles(t, 3, "2:4096:205:4096", "1:8192:239:4096", "2:8192:1:4096")
	read := func(n *Node, off int64) (byte, error) {
		p := make([]byte, 512)
		err := n.Disk.ReadAt(p, off)
		return p[0], err
	}
	n := openQuorumNode(t, quorumJSON(`"vote-threshold":2,`, files), true)
	if b, err := read(n, 4096); err != nil || b != 0xab {
		t.Errorf("majority read: %#x %v", b, err)
	}
	if _, err := read(n, 8192); image.Errno(err) != syscall.EIO {
		t.Errorf("read without a quorum: %v", err)
	}
	n.Close()
	n = openQuorumNode(t, quorumJSON(`"vote-threshold":1,`, files[1:]), true)
	if b, err := read(n, 4096); err != nil || b != 0xcd {
		t.Errorf("tie: the child counted last wins: %#x %v", b, err)
	}
	n.Close()
	n = openQuorumNode(t, quorumJSON(`"vote-threshold":3,"read-pattern":"fifo",`, []string{files[2], files[0], files[1]}), true)
	if b, err := read(n, 4096); err != nil || b != 0xcd {
		t.Errorf("fifo reads the first child: %#x %v", b, err)
	}
	n.Close()
	n = openQuorumNode(t, quorumJSON(`"vote-threshold":2,"rewrite-corrupted":true,`, files), false)
	if b, err := read(n, 4096); err != nil || b != 0xab {
		t.Errorf("rewrite-corrupted read: %#x %v", b, err)
	}
	got, _ := os.ReadFile(files[2])
	if got[4096] != 0xab || got[4096+511] != 0xab || got[4096+512] != 0xcd {
		t.Errorf("the loser's 512 bytes were not rewritten: % x", got[4096:4100])
	}
}

// TestQuorumOpenErrors: the validation QEMU's quorum_open does, in order.
func TestQuorumOpenErrors(t *testing.T) {
	files := quorumFiles(t, 2)
	short := filepath.Join(t.TempDir(), "short.raw")
	os.WriteFile(short, make([]byte, 512), 0o644)
	for _, c := range []struct{ opts, want string }{
		{``, "Parameter 'vote-threshold' expects a value >= 1"},
		{`"vote-threshold":3,`, "threshold may not exceed children count"},
		{`"vote-threshold":"x",`, "Parameter 'vote-threshold' expects a number"},
		{`"vote-threshold":1,"blkverify":true,`, "blkverify=on can only be set if there are exactly two files and vote-threshold is 2"},
		{`"vote-threshold":2,"blkverify":true,"rewrite-corrupted":true,`, "rewrite-corrupted=on cannot be used with blkverify=on"},
		{`"vote-threshold":1,"read-pattern":"lifo",`, "Please set read-pattern as fifo or quorum"},
		{`"vote-threshold":1,"x":1,`, "Block format 'quorum' does not support the option 'x'"},
	} {
		_, err := OpenNode(quorumJSON(c.opts, files), Options{})
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", c.opts, err, c.want)
		}
	}
	for _, c := range []struct{ name, want string }{
		{`json:{"driver":"quorum","vote-threshold":1}`, "Number of provided children must be 1 or more"},
		{`json:{"driver":"quorum","vote-threshold":1,"children":{"1":{"driver":"null-co"}}}`, "Option children is not a valid array"},
		{quorumJSON(`"vote-threshold":1,`, []string{files[0], short}), "Could not refresh total sector count: Input/output error"},
	} {
		_, err := OpenNode(c.name, Options{})
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	_, err := OpenNode(quorumJSON(`"vote-threshold":1,"rewrite-corrupted":true,`, files), Options{ReadOnly: true})
	if err == nil || err.Error() != "Block node is read-only" {
		t.Errorf("read-only rewrite-corrupted: %v", err)
	}
}

// TestQuorumConcurrent: requests from several goroutines through a quorum
// of three files (run with -race).
func TestQuorumConcurrent(t *testing.T) {
	files := quorumFiles(t, 3)
	n := openQuorumNode(t, quorumJSON(`"vote-threshold":2,`, files), false)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			off := int64(g) * 8192
			p := bytes.Repeat([]byte{byte(g + 1)}, 4096)
			if err := n.Disk.WriteAt(p, off, false); err != nil {
				t.Error(err)
			}
			q := make([]byte, 4096)
			if err := n.Disk.ReadAt(q, off); err != nil || !bytes.Equal(p, q) {
				t.Errorf("read back at %d: %v", off, err)
			}
			if err := n.Disk.WriteZeroes(off+4096, 4096, 0, false); err != nil {
				t.Error(err)
			}
			if _, err := n.Disk.BlockStatus(off, 8192, true); err != nil {
				t.Error(err)
			}
		}(g)
	}
	wg.Wait()
	if err := n.Disk.Flush(); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(files[0])
	for _, f := range files[1:] {
		if b, _ := os.ReadFile(f); !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s", f, files[0])
		}
	}
	if err := n.Disk.Truncate(1<<20, image.PreallocOff); err == nil || errors.Is(err, image.ErrReadOnly) {
		t.Errorf("truncate: %v", err)
	}
}

// TestQuorumLocks: a child another open file holds for writing refuses
// the quorum's unshared write, unless force-share (-U) shares all.
func TestQuorumLocks(t *testing.T) {
	files := quorumFiles(t, 2)
	holder, err := raw.Open(files[0], raw.Options{Lock: &raw.Lock{Perm: raw.PermConsistentRead | raw.PermWrite}})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	name := quorumJSON(`"vote-threshold":1,`, files)
	if _, err := OpenNode(name, Options{ReadOnly: true}); err == nil || !strings.HasPrefix(err.Error(), `Failed to get shared "write" lock`) {
		t.Errorf("read-only open beside a writer: %v", err)
	}
	n, err := OpenNode(name, Options{ReadOnly: true, ForceShare: true})
	if err != nil {
		t.Fatalf("-U -r: %v", err)
	}
	n.Close()
}
