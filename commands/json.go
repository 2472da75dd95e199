package commands

import (
	"encoding/json"
	"time"

	"github.com/goqio/goqio/image"
)

// JSON output (goqio --output=json): every command that prints a result
// prints one JSON object on one line instead. Field names are stable:
//
//	read, readv, write, writev, discard, aio_read, aio_write:
//	  {"command":"read","offset":0,"bytes":512,"ops":1,"seconds":1.2e-05,
//	   "bytes_per_sec":4.2e7,"ops_per_sec":81920,"pattern_ok":true}
//	  (pattern_ok only with -P; "dump":"<hex>" with -v)
//	length: {"command":"length","bytes":1048576}
//	info:   {"command":"info","format":"qcow2","cluster_size":65536,
//	         "vm_state_offset":536870912,"specific":{"compat":"1.1",...}}
//	alloc:  {"command":"alloc","offset":0,"bytes":512,"allocated":512}
//	map:    {"command":"map","runs":[{"start":0,"length":65536,"allocated":true},...]}
//
// Stdout carries nothing else: qemu-io's text messages (pattern failures,
// usage lines, errors, help) go to stderr in this mode.

type statsJSON struct {
	Command     string  `json:"command"`
	Offset      int64   `json:"offset"`
	Bytes       int64   `json:"bytes"`
	Ops         int     `json:"ops"`
	Seconds     float64 `json:"seconds"`
	BytesPerSec float64 `json:"bytes_per_sec"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	PatternOK   *bool   `json:"pattern_ok,omitempty"`
	Dump        string  `json:"dump,omitempty"`
}

func (s *Session) emitJSON(v any) {
	b, _ := json.Marshal(v)
	s.Out.Write(append(b, '\n'))
}

// reportJSON prints the statistics of a request as JSON.
func (s *Session) reportJSON(cmd string, d time.Duration, offset, bytes int64, pattern *bool, dump []byte) {
	if d <= 0 {
		d = 1
	}
	st := statsJSON{Command: cmd, Offset: offset, Bytes: bytes, Ops: 1, Seconds: d.Seconds(),
		BytesPerSec: float64(bytes) / d.Seconds(), OpsPerSec: 1 / d.Seconds(), PatternOK: pattern}
	if dump != nil {
		const hexdigits = "0123456789abcdef"
		h := make([]byte, 2*len(dump))
		for i, c := range dump {
			h[2*i], h[2*i+1] = hexdigits[c>>4], hexdigits[c&15]
		}
		st.Dump = string(h)
	}
	s.emitJSON(st)
}

func boolp(b bool) *bool { return &b }

type mapRun struct {
	Start     int64 `json:"start"`
	Length    int64 `json:"length"`
	Allocated bool  `json:"allocated"`
}

func infoJSON(info image.Info) map[string]any {
	m := map[string]any{"command": "info", "format": info.FormatName,
		"cluster_size": info.ClusterSize, "vm_state_offset": info.VMStateOffset}
	if info.Specific != nil {
		sp := map[string]any{}
		for _, kv := range info.Specific {
			if kv.Sub != nil {
				sp[kv.Key] = kv.Sub
				continue
			}
			sp[kv.Key] = kv.Value
		}
		m["specific"] = sp
	}
	return m
}
