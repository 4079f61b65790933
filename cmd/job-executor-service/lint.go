package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

const lintUsage = `usage: job-executor-service lint [flags] FILE...

Parses each job config as the service does, then runs on every task the checks the service
runs before it creates any Job (allowed images, Pod Security Standards level, service
accounts, Secrets, namespaces), with the settings below. Each flag is the service's variable
of the same name (--allowed-image-list is ALLOWED_IMAGE_LIST); without the flag lint reads
that variable, then the service's default.
Not checked, since they need the event or the cluster: which actions an event matches,
valueFrom: event values, whether task files exist and fit, whether namespaces, service
accounts and Secrets exist.

Prints "FILE: ok" or "FILE: line N: problem" lines, or with --format json one JSON array of
findings ({"file", "line", "severity", "message"}; line 0: none); exits 1 on any problem, 2 on
bad usage.

flags:
`

// lintSettings are the variables that decide whether the service refuses a task; lint takes
// each as a flag of the same name (flagName).
var lintSettings = []setting{
	{name: "ALLOWED_IMAGE_LIST"},
	{name: "JOB_POD_SECURITY_LEVEL"},
	{name: "ALLOW_PRIVILEGED_JOBS", isBool: true},
	{name: "DEFAULT_POD_SECURITY_CONTEXT"},
	{name: "DEFAULT_SECURITY_CONTEXT"},
	{name: "SERVICE_ACCOUNT_NAME"},
	{name: "DEFAULT_JOB_SERVICE_ACCOUNT"},
	{name: "ALLOWED_JOB_SERVICE_ACCOUNTS"},
	{name: "PROTECTED_SECRETS"},
	{name: "ALLOWED_JOB_SECRETS"},
	{name: "JOB_NAMESPACE"},
	{name: "ALLOWED_JOB_NAMESPACES"},
	{name: "ALLOWED_JOB_TOLERATIONS"},
}

// initImageStandIn is the init container image when none is given: installations always set
// INIT_CONTAINER_IMAGE (the chart and the Knative manifests, to the service's own image), no
// check looks at it, and without one every task with files would be refused.
const initImageStandIn = "job-executor-service"

// lint parses and validates each job config file as the service would and runs the service's
// checks on each task, printing "<file>: <problem>" lines; the exit code is 1 when any file
// has a problem, 2 for bad flags or settings.
// subcommandFlags is a subcommand's flag set: errors and -h (usage, then the flags) go to out.
func subcommandFlags(name, usage string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	return fs
}

func lint(args []string, getenv func(string) string, out io.Writer) int {
	fs := subcommandFlags("lint", lintUsage, out)
	format := fs.String("format", "text", `output: text ("FILE: line N: problem" lines, "FILE: ok") or json (an array of {file, line, severity, message})`)
	given := settingFlags(fs, lintSettings)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 || (*format != "text" && *format != "json") {
		fs.Usage()
		return 2
	}
	// The service's own parsing and defaults (readEnv), flags first.
	r := flagReader(given, getenv)
	s := r.settings()
	if len(r.errs) > 0 {
		for _, e := range r.errs {
			fmt.Fprintf(out, "job-executor-service lint: %s\n", e)
		}
		return 2
	}
	if s.InitImage == "" {
		s.InitImage = initImageStandIn
	}
	var all []finding
	pal := paletteFor(out, getenv)
	for _, f := range fs.Args() {
		findings := lintFile(f, s)
		all = append(all, findings...)
		if *format == "text" {
			for _, fd := range findings {
				fmt.Fprintf(out, "%s: %s\n", fd.File, pal.red(fd.text()))
			}
			if len(findings) == 0 {
				fmt.Fprintf(out, "%s: %s\n", f, pal.green("ok"))
			}
		}
	}
	if *format == "json" {
		if all == nil {
			all = []finding{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(all); err != nil {
			return 2
		}
	}
	if len(all) > 0 {
		return 1
	}
	return 0
}

// finding is one problem lint found, as --format json prints it.
type finding struct {
	File string `json:"file"`
	// Line is where in the file, 0 when the problem has no line (an unreadable file).
	Line     int    `json:"line"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// text is the finding as lint prints it after the file name.
func (f finding) text() string {
	if f.Line > 0 && !anyLine.MatchString(f.Message) {
		return fmt.Sprintf("line %d: %s", f.Line, f.Message)
	}
	return f.Message
}

// leadingLine and anyLine find the line in a parser message: "line 8: ..." first, or later as
// in "cannot parse config: yaml: line 3: ...".
var (
	leadingLine = regexp.MustCompile(`^line (\d+): (.*)$`)
	anyLine     = regexp.MustCompile(`\bline (\d+):`)
)

// parseFinding is one message of the parser as a finding.
func parseFinding(file, msg string) finding {
	fd := finding{File: file, Severity: "error", Message: msg}
	if m := leadingLine.FindStringSubmatch(msg); m != nil {
		fd.Line, _ = strconv.Atoi(m[1])
		fd.Message = m[2]
	} else if m := anyLine.FindStringSubmatch(msg); m != nil {
		fd.Line, _ = strconv.Atoi(m[1])
	}
	return fd
}

// lintFile is every problem of one file: the parser's, or the service's refusal of each task.
func lintFile(f string, s jobs.Settings) []finding {
	data, err := os.ReadFile(f)
	var cfg *config.Config
	var lines config.Lines
	if err == nil {
		cfg, lines, err = config.ParseWithLines(data)
	}
	var findings []finding
	if verr := (*config.ValidationError)(nil); errors.As(err, &verr) {
		for _, p := range verr.Problems {
			findings = append(findings, parseFinding(f, p))
		}
		return findings
	}
	if err != nil {
		return []finding{parseFinding(f, err.Error())}
	}
	for ai, a := range cfg.Actions {
		for ti, t := range a.Tasks {
			// The reason the service gives in its .finished when it refuses the action.
			if err := jobs.CheckTask(s, t); err != nil {
				findings = append(findings, finding{File: f, Line: lines.Line(config.TaskPath(ai, ti)), Severity: "error",
					Message: fmt.Sprintf("action %q task %q: %v", a.Name, t.Name, err)})
			}
		}
	}
	return findings
}
