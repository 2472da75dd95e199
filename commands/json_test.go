package commands

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/goqio/goqio/image/qcow2"
)

// field is one key of a JSON object of docs/json.md's schema.
type field struct {
	name     string
	kind     string // "int", "number", "bool", "string", "object", "array"
	optional bool
}

var (
	statsFields = []field{{"command", "string", false}, {"offset", "int", false}, {"bytes", "int", false},
		{"ops", "int", false}, {"seconds", "number", false}, {"bytes_per_sec", "number", false},
		{"ops_per_sec", "number", false}, {"pattern_ok", "bool", true}, {"dump", "string", true}}
	jsonSchema = map[string][]field{
		"read": statsFields, "readv": statsFields, "write": statsFields, "writev": statsFields,
		"discard": statsFields, "aio_read": statsFields, "aio_write": statsFields,
		"length": {{"command", "string", false}, {"bytes", "int", false}},
		"alloc":  {{"command", "string", false}, {"offset", "int", false}, {"bytes", "int", false}, {"allocated", "int", false}},
		"info": {{"command", "string", false}, {"format", "string", false}, {"cluster_size", "int", false},
			{"vm_state_offset", "int", false}, {"specific", "object", true}},
		"map": {{"command", "string", false}, {"runs", "array", false}},
	}
	runFields = []field{{"start", "int", false}, {"length", "int", false}, {"allocated", "bool", false},
		{"depth", "int", true}, {"present", "bool", true}, {"zero", "bool", true}, {"data", "bool", true},
		{"offset", "int", true}}
	messageFields = []field{{"command", "string", false}, {"level", "string", false},
		{"message", "string", false}, {"errno", "string", true}}
	snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
)

// validate checks one line against fields: a JSON object with exactly
// those keys, in that order (optional ones may be absent), of those types.
func validate(t *testing.T, line string, fields []field) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		t.Errorf("not a JSON object: %q", line)
		return nil
	}
	values := map[string]any{}
	i := 0
	for dec.More() {
		k, _ := dec.Token()
		key := k.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Errorf("%q: %v", line, err)
			return nil
		}
		for i < len(fields) && fields[i].name != key && fields[i].optional {
			i++
		}
		if i == len(fields) || fields[i].name != key {
			t.Errorf("%q: unexpected or misplaced key %q", line, key)
			return nil
		}
		if !hasKind(v, fields[i].kind) {
			t.Errorf("%q: %s is %T, want %s", line, key, v, fields[i].kind)
		}
		values[key] = v
		i++
	}
	for ; i < len(fields); i++ {
		if !fields[i].optional {
			t.Errorf("%q: lacks %q", line, fields[i].name)
		}
	}
	return values
}

func hasKind(v any, kind string) bool {
	switch x := v.(type) {
	case json.Number:
		if kind == "int" {
			_, err := x.Int64()
			return err == nil
		}
		return kind == "number"
	case bool:
		return kind == "bool"
	case string:
		return kind == "string"
	case map[string]any:
		return kind == "object"
	case []any:
		return kind == "array"
	}
	return false
}

// checkSpecific: info's specific object has snake_case keys and typed
// values (no "true", "false" or decimal numbers as strings).
func checkSpecific(t *testing.T, sp map[string]any) {
	for k, v := range sp {
		if !snakeCase.MatchString(k) {
			t.Errorf("specific key %q is not snake_case", k)
		}
		if s, ok := v.(string); ok && (s == "true" || s == "false" || regexp.MustCompile(`^-?[0-9]+$`).MatchString(s)) {
			t.Errorf("specific %s is the string %q", k, s)
		}
	}
}

func runJSON(t *testing.T, args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	o := NewOutput(&out, 4096, false)
	code = MainWith(append([]string{"goqio", "--output=json"}, args...), strings.NewReader(""), o, &errb, false)
	o.Flush()
	return out.String(), errb.String(), code
}

// TestJSONSchema runs every verb (but abort and sigraise, which end the
// process) with --output=json and validates every object on stdout and on
// stderr against docs/json.md's schema.
func TestJSONSchema(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	img := filepath.Join(dir, "t.qcow2")
	if err := qcow2.Create(base, qcow2.CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
		t.Fatal(err)
	}
	if err := qcow2.Create(img, qcow2.CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16,
		BackingFile: base, BackingFmt: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	cmds := []string{
		"write -P 0xab 0 64k", "write -z 64k 64k", "write -P 1 -c 128k 64k", "writev -P 2 192k 4k 4k",
		"read -P 0xab 0 4k", "read -P 0xac 0 4k", "read -v 0 16", "readv -P 2 192k 4k 4k", "read 2M 1",
		"aio_write -P 3 256k 4k", "aio_read -P 3 256k 4k", "aio_flush", "discard 256k 64k", "flush",
		"alloc 0 1M", "alloc 0", "length", "info", "map", "map --output=json", "map --output=human",
		"truncate 1M", "sleep 1", "help", "help read", "help bogus", "bogus", "break write_aio a",
		"remove_break a", "resume a", "wait_break a", "reopen -r", "write 0 1", "reopen -w", "close",
		"length", "open -o driver=qcow2 " + img, "map", "quit",
	}
	covered := map[string]bool{"abort": true, "sigraise": true}
	var args []string
	for _, c := range cmds {
		args = append(args, "-c", c)
		covered[Tokenize(c)[0]] = true
	}
	for _, c := range Table {
		if !covered[c.Name] {
			t.Errorf("the schema test does not run %s", c.Name)
		}
	}
	stdout, stderr, _ := runJSON(t, append(args, img)...)
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		var head struct{ Command string }
		if json.Unmarshal([]byte(line), &head) != nil {
			t.Errorf("stdout line is not JSON: %q", line)
			continue
		}
		fields, ok := jsonSchema[head.Command]
		if !ok {
			t.Errorf("stdout object of an undocumented command: %q", line)
			continue
		}
		seen[head.Command] = true
		v := validate(t, line, fields)
		if sp, ok := v["specific"].(map[string]any); ok {
			checkSpecific(t, sp)
		}
		if runs, ok := v["runs"].([]any); ok {
			for _, r := range runs {
				b, _ := json.Marshal(r) // key order is checked on the raw line below
				validate(t, string(b), []field{{"allocated", "bool", false}, {"data", "bool", true}, {"depth", "int", true},
					{"length", "int", false}, {"offset", "int", true}, {"present", "bool", true}, {"start", "int", false},
					{"zero", "bool", true}})
			}
			for _, raw := range regexp.MustCompile(`\{"start"[^{}]*\}`).FindAllString(line, -1) {
				validate(t, raw, runFields)
			}
		}
	}
	for c := range jsonSchema {
		if !seen[c] {
			t.Errorf("no %s object on stdout:\n%s", c, stdout)
		}
	}
	levels := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		v := validate(t, line, messageFields)
		if v == nil {
			continue
		}
		levels[v["level"].(string)] = true
		if v["message"] == "read failed: Input/output error" && v["errno"] != "EIO" {
			t.Errorf("errno of %q", line)
		}
	}
	for _, l := range []string{"error", "text"} {
		if !levels[l] {
			t.Errorf("no %s message on stderr:\n%s", l, stderr)
		}
	}
	if strings.Contains(stdout, "Use 'help commandname'") {
		t.Errorf("help text on stdout")
	}
	// an open failure is a message object too
	_, stderr, code := runJSON(t, filepath.Join(dir, "none"))
	v := validate(t, strings.TrimSpace(stderr), messageFields)
	if code != 1 || v["command"] != "open" || v["errno"] != "ENOENT" {
		t.Errorf("open failure: %d %q", code, stderr)
	}
}

// TestJSONDocs: docs/json.md names every field of the schema, and the
// README's and docs/json.md's example lines are what goqio prints.
func TestJSONDocs(t *testing.T) {
	doc, err := os.ReadFile("../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	all := append(append(append([]field{}, runFields...), messageFields...), statsFields...)
	for _, fs := range jsonSchema {
		all = append(all, fs...)
	}
	for _, f := range all {
		if !bytes.Contains(doc, []byte("`"+f.name+"`")) {
			t.Errorf("docs/json.md does not document %q", f.name)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// the example: a fresh 1 MiB qcow2 image and these commands
	dir := t.TempDir()
	img := filepath.Join(dir, "demo.qcow2")
	if err := qcow2.Create(img, qcow2.CreateOptions{Size: 1 << 20, ClusterSize: 65536, Version: 3, RefcountBits: 16}); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, _ := runJSON(t, "-c", "write -P 0xab 0 64k", "-c", "length", "-c", "alloc 0 128k", "-c", "map",
		"-c", "map --output=json", "-c", "info", "-c", "read 2M 1", img)
	timing := regexp.MustCompile(`"seconds":[^,]*,"bytes_per_sec":[^,]*,"ops_per_sec":[^,}]*`)
	norm := func(s string) string {
		return timing.ReplaceAllString(s, `"seconds":T,"bytes_per_sec":T,"ops_per_sec":T`)
	}
	got := norm(stdout + stderr)
	for name, text := range map[string][]byte{"README.md": readme, "docs/json.md": doc} {
		n := 0
		for _, line := range strings.Split(string(text), "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, `{"command":`) {
				continue
			}
			n++
			if !strings.Contains(got, norm(line)+"\n") {
				t.Errorf("%s's example %s is not what goqio prints:\n%s", name, line, stdout+stderr)
			}
		}
		if n < 5 {
			t.Errorf("%s has %d example lines", name, n)
		}
	}
}
