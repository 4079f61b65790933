package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// fakeLoader serves one parsed config (or an error) for every ref.
type fakeLoader struct {
	yaml string
	err  error
}

func (f fakeLoader) Load(_ context.Context, _ config.Ref) (*config.Loaded, error) {
	if f.err != nil {
		return nil, f.err
	}
	c, err := config.Parse([]byte(f.yaml))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", config.ErrInvalid, err)
	}
	return &config.Loaded{Config: c, Level: config.LevelService, Hash: "abc123"}, nil
}

// fakeRunner returns a scripted result per task name and records what ran.
type fakeRunner struct {
	mu      sync.Mutex
	results map[string]jobs.Result
	ran     []string
}

func (f *fakeRunner) Run(_ context.Context, b *jobs.Built) jobs.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := b.TaskName()
	f.ran = append(f.ran, name)
	r, ok := f.results[name]
	if !ok {
		r = jobs.Result{Succeeded: true, Logs: "hello from " + name + "\n"}
	}
	r.Start, r.End = time.Date(2021, 8, 24, 16, 10, 25, 0, time.UTC), time.Date(2021, 8, 24, 16, 10, 30, 0, time.UTC)
	return r
}

func (f *fakeRunner) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ran...)
}

type recorder struct {
	mu     sync.Mutex
	events []cloudevents.Event
}

func (r *recorder) Send(_ context.Context, e cloudevents.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Type())
	}
	return out
}

func (r *recorder) last(t *testing.T) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotEmpty(t, r.events)
	var d map[string]any
	require.NoError(t, json.Unmarshal(r.events[len(r.events)-1].Data(), &d))
	return d
}

func keptnEvent(t testing.TB, eventType string, data map[string]any) cloudevents.Event {
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

const helloConfig = `apiVersion: v2
actions:
  - name: "Greet"
    events:
      - name: "sh.keptn.event.*.triggered"
    tasks:
      - name: "hello"
        image: "alpine"
        cmd: ["echo", "hello"]
`

const threeTasks = `apiVersion: v2
actions:
  - name: "Pipeline"
    events:
      - name: "sh.keptn.event.deployment.triggered"
    tasks:
      - {name: "first", image: "alpine"}
      - {name: "second", image: "alpine"}
      - {name: "third", image: "alpine"}
`

const twoActionsAndSilent = `apiVersion: v2
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

const forbiddenImage = `apiVersion: v2
actions:
  - name: "Pipeline"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks:
      - {name: "ok", image: "alpine"}
      - {name: "evil", image: "evil.example.com/miner"}
`

func TestLifecycle(t *testing.T) {
	tests := []struct {
		name        string
		loader      fakeLoader
		opts        Options
		eventType   string
		data        map[string]any
		results     map[string]jobs.Result
		wantReply   bool
		wantEvents  []string
		wantRan     []string
		wantStatus  string
		wantMessage []string
		notMessage  []string
		check       func(t *testing.T, finished map[string]any)
	}{
		{
			name: "hello world succeeds", loader: fakeLoader{yaml: helloConfig}, eventType: "sh.keptn.event.deployment.triggered",
			wantReply: true, wantEvents: []string{"sh.keptn.event.deployment.finished"}, wantRan: []string{"hello"},
			wantStatus: "succeeded", wantMessage: []string{"Task 'hello' finished successfully!", "hello from hello"},
		},
		{
			name: "started also via sink when configured", loader: fakeLoader{yaml: helloConfig}, opts: Options{StartedViaSink: true},
			eventType: "sh.keptn.event.deployment.triggered", wantReply: true,
			wantEvents: []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, wantRan: []string{"hello"}, wantStatus: "succeeded",
		},
		{
			name: "failing middle task stops the action", loader: fakeLoader{yaml: threeTasks}, eventType: "sh.keptn.event.deployment.triggered",
			results:   map[string]jobs.Result{"second": {Reason: "BackoffLimitExceeded", Message: "exit code 3", Logs: "boom\n"}},
			wantReply: true, wantEvents: []string{"sh.keptn.event.deployment.finished"}, wantRan: []string{"first", "second"},
			wantStatus:  "errored",
			wantMessage: []string{"Task 'first' finished successfully!", "Task 'second' failed: BackoffLimitExceeded: exit code 3", "boom"},
			notMessage:  []string{"third"},
		},
		{
			name: "all matching actions run, silent ones report nothing", loader: fakeLoader{yaml: twoActionsAndSilent},
			eventType: "sh.keptn.event.test.triggered", data: map[string]any{"test": map[string]any{"teststrategy": "locust"}},
			wantReply: true, wantEvents: []string{"sh.keptn.event.test.finished"}, wantRan: []string{"a1", "b1", "q1"}, wantStatus: "succeeded",
			wantMessage: []string{"Task 'a1' finished successfully!", "Task 'b1' finished successfully!"}, notMessage: []string{"q1"},
			check: func(t *testing.T, d map[string]any) {
				test := d["test"].(map[string]any)
				assert.Equal(t, "2021-08-24T16:10:25Z", test["start"])
				assert.Equal(t, "2021-08-24T16:10:30Z", test["end"])
			},
		},
		{
			name: "jsonpath non-match skips that action", loader: fakeLoader{yaml: twoActionsAndSilent},
			eventType: "sh.keptn.event.test.triggered", data: map[string]any{"test": map[string]any{"teststrategy": "health"}},
			wantReply: true, wantEvents: []string{"sh.keptn.event.test.finished"}, wantRan: []string{"a1", "q1"}, wantStatus: "succeeded",
			notMessage: []string{"b1"},
		},
		{
			name: "only silent actions: no events at all", loader: fakeLoader{yaml: twoActionsAndSilent},
			eventType: "sh.keptn.event.deployment.finished", wantRan: []string{"q1"},
		},
		{
			name: "no matching action: nothing", loader: fakeLoader{yaml: threeTasks}, eventType: "sh.keptn.event.test.triggered",
		},
		{
			name: "missing config sends an error log", loader: fakeLoader{err: fmt.Errorf("job/config.yaml: %w", config.ErrNotFound)},
			eventType: "sh.keptn.event.test.triggered", wantEvents: []string{"sh.keptn.log.error"},
			check: func(t *testing.T, d map[string]any) {
				assert.Contains(t, d["message"], "not found")
				assert.Equal(t, "test", d["task"])
			},
		},
		{
			name: "missing config with ALWAYS_SEND_FINISHED_EVENT", loader: fakeLoader{err: fmt.Errorf("job/config.yaml: %w", config.ErrNotFound)},
			opts: Options{AlwaysSendFinished: true}, eventType: "sh.keptn.event.test.triggered", wantReply: true,
			wantEvents: []string{"sh.keptn.event.test.finished"}, wantStatus: "errored", wantMessage: []string{"not found"},
		},
		{
			name: "invalid config gives an errored finished", loader: fakeLoader{yaml: "apiVersion: v2\nactions:\n  - name: x\n    bogus: 1\n"},
			eventType: "sh.keptn.event.test.triggered", wantReply: true, wantEvents: []string{"sh.keptn.event.test.finished"},
			wantStatus: "errored", wantMessage: []string{"invalid job config", "bogus"},
			notMessage: []string{"invalid job config: invalid job config"},
		},
		{
			name: "forbidden image: no Job at all", loader: fakeLoader{yaml: forbiddenImage}, opts: Options{Settings: jobs.Settings{AllowedImages: []string{"docker.io/library/*"}}},
			eventType: "sh.keptn.event.deployment.triggered", wantReply: true, wantEvents: []string{"sh.keptn.event.deployment.finished"},
			wantStatus: "errored", wantMessage: []string{"Action 'Pipeline' was not run", "evil.example.com/miner"},
		},
		{
			name:      "refused action still reports a real test span",
			loader:    fakeLoader{yaml: strings.ReplaceAll(forbiddenImage, "deployment.triggered", "test.triggered")},
			opts:      Options{Settings: jobs.Settings{AllowedImages: []string{"docker.io/library/*"}}},
			eventType: "sh.keptn.event.test.triggered", wantReply: true, wantEvents: []string{"sh.keptn.event.test.finished"},
			wantStatus: "errored",
			check: func(t *testing.T, d map[string]any) {
				test, _ := d["test"].(map[string]any)
				for _, k := range []string{"start", "end"} {
					ts, err := time.Parse(time.RFC3339, fmt.Sprint(test[k]))
					require.NoError(t, err, k)
					assert.WithinDuration(t, time.Now(), ts, time.Minute, "test.%s", k)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runner := &fakeRunner{results: tc.results}
			rec := &recorder{}
			p := NewProcessor(context.Background(), tc.loader, nil, runner, rec, zap.NewNop(), nil, tc.opts)
			in := keptnEvent(t, tc.eventType, tc.data)
			reply, err := p.Accept(context.Background(), in)
			require.NoError(t, err)
			p.Wait()

			if tc.wantReply {
				require.NotNil(t, reply)
				assert.Equal(t, strings.TrimSuffix(tc.eventType, ".triggered")+".started", reply.Type())
				assert.Equal(t, in.ID(), reply.Extensions()["triggeredid"])
				assert.Equal(t, "08735340-6f9e-4b32-97ff-3b6c292bc50i", reply.Extensions()["shkeptncontext"])
				assert.Equal(t, "c0ffee", reply.Extensions()["gitcommitid"])
				assert.Equal(t, Source, reply.Source())
			} else {
				assert.Nil(t, reply)
			}
			assert.Equal(t, tc.wantEvents, rec.types())
			assert.ElementsMatch(t, tc.wantRan, runner.names())
			if len(tc.wantEvents) == 0 {
				return
			}
			d := rec.last(t)
			if tc.wantStatus != "" {
				assert.Equal(t, "sockshop", d["project"])
				assert.Equal(t, "dev", d["stage"])
				assert.Equal(t, "carts", d["service"])
				assert.Equal(t, tc.wantStatus, d["status"])
				want := map[string]string{"succeeded": "pass", "errored": "fail"}[tc.wantStatus]
				assert.Equal(t, want, d["result"])
				assert.Equal(t, map[string]any{"buildId": "17"}, d["labels"])
			}
			for _, m := range tc.wantMessage {
				assert.Contains(t, d["message"], m)
			}
			for _, m := range tc.notMessage {
				assert.NotContains(t, d["message"], m)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

func TestDuplicateDeliveryRunsOnce(t *testing.T) {
	runner := &fakeRunner{}
	rec := &recorder{}
	p := NewProcessor(context.Background(), fakeLoader{yaml: helloConfig}, nil, runner, rec, zap.NewNop(), nil, Options{StartedViaSink: true})
	in := keptnEvent(t, "sh.keptn.event.deployment.triggered", nil)
	var wg sync.WaitGroup
	replies := make([]*cloudevents.Event, 100)
	for i := range replies {
		wg.Go(func() {
			r, err := p.Accept(context.Background(), in)
			assert.NoError(t, err)
			replies[i] = r
		})
	}
	wg.Wait()
	p.Wait()
	// Redelivery after the end is still recognised.
	again, err := p.Accept(context.Background(), in)
	require.NoError(t, err)

	assert.Equal(t, []string{"hello"}, runner.names())
	assert.Equal(t, []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, rec.types())
	first := replies[0]
	for _, r := range append(replies, again) {
		if first == nil {
			first = r
		}
		if r != nil && first != nil {
			assert.Equal(t, first.ID(), r.ID(), "every delivery gets the same .started")
		}
	}
}

func TestBadEventsAreRejected(t *testing.T) {
	p := NewProcessor(context.Background(), fakeLoader{yaml: helloConfig}, nil, &fakeRunner{}, &recorder{}, zap.NewNop(), nil, Options{})
	tests := []struct {
		name string
		data any
		want string
	}{
		{"no data", nil, "has no data"},
		{"data not an object", "just a string", "not a Keptn event payload"},
		{"missing stage and service", map[string]any{"project": "p"}, "data.stage, data.service missing or empty"},
		{"blank project", map[string]any{"project": " ", "stage": "s", "service": "x"}, "data.project missing or empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := cloudevents.NewEvent()
			e.SetID("1")
			e.SetSource("s")
			e.SetType("sh.keptn.event.test.triggered")
			if tc.data != nil {
				require.NoError(t, e.SetData(cloudevents.ApplicationJSON, tc.data))
			}
			_, err := p.Accept(context.Background(), e)
			require.ErrorIs(t, err, errBadEvent)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestBusyWhenQueueFull(t *testing.T) {
	block := make(chan struct{})
	runner := blockingRunner{block}
	p := NewProcessor(context.Background(), fakeLoader{yaml: helloConfig}, nil, runner, &recorder{}, zap.NewNop(), nil, Options{MaxQueuedEvents: 2})
	for i := range 2 {
		e := keptnEvent(t, "sh.keptn.event.test.triggered", nil)
		e.SetID(fmt.Sprint("id-", i))
		_, err := p.Accept(context.Background(), e)
		require.NoError(t, err)
	}
	e := keptnEvent(t, "sh.keptn.event.test.triggered", nil)
	e.SetID("one-too-many")
	_, err := p.Accept(context.Background(), e)
	require.ErrorIs(t, err, ErrBusy)
	close(block)
	p.Wait()
	_, err = p.Accept(context.Background(), e)
	require.NoError(t, err, "accepted again once the queue drained")
	p.Wait()
}

type blockingRunner struct{ block chan struct{} }

func (b blockingRunner) Run(context.Context, *jobs.Built) jobs.Result {
	<-b.block
	return jobs.Result{Succeeded: true}
}

func TestSummarizeBoundsMessage(t *testing.T) {
	big := strings.Repeat("x", 50_000) + "THE-END\n"
	results := []actionResult{{name: "a", tasks: []taskOutcome{
		{"t1", jobs.Result{Succeeded: true, Logs: big}},
		{"t2", jobs.Result{Reason: "BackoffLimitExceeded", Logs: big}},
	}}}
	tests := []struct {
		max int
	}{{1 << 20}, {40_000}, {4_000}, {100}}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			ok, msg, _, _ := summarize(results, tc.max)
			assert.False(t, ok)
			assert.LessOrEqual(t, len(msg), tc.max)
			if tc.max >= 4_000 {
				assert.Contains(t, msg, "Task 't1' finished successfully!")
				assert.Contains(t, msg, "Task 't2' failed: BackoffLimitExceeded")
				assert.Equal(t, 2, strings.Count(msg, "THE-END"), "the tail of each task's logs is kept")
			}
		})
	}
}
