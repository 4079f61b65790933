package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// setting is a variable of the service that a subcommand also takes as a flag of the same
// name (flagName): one name per setting.
type setting struct {
	name   string
	isBool bool
}

// flagName is the flag of a variable: ALLOWED_IMAGE_LIST is allowed-image-list.
func flagName(variable string) string {
	return strings.ToLower(strings.ReplaceAll(variable, "_", "-"))
}

// settingFlags defines a flag for each setting on fs and returns the values given.
func settingFlags(fs *flag.FlagSet, settings []setting) map[string]string {
	given := map[string]string{}
	for _, s := range settings {
		set := func(v string) error { given[s.name] = v; return nil }
		usage := fmt.Sprintf("the service's %s", s.name)
		if s.isBool {
			fs.BoolFunc(flagName(s.name), usage, set)
		} else {
			fs.Func(flagName(s.name), usage, set)
		}
	}
	return given
}

// flagReader reads settings as the service does (readEnv's reader), a flag before its variable;
// messages name the flag when it was given.
func flagReader(given map[string]string, getenv func(string) string) *reader {
	return &reader{
		get: func(name string) string {
			if v, ok := given[name]; ok {
				return v
			}
			return getenv(name)
		},
		from: func(name string) string {
			if _, ok := given[name]; ok {
				return "--" + flagName(name)
			}
			return name
		},
	}
}

// palette colours a subcommand's output: only when it goes to a terminal and NO_COLOR
// (no-color.org) is unset or empty.
type palette struct{ on bool }

func paletteFor(w io.Writer, getenv func(string) string) palette {
	f, ok := w.(*os.File)
	return palette{on: ok && getenv("NO_COLOR") == "" && term.IsTerminal(int(f.Fd()))}
}

func (p palette) paint(code, s string) string {
	if !p.on || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (p palette) red(s string) string    { return p.paint("31", s) }
func (p palette) green(s string) string  { return p.paint("32", s) }
func (p palette) yellow(s string) string { return p.paint("33", s) }
func (p palette) bold(s string) string   { return p.paint("1", s) }
