package commands

import (
	"strconv"
	"strings"
	"testing"
)

// TestInterruptBetweenRequests: Ctrl-C in the shell (s.interrupt closed)
// stops map and alloc between their block status calls; the command fails
// and the session goes on with the image intact.
func TestInterruptBetweenRequests(t *testing.T) {
	h := newQcow2Harness(t)
	defer h.s.Close()
	var writes []string
	for off := 0; off < 1<<20; off += 128 << 10 {
		writes = append(writes, "write -q -P 9 "+strconv.Itoa(off)+" 64k")
	}
	if _, errs, failed := h.run(writes...); failed {
		t.Fatal(errs)
	}
	full, _, failed := h.run("map")
	if failed || strings.Count(full, "\n") != 16 {
		t.Fatalf("map:\n%s", full)
	}
	intr := make(chan struct{})
	close(intr)
	for _, json := range []bool{false, true} {
		h.s.JSON = json
		for _, cmd := range []string{"map", "alloc 0 1M", "map --output=json"} {
			if cmd == "map --output=json" && !json {
				continue // qemu-img map's printer runs to its end
			}
			h.s.interrupt = intr
			out, errs, failed := h.run(cmd)
			h.s.interrupt = nil
			if !failed || strings.Count(out, "allocated") > 1 || errs != "" {
				t.Errorf("interrupted %s (json %v): failed %v\n%s%s", cmd, json, failed, out, errs)
			}
		}
	}
	h.s.JSON = false
	if out, _, failed := h.run("map"); failed || out != full {
		t.Errorf("map after the interruptions:\n%s", out)
	}
	if out, _, failed := h.run("read -P 9 896k 64k"); failed || !strings.Contains(out, "read 65536/65536") {
		t.Errorf("read after the interruptions: %s", out)
	}
}

// TestInterruptStreamed: a read or write of 64 MiB or more, streamed in
// chunks, stops between two of them at Ctrl-C, saying how far it got; the
// chunks written are there, the rest untouched.
func TestInterruptStreamed(t *testing.T) {
	h := newHarness(t, 80<<20)
	defer h.s.Close()
	intr := make(chan struct{})
	close(intr)
	h.s.interrupt = intr
	_, errs, failed := h.run("write -P 7 0 80M")
	if !failed || errs != "qemu-io: write interrupted: 16777216/83886080 bytes written at offset 0\n" {
		t.Errorf("interrupted write: failed %v, %q", failed, errs)
	}
	_, errs, failed = h.run("read -P 7 0 80M")
	if !failed || errs != "qemu-io: read interrupted: 16777216/83886080 bytes read at offset 0\n" {
		t.Errorf("interrupted read: failed %v, %q", failed, errs)
	}
	h.s.interrupt = nil
	for _, c := range []string{"read -q -P 7 0 16M", "read -q -P 0 16M 64M"} {
		if out, errs, failed := h.run(c); failed {
			t.Errorf("%s: %s%s", c, out, errs)
		}
	}
	// not interrupted: the whole request, as before
	if out, _, failed := h.run("write -P 8 0 80M"); failed || !strings.HasPrefix(out, "wrote 83886080/83886080 bytes at offset 0\n") {
		t.Errorf("write: %s", out)
	}
}
