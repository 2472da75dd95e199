package commands

import (
	"sort"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	if !sort.SliceIsSorted(Table, func(i, j int) bool { return Table[i].Name < Table[j].Name }) {
		t.Error("table not sorted by name")
	}
	seen := map[string]string{}
	for _, c := range Table {
		for _, n := range []string{c.Name, c.Alias} {
			if n == "" {
				continue
			}
			if other, dup := seen[n]; dup {
				t.Errorf("%q names both %s and %s", n, other, c.Name)
			}
			seen[n] = c.Name
		}
		if c.Run == nil {
			t.Errorf("%s has no Run", c.Name)
		}
		if c.OneLine == "" {
			t.Errorf("%s has no one-line help", c.Name)
		}
		if c.Help != "" {
			for _, l := range strings.ReplaceAll(c.Opts, ":", "") {
				if !strings.Contains(c.Help, " -"+string(l)+",") {
					t.Errorf("%s: option -%c not documented in its help", c.Name, l)
				}
			}
		}
		if c.Perm != 0 && c.Flags != 0 {
			t.Errorf("%s needs permissions but may run without a file", c.Name)
		}
	}
	// qemu-io 7.2 has exactly these commands
	want := "abort aio_flush aio_read aio_write alloc break close discard flush help info length map open quit read readv remove_break reopen resume sigraise sleep truncate wait_break write writev"
	var names []string
	for _, c := range Table {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, " "); got != want {
		t.Errorf("commands:\n got %s\nwant %s", got, want)
	}
}
