// Package lifecycletest has test doubles for the lifecycle's collaborators (config loader,
// task runner, sender) and sample events and configs, shared by the tests of handler and
// handler/lifecycle. It is for tests only.
package lifecycletest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// Loader serves one parsed config (or an error) for every ref.
type Loader struct {
	YAML string
	Err  error
}

// Load implements lifecycle.ConfigLoader.
func (f Loader) Load(_ context.Context, _ config.Ref) (*config.Loaded, error) {
	if f.Err != nil {
		return nil, f.Err
	}
	l, err := config.NewLoaded([]byte(f.YAML), config.LevelService)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", config.ErrInvalid, err)
	}
	return l, nil
}

// Runner returns a scripted result per task name (success by default) and records what ran.
type Runner struct {
	Results map[string]jobs.Result

	mu   sync.Mutex
	ran  []string
	jobs map[string]bool // namespace/name of the Jobs Run was given
}

// Run implements lifecycle.TaskRunner.
func (f *Runner) Run(_ context.Context, b *jobs.Built) jobs.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := b.TaskName()
	f.ran = append(f.ran, name)
	if f.jobs == nil {
		f.jobs = map[string]bool{}
	}
	f.jobs[b.Namespace+"/"+b.Job.Name] = true
	r, ok := f.Results[name]
	if !ok {
		r = jobs.Result{Succeeded: true, Logs: "hello from " + name + "\n"}
	}
	r.Job = b.Job.Name
	r.Start, r.End = time.Date(2021, 8, 24, 16, 10, 25, 0, time.UTC), time.Date(2021, 8, 24, 16, 10, 30, 0, time.UTC)
	return r
}

// JobExists implements lifecycle.TaskRunner: the Jobs of the tasks that ran exist.
func (f *Runner) JobExists(_ context.Context, namespace, name string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.jobs[namespace+"/"+name], nil
}

// Names are the tasks that ran.
func (f *Runner) Names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ran...)
}

// BlockingRunner runs every task until Block is closed.
type BlockingRunner struct{ Block chan struct{} }

// Run implements lifecycle.TaskRunner.
func (b BlockingRunner) Run(context.Context, *jobs.Built) jobs.Result {
	<-b.Block
	return jobs.Result{Succeeded: true}
}

// JobExists implements lifecycle.TaskRunner: no Job exists.
func (BlockingRunner) JobExists(context.Context, string, string) (bool, error) { return false, nil }

// Recorder is a sink.Sender that keeps what it is given.
type Recorder struct {
	mu     sync.Mutex
	events []cloudevents.Event
}

// Send implements sink.Sender.
func (r *Recorder) Send(_ context.Context, e cloudevents.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

// Types are the types of the events sent, in order.
func (r *Recorder) Types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Type())
	}
	return out
}

// LastData is the data of the last event sent.
func (r *Recorder) LastData(t *testing.T) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotEmpty(t, r.events)
	var d map[string]any
	require.NoError(t, json.Unmarshal(r.events[len(r.events)-1].Data(), &d))
	return d
}

// Encoded is every event sent as the sink encodes it (structured JSON).
func (r *Recorder) Encoded(t *testing.T) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]byte
	for _, e := range r.events {
		b, err := json.Marshal(e)
		require.NoError(t, err)
		out = append(out, b)
	}
	return out
}

// Finished is the data of every .finished sent, by the ID of the event it answers.
func (r *Recorder) Finished(t *testing.T) map[string]map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]map[string]any{}
	for _, e := range r.events {
		if !strings.HasSuffix(e.Type(), ".finished") {
			continue
		}
		var d map[string]any
		require.NoError(t, json.Unmarshal(e.Data(), &d))
		out[fmt.Sprint(e.Extensions()["triggeredid"])] = d
	}
	return out
}

// Event is a Keptn event of eventType for sockshop/dev/carts at commit c0ffee; data adds to
// (or replaces) the payload's fields.
func Event(t testing.TB, eventType string, data map[string]any) cloudevents.Event {
	t.Helper()
	e := cloudevents.NewEvent()
	e.SetID("f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b")
	e.SetSource("test-events")
	e.SetType(eventType)
	e.SetExtension("shkeptncontext", "08735340-6f9e-4b32-97ff-3b6c292bc50i")
	e.SetExtension("gitcommitid", "c0ffee")
	d := map[string]any{"project": "sockshop", "stage": "dev", "service": "carts", "labels": map[string]string{"buildId": "17"}}
	for k, v := range data {
		d[k] = v
	}
	require.NoError(t, e.SetData(cloudevents.ApplicationJSON, d))
	return e
}

// NotFound is the error a config source gives for a missing job/config.yaml.
var NotFound = fmt.Errorf("job/config.yaml: %w", config.ErrNotFound)

// HelloConfig runs one task for every .triggered event.
const HelloConfig = `apiVersion: v2
actions:
  - name: "Greet"
    events:
      - name: "sh.keptn.event.*.triggered"
    tasks:
      - name: "hello"
        image: "alpine"
        cmd: ["echo", "hello"]
`

// ThreeTasks is one action of three tasks for deployment.triggered.
const ThreeTasks = `apiVersion: v2
actions:
  - name: "Pipeline"
    events:
      - name: "sh.keptn.event.deployment.triggered"
    tasks:
      - {name: "first", image: "alpine"}
      - {name: "second", image: "alpine"}
      - {name: "third", image: "alpine"}
`

// TwoActionsAndSilent has two reporting actions for test.triggered (one behind a jsonpath)
// and a silent one for every event.
const TwoActionsAndSilent = `apiVersion: v2
actions:
  - name: "A"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks: [{name: "a1", image: "alpine"}]
  - name: "B"
    events:
      - name: "sh.keptn.event.test.triggered"
        jsonpath: {property: "$.data.test.teststrategy", match: "locust"}
    tasks: [{name: "b1", image: "alpine"}]
  - name: "Quiet"
    silent: true
    events: [{name: "sh.keptn.event.*"}]
    tasks: [{name: "q1", image: "alpine"}]
`

// ForbiddenImage has a second task whose image no allow-list of Docker Hub images permits.
const ForbiddenImage = `apiVersion: v2
actions:
  - name: "Pipeline"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks:
      - {name: "ok", image: "alpine"}
      - {name: "evil", image: "evil.example.com/miner"}
`
