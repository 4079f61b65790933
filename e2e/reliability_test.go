//go:build e2e

package e2e

// Reliability scenarios (issue "Reliability and security"): idempotent delivery, crash-safe
// resumption after SIGKILL/SIGTERM, outgoing events surviving a Keptn API outage, a bounded
// burst of events, and the SIGTERM drain. Each logs its figures as "FIGURE name=value".

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
	"github.com/keptn-contrib/job-executor-service/jobs"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

const (
	relTriggered = "sh.keptn.event.test.triggered"
	relStarted   = "sh.keptn.event.test.started"
	relFinished  = "sh.keptn.event.test.finished"
	// relQuiet is how long a scenario watches for events that must not come (duplicates).
	relQuiet = 3 * time.Second
)

// relConfig is a job config with one action whose tasks run `sh -c script` in busybox.
func relConfig(scripts ...string) string {
	var b strings.Builder
	b.WriteString("apiVersion: v2\nactions:\n  - name: \"Reliability\"\n    events:\n      - name: \"" + relTriggered + "\"\n    tasks:\n")
	for i, s := range scripts {
		fmt.Fprintf(&b, "      - name: \"task%d\"\n        image: \"busybox\"\n        cmd: [sh]\n        args: [\"-c\", %q]\n", i+1, s)
	}
	return b.String()
}

// relAnswer is the service's answer to one delivery, collected without failing the test so
// that deliveries can run on many goroutines.
type relAnswer struct {
	mode        string
	status      int
	startedType string
	triggeredID string
	retryAfter  string
	took        time.Duration
	err         error
}

var relModes = []string{"binary", "structured", "sdk"}

// relClient is shared by concurrent deliveries; enough idle connections for a burst.
var relClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}

// relDeliver posts ev once in one of relModes.
func relDeliver(url string, ev cloudevents.Event, mode string) relAnswer {
	start := time.Now()
	a := relAnswer{mode: mode}
	defer func() { a.took = time.Since(start) }()
	if mode == "sdk" {
		c, err := cloudevents.NewClientHTTP(cehttp.WithClient(*relClient))
		if err != nil {
			a.err = err
			return a
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, res := c.Request(cloudevents.ContextWithTarget(ctx, url), ev)
		var hr *cehttp.Result
		if cloudevents.ResultAs(res, &hr) {
			a.status = hr.StatusCode
		} else if !cloudevents.IsACK(res) {
			a.err = res
		}
		if a.status == 0 && cloudevents.IsACK(res) {
			a.status = http.StatusOK
		}
		if resp != nil {
			a.startedType = resp.Type()
			a.triggeredID, _ = resp.Extensions()["triggeredid"].(string)
		}
		a.took = time.Since(start)
		return a
	}
	var req *http.Request
	var err error
	if mode == "structured" {
		b, _ := json.Marshal(ev)
		req, err = http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
		if err == nil {
			req.Header.Set("Content-Type", "application/cloudevents+json")
		}
	} else {
		req, err = http.NewRequest(http.MethodPost, url, bytes.NewReader(ev.Data()))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("ce-specversion", "1.0")
			req.Header.Set("ce-id", ev.ID())
			req.Header.Set("ce-source", ev.Source())
			req.Header.Set("ce-type", ev.Type())
			for k, v := range ev.Extensions() {
				req.Header.Set("ce-"+k, fmt.Sprint(v))
			}
		}
	}
	if err != nil {
		a.err = err
		return a
	}
	resp, err := relClient.Do(req)
	if err != nil {
		a.err = err
		return a
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	a.status, a.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	a.startedType, a.triggeredID = resp.Header.Get("ce-type"), resp.Header.Get("ce-triggeredid")
	a.took = time.Since(start)
	return a
}

// relBurst delivers ev n times at once, cycling through the modes, and checks that every
// delivery is answered like the first: 200 with the .started reply for this event.
func relBurst(t *testing.T, url string, ev cloudevents.Event, n int) (maxTook time.Duration) {
	t.Helper()
	answers := make([]relAnswer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = relDeliver(url, ev, relModes[i%len(relModes)]) })
	}
	wg.Wait()
	for i, a := range answers {
		if !assert.NoError(t, a.err, "delivery %d (%s)", i, a.mode) {
			continue
		}
		assert.Equal(t, http.StatusOK, a.status, "delivery %d (%s)", i, a.mode)
		assert.Equal(t, relStarted, a.startedType, "delivery %d (%s) answers with .started", i, a.mode)
		assert.Equal(t, ev.ID(), a.triggeredID, "delivery %d (%s) .started names the event", i, a.mode)
		maxTook = max(maxTook, a.took)
	}
	return maxTook
}

func relKctx(ev cloudevents.Event) string { return fmt.Sprint(ev.Extensions()["shkeptncontext"]) }

// relCount counts the events of a type recorded for ev's Keptn context.
func relCount(api *keptnapi.Server, ev cloudevents.Event, eventType string) int {
	n := 0
	for _, e := range api.Events() {
		if e.Shkeptncontext == relKctx(ev) && e.TypeName() == eventType {
			n++
		}
	}
	return n
}

// relAssertOnce checks that exactly one .started and one .finished exist for ev, and that
// .started arrived first.
func relAssertOnce(t *testing.T, api *keptnapi.Server, ev cloudevents.Event) {
	t.Helper()
	var started, finished []keptnapi.Event
	for _, e := range api.Events() {
		if e.Shkeptncontext != relKctx(ev) {
			continue
		}
		switch e.TypeName() {
		case relStarted:
			started = append(started, e)
		case relFinished:
			finished = append(finished, e)
		}
	}
	assert.Len(t, started, 1, "exactly one .started")
	assert.Len(t, finished, 1, "exactly one .finished")
	if len(started) > 0 && len(finished) > 0 {
		assert.False(t, finished[0].Received.Before(started[0].Received), ".started arrives before .finished")
	}
}

// relKubeList runs `kubectl get <kind> -o json` with args and decodes into out.
func relKubeList(t *testing.T, out any, args ...string) {
	t.Helper()
	s, err := kubectl(t, append([]string{"get"}, append(args, "-o", "json")...)...)
	require.NoError(t, err, s)
	require.NoError(t, json.Unmarshal([]byte(s), out), s)
}

// relJobs lists ev's Jobs in ns by name.
func relJobs(t *testing.T, ns string, ev cloudevents.Event) map[string]batchv1.Job {
	t.Helper()
	var list batchv1.JobList
	relKubeList(t, &list, "jobs", "-n", ns, "-l", jobs.LabelKeptnContext+"="+jobs.LabelValue(relKctx(ev)))
	out := map[string]batchv1.Job{}
	for _, j := range list.Items {
		out[j.Name] = j
	}
	return out
}

// relPods counts the pods a Job ran (a restarted or recreated task would show more than one).
func relPods(t *testing.T, ns, job string) int {
	t.Helper()
	var list corev1.PodList
	relKubeList(t, &list, "pods", "-n", ns, "-l", jobs.LabelJob+"="+job)
	return len(list.Items)
}

// relRecord reads the event record of ev (finished label) from ns.
func relRecordFinished(t *testing.T, ns string, ev cloudevents.Event) string {
	t.Helper()
	var cm corev1.ConfigMap
	relKubeList(t, &cm, "configmap", "-n", ns, jobs.RecordName(ev.Source(), ev.ID()))
	assert.Equal(t, records.ComponentEventRecord, cm.Labels[records.LabelComponent])
	return cm.Labels[records.LabelFinished]
}

// relWaitRunning waits until the Job's pod runs its container (the task is mid-way).
func relWaitRunning(t *testing.T, ns, job string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		var list corev1.PodList
		relKubeList(t, &list, "pods", "-n", ns, "-l", jobs.LabelJob+"="+job)
		for _, p := range list.Items {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Running != nil {
					return
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("job %s/%s has no running container after %s", ns, job, d)
}

// relStop signals the service and waits for it to exit.
func relStop(t *testing.T, svc *service, sig syscall.Signal, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	require.NoError(t, svc.cmd.Process.Signal(sig))
	select {
	case <-svc.done:
	case <-time.After(d):
		t.Fatalf("service did not exit within %s of %s\n%s", d, sig, svc.logs.String())
	}
	return time.Since(start)
}

// relFigure logs a measured figure in one greppable format.
func relFigure(t *testing.T, name string, value any) {
	t.Helper()
	t.Logf("FIGURE %s %s=%v", t.Name(), name, value)
}

// TestReliabilityIdempotent: the same event (same source+id) delivered 100 times at once,
// 100 times more while its Job runs and 100 times after it finished, then once more to a
// fresh process after SIGKILL: one Job, one pod, one .started, one .finished.
func TestReliabilityIdempotent(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, relConfig("sleep 4; echo ran-once"))
	svc := startService(t, api, ns, nil)
	ev := triggered(t, relTriggered, nil)
	job := jobs.JobName(ev.Source(), ev.ID(), 0, 0)

	relFigure(t, "first_burst_max_answer", relBurst(t, svc.URL, ev, 100))
	relWaitRunning(t, ns, job, 2*time.Minute)
	relFigure(t, "running_burst_max_answer", relBurst(t, svc.URL, ev, 100))

	fin := waitEvent(t, api, ev, relFinished, 2*time.Minute)
	assert.Equal(t, "succeeded", dataString(fin, "status"), string(fin.Raw))
	assert.Contains(t, dataString(fin, "message"), "ran-once")
	relFigure(t, "finished_burst_max_answer", relBurst(t, svc.URL, ev, 100))
	time.Sleep(relQuiet)
	relAssertOnce(t, api, ev)
	assert.Equal(t, "true", relRecordFinished(t, ns, ev), "event record marked finished")

	js := relJobs(t, ns, ev)
	require.Len(t, js, 1, "one Job for one task")
	uid := js[job].UID
	assert.Equal(t, 1, relPods(t, ns, job), "the task ran once")

	// A new process knows the event from its record: it answers, runs and sends nothing.
	relStop(t, svc, syscall.SIGKILL, 10*time.Second)
	svc2 := startService(t, api, ns, nil)
	relFigure(t, "after_restart_burst_max_answer", relBurst(t, svc2.URL, ev, 30))
	time.Sleep(relQuiet)
	relAssertOnce(t, api, ev)
	js = relJobs(t, ns, ev)
	require.Len(t, js, 1)
	assert.Equal(t, uid, js[job].UID, "the Job was not recreated")
	assert.Equal(t, 1, relPods(t, ns, job))
	assert.NotContains(t, svc2.logs.String(), "resuming event", "a finished event is not resumed")
	relFigure(t, "deliveries", 330)
}

// TestReliabilityCrashSafe: a 3-task action; the service dies (SIGKILL, or SIGTERM with a
// 1 s grace) while task 2 runs; a new process with the same environment adopts task 2's Job,
// runs task 3 and sends one succeeded .finished with all three tasks' logs.
func TestReliabilityCrashSafe(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		sig   syscall.Signal
		extra map[string]string
	}{
		{"SIGKILL", syscall.SIGKILL, nil},
		{"SIGTERM", syscall.SIGTERM, map[string]string{"SHUTDOWN_GRACE_SECONDS": "1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := namespace(t)
			api := keptnAPI(t, relConfig("sleep 4; echo task1-out", "sleep 4; echo task2-out", "sleep 4; echo task3-out"))
			svc := startService(t, api, ns, tc.extra)
			ev := triggered(t, relTriggered, nil)
			r := sendStructured(t, svc.URL, ev)
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			waitEvent(t, api, ev, relStarted, 30*time.Second)

			job := func(task int) string { return jobs.JobName(ev.Source(), ev.ID(), 0, task) }
			relWaitRunning(t, ns, job(1), 2*time.Minute)
			before := relJobs(t, ns, ev)
			require.Len(t, before, 2, "tasks 1 and 2 have Jobs when the service dies")
			took := relStop(t, svc, tc.sig, 15*time.Second)
			relFigure(t, "exit_after_signal", took.Round(time.Millisecond))
			assert.Zero(t, relCount(api, ev, relFinished), "no .finished from the dying process")
			assert.Equal(t, "false", relRecordFinished(t, ns, ev))

			restart := time.Now()
			svc2 := startService(t, api, ns, tc.extra)
			fin := waitEvent(t, api, ev, relFinished, 2*time.Minute)
			relFigure(t, "restart_to_finished", time.Since(restart).Round(time.Millisecond))
			assert.Contains(t, svc2.logs.String(), "resuming event after restart")
			msg := dataString(fin, "message")
			assert.Equal(t, "succeeded", dataString(fin, "status"), msg)
			assert.Equal(t, "pass", dataString(fin, "result"), msg)
			assert.Equal(t, ev.ID(), fin.Triggeredid)
			for i := 1; i <= 3; i++ {
				assert.Contains(t, msg, fmt.Sprintf("task%d-out", i))
				assert.Contains(t, msg, fmt.Sprintf("Task 'task%d' finished successfully!", i))
			}
			time.Sleep(relQuiet)
			relAssertOnce(t, api, ev)
			assert.Equal(t, "true", relRecordFinished(t, ns, ev))

			after := relJobs(t, ns, ev)
			assert.Len(t, after, 3, "one Job per task")
			for _, task := range []int{0, 1} {
				assert.Equal(t, before[job(task)].UID, after[job(task)].UID, "task %d's Job was adopted, not recreated", task+1)
			}
			for task := range 3 {
				assert.Equal(t, 1, relPods(t, ns, job(task)), "task %d ran once", task+1)
			}
		})
	}
}

// TestReliabilityOutgoingOutage: the Keptn API answers 503 to every event POST for 60 s from
// just after .started; the .finished (due after ~5 s) arrives exactly once after the outage.
func TestReliabilityOutgoingOutage(t *testing.T) {
	t.Parallel()
	const outage = 60 * time.Second
	ns := namespace(t)
	api := keptnAPI(t, relConfig("sleep 3; echo survived-outage"))
	svc := startService(t, api, ns, nil)
	ev := triggered(t, relTriggered, nil)
	started, err := sendSDK(t, svc.URL, ev)
	require.NoError(t, err)
	require.NotNil(t, started)
	assert.Equal(t, relStarted, started.Type())
	waitEvent(t, api, ev, relStarted, 30*time.Second)
	end := time.Now().Add(outage)
	api.FailUntil(keptnapi.EventRequests, end, http.StatusServiceUnavailable)

	fin := waitEvent(t, api, ev, relFinished, outage+2*time.Minute)
	assert.False(t, fin.Received.Before(end), "nothing gets through during the outage")
	assert.Equal(t, "succeeded", dataString(fin, "status"), string(fin.Raw))
	assert.Contains(t, dataString(fin, "message"), "survived-outage")
	time.Sleep(relQuiet)
	relAssertOnce(t, api, ev)

	refused := 0
	var firstRefused time.Time
	for _, r := range api.Requests() {
		if r.Path == "/v1/event" && r.Status == http.StatusServiceUnavailable {
			if refused == 0 {
				firstRefused = r.Time
			}
			refused++
		}
	}
	assert.GreaterOrEqual(t, refused, 3, "the .finished was retried during the outage")
	relFigure(t, "refused_attempts", refused)
	relFigure(t, "finished_first_attempt_to_delivery", fin.Received.Sub(firstRefused).Round(time.Millisecond))
	relFigure(t, "delivery_after_outage_end", fin.Received.Sub(end).Round(time.Millisecond))
	assert.Equal(t, "true", relRecordFinished(t, ns, ev))
}

// TestReliabilityLoad: 60 distinct events at once with MAX_CONCURRENT_ACTIONS=10 and
// MAX_QUEUED_EVENTS=40; deliveries refused with 429 are retried after Retry-After, as Knative
// would. None is dropped: every event gets exactly one succeeded .finished; at most 10 Jobs
// overlap.
func TestReliabilityLoad(t *testing.T) {
	t.Parallel()
	const n, maxActions = 60, 10
	ns := namespace(t)
	api := keptnAPI(t, relConfig("echo svc=$(KEPTN_SERVICE)"))
	svc := startService(t, api, ns, map[string]string{
		"MAX_CONCURRENT_ACTIONS": strconv.Itoa(maxActions), "MAX_QUEUED_EVENTS": "40", "LOG_LEVEL": "info",
	})
	evs := make([]cloudevents.Event, n)
	for i := range evs {
		evs[i] = triggered(t, relTriggered, nil)
		evs[i].SetID(fmt.Sprintf("load-%d-%d", i, time.Now().UnixNano()))
		evs[i].SetExtension("shkeptncontext", fmt.Sprintf("load-ctx-%d-%d", i, time.Now().UnixNano()))
	}

	var mu sync.Mutex
	busy, attempts := 0, 0
	var missingRetryAfter []string
	begin := time.Now()
	var wg sync.WaitGroup
	for i, ev := range evs {
		wg.Go(func() {
			deadline := time.Now().Add(4 * time.Minute)
			for {
				a := relDeliver(svc.URL, ev, relModes[i%len(relModes)])
				mu.Lock()
				attempts++
				mu.Unlock()
				if a.err == nil && a.status == http.StatusOK {
					return
				}
				wait := 2 * time.Second // an SDK answer carries no headers; Knative's backoff
				if a.err == nil && (a.status == http.StatusTooManyRequests || a.status == http.StatusServiceUnavailable) {
					mu.Lock()
					busy++
					if a.mode != "sdk" && a.retryAfter == "" {
						missingRetryAfter = append(missingRetryAfter, a.mode)
					}
					mu.Unlock()
					if s, err := strconv.Atoi(a.retryAfter); err == nil {
						wait = time.Duration(s) * time.Second
					}
				}
				if time.Now().Add(wait).After(deadline) {
					t.Errorf("event %d never accepted: last answer %d %v", i, a.status, a.err)
					return
				}
				time.Sleep(wait)
			}
		})
	}
	wg.Wait()
	accepted := time.Since(begin)

	want := map[string]bool{}
	for _, ev := range evs {
		want[relKctx(ev)] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	got := map[string]int{}
	var last keptnapi.Event
	for len(got) < n {
		e, err := api.WaitFor(ctx, func(e keptnapi.Event) bool {
			return e.TypeName() == relFinished && want[e.Shkeptncontext] && got[e.Shkeptncontext] == 0
		})
		require.NoError(t, err, "%d of %d .finished received", len(got), n)
		got[e.Shkeptncontext]++
		last = e
	}
	wall := last.Received.Sub(begin)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", svc.cmd.Process.Pid))
	require.NoError(t, err)
	time.Sleep(relQuiet)

	for _, ev := range evs {
		relAssertOnce(t, api, ev)
	}
	for _, e := range api.Events() {
		if e.TypeName() == relFinished && want[e.Shkeptncontext] {
			assert.Equal(t, "succeeded", dataString(e, "status"), dataString(e, "message"))
			assert.Contains(t, dataString(e, "message"), "svc=carts")
		}
	}
	assert.Positive(t, busy, "some deliveries are refused with 429 (queue bound 40 < 60)")
	assert.Empty(t, missingRetryAfter, "429/503 answers carry Retry-After")

	var list batchv1.JobList
	relKubeList(t, &list, "jobs", "-n", ns)
	assert.Len(t, list.Items, n, "one Job per event")
	overlap := relMaxOverlap(list.Items)
	assert.LessOrEqual(t, overlap, maxActions, "MAX_CONCURRENT_ACTIONS bounds the Jobs running at once")

	relFigure(t, "events", n)
	relFigure(t, "deliveries", attempts)
	relFigure(t, "refused_busy", busy)
	relFigure(t, "all_accepted_after", accepted.Round(time.Millisecond))
	relFigure(t, "wall_time_to_last_finished", wall.Round(time.Millisecond))
	relFigure(t, "max_overlapping_jobs", overlap)
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") || strings.HasPrefix(line, "VmRSS:") {
			relFigure(t, strings.TrimSuffix(strings.Fields(line)[0], ":"), strings.Join(strings.Fields(line)[1:], ""))
		}
	}
}

// relMaxOverlap is the largest number of Jobs whose [startTime, completionTime) intervals
// overlap. The controller's times lie within the time the service holds a slot, and whole
// seconds only hide overlaps, so this never overstates the concurrency.
func relMaxOverlap(js []batchv1.Job) int {
	best := 0
	for _, a := range js {
		if a.Status.StartTime == nil {
			continue
		}
		at := a.Status.StartTime.Time
		n := 0
		for _, b := range js {
			if b.Status.StartTime == nil || b.Status.CompletionTime == nil {
				continue
			}
			if !b.Status.StartTime.After(at) && b.Status.CompletionTime.After(at) {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

// TestReliabilityDrain: after SIGTERM the receiver refuses new events with 503 and
// Retry-After while the running action finishes (SHUTDOWN_GRACE_SECONDS=60); that action's
// .finished is still sent, and the refused event ran nothing.
func TestReliabilityDrain(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, relConfig("sleep 8; echo drained"))
	svc := startService(t, api, ns, map[string]string{"SHUTDOWN_GRACE_SECONDS": "60"})
	ev := triggered(t, relTriggered, nil)
	r := sendBinary(t, svc.URL, ev)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	relWaitRunning(t, ns, jobs.JobName(ev.Source(), ev.ID(), 0, 0), 2*time.Minute)

	sigterm := time.Now()
	require.NoError(t, svc.cmd.Process.Signal(syscall.SIGTERM))
	time.Sleep(500 * time.Millisecond) // let the signal be handled
	late := triggered(t, relTriggered, nil)
	a := relDeliver(svc.URL, late, "binary")
	if assert.NoError(t, a.err, "the receiver still answers while draining") {
		assert.Equal(t, http.StatusServiceUnavailable, a.status)
		assert.NotEmpty(t, a.retryAfter, "503 carries Retry-After")
	}

	fin := waitEvent(t, api, ev, relFinished, 2*time.Minute)
	assert.Equal(t, "succeeded", dataString(fin, "status"), string(fin.Raw))
	assert.Contains(t, dataString(fin, "message"), "drained")
	select {
	case <-svc.done:
	case <-time.After(30 * time.Second):
		t.Fatal("service did not exit after draining")
	}
	relFigure(t, "sigterm_to_exit", time.Since(sigterm).Round(time.Millisecond))
	relAssertOnce(t, api, ev)
	assert.Empty(t, relJobs(t, ns, late), "the refused event ran nothing")
	assert.Zero(t, relCount(api, late, relStarted))
}
