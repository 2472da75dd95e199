package repo

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(), name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goMod is go.mod's module path, its required modules and its replace
// directives.
func goMod(t *testing.T) (module string, requires, replaces []string) {
	inBlock := ""
	for _, line := range strings.Split(read(t, "go.mod"), "\n") {
		f := strings.Fields(strings.Split(line, "//")[0])
		switch {
		case len(f) == 0:
		case inBlock != "" && f[0] == ")":
			inBlock = ""
		case inBlock == "require":
			requires = append(requires, f[0])
		case inBlock == "replace":
			replaces = append(replaces, f[0])
		case f[0] == "module" && len(f) == 2:
			module = f[1]
		case (f[0] == "require" || f[0] == "replace") && len(f) == 2 && f[1] == "(":
			inBlock = f[0]
		case f[0] == "require":
			requires = append(requires, f[1])
		case f[0] == "replace":
			replaces = append(replaces, f[1])
		}
	}
	return
}

// TestLicense (issue 18 item 1): an Apache-2.0 LICENSE, the README says so,
// and the README's license table names every module go.mod requires.
func TestLicense(t *testing.T) {
	lic := read(t, "LICENSE")
	if !strings.Contains(lic, "Apache License") || !strings.Contains(lic, "Version 2.0, January 2004") ||
		!strings.Contains(lic, "END OF TERMS AND CONDITIONS") {
		t.Errorf("LICENSE is not the Apache License 2.0")
	}
	readme := read(t, "README.md")
	i := strings.Index(readme, "\n## License\n")
	if i < 0 {
		t.Fatal("README has no License section")
	}
	section := readme[i+1:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	if !strings.Contains(section, "Apache License, Version 2.0") {
		t.Errorf("README's License section does not name the Apache License 2.0")
	}
	table := map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		for _, m := range strings.Split(cells[1], ",") {
			table[strings.TrimSpace(m)] = strings.TrimSpace(cells[2])
		}
	}
	compatible := []string{"MIT", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "ISC"}
	_, requires, _ := goMod(t)
	if len(requires) == 0 {
		t.Fatal("go.mod requires nothing?")
	}
	for _, m := range requires {
		lic, ok := table[m]
		if !ok {
			t.Errorf("README's license table does not list %s (go.mod requires it)", m)
			continue
		}
		good := false
		for _, c := range compatible {
			if strings.HasPrefix(lic, c) {
				good = true
			}
		}
		if !good {
			t.Errorf("%s: license %q is not one known to be compatible with Apache-2.0", m, lic)
		}
	}
}

// TestInstallable (issue 18 item 6): go install
// github.com/goqio/goqio/cmd/goqio@VERSION works for a module proxy user
// once the repository is tagged: go.mod's path is the import path, there
// is no replace directive (a proxy install ignores them and would build
// something else), cmd/goqio is a main package, and the README says how to
// install, from a proxy and from a clone.
func TestInstallable(t *testing.T) {
	module, _, replaces := goMod(t)
	if module != "github.com/goqio/goqio" {
		t.Errorf("go.mod's module is %q", module)
	}
	if len(replaces) > 0 {
		t.Errorf("go.mod has replace directives (go install PATH@VERSION refuses them): %q", replaces)
	}
	main := read(t, "cmd/goqio/main.go")
	if !strings.Contains(main, "\npackage main\n") {
		t.Errorf("cmd/goqio is not a main package")
	}
	readme := read(t, "README.md")
	for _, want := range []string{"go install github.com/goqio/goqio/cmd/goqio@latest", "go install ./cmd/goqio"} {
		if !strings.Contains(readme, want) {
			t.Errorf("README does not say %q", want)
		}
	}
}
