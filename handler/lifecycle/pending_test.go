package lifecycle_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// The distributor gives a delivery 5 s and then drops the event: when .started goes through
// the sender, a config source outage must not be answered 503 but kept and looked at again.

var startedFinished = []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}

// waitTypes waits until the events sent to Keptn are want, then until the processor is idle.
func (f *flowEnv) waitTypes(t *testing.T, want []string, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return len(f.types()) >= len(want) }, within, 20*time.Millisecond, "sent so far: %v", f.types())
	f.proc.Wait()
	assert.Equal(t, want, f.types())
}

// unfinishedRecords are the names of the event records not marked finished.
func (f *flowEnv) unfinishedRecords(t *testing.T) []string {
	t.Helper()
	var names []string
	require.NoError(t, f.store("test-instance", flowKey).Unfinished(context.Background(), func(r records.Record) error {
		names = append(names, r.Name)
		return nil
	}))
	return names
}

// resourceRefusals counts the resource-service requests answered 503.
func (f *flowEnv) resourceRefusals() int {
	n := 0
	for _, r := range f.keptn.Requests() {
		if r.Status == http.StatusServiceUnavailable {
			n++
		}
	}
	return n
}

// TestFlowConfigOutageThenRecovery: the event arrives while the resource-service answers 503;
// it is accepted (202, nothing to reply yet) and runs once the config can be read.
func TestFlowConfigOutageThenRecovery(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{ConfigPendingTimeout: time.Minute})
	in := f.deployment(t)
	f.acceptedDuringOutage(t, in, time.Now().Add(1500*time.Millisecond))
	assert.Equal(t, []string{recordName(t, in)}, f.unfinishedRecords(t), "kept in its event record while the config is pending")

	f.waitTypes(t, startedFinished, 30*time.Second)
	assert.NotZero(t, f.resourceRefusals(), "the config was read during the outage")
	assert.Equal(t, 5, f.jobCount(t))
	assert.Equal(t, "succeeded", f.keptn.Events()[1].DataMap()["status"])
	assert.Empty(t, f.unfinishedRecords(t), "the record is finished")
}

// TestFlowConfigOutagePastBound: an outage longer than ConfigPendingTimeout is reported to
// Keptn as a config problem is, naming the outage; nothing runs.
func TestFlowConfigOutagePastBound(t *testing.T) {
	for _, tc := range []struct {
		name       string
		always     bool
		want       []string
		wantStatus string
	}{
		{name: "log.error", want: []string{"sh.keptn.log.error"}},
		{name: "ALWAYS_SEND_FINISHED_EVENT", always: true, want: startedFinished, wantStatus: "errored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlow(t, nil, lifecycle.Options{ConfigPendingTimeout: time.Second, AlwaysSendFinished: tc.always})
			in := f.deployment(t)
			start := time.Now()
			f.acceptedDuringOutage(t, in, time.Now().Add(time.Hour))

			f.waitTypes(t, tc.want, 30*time.Second)
			assert.GreaterOrEqual(t, time.Since(start), time.Second, "not reported before the bound")
			d := f.keptn.Events()[len(tc.want)-1].DataMap()
			assert.Contains(t, d["message"], "resource-service")
			assert.Contains(t, d["message"], "unreachable for 1s")
			assert.Contains(t, d["message"], "503")
			if tc.wantStatus != "" {
				assert.Equal(t, tc.wantStatus, d["status"])
			}
			assert.Zero(t, f.jobCount(t))
			assert.Empty(t, f.unfinishedRecords(t), "the record is finished: never retried forever")
		})
	}
}

// TestFlowConfigOutageRedelivery: deliveries of the same event while its config is pending,
// to this process and to a new one, are answered without running it twice.
func TestFlowConfigOutageRedelivery(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{ConfigPendingTimeout: time.Minute})
	in := f.deployment(t)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { f.acceptedDuringOutage(t, in, time.Now().Add(time.Hour)) })
	}
	wg.Wait()
	// Another instance (same cluster, same records) gets it too, and finds the record.
	other := lifecycle.New(context.Background(), f.deps, f.opts)
	reply, err := other.Accept(context.Background(), in)
	require.NoError(t, err)
	assert.Nil(t, reply)
	other.Wait()

	f.keptn.FailUntil(keptnapi.ResourceRequests, time.Time{}, http.StatusServiceUnavailable)
	f.waitTypes(t, startedFinished, 30*time.Second)
	assert.Equal(t, 5, f.jobCount(t))
	status, _, _ := f.post(t, in)
	assert.Equal(t, http.StatusAccepted, status, "a later redelivery is answered as the first one")
	f.proc.Wait()
	assert.Equal(t, startedFinished, f.types(), "nothing more")
}

// TestFlowConfigOutageRestart: the process stops while the config is pending; the next one
// resumes the event from its record and runs it once the config can be read.
func TestFlowConfigOutageRestart(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{ConfigPendingTimeout: time.Minute})
	in := f.deployment(t)
	f.keptn.FailUntil(keptnapi.ResourceRequests, time.Now().Add(time.Hour), http.StatusServiceUnavailable)
	ctx, stop := context.WithCancel(context.Background())
	first := lifecycle.New(ctx, f.deps, f.opts)
	reply, err := first.Accept(context.Background(), in)
	require.NoError(t, err)
	assert.Nil(t, reply)
	require.Eventually(t, func() bool { return f.resourceRefusals() >= 2 }, 10*time.Second, 20*time.Millisecond, "looked again")
	stop()
	first.Wait()
	require.Equal(t, []string{recordName(t, in)}, f.unfinishedRecords(t))
	assert.Empty(t, f.types())

	f.restart(t)
	n, err := f.proc.Recover(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the pending event is resumed")
	f.keptn.FailUntil(keptnapi.ResourceRequests, time.Time{}, http.StatusServiceUnavailable)
	f.waitTypes(t, startedFinished, 30*time.Second)
	assert.Equal(t, 5, f.jobCount(t))
	assert.Empty(t, f.unfinishedRecords(t))

	// The record now holds what the event matched: a second recovery finds nothing.
	f.restart(t)
	n, err = f.proc.Recover(context.Background())
	require.NoError(t, err)
	assert.Zero(t, n)
}

// TestFlowConfigOutageUnmatched: once the config is read, an event no action matches sends
// nothing, and its record is finished.
func TestFlowConfigOutageUnmatched(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{ConfigPendingTimeout: time.Minute})
	orders := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "orders"}
	f.keptn.Put("c1", orders, "job/config.yaml", []byte(lct.ThreeTasks)) // deployment.triggered only
	in := lct.Event(t, "sh.keptn.event.test.triggered", map[string]any{"service": "orders"})
	in.SetExtension("gitcommitid", "c1")
	f.acceptedDuringOutage(t, in, time.Now().Add(500*time.Millisecond))
	require.Eventually(t, func() bool { return len(f.unfinishedRecords(t)) == 0 }, 30*time.Second, 20*time.Millisecond)
	f.proc.Wait()
	assert.Empty(t, f.types())
	assert.Zero(t, f.jobCount(t))
}

// TestFlowConfigOutageKnative: where the HTTP reply is .started (Knative), the answer stays
// 503: the Broker delivers again, and nothing is kept.
func TestFlowConfigOutageKnative(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{ConfigPendingTimeout: time.Minute})
	f.opts.StartedViaSink = false
	f.restart(t)
	in := f.deployment(t)
	f.keptn.FailUntil(keptnapi.ResourceRequests, time.Now().Add(time.Hour), http.StatusServiceUnavailable)
	status, _, body := f.post(t, in)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "config_unavailable", body["error"])
	f.proc.Wait()
	assert.Empty(t, f.unfinishedRecords(t))
	assert.Empty(t, f.types())
}

// TestFlowStatusConfigPending: the status route shows a pending event as such, then as any
// other once its config was read.
func TestFlowStatusConfigPending(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{ConfigPendingTimeout: time.Minute})
	withStatus(t, f)
	in := f.deployment(t)
	f.acceptedDuringOutage(t, in, time.Now().Add(time.Hour))
	st := statusOf(t, f, func(ev lifecycle.EventStatus) bool { return ev.State == lifecycle.EventConfigPending })
	assert.Empty(t, st.Actions, "no actions known yet")
	assert.False(t, st.StartedSent)

	f.keptn.FailUntil(keptnapi.ResourceRequests, time.Time{}, http.StatusServiceUnavailable)
	f.waitTypes(t, startedFinished, 30*time.Second)
	st = statusOf(t, f, func(ev lifecycle.EventStatus) bool { return ev.State == lifecycle.EventFinished })
	assert.Len(t, st.Actions, 3, "the matched actions, from the resolved record")
}

// statusOf waits until the status of flowContext shows one event for which ok holds.
func statusOf(t *testing.T, f *flowEnv, ok func(lifecycle.EventStatus) bool) lifecycle.EventStatus {
	t.Helper()
	var st *lifecycle.Status
	var err error
	require.Eventually(t, func() bool {
		st, err = f.proc.Status(context.Background(), flowContext, "")
		return err == nil && len(st.Events) == 1 && ok(st.Events[0])
	}, 10*time.Second, 20*time.Millisecond, "status: %+v, %v", st, err)
	return st.Events[0]
}

// TestFlowConfigOutageEventTooLargeForRecord: a pending event whose record cannot also hold the
// actions it matched (a delivery would have got 413) is reported, never retried.
func TestFlowConfigOutageEventTooLargeForRecord(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{ConfigPendingTimeout: time.Minute})
	e := f.tooLargeForRecord(t)
	f.acceptedDuringOutage(t, e, time.Now().Add(500*time.Millisecond))
	f.waitTypes(t, []string{"sh.keptn.log.error"}, 30*time.Second)
	assert.Contains(t, f.keptn.Events()[0].DataMap()["message"], "1048576 bytes")
	assert.Zero(t, f.jobCount(t))
	assert.Empty(t, f.unfinishedRecords(t))
}
