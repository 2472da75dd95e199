package commands

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goqio/goqio/image"
)

// JSON output (goqio --output=json): the schema is documented in
// docs/json.md, and TestJSONSchema checks every verb against it. Stdout
// carries one JSON object per result and nothing else; stderr carries one
// JSON object per line of what qemu-io would print there (errors, warnings,
// help and usage text). Objects are written with their keys in a fixed
// order (structs or obj), names in snake_case.

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

// mapRun is one run of map's JSON object: from "map", whether the top
// layer allocates it; from "map --output=json", also qemu-img map's fields
// for the whole backing chain (allocated is then depth 0 and present).
type mapRun struct {
	Start     int64  `json:"start"`
	Length    int64  `json:"length"`
	Allocated bool   `json:"allocated"`
	Depth     *int   `json:"depth,omitempty"`
	Present   *bool  `json:"present,omitempty"`
	Zero      *bool  `json:"zero,omitempty"`
	Data      *bool  `json:"data,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
}

// obj is a JSON object whose keys keep the order they are given in.
type obj []kv

type kv struct {
	K string
	V any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.K)
		v, err := json.Marshal(f.V)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// jsonKey is a qemu-io label as a snake_case field name.
func jsonKey(label string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, label)
}

// jsonValue is a qemu-io value typed: booleans and integers as such.
func jsonValue(v string) any {
	switch v {
	case "true":
		return true
	case "false":
		return false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	return v
}

func infoJSON(info image.Info) obj {
	m := obj{{"command", "info"}, {"format", info.FormatName},
		{"cluster_size", info.ClusterSize}, {"vm_state_offset", info.VMStateOffset}}
	if info.Specific != nil {
		sp := obj{}
		for _, kv := range info.Specific {
			if kv.Sub != nil {
				lines := make([]string, len(kv.Sub))
				for i, l := range kv.Sub {
					lines[i] = strings.TrimSpace(l)
				}
				sp = append(sp, kvp(jsonKey(kv.Key), lines))
				continue
			}
			sp = append(sp, kvp(jsonKey(kv.Key), jsonValue(kv.Value)))
		}
		m = append(m, kv{"specific", sp})
	}
	return m
}

func kvp(k string, v any) kv { return kv{k, v} }

// errnoNames maps strerror texts to errno names (EIO, ENOSPC, ...).
var errnoNames = func() map[string]string {
	m := map[string]string{}
	for e := syscall.Errno(1); e < 134; e++ {
		if name := unix.ErrnoName(e); name != "" {
			if _, dup := m[Strerror(e)]; !dup {
				m[Strerror(e)] = name
			}
		}
	}
	return m
}()

// errnoOf is the errno name of a message ending in a strerror text.
func errnoOf(msg string) string {
	best := ""
	for text := range errnoNames {
		if strings.HasSuffix(msg, text) && len(text) > len(best) {
			best = text
		}
	}
	return errnoNames[best]
}

// jsonStderr is stderr in JSON mode: each line written becomes one object
// {"command","level","message"[,"errno"]}. level is "warning" for a
// warn_report, "trace" for -T zero's lines, "text" for help output, else
// "error".
type jsonStderr struct {
	w   io.Writer
	s   *Session
	buf []byte
}

func (j *jsonStderr) Write(p []byte) (int, error) {
	j.buf = append(j.buf, p...)
	for {
		i := bytes.IndexByte(j.buf, '\n')
		if i < 0 {
			break
		}
		j.emit(string(j.buf[:i]))
		j.buf = j.buf[i+1:]
	}
	return len(p), nil
}

// flush emits a last line without its newline.
func (j *jsonStderr) flush() {
	if len(j.buf) > 0 {
		j.emit(string(j.buf))
		j.buf = j.buf[:0]
	}
}

func (j *jsonStderr) emit(line string) {
	level := "error"
	msg := strings.TrimPrefix(line, j.s.Prog+": ")
	if m, ok := strings.CutPrefix(line, "goqio-trace: "); ok {
		level, msg = "trace", m
	} else if m, ok := strings.CutPrefix(msg, "warning: "); ok {
		level, msg = "warning", m
	} else if j.s.curCmd == "help" {
		level = "text"
	}
	o := obj{{"command", j.s.curCmd}, {"level", level}, {"message", msg}}
	if e := errnoOf(msg); e != "" && level != "text" {
		o = append(o, kv{"errno", e})
	}
	b, _ := json.Marshal(o)
	j.w.Write(append(b, '\n'))
}
