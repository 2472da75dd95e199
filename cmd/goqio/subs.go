package main

import (
	"bytes"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/goqio/goqio/qemuimg"
	"github.com/goqio/goqio/qemunbd"
)

// passSub is a subcommand that takes a QEMU program's own command line:
// qemu-img's subcommands (goqio info, goqio convert, ...) and qemu-nbd's
// (goqio nbd). They are dispatched before goqio's own (cli) subcommands, as
// their options are QEMU's; the table is also what the help, the man page
// and the completion scripts list.
type passSub struct {
	name, usage string
}

// imgSubs are the qemu-img subcommands goqio runs as goqio NAME, with
// qemu-img's command line ("goqio NAME --help" is qemu-img's help).
var imgSubs = []passSub{
	{"info", "show an image's format, size, backing file and metadata, as qemu-img info"},
	{"map", "show an image's allocation and host offsets, as qemu-img map"},
	{"compare", "compare the guest contents of two images, as qemu-img compare"},
	{"convert", "copy an image into a new image of any format, as qemu-img convert"},
	{"measure", "compute the file size an image would need, as qemu-img measure"},
	{"dd", "copy part of an image, as qemu-img dd"},
	{"bench", "time reads or writes on an image, as qemu-img bench"},
	{"resize", "grow or shrink an image, as qemu-img resize"},
	{"rebase", "change an image's backing file, as qemu-img rebase"},
	{"commit", "write an image's data into its backing file, as qemu-img commit"},
	{"amend", "change an image's format options, as qemu-img amend"},
	{"bitmap", "add, remove, merge or change persistent dirty bitmaps, as qemu-img bitmap"},
}

// nbdSub is goqio nbd, qemu-nbd's command line.
var nbdSub = passSub{"nbd", "serve an image over NBD, as qemu-nbd"}

func imgSubcommand(name string) bool {
	for _, s := range imgSubs {
		if s.name == name {
			return true
		}
	}
	return false
}

// imgSynopsis is qemu-img's synopsis of a subcommand, from qemu-img's own
// help text ("Command syntax:"), with the program name in front.
func imgSynopsis(prog, name string) string {
	var out bytes.Buffer
	qemuimg.Main([]string{"qemu-img", "--help"}, &out, &out)
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "  "+name+" ") {
			return prog + " " + strings.TrimSpace(line)
		}
	}
	return prog + " " + name + " [OPTIONS] FILENAME"
}

// passCommands are the pass-through subcommands as cli commands, for the
// help, the man page and the completion scripts.
func passCommands(prog string) []*cli.Command {
	var cmds []*cli.Command
	for _, s := range imgSubs {
		s := s
		cmds = append(cmds, &cli.Command{
			Name: s.name, Usage: s.usage, SkipFlagParsing: true, HideHelp: true, CustomHelpTemplate: passHelpTemplate,
			UsageText:   imgSynopsis(prog, s.name),
			Description: "qemu-img " + s.name + "'s command line, options and output ('" + prog + " " + s.name + " --help' is qemu-img's help).",
			Action: func(c *cli.Context) error {
				return exitCode(qemuimg.Sub(prog, append([]string{s.name}, c.Args().Slice()...), os.Stdout, os.Stderr))
			},
		})
	}
	cmds = append(cmds, &cli.Command{
		Name: nbdSub.name, Usage: nbdSub.usage, SkipFlagParsing: true, HideHelp: true, CustomHelpTemplate: passHelpTemplate,
		UsageText:   prog + " nbd [OPTIONS] FILE\n" + prog + " nbd -L [OPTIONS]",
		Description: "qemu-nbd's command line, options and output ('" + prog + " nbd --help' lists them).",
		Action: func(c *cli.Context) error {
			return exitCode(qemunbd.Main(append([]string{prog + " nbd"}, c.Args().Slice()...), os.Stdout, os.Stderr))
		},
	})
	return cmds
}

// passHelpTemplate is cli's command help without its OPTIONS block: the
// options are the QEMU program's, which its own --help lists.
var passHelpTemplate = strings.SplitN(cli.CommandHelpTemplate, "{{if .VisibleFlagCategories}}", 2)[0] + "\n"

func exitCode(code int) error {
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}
