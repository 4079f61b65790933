package lifecycle_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// sentConfig has, per event type, the combination of matching actions one row of the README's
// "What the service sends" table needs.
const sentConfig = `apiVersion: v2
actions:
  - name: "Test"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks: [{name: "test", image: "alpine"}]
  - name: "Deploy"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks: [{name: "deploy", image: "alpine"}]
  - name: "Notify"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks: [{name: "notify", image: "busybox"}]
  - name: "Evaluate"
    events: [{name: "sh.keptn.event.evaluation.triggered"}]
    tasks: [{name: "evaluate", image: "alpine"}]
  - name: "Evaluation audit"
    silent: true
    events: [{name: "sh.keptn.event.evaluation.triggered"}]
    tasks: [{name: "evaluation-audit", image: "alpine"}]
  - name: "Release"
    silent: true
    events: [{name: "sh.keptn.event.release.triggered"}]
    tasks: [{name: "release", image: "alpine"}]
  - name: "Release audit"
    silent: true
    events: [{name: "sh.keptn.event.release.triggered"}]
    tasks: [{name: "release-audit", image: "busybox"}]
  - name: "After test"
    events: [{name: "sh.keptn.event.test.finished"}]
    tasks: [{name: "after-test", image: "alpine"}]
  - name: "After deployment"
    events: [{name: "sh.keptn.event.deployment.finished"}]
    tasks: [{name: "after-deployment", image: "alpine"}]
  - name: "After deployment, quietly"
    silent: true
    events: [{name: "sh.keptn.event.deployment.finished"}]
    tasks: [{name: "after-deployment-quietly", image: "alpine"}]
`

// onlyAlpine refuses the busybox tasks of sentConfig (Notify, Release audit).
var onlyAlpine = jobs.Settings{AllowedImages: []string{"docker.io/library/alpine*"}}

// signalRecorder is a Recorder that closes finished when the first .finished is sent.
type signalRecorder struct {
	lct.Recorder
	once     sync.Once
	finished chan struct{}
}

func (s *signalRecorder) Send(ctx context.Context, e cloudevents.Event) error {
	err := s.Recorder.Send(ctx, e)
	if strings.HasSuffix(e.Type(), ".finished") {
		s.once.Do(func() { close(s.finished) })
	}
	return err
}

// holdingRunner is lct.Runner, except that the tasks in hold do not end before .finished was
// sent: were .finished to wait for them, they give up after a bound and say so in early.
type holdingRunner struct {
	lct.Runner
	hold     map[string]bool
	finished <-chan struct{}

	mu    sync.Mutex
	early []string
}

func (h *holdingRunner) Run(ctx context.Context, b *jobs.Built) jobs.Result {
	if h.hold[b.TaskName()] {
		select {
		case <-h.finished:
		case <-time.After(30 * time.Second):
			h.mu.Lock()
			h.early = append(h.early, b.TaskName())
			h.mu.Unlock()
		}
	}
	return h.Runner.Run(ctx, b)
}

// TestWhatIsSent has one case per row of the README's "What the service sends" table (the
// row's text is the case's name), each delivering one event and checking every event sent
// for it and every task run. .started is also sent through the sink here, as it is in every
// mode but Knative, so that the recorder sees it.
func TestWhatIsSent(t *testing.T) {
	const invalid = "apiVersion: v2\nactions:\n  - name: x\n    bogus: 1\n"
	tests := []struct {
		row       string
		loader    lct.Loader
		opts      lifecycle.Options
		eventType string
		results   map[string]jobs.Result
		// hold: tasks that must still be running when .finished is sent.
		hold    map[string]bool
		want    []string
		ran     []string
		status  string   // of .finished
		message []string // in .finished or log.error
		not     []string // not in it
		task    string   // data.task of log.error
	}{
		{
			row: ".triggered, no matching action", loader: lct.Loader{YAML: sentConfig}, eventType: "sh.keptn.event.approval.triggered",
		},
		{
			row: ".triggered, one action", loader: lct.Loader{YAML: sentConfig}, eventType: "sh.keptn.event.test.triggered",
			want: []string{"sh.keptn.event.test.started", "sh.keptn.event.test.finished"}, ran: []string{"test"},
			status: "succeeded", message: []string{"Task 'test' finished successfully!"},
		},
		{
			row: ".triggered, several actions, all succeed", loader: lct.Loader{YAML: sentConfig}, eventType: "sh.keptn.event.deployment.triggered",
			want: []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, ran: []string{"deploy", "notify"},
			status: "succeeded", message: []string{"Task 'deploy' finished successfully!", "Task 'notify' finished successfully!"},
		},
		{
			row: ".triggered, several actions, one fails", loader: lct.Loader{YAML: sentConfig}, eventType: "sh.keptn.event.deployment.triggered",
			results: map[string]jobs.Result{"notify": {Reason: "BackoffLimitExceeded", Message: "exit code 1"}},
			want:    []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, ran: []string{"deploy", "notify"},
			status: "errored", message: []string{"Task 'deploy' finished successfully!", "Task 'notify' failed: BackoffLimitExceeded: exit code 1"},
		},
		{
			row: ".triggered, several actions, one refused", loader: lct.Loader{YAML: sentConfig}, opts: lifecycle.Options{Settings: onlyAlpine},
			eventType: "sh.keptn.event.deployment.triggered",
			want:      []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, ran: []string{"deploy"},
			status: "errored", message: []string{"Task 'deploy' finished successfully!", "Action 'Notify' was not run", "busybox"},
		},
		{
			row: ".triggered, silent and non-silent actions", loader: lct.Loader{YAML: sentConfig}, eventType: "sh.keptn.event.evaluation.triggered",
			hold:    map[string]bool{"evaluation-audit": true},
			results: map[string]jobs.Result{"evaluation-audit": {Reason: "BackoffLimitExceeded", Message: "exit code 1"}},
			want:    []string{"sh.keptn.event.evaluation.started", "sh.keptn.event.evaluation.finished"}, ran: []string{"evaluate", "evaluation-audit"},
			status: "succeeded", message: []string{"Task 'evaluate' finished successfully!"}, not: []string{"evaluation-audit"},
		},
		{
			row: ".triggered, only silent actions", loader: lct.Loader{YAML: sentConfig}, eventType: "sh.keptn.event.release.triggered",
			ran: []string{"release", "release-audit"},
		},
		{
			row: ".triggered, only silent actions, one refused", loader: lct.Loader{YAML: sentConfig}, opts: lifecycle.Options{Settings: onlyAlpine},
			eventType: "sh.keptn.event.release.triggered", ran: []string{"release"},
		},
		{
			row: "not .triggered, no matching action", loader: lct.Loader{YAML: sentConfig}, eventType: "sh.keptn.event.approval.finished",
		},
		{
			row: "not .triggered, one non-silent action", loader: lct.Loader{YAML: sentConfig}, eventType: "sh.keptn.event.test.finished",
			ran: []string{"after-test"},
		},
		{
			row: "not .triggered, several actions", loader: lct.Loader{YAML: sentConfig}, eventType: "sh.keptn.event.deployment.finished",
			ran: []string{"after-deployment", "after-deployment-quietly"},
		},
		{
			row: "missing config, .triggered", loader: lct.Loader{Err: lct.NotFound}, eventType: "sh.keptn.event.evaluation.triggered",
			want: []string{"sh.keptn.log.error"}, message: []string{"not found"}, task: "evaluation",
		},
		{
			row: "missing config, not .triggered", loader: lct.Loader{Err: lct.NotFound}, eventType: "sh.keptn.event.deployment.finished",
			want: []string{"sh.keptn.log.error"}, message: []string{"not found"}, task: "deployment",
		},
		{
			row: "invalid config, .triggered", loader: lct.Loader{YAML: invalid}, eventType: "sh.keptn.event.evaluation.triggered",
			want: []string{"sh.keptn.log.error"}, message: []string{`line 4: unknown field "bogus"`}, task: "evaluation",
		},
		{
			row: "invalid config, not .triggered", loader: lct.Loader{YAML: invalid}, eventType: "sh.keptn.event.deployment.finished",
			want: []string{"sh.keptn.log.error"}, message: []string{`line 4: unknown field "bogus"`}, task: "deployment",
		},
		{
			row: "missing config, .triggered, ALWAYS_SEND_FINISHED_EVENT", loader: lct.Loader{Err: lct.NotFound},
			opts: lifecycle.Options{AlwaysSendFinished: true}, eventType: "sh.keptn.event.evaluation.triggered",
			want:   []string{"sh.keptn.event.evaluation.started", "sh.keptn.event.evaluation.finished"},
			status: "errored", message: []string{"not found"},
		},
		{
			row: "invalid config, .triggered, ALWAYS_SEND_FINISHED_EVENT", loader: lct.Loader{YAML: invalid},
			opts: lifecycle.Options{AlwaysSendFinished: true}, eventType: "sh.keptn.event.evaluation.triggered",
			want:   []string{"sh.keptn.event.evaluation.started", "sh.keptn.event.evaluation.finished"},
			status: "errored", message: []string{`line 4: unknown field "bogus"`},
		},
		{
			row: "missing config, not .triggered, ALWAYS_SEND_FINISHED_EVENT", loader: lct.Loader{Err: lct.NotFound},
			opts: lifecycle.Options{AlwaysSendFinished: true}, eventType: "sh.keptn.event.deployment.finished",
			want: []string{"sh.keptn.log.error"}, message: []string{"not found"}, task: "deployment",
		},
		{
			row: "invalid config, not .triggered, ALWAYS_SEND_FINISHED_EVENT", loader: lct.Loader{YAML: invalid},
			opts: lifecycle.Options{AlwaysSendFinished: true}, eventType: "sh.keptn.event.deployment.finished",
			want: []string{"sh.keptn.log.error"}, message: []string{`line 4: unknown field "bogus"`}, task: "deployment",
		},
		{
			row: "config source unreachable longer than CONFIG_PENDING_TIMEOUT_SECONDS", loader: lct.Loader{Err: context.DeadlineExceeded},
			opts: lifecycle.Options{ConfigPendingTimeout: 50 * time.Millisecond}, eventType: "sh.keptn.event.test.triggered",
			want: []string{"sh.keptn.log.error"}, message: []string{"the resource-service was unreachable for 50ms"}, task: "test",
		},
	}
	for _, tc := range tests {
		t.Run(tc.row, func(t *testing.T) {
			rec := &signalRecorder{finished: make(chan struct{})}
			runner := &holdingRunner{Runner: lct.Runner{Results: tc.results}, hold: tc.hold, finished: rec.finished}
			tc.opts.StartedViaSink = true
			p := newProcessor(tc.loader, runner, rec, tc.opts)
			in := lct.Event(t, tc.eventType, nil)
			reply, err := p.Accept(context.Background(), in)
			p.Wait()
			require.NoError(t, err)

			assert.Equal(t, tc.want, rec.Types(), "events sent")
			assert.ElementsMatch(t, tc.ran, runner.Names(), "tasks run")
			assert.Empty(t, runner.early, ".finished waited for these")
			if len(tc.want) > 0 && strings.HasSuffix(tc.want[0], ".started") {
				require.NotNil(t, reply, "the reply is .started")
				assert.Equal(t, tc.want[0], reply.Type())
			} else {
				assert.Nil(t, reply, "no .started in the reply")
			}
			if len(tc.want) == 0 {
				return
			}
			d := rec.LastData(t)
			if tc.status != "" {
				assert.Equal(t, tc.status, d["status"])
			}
			if tc.task != "" {
				assert.Equal(t, tc.task, d["task"])
			}
			for _, m := range tc.message {
				assert.Contains(t, d["message"], m)
			}
			for _, m := range tc.not {
				assert.NotContains(t, d["message"], m)
			}
		})
	}
}
