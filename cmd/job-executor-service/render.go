package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"sigs.k8s.io/yaml"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

const renderUsage = `usage: job-executor-service render --config FILE --event FILE [--files DIR] [flags]

Prints, as multi-document YAML, the Kubernetes objects the service would create for the event
(a CloudEvent in JSON) with the job config: for each matched action in config order, each
task's files ConfigMap and Job, built and checked by the service's own code with the settings
below. Nothing is sent to a cluster; pipe it to kubectl apply --dry-run=server -f - to have
the API server check it. The service also makes each Job the owner of its ConfigMap once both
exist, and runs a task only when the one before it succeeded.
--files is the directory task files are read from, the one holding job/ (default: the parent
of the config's directory when that is named job). Each other flag is the service's variable
of the same name; without the flag render reads that variable, then the service's default.
INIT_CONTAINER_IMAGE defaults to "job-executor-service" here.

Exits 0 when every matched action would run, 1 when the service would refuse an action, fail
a task before its Job exists, report a problem, or create nothing (no action matches), 2 on
bad usage, settings or files.

flags:
`

// renderSettings are every variable that shapes the objects the service creates (reader.settings)
// and MAX_TASK_FILES_BYTES; render takes each as a flag of the same name.
var renderSettings = append(append([]setting(nil), lintSettings...),
	setting{name: "INIT_CONTAINER_IMAGE"},
	setting{name: "TASK_DEADLINE_SECONDS"},
	setting{name: "DEFAULT_TTL_SECONDS_AFTER_FINISHED"},
	setting{name: "DEFAULT_RESOURCE_LIMITS_CPU"},
	setting{name: "DEFAULT_RESOURCE_LIMITS_MEMORY"},
	setting{name: "DEFAULT_RESOURCE_REQUESTS_CPU"},
	setting{name: "DEFAULT_RESOURCE_REQUESTS_MEMORY"},
	setting{name: "JOB_LABELS"},
	setting{name: "DEFAULT_IMAGE_PULL_SECRETS"},
	setting{name: "DEFAULT_KEPTN_VOLUME_SIZE"},
	setting{name: "MAX_TASK_FILES_BYTES"},
)

// render prints the objects the service would create for an event; see renderUsage.
func render(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	pal := paletteFor(stderr, getenv)
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "%s %s\n", pal.red("render:"), fmt.Sprintf(format, a...))
		return 2
	}
	fs := subcommandFlags("render", renderUsage, stderr)
	configFile := fs.String("config", "", "the job config (job/config.yaml)")
	eventFile := fs.String("event", "", "the CloudEvent, structured JSON")
	filesDir := fs.String("files", "", "the directory task files are read from (the one holding job/)")
	given := settingFlags(fs, renderSettings)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *configFile == "" || *eventFile == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	r := flagReader(given, getenv)
	s := r.settings()
	maxFiles := r.int("MAX_TASK_FILES_BYTES", jobs.MaxFilesBytes)
	if len(r.errs) > 0 {
		for _, e := range r.errs {
			fail("%s", e)
		}
		return 2
	}
	if s.InitImage == "" {
		s.InitImage = initImageStandIn
	}

	raw, err := os.ReadFile(*configFile)
	if err != nil {
		return fail("%v", err)
	}
	loaded, err := config.NewLoaded(raw, config.LevelService)
	if err != nil {
		// As lint prints it, with the line.
		for _, line := range strings.Split(err.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				fmt.Fprintf(stderr, "%s: %s\n", *configFile, pal.red(line))
			}
		}
		fmt.Fprintf(stderr, "render: fix the config (job-executor-service lint %s shows every problem)\n", *configFile)
		return 1
	}
	eventJSON, err := os.ReadFile(*eventFile)
	if err != nil {
		return fail("%v", err)
	}
	var event cloudevents.Event
	if err := json.Unmarshal(eventJSON, &event); err != nil {
		return fail("%s: not a CloudEvent in structured JSON: %v", *eventFile, err)
	}
	dir := *filesDir
	if dir == "" && filepath.Base(filepath.Dir(*configFile)) == "job" {
		dir = filepath.Dir(filepath.Dir(*configFile))
	}
	files := func(ctx context.Context, ref config.Ref, level config.Level, paths []string) (map[string][]byte, error) {
		if dir == "" {
			return nil, errors.New("no files directory: give --files DIR, the directory holding job/ and the task files")
		}
		return config.CollectFiles(ctx, config.DirSource{Root: dir, Flat: true}, ref, level, paths, maxFiles)
	}

	out, err := lifecycle.Render(context.Background(), s, event, loaded, files)
	if err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", pal.red("render:"), *eventFile, err)
		fmt.Fprintln(stderr, "render: the service answers such an event with 400 and runs nothing; fix the event")
		return 1
	}
	if out.Problem != "" {
		fmt.Fprintf(stderr, "%s %s\n", pal.red("render:"), out.Problem)
		return 1
	}
	if len(out.Actions) == 0 {
		fmt.Fprintf(stderr, "%s no action of %s matches %s: the service would create nothing\n", pal.yellow("render:"), *configFile, event.Type())
		fmt.Fprintln(stderr, "render: check the actions' events (anchored globs; a jsonpath condition must equal the event's value)")
		return 1
	}
	first := true
	for _, a := range out.Actions {
		for _, t := range a.Tasks {
			if t.Built == nil {
				continue
			}
			var objs []any
			if t.Built.Files != nil {
				objs = append(objs, t.Built.Files)
			}
			for _, obj := range append(objs, t.Built.Job) {
				if err := writeObject(stdout, obj, first, a, t.Name); err != nil {
					return fail("%v", err)
				}
				first = false
			}
		}
	}
	if msg := out.Failures(); msg != "" {
		fmt.Fprintln(stderr, pal.red(msg))
		fmt.Fprintln(stderr, "render: the service would report this in the errored .finished; lint with the same flags names each task's line")
		return 1
	}
	return 0
}

// writeObject writes one object as a YAML document, after a comment naming its action and task.
func writeObject(w io.Writer, obj any, first bool, a lifecycle.RenderedAction, task string) error {
	b, err := yaml.Marshal(obj)
	if err != nil {
		return err
	}
	sep := "---\n"
	if first {
		sep = ""
	}
	silent := ""
	if a.Silent {
		silent = " (silent)"
	}
	_, err = fmt.Fprintf(w, "%s# action %d %q%s, task %q\n%s", sep, a.Index, a.Name, silent, task, b)
	return err
}
