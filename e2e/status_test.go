//go:build e2e

package e2e

// GET /v1/status/{shkeptncontext} against a real service process and the cluster: the status
// while a task runs and after the event finished, behind the receiver token.

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// statusConfig: the first task waits until the test lets it go (a file in /keptn, the task's
// writable emptyDir), the second fails, the third never runs.
const statusConfig = `apiVersion: v2
actions:
  - name: "Rollout"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks: # in order: each starts once the one before succeeded
      - {name: "wait for go", image: "alpine", cmd: [sh, -c, "until [ -f /keptn/go ]; do sleep 0.2; done; echo released"]}
      - {name: "fail", image: "alpine", cmd: [sh, -c, "echo boom; exit 3"]}
      - {name: "never", image: "alpine", cmd: ["true"]}
`

const statusToken = "e2e-status-token"

// getStatus GETs path on the service with token ("" for none) and decodes the JSON answer.
func getStatus(t *testing.T, svc *service, path, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(svc.URL, "/")+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	r := do(t, req)
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"), string(r.Body))
	return r.Status, r.Body
}

// waitStatus polls the status until cond holds (or d passes) and returns the last answer.
func waitStatus(t *testing.T, svc *service, path string, d time.Duration, cond func(lifecycle.Status) bool) (lifecycle.Status, []byte) {
	t.Helper()
	deadline := time.Now().Add(d)
	var st lifecycle.Status
	var body []byte
	for {
		var code int
		code, body = getStatus(t, svc, path, statusToken)
		st = lifecycle.Status{}
		if code == http.StatusOK {
			require.NoError(t, json.Unmarshal(body, &st), string(body))
			if cond(st) {
				return st, body
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %s: condition not met within %s; last answer %d %s", path, d, code, body)
		}
		time.Sleep(200 * time.Millisecond) // polling interval, not synchronisation: cond decides
	}
}

// kubeRequests reads jes_kube_api_requests_total from the service's /metrics, by "verb resource".
func kubeRequests(t *testing.T, svc *service) map[string]float64 {
	t.Helper()
	resp, err := http.Get(svc.URL + "metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	out := map[string]float64{}
	for _, m := range families["jes_kube_api_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		out[labels["verb"]+" "+labels["resource"]] = m.GetCounter().GetValue()
	}
	return out
}

func phases(st lifecycle.Status) []string {
	var out []string
	for _, ev := range st.Events {
		for _, a := range ev.Actions {
			for _, ts := range a.Tasks {
				out = append(out, ts.Phase)
			}
		}
	}
	return out
}

// TestStatus: .started names the three tasks and their Jobs; the status answers 401 without
// the token, 400 for junk, 404 for an unknown context; while the first task runs it says
// Running, Waiting, Waiting; after the event finished Succeeded, Failed (the Job's reason),
// Skipped, with the Jobs' times; ?event= narrows to the one event.
func TestStatus(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, statusConfig)
	svc := startService(t, api, ns, map[string]string{"RCV_TOKEN": statusToken})

	ev := triggered(t, "sh.keptn.event.deployment.triggered", nil)
	kctx := uuid.NewString()
	ev.SetExtension("shkeptncontext", kctx)
	r := sendBinaryWith(t, svc.URL, ev, http.Header{"X-Token": {statusToken}})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var started keptn.StartedData
	require.NoError(t, json.Unmarshal(r.Body, &started), string(r.Body))
	require.NotNil(t, started.JobExecutor, ".started names the tasks: %s", r.Body)
	require.Len(t, started.JobExecutor.Actions, 1)
	var announced []string
	for i, task := range started.JobExecutor.Actions[0].Tasks {
		announced = append(announced, task.Name)
		assert.Equal(t, jobs.JobName(ev.Source(), ev.ID(), 0, i), task.Job)
		assert.Equal(t, ns, task.Namespace)
	}
	assert.Equal(t, []string{"wait for go", "fail", "never"}, announced)
	t.Logf(".started reply data: %s", r.Body)

	path := "/v1/status/" + kctx
	code, body := getStatus(t, svc, path, "")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.NotContains(t, string(body), ev.ID(), "nothing of the event without the token")
	code, body = getStatus(t, svc, "/v1/status/"+kctx+"%2F..", statusToken)
	assert.Equal(t, http.StatusBadRequest, code, string(body))
	code, body = getStatus(t, svc, "/v1/status/"+uuid.NewString(), statusToken)
	assert.Equal(t, http.StatusNotFound, code, string(body))
	code, body = getStatus(t, svc, path+"?event=no-such-event", statusToken)
	assert.Equal(t, http.StatusNotFound, code, string(body))

	running, runningBody := waitStatus(t, svc, path, finishTimeout, func(st lifecycle.Status) bool {
		p := phases(st)
		return len(p) == 3 && p[0] == jobs.PhaseRunning
	})
	t.Logf("status while running: %s", runningBody)
	require.Len(t, running.Events, 1)
	assert.Equal(t, lifecycle.EventRunning, running.Events[0].State)
	assert.True(t, running.Events[0].StartedSent)
	assert.Equal(t, []string{jobs.PhaseRunning, jobs.PhaseWaiting, jobs.PhaseWaiting}, phases(running))
	first := running.Events[0].Actions[0].Tasks[0]
	assert.Equal(t, jobs.JobName(ev.Source(), ev.ID(), 0, 0), first.Job)
	assert.NotNil(t, first.Start)
	assert.Nil(t, first.End)

	// Let the first task go.
	pod, err := kubectl(t, "-n", ns, "get", "pods", "-l", jobs.LabelJob+"="+first.Job, "-o", "jsonpath={.items[0].metadata.name}")
	require.NoError(t, err, pod)
	out, err := kubectl(t, "-n", ns, "exec", pod, "-c", jobs.TaskContainer, "--", "touch", "/keptn/go")
	require.NoError(t, err, out)

	fin := waitEvent(t, api, ev, "sh.keptn.event.deployment.finished", finishTimeout)
	assert.Equal(t, "errored", dataString(fin, "status"))
	done, doneBody := waitStatus(t, svc, path+"?event="+ev.ID(), time.Minute, func(st lifecycle.Status) bool {
		return len(st.Events) == 1 && st.Events[0].State == lifecycle.EventFinished
	})
	if os.Getenv("E2E_STATUS_OUT") != "" {
		require.NoError(t, os.WriteFile(os.Getenv("E2E_STATUS_OUT"), doneBody, 0o644))
	}
	t.Logf("status after finished: %s", doneBody)
	assert.Equal(t, []string{jobs.PhaseSucceeded, jobs.PhaseFailed, jobs.PhaseSkipped}, phases(done))
	tasks := done.Events[0].Actions[0].Tasks
	assert.Equal(t, "Completed", tasks[0].Reason)
	assert.Equal(t, "BackoffLimitExceeded", tasks[1].Reason, "the Job's own reason")
	for _, ts := range tasks[:2] {
		require.NotNil(t, ts.Start, ts.Name)
		require.NotNil(t, ts.End, ts.Name)
		assert.False(t, ts.End.Before(*ts.Start), ts.Name)
	}
	assert.NotNil(t, done.Events[0].FinishedAt)
	// What a status request costs the API server: one GET of the context's one record, no list.
	before := kubeRequests(t, svc)
	const n = 20
	took := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		code, body := getStatus(t, svc, path, statusToken)
		took[i] = time.Since(start)
		require.Equal(t, http.StatusOK, code, string(body))
	}
	after := kubeRequests(t, svc)
	for _, kind := range []string{"list jobs", "list pods", "list events", "watch jobs", "watch pods"} {
		assert.Equal(t, before[kind], after[kind], "%s during %d status requests", kind, n)
	}
	assert.Equal(t, float64(n), after["get configmaps"]-before["get configmaps"], "one record read per request")
	slices.Sort(took)
	t.Logf("FIGURE TestStatus status_get_p50_ms=%.1f status_get_max_ms=%.1f configmap_gets_per_request=%.0f",
		float64(took[n/2].Microseconds())/1000, float64(took[n-1].Microseconds())/1000, (after["get configmaps"]-before["get configmaps"])/n)

	// The Jobs the status names are the ones in the cluster.
	var names []string
	for _, j := range jobsOf(t, ns, ev) {
		names = append(names, j.Name)
	}
	assert.ElementsMatch(t, []string{tasks[0].Job, tasks[1].Job}, names)
}
