package lifecycle_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
	"github.com/keptn-contrib/job-executor-service/handler/sink"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// newProcessor wires a lifecycle with fakes: no files, no records, no metrics.
func newProcessor(loader lifecycle.ConfigLoader, runner lifecycle.TaskRunner, sender sink.Sender, opts lifecycle.Options) *lifecycle.Processor {
	return lifecycle.New(context.Background(), lifecycle.Deps{Loader: loader, Runner: runner, Sender: sender}, opts)
}

// invalidConfig has an unknown field on line 4.
const invalidConfig = "apiVersion: v2\nactions:\n  - name: x\n    bogus: 1\n"

func TestLifecycle(t *testing.T) {
	tests := []struct {
		name        string
		loader      lct.Loader
		opts        lifecycle.Options
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
			name: "hello world succeeds", loader: lct.Loader{YAML: lct.HelloConfig}, eventType: "sh.keptn.event.deployment.triggered",
			wantReply: true, wantEvents: []string{"sh.keptn.event.deployment.finished"}, wantRan: []string{"hello"},
			wantStatus: "succeeded", wantMessage: []string{"Task 'hello' finished successfully!", "hello from hello"},
		},
		{
			name: "started also via sink when configured", loader: lct.Loader{YAML: lct.HelloConfig}, opts: lifecycle.Options{StartedViaSink: true},
			eventType: "sh.keptn.event.deployment.triggered", wantReply: true,
			wantEvents: []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, wantRan: []string{"hello"}, wantStatus: "succeeded",
		},
		{
			name: "failing middle task stops the action", loader: lct.Loader{YAML: lct.ThreeTasks}, eventType: "sh.keptn.event.deployment.triggered",
			results:   map[string]jobs.Result{"second": {Reason: "BackoffLimitExceeded", Message: "exit code 3", Logs: "boom\n"}},
			wantReply: true, wantEvents: []string{"sh.keptn.event.deployment.finished"}, wantRan: []string{"first", "second"},
			wantStatus:  "errored",
			wantMessage: []string{"Task 'first' finished successfully!", "Task 'second' failed: BackoffLimitExceeded: exit code 3", "boom"},
			notMessage:  []string{"third"},
		},
		{
			name: "all matching actions run, silent ones report nothing", loader: lct.Loader{YAML: lct.TwoActionsAndSilent},
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
			name: "jsonpath non-match skips that action", loader: lct.Loader{YAML: lct.TwoActionsAndSilent},
			eventType: "sh.keptn.event.test.triggered", data: map[string]any{"test": map[string]any{"teststrategy": "health"}},
			wantReply: true, wantEvents: []string{"sh.keptn.event.test.finished"}, wantRan: []string{"a1", "q1"}, wantStatus: "succeeded",
			notMessage: []string{"b1"},
		},
		{
			name: "only silent actions: no events at all", loader: lct.Loader{YAML: lct.TwoActionsAndSilent},
			eventType: "sh.keptn.event.deployment.finished", wantRan: []string{"q1"},
		},
		{
			name: "no matching action: nothing", loader: lct.Loader{YAML: lct.ThreeTasks}, eventType: "sh.keptn.event.test.triggered",
		},
		{
			name: "missing config sends an error log", loader: lct.Loader{Err: lct.NotFound},
			eventType: "sh.keptn.event.test.triggered", wantEvents: []string{"sh.keptn.log.error"},
			check: func(t *testing.T, d map[string]any) {
				assert.Contains(t, d["message"], "not found")
				assert.Equal(t, "test", d["task"])
			},
		},
		{
			name: "missing config with ALWAYS_SEND_FINISHED_EVENT", loader: lct.Loader{Err: lct.NotFound},
			opts: lifecycle.Options{AlwaysSendFinished: true}, eventType: "sh.keptn.event.test.triggered", wantReply: true,
			wantEvents: []string{"sh.keptn.event.test.finished"}, wantStatus: "errored", wantMessage: []string{"not found"},
		},
		{
			// Another service's task: an invalid config must not fail it.
			name: "invalid config sends an error log", loader: lct.Loader{YAML: invalidConfig},
			eventType: "sh.keptn.event.evaluation.triggered", wantEvents: []string{"sh.keptn.log.error"},
			wantMessage: []string{"invalid job config", `line 4: unknown field "bogus"`},
			notMessage:  []string{"invalid job config: invalid job config"},
			check:       func(t *testing.T, d map[string]any) { assert.Equal(t, "evaluation", d["task"]) },
		},
		{
			name: "unparsable config sends an error log", loader: lct.Loader{YAML: "apiVersion: [v2\n"},
			eventType: "sh.keptn.event.test.triggered", wantEvents: []string{"sh.keptn.log.error"},
			wantMessage: []string{"invalid job config", "cannot parse config", "line"},
		},
		{
			name: "invalid config with ALWAYS_SEND_FINISHED_EVENT", loader: lct.Loader{YAML: invalidConfig},
			opts: lifecycle.Options{AlwaysSendFinished: true}, eventType: "sh.keptn.event.test.triggered", wantReply: true,
			wantEvents: []string{"sh.keptn.event.test.finished"}, wantStatus: "errored",
			wantMessage: []string{"invalid job config", `line 4: unknown field "bogus"`},
		},
		{
			name: "forbidden image: no Job at all", loader: lct.Loader{YAML: lct.ForbiddenImage}, opts: lifecycle.Options{Settings: jobs.Settings{AllowedImages: []string{"docker.io/library/*"}}},
			eventType: "sh.keptn.event.deployment.triggered", wantReply: true, wantEvents: []string{"sh.keptn.event.deployment.finished"},
			wantStatus: "errored", wantMessage: []string{"Action 'Pipeline' was not run", "evil.example.com/miner"},
		},
		{
			name:      "refused action still reports a real test span",
			loader:    lct.Loader{YAML: strings.ReplaceAll(lct.ForbiddenImage, "deployment.triggered", "test.triggered")},
			opts:      lifecycle.Options{Settings: jobs.Settings{AllowedImages: []string{"docker.io/library/*"}}},
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
			runner := &lct.Runner{Results: tc.results}
			rec := &lct.Recorder{}
			p := newProcessor(tc.loader, runner, rec, tc.opts)
			in := lct.Event(t, tc.eventType, tc.data)
			reply, err := p.Accept(context.Background(), in)
			require.NoError(t, err)
			p.Wait()

			if tc.wantReply {
				require.NotNil(t, reply)
				assert.Equal(t, strings.TrimSuffix(tc.eventType, ".triggered")+".started", reply.Type())
				assert.Equal(t, in.ID(), reply.Extensions()["triggeredid"])
				assert.Equal(t, "08735340-6f9e-4b32-97ff-3b6c292bc50i", reply.Extensions()["shkeptncontext"])
				assert.Equal(t, "c0ffee", reply.Extensions()["gitcommitid"])
				assert.Equal(t, keptn.Source, reply.Source())
			} else {
				assert.Nil(t, reply)
			}
			assert.Equal(t, tc.wantEvents, rec.Types())
			assert.ElementsMatch(t, tc.wantRan, runner.Names())
			if len(tc.wantEvents) == 0 {
				return
			}
			d := rec.LastData(t)
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
	runner := &lct.Runner{}
	rec := &lct.Recorder{}
	p := newProcessor(lct.Loader{YAML: lct.HelloConfig}, runner, rec, lifecycle.Options{StartedViaSink: true})
	in := lct.Event(t, "sh.keptn.event.deployment.triggered", nil)
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

	assert.Equal(t, []string{"hello"}, runner.Names())
	assert.Equal(t, []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, rec.Types())
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

func TestBusyWhenQueueFull(t *testing.T) {
	block := make(chan struct{})
	runner := lct.BlockingRunner{Block: block}
	p := newProcessor(lct.Loader{YAML: lct.HelloConfig}, runner, &lct.Recorder{}, lifecycle.Options{MaxQueuedEvents: 2})
	for i := range 2 {
		e := lct.Event(t, "sh.keptn.event.test.triggered", nil)
		e.SetID(fmt.Sprint("id-", i))
		_, err := p.Accept(context.Background(), e)
		require.NoError(t, err)
	}
	e := lct.Event(t, "sh.keptn.event.test.triggered", nil)
	e.SetID("one-too-many")
	_, err := p.Accept(context.Background(), e)
	require.ErrorIs(t, err, lifecycle.ErrBusy)
	close(block)
	p.Wait()
	_, err = p.Accept(context.Background(), e)
	require.NoError(t, err, "accepted again once the queue drained")
	p.Wait()
}

// TestQueuedEventHeldOnce: an accepted event waiting for its turn holds its JSON once
// (Incoming.Raw, what MaxQueuedBytes counts), not a second time as the decoded event's data.
func TestQueuedEventHeldOnce(t *testing.T) {
	const events, size = 40, 256 << 10
	block := make(chan struct{})
	p := newProcessor(lct.Loader{YAML: lct.HelloConfig}, lct.BlockingRunner{Block: block}, &lct.Recorder{}, lifecycle.Options{})
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	before := heap()
	for i := range events {
		e := lct.Event(t, "sh.keptn.event.test.triggered", map[string]any{"padding": strings.Repeat("x", size)})
		e.SetID(fmt.Sprint("id-", i))
		_, err := p.Accept(context.Background(), e)
		require.NoError(t, err)
	}
	held := float64(heap()-before) / events
	close(block)
	p.Wait()
	t.Logf("%.0f bytes held per queued event of %d bytes (%.2f×)", held, size, held/size)
	assert.Less(t, held, 1.5*size)
}

// TestBusyWhenQueueBytesFull: accepted, unfinished events are bounded in bytes as well as in
// number. An event that would take the queue beyond MaxQueuedBytes is turned away (ErrBusy:
// 429, deliver again later); one larger than the whole bound can never fit (ErrTooLarge: 413).
func TestBusyWhenQueueBytesFull(t *testing.T) {
	block := make(chan struct{})
	p := newProcessor(lct.Loader{YAML: lct.HelloConfig}, lct.BlockingRunner{Block: block}, &lct.Recorder{}, lifecycle.Options{MaxQueuedBytes: 100 << 10})
	event := func(id string, size int) cloudevents.Event {
		e := lct.Event(t, "sh.keptn.event.test.triggered", map[string]any{"padding": strings.Repeat("x", size)})
		e.SetID(id)
		return e
	}
	for i := range 3 {
		_, err := p.Accept(context.Background(), event(fmt.Sprint("id-", i), 30<<10))
		require.NoError(t, err)
	}
	_, err := p.Accept(context.Background(), event("one-too-many", 30<<10))
	require.ErrorIs(t, err, lifecycle.ErrBusy)
	_, err = p.Accept(context.Background(), event("larger-than-the-queue", 110<<10))
	require.ErrorIs(t, err, lifecycle.ErrTooLarge)
	assert.Contains(t, err.Error(), "102400 bytes")
	close(block)
	p.Wait()
	_, err = p.Accept(context.Background(), event("one-too-many", 30<<10))
	require.NoError(t, err, "accepted once the queue drained")
	p.Wait()
}

// windowRunner stands in for the cluster: the task of the event with ID block waits until
// release is closed; every Job is created at jobAt, long after the events were accepted, and
// its container runs from 2 s to 7 s after that.
type windowRunner struct {
	block   string
	running chan struct{} // closed once the blocking task holds its slot
	release chan struct{}
	jobAt   time.Time
}

func (r *windowRunner) Run(_ context.Context, b *jobs.Built) jobs.Result {
	if b.Job.Annotations[jobs.AnnotationEventID] == r.block {
		close(r.running)
		<-r.release
	}
	return jobs.Result{Succeeded: true, Reason: "Completed", Start: r.jobAt, End: r.jobAt.Add(8 * time.Second),
		RanFrom: r.jobAt.Add(2 * time.Second), RanTo: r.jobAt.Add(7 * time.Second)}
}

func (r *windowRunner) JobExists(context.Context, string, string) (bool, error) { return false, nil }

// A test action that waits for a concurrency slot reports the window its task ran in, not
// the time it was accepted: Keptn's lighthouse queries metrics for exactly that window.
func TestQueuedActionTestWindow(t *testing.T) {
	jobAt := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	runner := &windowRunner{block: "first", running: make(chan struct{}), release: make(chan struct{}), jobAt: jobAt}
	rec := &lct.Recorder{}
	p := newProcessor(lct.Loader{YAML: lct.HelloConfig}, runner, rec, lifecycle.Options{MaxConcurrentActions: 1})
	for _, id := range []string{"first", "second"} {
		e := lct.Event(t, "sh.keptn.event.test.triggered", nil)
		e.SetID(id)
		_, err := p.Accept(context.Background(), e)
		require.NoError(t, err)
		if id == "first" {
			<-runner.running // the second event's action now waits for the only slot
		}
	}
	close(runner.release)
	p.Wait()
	fins := rec.Finished(t)
	require.Len(t, fins, 2)
	for id, d := range fins {
		test, _ := d["test"].(map[string]any)
		assert.Equal(t, jobAt.Add(2*time.Second).Format(time.RFC3339), test["start"], "event %s: the container's start, not the event's acceptance", id)
		assert.Equal(t, jobAt.Add(7*time.Second).Format(time.RFC3339), test["end"], "event %s: the container's end", id)
	}
}

// Every event leaves within MaxEventBytes as encoded, escape-heavy logs and labels included.
func TestEventsFitEncoded(t *testing.T) {
	logs := strings.Repeat("\x1b[1;31m<&>\x01\x1b[0m\n", 5000) + "END-OF-LOG\n"
	runner := &lct.Runner{Results: map[string]jobs.Result{"hello": {Succeeded: true, Logs: logs}}}
	rec := &lct.Recorder{}
	p := newProcessor(lct.Loader{YAML: lct.HelloConfig}, runner, rec, lifecycle.Options{StartedViaSink: true, MaxEventBytes: 16 << 10})
	labels := map[string]string{"buildId": "17", "big": strings.Repeat("<>", 10_000)}
	_, err := p.Accept(context.Background(), lct.Event(t, "sh.keptn.event.test.triggered", map[string]any{"labels": labels}))
	require.NoError(t, err)
	p.Wait()
	require.Equal(t, []string{"sh.keptn.event.test.started", "sh.keptn.event.test.finished"}, rec.Types())
	for _, b := range rec.Encoded(t) {
		assert.LessOrEqual(t, len(b), 16<<10)
	}
	d := rec.LastData(t)
	assert.Contains(t, d["message"], "END-OF-LOG")
	assert.Equal(t, map[string]any{"buildId": "17"}, d["labels"])
}
