package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

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

Prints "FILE: ok" or "FILE: line N: problem" lines; exits 1 on any problem, 2 on bad usage.

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
}

// initImageStandIn is the init container image when none is given: installations always set
// INIT_CONTAINER_IMAGE (the chart and the Knative manifests, to the service's own image), no
// check looks at it, and without one every task with files would be refused.
const initImageStandIn = "job-executor-service"

// lint parses and validates each job config file as the service would and runs the service's
// checks on each task, printing "<file>: <problem>" lines; the exit code is 1 when any file
// has a problem, 2 for bad flags or settings.
func lint(args []string, getenv func(string) string, out io.Writer) int {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, lintUsage)
		fs.PrintDefaults()
	}
	given := settingFlags(fs, lintSettings)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
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
	rc := 0
	for _, f := range fs.Args() {
		if !lintFile(f, s, out) {
			rc = 1
		}
	}
	return rc
}

// lintFile prints the problems of one file, or "<file>: ok"; it reports whether it was ok.
func lintFile(f string, s jobs.Settings, out io.Writer) bool {
	data, err := os.ReadFile(f)
	var cfg *config.Config
	var lines config.Lines
	if err == nil {
		cfg, lines, err = config.ParseWithLines(data)
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				fmt.Fprintf(out, "%s: %s\n", f, line)
			}
		}
		return false
	}
	ok := true
	for ai, a := range cfg.Actions {
		for ti, t := range a.Tasks {
			// The reason the service gives in its .finished when it refuses the action.
			if err := jobs.CheckTask(s, t); err != nil {
				ok = false
				fmt.Fprintf(out, "%s: line %d: action %q task %q: %v\n", f, lines.Line(config.TaskPath(ai, ti)), a.Name, t.Name, err)
			}
		}
	}
	if ok {
		fmt.Fprintf(out, "%s: ok\n", f)
	}
	return ok
}
