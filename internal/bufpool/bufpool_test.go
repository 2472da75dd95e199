package bufpool

import "testing"

func TestGetPut(t *testing.T) {
	for _, n := range []int{1, 512, 4096, 4097, 65536, 1 << 25} {
		b := Get(n)
		if len(b) != n || cap(b) != 1<<class(n) || cap(b) < 4096 {
			t.Errorf("Get(%d): len %d cap %d", n, len(b), cap(b))
		}
		Put(b)
	}
	if b := Get(1<<25 + 1); len(b) != 1<<25+1 {
		t.Errorf("Get past the classes: len %d", len(b))
	}
	if Get(0) != nil {
		t.Error("Get(0) is not nil")
	}
	Put(make([]byte, 1000)) // not a class: left alone
}
