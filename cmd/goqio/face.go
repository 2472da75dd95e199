package main

// goqio's own face, under its own name: help, version, completion scripts
// and the man page, all made from the definitions (newApp's subcommands,
// commands.MainOptions, commands.Table) so that they cannot drift from the
// code. Under the qemu-* names none of this exists.

import (
	"fmt"
	"io"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/goqio/goqio/commands"
)

// ModulePath is goqio's module, whose repository is where bugs are reported.
const ModulePath = "github.com/goqio/goqio"

func faceCommands() []*cli.Command {
	cmds := []*cli.Command{{
		Name:      "help",
		Usage:     "goqio's help, a subcommand's options, or a qemu-io verb's help",
		ArgsUsage: "[SUBCOMMAND|VERB]",
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			if c.NArg() == 0 {
				printHelp(w, c.App.Name)
				return nil
			}
			arg := c.Args().First()
			if cmd := c.App.Command(arg); cmd != nil {
				if err := cli.ShowCommandHelp(c.Lineage()[1], arg); err != nil {
					return err
				}
				if h, ok := commands.VerbHelp(arg); ok {
					// info and map are qemu-io verbs too
					fmt.Fprintf(w, "\n%s is also a qemu-io command (for -c and the shell):\n\n%s", arg, h)
				}
				return nil
			}
			if h, ok := commands.VerbHelp(arg); ok {
				fmt.Fprint(w, h)
				return nil
			}
			return cli.Exit(fmt.Sprintf("%s: no subcommand or verb %q; try '%s help'", c.App.Name, arg, c.App.Name), 1)
		},
	}, {
		Name:  "version",
		Usage: "goqio's version, the build's module version and VCS revision, and the QEMU version it matches",
		Action: func(c *cli.Context) error {
			printVersion(c.App.Writer, c.App.Name)
			return nil
		},
	}, {
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Action: func(c *cli.Context) error {
			script, err := completionScript(c.App.Name, c.Args().First())
			if err != nil {
				return cli.Exit(fmt.Sprintf("%s: %v", c.App.Name, err), 1)
			}
			fmt.Fprint(c.App.Writer, script)
			return nil
		},
	}, {
		Name:  "man",
		Usage: "print goqio's man page (troff, section 1)",
		Action: func(c *cli.Context) error {
			page, err := manPage(c.App.Name)
			if err != nil {
				return cli.Exit(fmt.Sprintf("%s: %v", c.App.Name, err), 1)
			}
			fmt.Fprint(c.App.Writer, page)
			return nil
		},
	}}
	for _, c := range cmds {
		// no cli "help" subcommand under them: 'goqio help help' is the
		// help verb's help, not cli's help of help
		c.HideHelpCommand = true
	}
	return cmds
}

// optionLabel is "-c, --cmd=STRING" for an option.
func optionLabel(o commands.OptionDoc) string {
	l := "--" + o.Long
	if o.Arg != "" {
		l += "=" + o.Arg
	}
	if o.Short != "" {
		l = "-" + o.Short + ", " + l
	}
	return l
}

func printHelp(w io.Writer, name string) {
	app := newApp(name)
	fmt.Fprintf(w, `Usage: %[1]s [OPTIONS]... [-c COMMAND]... [FILE]
       %[1]s SUBCOMMAND [ARGUMENTS]...

goqio is a Go reimplementation of QEMU %[2]s's qemu-io: it runs qemu-io's
commands (read, write, map, ...) on raw and qcow2 images and prints what
qemu-io prints. Run as qemu-io (a symlink named qemu-io), it is qemu-io,
byte for byte; run as %[1]s it also has subcommands and options of its own.

Subcommands:
`, name, commands.QEMUVersion)
	for _, c := range app.Commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.Name, c.Usage)
	}
	fmt.Fprintf(w, "\nqemu-io mode (no subcommand): open FILE, run each -c COMMAND, or read\ncommands from stdin (a shell with history and completion on a terminal).\n\nOptions:\n")
	for _, o := range commands.MainOptions {
		fmt.Fprintf(w, "  %-24s %s\n", optionLabel(o), o.Usage)
	}
	fmt.Fprintf(w, `
  --output=json prints each result as one JSON object per line on stdout,
  errors as JSON objects on stderr (the schema: docs/json.md).
  -T zero traces, on stderr, what each zero write and discard becomes.

Commands (for -c and the shell; '%[1]s help VERB' for one):
`, name)
	for _, c := range commands.Table {
		fmt.Fprintf(w, "  %-13s %s\n", c.Name, c.OneLine)
	}
	fmt.Fprintf(w, `
'%[1]s help SUBCOMMAND' shows a subcommand's options; '%[1]s version' the build.
Report bugs on the project's issue tracker (the repository of %[2]s).
`, name, ModulePath)
}

// buildInfo is the module version and VCS revision of this binary.
func buildInfo() (module, revision string) { return buildInfoOf(debug.ReadBuildInfo()) }

// buildInfoOf is buildInfo from what debug.ReadBuildInfo returned.
func buildInfoOf(bi *debug.BuildInfo, ok bool) (module, revision string) {
	module, revision = "unknown", "unknown (built without VCS stamping)"
	if !ok || bi == nil {
		return
	}
	module = bi.Main.Path + " " + bi.Main.Version
	var rev, when, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		revision = rev
		if when != "" {
			revision += " (" + when + ")"
		}
		if modified == "true" {
			revision += " modified"
		}
	}
	return
}

// releaseVersion is a module version of a tagged release (v1.2.3).
var releaseVersion = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)

// goqioVersion is goqio's version: the release the binary was installed at
// (go install ...@v1.2.3), else commands.Version.
func goqioVersion(bi *debug.BuildInfo, ok bool) string {
	if ok && bi != nil && releaseVersion.MatchString(bi.Main.Version) {
		return bi.Main.Version[1:]
	}
	return commands.Version
}

func printVersion(w io.Writer, name string) {
	module, revision := buildInfo()
	fmt.Fprintf(w, "%s %s\nmodule: %s\nrevision: %s\nmatches: qemu-io %s\n", name, goqioVersion(debug.ReadBuildInfo()), module, revision, commands.QEMUVersion)
}

// docApp is newApp with the qemu-io mode options as the app's flags and
// the verbs in its description, for the man page and fish completion.
func docApp(name string) *cli.App {
	app := newApp(name)
	app.HideHelp = true
	app.HideVersion = true // -V, --version are in MainOptions; cli's own would add -v
	app.UsageText = name + " [OPTIONS]... [-c COMMAND]... [FILE]\n" + name + " SUBCOMMAND [ARGUMENTS]..."
	for _, o := range commands.MainOptions {
		names := []string{o.Long}
		if o.Short != "" {
			names = []string{o.Long, o.Short}
		}
		if o.Arg != "" {
			app.Flags = append(app.Flags, &cli.StringFlag{Name: names[0], Aliases: names[1:], Usage: o.Usage})
		} else {
			app.Flags = append(app.Flags, &cli.BoolFlag{Name: names[0], Aliases: names[1:], Usage: o.Usage})
		}
	}
	var d strings.Builder
	fmt.Fprintf(&d, "goqio is a Go reimplementation of QEMU %s's qemu-io. Without a subcommand it is qemu-io: it opens FILE, runs each -c COMMAND and otherwise reads commands from stdin. Run under the name qemu-io it is qemu-io byte for byte. With --output=json each result is one JSON object per line (docs/json.md); -T zero traces what zero writes and discards become.\n\nCommands (qemu-io verbs):\n\n", commands.QEMUVersion)
	for _, c := range commands.Table {
		fmt.Fprintf(&d, "- **%s**: %s\n", c.Name, c.OneLine)
	}
	fmt.Fprintf(&d, "\nBugs: report them on the project's issue tracker (the repository of %s).\n", ModulePath)
	app.Description = d.String()
	return app
}

func manPage(name string) (string, error) { return docApp(name).ToManWithSection(1) }

func completionScript(name, shell string) (string, error) {
	switch shell {
	case "bash":
		return bashCompletion(name), nil
	case "zsh":
		return zshCompletion(name), nil
	case "fish":
		return fishCompletion(name)
	}
	return "", fmt.Errorf("completion: expected bash, zsh or fish, not %q", shell)
}

// completionData is what every script completes: subcommands, the
// options (and the values of those that take a fixed set), the verbs.
func completionData(name string) (subs, opts []string, values map[string][]string, verbs []string) {
	for _, c := range newApp(name).Commands {
		subs = append(subs, c.Name)
	}
	values = map[string][]string{}
	for _, o := range commands.MainOptions {
		opts = append(opts, "--"+o.Long)
		if o.Short != "" {
			opts = append(opts, "-"+o.Short)
		}
		if o.Values != nil {
			values["--"+o.Long] = o.Values
			if o.Short != "" {
				values["-"+o.Short] = o.Values
			}
		}
	}
	for _, c := range commands.Table {
		verbs = append(verbs, c.Name)
	}
	return
}

func bashCompletion(name string) string {
	subs, opts, values, verbs := completionData(name)
	fn := "_" + strings.ReplaceAll(name, "-", "_") + "_complete"
	var b strings.Builder
	fmt.Fprintf(&b, "# bash completion for %s (generated by '%s completion bash')\n", name, name)
	fmt.Fprintf(&b, "%s() {\n  local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n", fn)
	b.WriteString("  case \"$prev\" in\n")
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "    %s) COMPREPLY=($(compgen -W '%s' -- \"$cur\")); return;;\n", k, strings.Join(values[k], " "))
	}
	fmt.Fprintf(&b, "    -c|--cmd) COMPREPLY=($(compgen -W '%s' -- \"$cur\")); return;;\n", strings.Join(verbs, " "))
	fmt.Fprintf(&b, "    help) if [ \"$COMP_CWORD\" -eq 2 ]; then COMPREPLY=($(compgen -W '%s %s' -- \"$cur\")); return; fi;;\n", strings.Join(subs, " "), strings.Join(verbs, " "))
	b.WriteString("    completion) COMPREPLY=($(compgen -W 'bash zsh fish' -- \"$cur\")); return;;\n")
	b.WriteString("  esac\n")
	b.WriteString("  case \"$cur\" in\n")
	for _, k := range keys {
		if strings.HasPrefix(k, "--") {
			fmt.Fprintf(&b, "    %s=*) COMPREPLY=($(compgen -P '%s=' -W '%s' -- \"${cur#*=}\")); return;;\n", k, k, strings.Join(values[k], " "))
		}
	}
	fmt.Fprintf(&b, "    -*) COMPREPLY=($(compgen -W '%s' -- \"$cur\")); return;;\n", strings.Join(opts, " "))
	b.WriteString("  esac\n")
	fmt.Fprintf(&b, "  if [ \"$COMP_CWORD\" -eq 1 ]; then COMPREPLY=($(compgen -W '%s' -- \"$cur\") $(compgen -f -- \"$cur\")); return; fi\n", strings.Join(subs, " "))
	b.WriteString("  COMPREPLY=($(compgen -f -- \"$cur\"))\n}\n")
	fmt.Fprintf(&b, "complete -o filenames -F %s %s\n", fn, name)
	return b.String()
}

func zshCompletion(name string) string {
	subs, _, _, verbs := completionData(name)
	app := newApp(name)
	var b strings.Builder
	fmt.Fprintf(&b, "#compdef %s\n# zsh completion for %s (generated by '%s completion zsh')\n", name, name, name)
	fn := "_" + strings.ReplaceAll(name, "-", "_")
	fmt.Fprintf(&b, "%s() {\n  local -a subcommands verbs\n  subcommands=(\n", fn)
	for _, c := range app.Commands {
		fmt.Fprintf(&b, "    %s\n", zshQuote(c.Name+":"+c.Usage))
	}
	b.WriteString("  )\n  verbs=(")
	b.WriteString(strings.Join(verbs, " "))
	b.WriteString(")\n")
	b.WriteString("  if (( CURRENT == 2 )) && [[ $words[2] != -* ]]; then\n    _describe -t subcommands 'subcommand' subcommands\n    _files\n    return\n  fi\n")
	b.WriteString("  case $words[2] in\n")
	fmt.Fprintf(&b, "    help) (( CURRENT == 3 )) && compadd -- %s $verbs; return;;\n", strings.Join(subs, " "))
	b.WriteString("    completion) (( CURRENT == 3 )) && compadd -- bash zsh fish; return;;\n")
	var fileSubs []string // subcommands that take image files
	for _, c := range app.Commands {
		switch c.Name {
		case "help", "completion", "version", "man":
		default:
			fileSubs = append(fileSubs, c.Name)
		}
	}
	fmt.Fprintf(&b, "    version|man) return;;\n    %s) _files; return;;\n  esac\n", strings.Join(fileSubs, "|"))
	b.WriteString("  _arguments -s -S \\\n")
	for _, o := range commands.MainOptions {
		action := ""
		if o.Arg != "" {
			action = ":" + strings.ToLower(o.Arg) + ":"
			switch {
			case o.Values != nil:
				action += "(" + strings.Join(o.Values, " ") + ")"
			case o.Long == "cmd":
				action += "($verbs)"
			default:
				action += " "
			}
		}
		desc := "[" + strings.NewReplacer("[", "\\[", "]", "\\]", "'", "").Replace(o.Usage) + "]"
		long := "--" + o.Long
		if o.Arg != "" {
			long += "="
		}
		if o.Short != "" {
			fmt.Fprintf(&b, "    %s \\\n", zshQuote("(-"+o.Short+" --"+o.Long+")"+"{-"+o.Short+","+long+"}"+desc+action))
		} else {
			fmt.Fprintf(&b, "    %s \\\n", zshQuote(long+desc+action))
		}
	}
	b.WriteString("    '*:image file:_files'\n}\n")
	fmt.Fprintf(&b, "compdef %s %s\n", fn, name)
	return b.String()
}

// zshQuote quotes s for zsh in single quotes (a brace pair is left outside
// so that zsh expands {-c,--cmd}).
func zshQuote(s string) string {
	q := func(t string) string { return "'" + strings.ReplaceAll(t, "'", `'\''`) + "'" }
	if i := strings.Index(s, "{-"); i >= 0 {
		if j := strings.Index(s[i:], "}"); j >= 0 {
			return q(s[:i]) + s[i:i+j+1] + q(s[i+j+1:])
		}
	}
	return q(s)
}

func fishCompletion(name string) (string, error) {
	script, err := docApp(name).ToFishCompletion()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(script)
	b.WriteString("\n# values of the options and the verbs of -c and help\n")
	for _, o := range commands.MainOptions {
		if o.Values == nil {
			continue
		}
		short := ""
		if o.Short != "" {
			short = " -s " + o.Short
		}
		fmt.Fprintf(&b, "complete -c %s%s -l %s -x -a '%s'\n", name, short, o.Long, strings.Join(o.Values, " "))
	}
	_, _, _, verbs := completionData(name)
	fmt.Fprintf(&b, "complete -c %s -s c -l cmd -x -a '%s'\n", name, strings.Join(verbs, " "))
	fmt.Fprintf(&b, "complete -c %s -n '__fish_seen_subcommand_from help' -f -a '%s'\n", name, strings.Join(verbs, " "))
	fmt.Fprintf(&b, "complete -c %s -n '__fish_seen_subcommand_from completion' -f -a 'bash zsh fish'\n", name)
	return b.String(), nil
}
