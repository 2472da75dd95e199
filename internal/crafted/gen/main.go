// Command gen writes the crafted image corpus: NAME.qcow2.gz for the valid
// image and each mutation and, when qemu-io and qemu-img are installed,
// what QEMU does with each image: NAME.io.out (crafted.IOArgs),
// NAME.check.out and NAME.repair.out (crafted.CheckArgs).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/goqio/goqio/internal/crafted"
)

func main() {
	dir := flag.String("dir", "testdata/crafted", "where to write the corpus")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base, err := crafted.Base()
	if err != nil {
		return err
	}
	qemuIO, err1 := exec.LookPath("qemu-io")
	qemuImg, err2 := exec.LookPath("qemu-img")
	withQEMU := err1 == nil && err2 == nil
	if !withQEMU {
		fmt.Fprintln(os.Stderr, "gen: qemu-io/qemu-img not installed; QEMU's answers (*.out) not rewritten")
	}
	work, err := os.MkdirTemp("", "goqio-gen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	for _, m := range crafted.All() {
		img := crafted.Build(base, m)
		if err := os.WriteFile(filepath.Join(dir, m.File()), crafted.Gzip(img), 0o644); err != nil {
			return err
		}
		if !withQEMU {
			continue
		}
		stem := filepath.Join(dir, m.File()[:len(m.File())-len(".qcow2.gz")])
		runs := []struct {
			ext, prog, argv0 string
			args             []string
			digest           bool
		}{
			{".io.out", qemuIO, "qemu-io", crafted.IOArgs, false},
			{".check.out", qemuImg, "", crafted.CheckArgs["check"], false},
			{".repair.out", qemuImg, "", crafted.CheckArgs["repair"], true},
		}
		for _, r := range runs {
			if err := os.WriteFile(filepath.Join(work, "t.qcow2"), img, 0o644); err != nil {
				return err
			}
			res := crafted.Run(r.prog, r.argv0, work, r.args, r.digest)
			if err := crafted.SaveGolden(stem+r.ext, res); err != nil {
				return err
			}
		}
	}
	return nil
}
