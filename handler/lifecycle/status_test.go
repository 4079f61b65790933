package lifecycle_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
	"github.com/keptn-contrib/job-executor-service/handler"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
	"github.com/keptn-contrib/job-executor-service/jobs"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
	"github.com/keptn-contrib/job-executor-service/jobs/run"
)

const flowContext = "08735340-6f9e-4b32-97ff-3b6c292bc50i" // lct.Event's shkeptncontext

// withStatus gives the flow's processor the record index and the runner's Job caches, as
// cmd does when the status route is on. Until the index has synced, Status is unavailable.
func withStatus(t *testing.T, f *flowEnv) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	index := f.store("test-instance", flowKey).NewIndex()
	f.deps.Index, f.deps.Tasks = index, f.deps.Runner.(*run.Runner).Watcher()
	f.restart(t)
	_, err := f.proc.Status(ctx, flowContext, "")
	require.ErrorIs(t, err, lifecycle.ErrStatusUnavailable, "index not started")
	require.ErrorIs(t, err, records.ErrNotSynced)
	index.Start(ctx)
}

// status asks until the index shows want events (it follows the records through a watch).
func status(t *testing.T, f *flowEnv, keptnContext, eventID string, want int) *lifecycle.Status {
	t.Helper()
	var st *lifecycle.Status
	require.Eventually(t, func() bool {
		var err error
		st, err = f.proc.Status(context.Background(), keptnContext, eventID)
		return err == nil && len(st.Events) == want
	}, 10*time.Second, 20*time.Millisecond)
	return st
}

// TestFlowStatus: the status of a finished event names every matched action, each task's Job
// and namespace, its phase from the Job (Succeeded, Failed with the Job's reason) and the tasks
// a failure skipped; planted records with the context's label are counted, never reported.
func TestFlowStatus(t *testing.T) {
	f := newFlow(t, map[string]bool{"apply": true}, lifecycle.Options{})
	withStatus(t, f)
	in := f.deployment(t)
	f.send(t, in)
	planted := plant(t, f, "planted-1", map[string]string{"job-executor-service/signature": "00"})
	_, err := f.client.CoreV1().ConfigMaps("keptn").Patch(context.Background(), planted, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"keptn.sh/context":"`+flowContext+`"}}}`), metav1.PatchOptions{})
	require.NoError(t, err)

	var st *lifecycle.Status
	require.Eventually(t, func() bool {
		st, err = f.proc.Status(context.Background(), flowContext, "")
		return err == nil && st.Unverified == 1 && len(st.Events) == 1 && st.Events[0].State == lifecycle.EventFinished
	}, 10*time.Second, 20*time.Millisecond, "status: %+v, %v", st, err)
	ev := st.Events[0]
	assert.Equal(t, in.ID(), ev.ID)
	assert.Equal(t, "sh.keptn.event.deployment.triggered", ev.Type)
	assert.True(t, ev.StartedSent)
	assert.NotNil(t, ev.FinishedAt)
	assert.Equal(t, "test-instance", ev.Owner)

	type task struct{ action, name, phase, reason string }
	var got []task
	for _, a := range ev.Actions {
		for i, ts := range a.Tasks {
			got = append(got, task{a.Name, ts.Name, ts.Phase, ts.Reason})
			assert.Equal(t, jobs.JobName(in.Source(), in.ID(), a.Index, i), ts.Job)
			assert.Equal(t, "keptn", ts.Namespace)
			if ts.Phase == jobs.PhaseSucceeded || ts.Phase == jobs.PhaseFailed {
				assert.NotNil(t, ts.End, ts.Name)
			}
		}
	}
	assert.Equal(t, []task{
		{"Deploy", "prepare", jobs.PhaseSucceeded, "Completed"},
		{"Deploy", "apply", jobs.PhaseFailed, "BackoffLimitExceeded"},
		{"Deploy", "verify", jobs.PhaseSkipped, ""},
		{"Notify", "notify", jobs.PhaseSucceeded, "Completed"},
		{"Audit", "audit", jobs.PhaseSucceeded, "Completed"},
	}, got)
	assert.True(t, ev.Actions[2].Silent)

	// .started announced the reporting actions' tasks and the Jobs the status shows.
	var started struct {
		JobExecutor struct {
			Actions []struct {
				Name  string `json:"name"`
				Tasks []struct{ Name, Job, Namespace string }
			} `json:"actions"`
		} `json:"jobExecutor"`
	}
	require.NoError(t, json.Unmarshal(f.events(t)[0].Raw, &struct {
		Data any `json:"data"`
	}{&started}))
	var announced []task
	for _, a := range started.JobExecutor.Actions {
		for i, pt := range a.Tasks {
			announced = append(announced, task{a.Name, pt.Name, "", ""})
			st := ev.Actions[map[string]int{"Deploy": 0, "Notify": 1}[a.Name]].Tasks[i]
			assert.Equal(t, st.Job, pt.Job)
			assert.Equal(t, st.Namespace, pt.Namespace)
		}
	}
	assert.Equal(t, []task{{"Deploy", "prepare", "", ""}, {"Deploy", "apply", "", ""}, {"Deploy", "verify", "", ""}, {"Notify", "notify", "", ""}}, announced,
		"the silent action is not announced")

	// By event id: the one event, or none.
	assert.Len(t, status(t, f, flowContext, in.ID(), 1).Events, 1)
	_, err = f.proc.Status(context.Background(), flowContext, "another-id")
	assert.ErrorIs(t, err, lifecycle.ErrNoStatus)
	_, err = f.proc.Status(context.Background(), "5c5b0a4e-0000-4000-8000-000000000000", "")
	assert.ErrorIs(t, err, lifecycle.ErrNoStatus)
	// A context whose label is the same after sanitising is another context.
	_, err = f.proc.Status(context.Background(), "08735340-6f9e-4b32-97ff-3b6c292bc50i/", "")
	assert.ErrorIs(t, err, lifecycle.ErrNoStatus)
}

// TestFlowStatusRunning: while an event's first task runs, the status says so and that the
// later tasks are waiting.
func TestFlowStatusRunning(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	withStatus(t, f)
	block := make(chan struct{})
	f.deps.Runner = blockingAfterCreate{Runner: f.deps.Runner.(*run.Runner), block: block}
	f.restart(t)
	f.deliver(t, f.deployment(t))
	defer func() { close(block); f.proc.Wait() }()

	st := status(t, f, flowContext, "", 1)
	ev := st.Events[0]
	assert.Equal(t, lifecycle.EventRunning, ev.State)
	assert.Nil(t, ev.FinishedAt)
	phases := map[string]string{}
	for _, a := range ev.Actions {
		for _, ts := range a.Tasks {
			phases[ts.Name] = ts.Phase
		}
	}
	assert.Equal(t, jobs.PhaseWaiting, phases["apply"], "the second task has no Job yet")
	assert.Equal(t, jobs.PhaseWaiting, phases["verify"])
}

// blockingAfterCreate holds every task until block closes, creating no Job: tasks stay Waiting.
type blockingAfterCreate struct {
	*run.Runner
	block chan struct{}
}

func (b blockingAfterCreate) Run(ctx context.Context, built *jobs.Built) jobs.Result {
	<-b.block
	return b.Runner.Run(ctx, built)
}

// TestStatusRoute: GET /v1/status on a receiver with a token and the processor: 401 without
// the token, the JSON status with it, 404 with a JSON body for an unknown context.
func TestStatusRoute(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	withStatus(t, f)
	in := f.deployment(t)
	f.send(t, in)
	status(t, f, flowContext, "", 1)
	srv := httptest.NewServer(handler.NewServer(f.proc, zap.NewNop(), handler.ServerOptions{Token: "tok", Status: f.proc}).Router())
	defer srv.Close()

	get := func(path, token string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("x-token", token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var out map[string]any
		require.NoError(t, json.Unmarshal(body, &out), string(body))
		return resp.StatusCode, out
	}
	code, body := get("/v1/status/"+flowContext, "")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.NotContains(t, body, "events")

	code, body = get("/v1/status/"+flowContext, "tok")
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, flowContext, body["shkeptncontext"])
	events := body["events"].([]any)
	require.Len(t, events, 1)
	assert.Equal(t, in.ID(), events[0].(map[string]any)["id"])

	code, body = get("/v1/status/"+flowContext+"?event="+in.ID(), "tok")
	assert.Equal(t, http.StatusOK, code, body)
	code, body = get("/v1/status/"+flowContext+"?event=nope", "tok")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Equal(t, "not_found", body["error"])
	code, body = get("/v1/status/not%2Fa%2Fcontext", "tok")
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Equal(t, "invalid_request", body["error"])
}

// TestStatusOffWithoutDeps: a processor without the index answers no status.
func TestStatusOffWithoutDeps(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	_, err := f.proc.Status(context.Background(), flowContext, "")
	require.Error(t, err)
	assert.False(t, errors.Is(err, lifecycle.ErrNoStatus))
}

// TestFlowStatusParallel: the tasks of a parallel action all run; a failed one skips none.
func TestFlowStatusParallel(t *testing.T) {
	f := newFlow(t, map[string]bool{"b": true}, lifecycle.Options{})
	withStatus(t, f)
	svc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}
	f.keptn.Put("c1", svc, "job/config.yaml", []byte(`apiVersion: v2
actions:
  - name: "Fan out"
    parallel: true
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks: [{name: "a", image: "alpine"}, {name: "b", image: "alpine"}, {name: "c", image: "alpine"}]
`))
	in := lct.Event(t, "sh.keptn.event.deployment.triggered", nil)
	in.SetExtension("gitcommitid", "c1")
	f.send(t, in)
	var st *lifecycle.Status
	require.Eventually(t, func() bool {
		var err error
		st, err = f.proc.Status(context.Background(), flowContext, "")
		return err == nil && len(st.Events) == 1 && st.Events[0].State == lifecycle.EventFinished
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, []string{jobs.PhaseSucceeded, jobs.PhaseFailed, jobs.PhaseSucceeded},
		[]string{st.Events[0].Actions[0].Tasks[0].Phase, st.Events[0].Actions[0].Tasks[1].Phase, st.Events[0].Actions[0].Tasks[2].Phase})
	assert.True(t, st.Events[0].StartedSent)
}
