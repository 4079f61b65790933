//go:build e2e

package e2e

// Keptn fidelity scenarios (issue 10, items 3 and 4): data.test.start/end of a test.finished
// are the window the tasks ran in, and .finished fits the distributor's API proxy as encoded.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// onlyPod is the one pod of ev's only Job.
func onlyPod(t *testing.T, ns string, ev cloudevents.Event) corev1.Pod {
	t.Helper()
	js := relJobs(t, ns, ev)
	require.Len(t, js, 1)
	var list corev1.PodList
	for name := range js {
		relKubeList(t, &list, "pods", "-n", ns, "-l", jobs.LabelJob+"="+name)
		require.Len(t, list.Items, 1, "one pod for job %s", name)
	}
	return list.Items[0]
}

// taskRun is when the task container of ev's only Job ran, as the kubelet recorded it.
func taskRun(t *testing.T, ns string, ev cloudevents.Event) (start, end time.Time) {
	t.Helper()
	pod := onlyPod(t, ns, ev)
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == jobs.TaskContainer && cs.State.Terminated != nil {
			return cs.State.Terminated.StartedAt.Time, cs.State.Terminated.FinishedAt.Time
		}
	}
	t.Fatalf("pod %s: the task container has not terminated: %+v", pod.Name, pod.Status.ContainerStatuses)
	return
}

// taskLogs is the task container's log of ev's only Job, as Kubernetes has it.
func taskLogs(t *testing.T, ns string, ev cloudevents.Event) string {
	t.Helper()
	out, err := kubectl(t, "-n", ns, "logs", onlyPod(t, ns, ev).Name, "-c", jobs.TaskContainer)
	require.NoError(t, err, out)
	return out
}

// testWindow reads data.test.start/end of a test.finished.
func testWindow(t *testing.T, fin keptnapi.Event) (start, end string) {
	t.Helper()
	test, ok := fin.DataMap()["test"].(map[string]any)
	require.True(t, ok, "test.finished without data.test: %s", fin.Raw)
	start, _ = test["start"].(string)
	end, _ = test["end"].(string)
	return start, end
}

func rfc3339(ts time.Time) string { return ts.UTC().Format(time.RFC3339) }

// TestFidelityTestWindow: with MAX_CONCURRENT_ACTIONS=1 a second event waits for the first
// one's action to end. Its test.finished must still say when its own task ran (Keptn's
// lighthouse queries metrics for exactly data.test.start..end), not when it was accepted.
func TestFidelityTestWindow(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, relConfig("echo start; sleep 5; echo done"))
	svc := startService(t, api, ns, map[string]string{"MAX_CONCURRENT_ACTIONS": "1"})

	first := triggered(t, relTriggered, nil)
	r := sendBinary(t, svc.URL, first)
	require.Less(t, r.Status, 300, string(r.Body))
	// The first action holds the only slot once its Job exists: the second one queues.
	require.Eventually(t, func() bool { return len(relJobs(t, ns, first)) == 1 }, finishTimeout, 200*time.Millisecond)
	second := triggered(t, relTriggered, nil)
	accepted := time.Now()
	r = sendBinary(t, svc.URL, second)
	require.Less(t, r.Status, 300, string(r.Body))

	starts := map[string]string{}
	for _, ev := range []cloudevents.Event{first, second} {
		fin := waitEvent(t, api, ev, relFinished, finishTimeout)
		assertSucceeded(t, fin, ev)
		start, end := testWindow(t, fin)
		ranFrom, ranTo := taskRun(t, ns, ev)
		assert.Equal(t, rfc3339(ranFrom), start, "data.test.start is the task container's start")
		assert.Equal(t, rfc3339(ranTo), end, "data.test.end is the task container's end")
		relFigure(t, "window_"+ev.ID(), fmt.Sprintf("%s..%s", start, end))
		if ts, err := time.Parse(time.RFC3339, start); err == nil {
			relFigure(t, "start_before_task_"+ev.ID(), ranFrom.Sub(ts))
		}
		starts[ev.ID()] = start
	}
	_, firstEnd := taskRun(t, ns, first)
	secondStart, _ := taskRun(t, ns, second)
	assert.GreaterOrEqual(t, starts[second.ID()], rfc3339(firstEnd), "the queued event's window starts after the first task ended")
	relFigure(t, "queued_s", secondStart.Sub(accepted).Round(time.Second))
}

// escapeHeavy prints about 300 KB of ANSI colours, HTML-escaped characters and control
// characters (3x their size as JSON).
const escapeHeavy = `yes "$(printf '\033[1;31m<&>\001\002\033[0m')" | head -c 300000; echo; echo END-OF-LOG`

// proxyMax is the chart's API_PROXY_MAX_PAYLOAD_BYTES_KB (128) for the distributor sidecar.
const proxyMax = 128 << 10

// TestFidelityFinishedFitsProxy: .started and .finished must fit the distributor's API proxy
// (which refuses larger bodies) as encoded, with escape-heavy logs and with event labels far
// larger than the proxy allows. The stand-in refuses larger events as the proxy does.
func TestFidelityFinishedFitsProxy(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnapi.New(keptnapi.Options{Token: apiToken, MaxEventBytes: proxyMax})
	api.AddScope(keptnapi.Latest, cartsScope)
	api.Put(keptnapi.Latest, cartsScope, "job/config.yaml", []byte(relConfig(escapeHeavy)))
	_, err := api.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = api.Close() })
	svc := startService(t, api, ns, nil)

	bigLabels := map[string]any{"buildId": "17"}
	for i := range 40 {
		// 1,200 bytes each, 7,200 as JSON: 280 KiB of labels, small enough for the event record.
		bigLabels[fmt.Sprintf("note-%02d", i)] = strings.Repeat("<&>", 400)
	}
	cases := []struct {
		name   string
		labels map[string]any
	}{
		{"escape-heavy logs", map[string]any{"buildId": "17"}},
		{"escape-heavy logs and huge labels", bigLabels},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := triggered(t, relTriggered, map[string]any{"labels": tc.labels})
			refusedBefore := len(refused(api))
			r := sendBinary(t, svc.URL, ev)
			require.Less(t, r.Status, 300, string(r.Body))

			// Either the .finished arrives or the stand-in refused it (the sender does not retry
			// a 413); waiting for the first of both keeps a failure quick.
			var fin keptnapi.Event
			require.Eventually(t, func() bool {
				for _, e := range api.Events() {
					if e.Shkeptncontext == kctxOf(ev) && e.TypeName() == relFinished {
						fin = e
						return true
					}
				}
				return len(refused(api)) > refusedBefore
			}, finishTimeout, 200*time.Millisecond)
			require.Empty(t, refused(api)[refusedBefore:], "sizes of the events refused for exceeding %d bytes", proxyMax)
			require.NotNil(t, fin.Raw)
			msg := assertSucceeded(t, fin, ev)
			assert.LessOrEqual(t, len(fin.Raw), proxyMax)
			// The runtime may lose the end of a fast writer's output (containerd kept 294,912 of
			// 300,012 bytes once): the message ends as the pod's log does, not with END-OF-LOG.
			podLog := strings.TrimRight(taskLogs(t, ns, ev), "\n")
			assert.True(t, strings.HasSuffix(msg, podLog[max(0, len(podLog)-200):]), "the tail of the logs is kept; message ends %q", msg[max(0, len(msg)-200):])
			assert.Contains(t, msg, "\x1b[1;31m<&>\x01\x02\x1b[0m", "logs are kept as printed")
			assert.Contains(t, msg, "bytes truncated", "the cut is marked")
			labels, _ := fin.DataMap()["labels"].(map[string]any)
			assert.Equal(t, "17", labels["buildId"], "small labels are echoed")
			assert.Contains(t, eventsOf(api, ev), relStarted)
			relFigure(t, "finished_bytes", len(fin.Raw))
			relFigure(t, "message_bytes", len(msg))
			relFigure(t, "labels_echoed", len(labels))
		})
	}
}

// refused are the sizes of the events the stand-in refused as too large, in order.
func refused(api *keptnapi.Server) []int {
	var sizes []int
	for _, rq := range api.Requests() {
		if rq.Path == "/v1/event" && rq.Status == 413 {
			sizes = append(sizes, rq.Bytes)
		}
	}
	return sizes
}
