package lifecycle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
	"github.com/keptn-contrib/job-executor-service/handler"
	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
	"github.com/keptn-contrib/job-executor-service/handler/sink"
	"github.com/keptn-contrib/job-executor-service/jobs"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
	"github.com/keptn-contrib/job-executor-service/jobs/records/recordstest"
	"github.com/keptn-contrib/job-executor-service/jobs/run"
)

// fakeKubelet finishes every Job created in the fake cluster: Failed for tasks named in fail,
// Complete otherwise. It stands in for the controller-manager and kubelet.
func fakeKubelet(t *testing.T, client *fake.Clientset, fail map[string]bool) {
	t.Helper()
	w, err := client.BatchV1().Jobs("").Watch(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	go func() {
		for ev := range w.ResultChan() {
			job, ok := ev.Object.(*batchv1.Job)
			if !ok || ev.Type != watch.Added {
				continue
			}
			now := metav1.Now()
			cond := batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now}
			if fail[job.Annotations[jobs.AnnotationTaskName]] {
				cond = batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded",
					Message: "Job has reached the specified backoff limit", LastTransitionTime: now}
			} else {
				job.Status.CompletionTime = &now
			}
			job.Status.Conditions = append(job.Status.Conditions, cond)
			_, _ = client.BatchV1().Jobs(job.Namespace).UpdateStatus(context.Background(), job, metav1.UpdateOptions{})
		}
	}()
}

// flowKey is the record signing key (RECORD_SIGNING_KEY) of the flow's service instances.
var flowKey = []byte("flow-test-signing-key-0123456789abcdef")

type flowEnv struct {
	keptn  *keptnapi.Server
	client *fake.Clientset
	meta   *recordstest.Metadata // metadata view of client, for listing records
	proc   *lifecycle.Processor
	url    string

	deps lifecycle.Deps
	opts lifecycle.Options
}

// newFlow wires the real components (Keptn transport and source, loader, runner, records,
// HTTP sender, receiver) against a Keptn API stand-in and a fake Kubernetes clientset.
func newFlow(t *testing.T, fail map[string]bool, opts lifecycle.Options) *flowEnv {
	t.Helper()
	const token = "secret-token"
	api := keptnapi.New(keptnapi.Options{Token: token})
	apiSrv := httptest.NewServer(api.Handler())
	t.Cleanup(apiSrv.Close)

	transport, err := config.NewKeptnTransport(config.WithToken(token))
	require.NoError(t, err)
	src, err := config.NewKeptnSource(apiSrv.URL+"/resource-service", transport)
	require.NoError(t, err)
	loader := config.NewLoader(src)
	files := func(ctx context.Context, ref config.Ref, level config.Level, paths []string) (map[string][]byte, error) {
		return config.CollectFiles(ctx, src, ref, level, paths, jobs.MaxFilesBytes)
	}
	client := fake.NewClientset()
	recordstest.LimitConfigMapSize(client)
	fakeKubelet(t, client, fail)
	runner := run.New(client, zap.NewNop(), run.Options{})
	t.Cleanup(runner.Watcher().Stop)
	sender, err := sink.NewHTTP(apiSrv.URL+"/v1/event", sink.HTTPOptions{Transport: transport})
	require.NoError(t, err)
	opts.StartedViaSink = true
	opts.Settings.Namespace = "keptn"
	opts.Settings.InitImage = "job-executor-service:test"
	opts.Instance = "test-instance"
	deps := lifecycle.Deps{
		Loader: loader, Files: files, Runner: runner, Sender: sender, Log: zap.NewNop(),
	}
	f := &flowEnv{keptn: api, client: client, meta: recordstest.NewMetadata(client), deps: deps, opts: opts}
	f.deps.Records = f.store("test-instance", flowKey)
	f.restart(t)
	return f
}

// restart replaces the processor and receiver, as a new process would, keeping the cluster.
func (f *flowEnv) restart(t *testing.T) {
	f.proc = lifecycle.New(context.Background(), f.deps, f.opts)
	srv := httptest.NewServer(handler.NewServer(f.proc, zap.NewNop(), handler.ServerOptions{}).Router())
	t.Cleanup(srv.Close)
	f.url = srv.URL
}

// send delivers e and waits until the processor is idle.
func (f *flowEnv) send(t *testing.T, e cloudevents.Event) *cloudevents.Event {
	t.Helper()
	reply := f.deliver(t, e)
	f.proc.Wait()
	return reply
}

// deliver posts e and returns the reply; safe to call concurrently (it does not Wait, which
// must not overlap the Add of another delivery's worker).
func (f *flowEnv) deliver(t *testing.T, e cloudevents.Event) *cloudevents.Event {
	t.Helper()
	c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(f.url))
	require.NoError(t, err)
	reply, res := c.Request(context.Background(), e)
	require.True(t, cloudevents.IsACK(res), "delivery: %v", res)
	return reply
}

func (f *flowEnv) events(t *testing.T) []keptnapi.Event {
	t.Helper()
	return f.keptn.Events()
}

const flowConfig = `apiVersion: v2
actions:
  - name: "Deploy"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks:
      - name: "prepare"
        image: "alpine"
        files: [scripts/run.sh]
        cmd: ["sh", "/keptn/scripts/run.sh"]
      - name: "apply"
        image: "alpine"
      - name: "verify"
        image: "alpine"
  - name: "Notify"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks: [{name: "notify", image: "alpine"}]
  - name: "Audit"
    silent: true
    events: [{name: "sh.keptn.event.*"}]
    tasks: [{name: "audit", image: "alpine"}]
`

func TestFlow(t *testing.T) {
	tests := []struct {
		name        string
		fail        map[string]bool
		noConfig    bool
		config      string // instead of flowConfig
		opts        lifecycle.Options
		wantTypes   []string
		wantStatus  string
		wantJobs    []string
		wantMessage []string
		notMessage  []string
	}{
		{
			name:      "all actions succeed, silent action reports nothing",
			wantTypes: []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, wantStatus: "succeeded",
			wantJobs:    []string{"prepare", "apply", "verify", "notify", "audit"},
			wantMessage: []string{"Task 'prepare' finished successfully!", "Task 'verify' finished successfully!", "Task 'notify' finished successfully!"},
			notMessage:  []string{"audit"},
		},
		{
			name: "a failing task stops its action and fails the event", fail: map[string]bool{"apply": true},
			wantTypes: []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, wantStatus: "errored",
			wantJobs:    []string{"prepare", "apply", "notify", "audit"},
			wantMessage: []string{"Task 'apply' failed: BackoffLimitExceeded: Job has reached the specified backoff limit\n", "Task 'notify' finished successfully!"},
			notMessage:  []string{"verify"},
		},
		{
			name: "a missing task file fails its action and the event", config: strings.Replace(flowConfig, "scripts/run.sh]", "scripts/missing.sh]", 1),
			wantTypes: []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, wantStatus: "errored",
			wantJobs:    []string{"notify", "audit"},
			wantMessage: []string{"Task 'prepare' failed: FilesUnavailable: file or directory scripts/missing.sh not found", "Task 'notify' finished successfully!"},
			notMessage:  []string{"apply", "verify"},
		},
		{
			name: "missing config: error log only", noConfig: true,
			wantTypes: []string{"sh.keptn.log.error"},
		},
		{
			name: "missing config with ALWAYS_SEND_FINISHED_EVENT", noConfig: true, opts: lifecycle.Options{AlwaysSendFinished: true},
			wantTypes: []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, wantStatus: "errored",
			wantMessage: []string{"job/config.yaml"},
		},
		{
			name: "invalid config: error log only, naming the line", config: strings.Replace(flowConfig, "files: [scripts/run.sh]", "imagePulPolicy: Always", 1),
			wantTypes:   []string{"sh.keptn.log.error"},
			wantMessage: []string{"invalid job config: job/config.yaml at service level (sockshop/dev/carts)", `line 8: unknown field "imagePulPolicy"`},
		},
		{
			name: "invalid config with ALWAYS_SEND_FINISHED_EVENT", config: strings.Replace(flowConfig, "files: [scripts/run.sh]", "imagePulPolicy: Always", 1),
			opts:      lifecycle.Options{AlwaysSendFinished: true},
			wantTypes: []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, wantStatus: "errored",
			wantMessage: []string{`line 8: unknown field "imagePulPolicy"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlow(t, tc.fail, tc.opts)
			svc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}
			if !tc.noConfig {
				cfg := flowConfig
				if tc.config != "" {
					cfg = tc.config
				}
				f.keptn.Put("c1", svc, "job/config.yaml", []byte(cfg))
				f.keptn.Put("c1", svc, "scripts/run.sh", []byte("echo hi\n"))
			} else {
				f.keptn.AddScope("c1", svc)
			}
			in := lct.Event(t, "sh.keptn.event.deployment.triggered", nil)
			in.SetExtension("gitcommitid", "c1")
			reply := f.send(t, in)

			var types []string
			for _, e := range f.events(t) {
				types = append(types, e.TypeName())
				assert.Equal(t, in.ID(), e.Triggeredid)
				assert.Equal(t, "08735340-6f9e-4b32-97ff-3b6c292bc50i", e.Shkeptncontext)
				assert.Equal(t, keptn.Source, *e.Source)
			}
			require.Equal(t, tc.wantTypes, types)
			if strings.HasSuffix(tc.wantTypes[0], ".started") {
				require.NotNil(t, reply)
				assert.Equal(t, f.events(t)[0].ID, reply.ID(), "the reply is the .started event sent to Keptn")
			}

			list, err := f.client.BatchV1().Jobs("keptn").List(context.Background(), metav1.ListOptions{})
			require.NoError(t, err)
			var ran []string
			for _, j := range list.Items {
				ran = append(ran, j.Annotations[jobs.AnnotationTaskName])
			}
			assert.ElementsMatch(t, tc.wantJobs, ran)
			d := f.events(t)[len(f.events(t))-1].DataMap()
			if tc.wantStatus != "" {
				assert.Equal(t, tc.wantStatus, d["status"])
			}
			for _, m := range tc.wantMessage {
				assert.Contains(t, d["message"], m)
			}
			for _, m := range tc.notMessage {
				assert.NotContains(t, d["message"], m)
			}
		})
	}
}

// TestFlowRedeliveryCreatesNothingNew delivers one event many times at once: one set of
// Jobs, one .started, one .finished.
func TestFlowRedeliveryCreatesNothingNew(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	in := f.deployment(t)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { f.deliver(t, in) })
	}
	wg.Wait()
	f.proc.Wait()
	var types []string
	for _, e := range f.events(t) {
		types = append(types, e.TypeName())
	}
	assert.Equal(t, []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, types)
	list, err := f.client.BatchV1().Jobs("keptn").List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 5)
}

// deployment publishes flowConfig and its file at commit c1 and returns a matching event.
func (f *flowEnv) deployment(t *testing.T) cloudevents.Event {
	svc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}
	f.keptn.Put("c1", svc, "job/config.yaml", []byte(flowConfig))
	f.keptn.Put("c1", svc, "scripts/run.sh", []byte("echo hi\n"))
	in := lct.Event(t, "sh.keptn.event.deployment.triggered", nil)
	in.SetExtension("gitcommitid", "c1")
	return in
}

// store is the event record store of the service instance named instance, in the flow's
// cluster, signing with key.
func (f *flowEnv) store(instance string, key []byte) *records.Store {
	return records.New(f.client, f.meta, "keptn", instance, key)
}

// record stores an unfinished event record of e, matched against flowConfig, as instance.
func (f *flowEnv) record(t *testing.T, instance string, e cloudevents.Event) string {
	t.Helper()
	in, err := keptn.Decode(e)
	require.NoError(t, err)
	_, err = f.store(instance, flowKey).Create(context.Background(), records.Record{Name: in.RecordName(), Event: in.Raw(), Config: []byte(flowConfig), Level: "service"})
	require.NoError(t, err)
	return in.RecordName()
}

// liveLease makes instance alive: it renewed its Lease just now.
func (f *flowEnv) liveLease(t *testing.T, instance string) {
	t.Helper()
	now, secs := metav1.NewMicroTime(time.Now()), int32(30)
	_, err := f.client.CoordinationV1().Leases("keptn").Create(context.Background(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: jobs.LeaseName(instance)},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &instance, RenewTime: &now, LeaseDurationSeconds: &secs},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// recordReads are the reads of event records (ConfigMaps named *-ev) through the typed
// client, which returns whole objects with their data: "list" or "get <name>".
func (f *flowEnv) recordReads() []string {
	var reads []string
	for _, a := range f.client.Actions() {
		if a.GetResource().Resource != "configmaps" {
			continue
		}
		switch {
		case a.GetVerb() == "list":
			reads = append(reads, "list")
		case a.GetVerb() == "get" && strings.HasSuffix(a.(k8stesting.GetAction).GetName(), "-ev"):
			reads = append(reads, "get "+a.(k8stesting.GetAction).GetName())
		}
	}
	return reads
}

func (f *flowEnv) jobCount(t *testing.T) int {
	t.Helper()
	list, err := f.client.BatchV1().Jobs("keptn").List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	return len(list.Items)
}

func (f *flowEnv) types() []string {
	var types []string
	for _, e := range f.keptn.Events() {
		types = append(types, e.TypeName())
	}
	return types
}

// TestFlowRedeliveryAfterRestart: a new process knows the event from its record in the
// cluster and neither runs nor reports it again.
func TestFlowRedeliveryAfterRestart(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	in := f.deployment(t)
	first := f.send(t, in)
	require.Equal(t, 5, f.jobCount(t))

	f.restart(t)
	again := f.send(t, in)
	require.NotNil(t, again)
	assert.Equal(t, first.Type(), again.Type())
	assert.Equal(t, 5, f.jobCount(t), "no new Job")
	assert.Equal(t, []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, f.types())
}

// TestFlowRecover: the process died after storing the record, sending .started and creating
// a Job; the next process adopts that Job, creates the rest and sends one .finished.
func TestFlowRecover(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	svc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}
	f.keptn.Put("c1", svc, "scripts/run.sh", []byte("echo hi\n"))
	in := lct.Event(t, "sh.keptn.event.deployment.triggered", nil)
	in.SetExtension("gitcommitid", "c1")
	decoded, err := keptn.Decode(in)
	require.NoError(t, err)
	store := f.store("test-instance", flowKey)
	_, err = store.Create(context.Background(), records.Record{Name: decoded.RecordName(), Event: decoded.Raw(), Config: []byte(flowConfig), Level: "service"})
	require.NoError(t, err)
	require.NoError(t, store.MarkStarted(context.Background(), decoded.RecordName(), true))
	// One Job exists already (the "apply" task's); it completes while no service is up.
	loaded, err := config.NewLoaded([]byte(flowConfig), config.LevelService)
	require.NoError(t, err)
	built, err := jobs.Build(f.opts.Settings, jobs.TaskInput{
		Event:  jobs.EventInfo{ID: in.ID(), Source: in.Source(), Type: in.Type(), Project: "sockshop", Stage: "dev", Service: "carts", Raw: decoded.Raw()},
		Action: "Deploy", ActionIdx: 0, Task: loaded.Config.Actions[0].Tasks[1], TaskIdx: 1, ConfigHash: jobs.ConfigHash(loaded.Raw),
	})
	require.NoError(t, err)
	_, err = f.client.BatchV1().Jobs("keptn").Create(context.Background(), built.Job, metav1.CreateOptions{})
	require.NoError(t, err)

	n, err := f.proc.Recover(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	f.proc.Wait()
	assert.Equal(t, []string{"sh.keptn.event.deployment.finished"}, f.types(), ".started was sent before the crash")
	assert.Equal(t, 5, f.jobCount(t))
	require.NoError(t, store.Unfinished(context.Background(), func(r records.Record) error {
		t.Errorf("record %s left unfinished", r.Name)
		return nil
	}))
	d := f.keptn.Events()[0].DataMap()
	assert.Equal(t, "succeeded", d["status"])
	assert.Contains(t, d["message"], "Task 'verify' finished successfully!")

	// A second recovery finds nothing to do.
	f.restart(t)
	n, err = f.proc.Recover(context.Background())
	require.NoError(t, err)
	assert.Zero(t, n)
}

// TestFlowBurst sends 500 distinct events at once into a small queue: some deliveries are
// turned away with 429 and delivered again, as Knative does; none is lost and each gets
// exactly one .finished.
func TestFlowBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("burst test")
	}
	const events = 500
	f := newFlow(t, nil, lifecycle.Options{MaxQueuedEvents: 100, MaxConcurrentActions: 10})
	svc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}
	f.keptn.Put("c1", svc, "job/config.yaml", []byte(lct.HelloConfig))
	var busy atomic.Int32
	var wg sync.WaitGroup
	ids := make(chan int, events)
	for i := range events {
		ids <- i
	}
	close(ids)
	for range 50 {
		wg.Go(func() {
			for i := range ids {
				in := lct.Event(t, "sh.keptn.event.test.triggered", nil)
				in.SetID(fmt.Sprint("burst-", i))
				in.SetExtension("gitcommitid", "c1")
				body, err := json.Marshal(in)
				require.NoError(t, err)
				for {
					res, err := http.Post(f.url, "application/cloudevents+json", bytes.NewReader(body))
					require.NoError(t, err)
					res.Body.Close()
					if res.StatusCode != http.StatusTooManyRequests {
						require.Equal(t, http.StatusOK, res.StatusCode)
						break
					}
					busy.Add(1)
					assert.NotEmpty(t, res.Header.Get("Retry-After"))
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	f.proc.Wait()
	finished := map[string]int{}
	for _, e := range f.keptn.Events() {
		if e.TypeName() == "sh.keptn.event.test.finished" {
			finished[e.Triggeredid]++
			assert.Equal(t, "succeeded", e.DataMap()["status"])
		}
	}
	assert.Len(t, finished, events, "every event got its .finished")
	for id, n := range finished {
		assert.Equal(t, 1, n, id)
	}
	assert.Equal(t, events, f.jobCount(t))
	t.Logf("%d events, %d deliveries answered 429 and retried", events, busy.Load())
}

// TestFlowRecoverReadsWhatItResumes: finding unfinished events reads record metadata only;
// the whole record (event and config) is read only for the events that are resumed, not for
// those a live instance runs nor for finished ones, so a large backlog costs no memory.
func TestFlowRecoverReadsWhatItResumes(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	in := f.deployment(t)
	var resumed []string
	for i := range 3 {
		e := in.Clone()
		e.SetID(fmt.Sprint("orphan-", i))
		resumed = append(resumed, "get "+f.record(t, "dead-pod", e))
	}
	f.liveLease(t, "live-pod")
	for i := range 4 {
		e := in.Clone()
		e.SetID(fmt.Sprint("running-elsewhere-", i))
		f.record(t, "live-pod", e)
	}
	for i := range 2 {
		e := in.Clone()
		e.SetID(fmt.Sprint("finished-", i))
		require.NoError(t, f.store("dead-pod", flowKey).MarkFinished(context.Background(), f.record(t, "dead-pod", e), time.Now()))
	}
	f.client.ClearActions()

	n, err := f.proc.Recover(context.Background())
	require.NoError(t, err)
	f.proc.Wait()
	assert.Equal(t, 3, n)
	assert.ElementsMatch(t, resumed, f.recordReads())
	assert.Len(t, f.types(), 6, ".started and .finished of each resumed event")

	f.client.ClearActions()
	n, err = f.proc.ResumeOrphans(context.Background())
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Empty(t, f.recordReads(), "nothing to resume: no record read")
}

// TestFlowMaintainBoundsFinishedRecords: Maintain keeps at most MaxFinishedRecords finished
// records, the newest, even within the de-duplication retention; unfinished ones all stay.
func TestFlowMaintainBoundsFinishedRecords(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{MaxFinishedRecords: 2})
	in := f.deployment(t)
	store := f.store("test-instance", flowKey)
	var finished []string
	for i := range 5 {
		e := in.Clone()
		e.SetID(fmt.Sprint("finished-", i))
		name := f.record(t, "test-instance", e)
		require.NoError(t, store.MarkFinished(context.Background(), name, time.Now().Add(time.Duration(i-10)*time.Minute)))
		finished = append(finished, name)
	}
	unfinished := f.record(t, "test-instance", in) // this instance's own: running, not resumed

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.proc.Maintain(ctx, time.Hour) }()
	left := func() []string {
		list, err := f.client.CoreV1().ConfigMaps("keptn").List(context.Background(), metav1.ListOptions{})
		require.NoError(t, err)
		var names []string
		for _, cm := range list.Items {
			names = append(names, cm.Name)
		}
		return names
	}
	require.Eventually(t, func() bool { return len(left()) == 3 }, 10*time.Second, 5*time.Millisecond)
	stop()
	<-done
	assert.ElementsMatch(t, []string{finished[3], finished[4], unfinished}, left())
}

// sized is e with data padded so that e in structured mode takes exactly n bytes.
func sized(t *testing.T, e cloudevents.Event, n int) cloudevents.Event {
	t.Helper()
	var data map[string]any
	require.NoError(t, json.Unmarshal(e.Data(), &data))
	data["padding"] = ""
	out := e.Clone()
	require.NoError(t, out.SetData(cloudevents.ApplicationJSON, data))
	body, err := json.Marshal(out)
	require.NoError(t, err)
	require.Less(t, len(body), n)
	data["padding"] = strings.Repeat("x", n-len(body))
	require.NoError(t, out.SetData(cloudevents.ApplicationJSON, data))
	body, err = json.Marshal(out)
	require.NoError(t, err)
	require.Len(t, body, n)
	return out
}

// post delivers e in structured mode and returns the answer's status, Retry-After and error body.
func (f *flowEnv) post(t *testing.T, e cloudevents.Event) (status int, retryAfter string, body map[string]string) {
	t.Helper()
	b, err := json.Marshal(e)
	require.NoError(t, err)
	res, err := http.Post(f.url, "application/cloudevents+json", bytes.NewReader(b))
	require.NoError(t, err)
	defer res.Body.Close()
	if res.StatusCode >= 400 {
		require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
	}
	return res.StatusCode, res.Header.Get("Retry-After"), body
}

// TestFlowLargestEventIsStored: the largest request the receiver accepts by default is an
// event whose record fits in a ConfigMap, so it runs; it is not answered 503 (and delivered
// again forever) because its record cannot be stored.
func TestFlowLargestEventIsStored(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	e := sized(t, f.deployment(t), handler.DefaultMaxBodyBytes)
	status, _, body := f.post(t, e)
	require.Equal(t, http.StatusOK, status, body)
	f.proc.Wait()
	assert.Equal(t, 5, f.jobCount(t))
	assert.Equal(t, []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, f.types())
}

// TestFlowEventTooLargeForRecord: an event the receiver accepts but whose record would not
// fit in a ConfigMap (here: with a matching action of 200 KiB) is refused with 413 and a JSON
// body naming the limit, not 503 with Retry-After, which has Knative or the distributor
// deliver it again forever. Nothing runs, nothing is sent, nothing is stored.
func TestFlowEventTooLargeForRecord(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	e := f.tooLargeForRecord(t)
	status, retryAfter, body := f.post(t, e)
	assert.Equal(t, http.StatusRequestEntityTooLarge, status)
	assert.Empty(t, retryAfter, "delivering again cannot help")
	assert.Equal(t, "too_large", body["error"])
	assert.Contains(t, body["message"], "1048576 bytes")
	f.proc.Wait()
	assert.Zero(t, f.jobCount(t))
	assert.Empty(t, f.types())
	cms, err := f.client.CoreV1().ConfigMaps("keptn").List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, cms.Items, "no record")
}

// acceptedDuringOutage makes the resource-service answer 503 until until and delivers e: it is
// taken in (202), with nothing to reply yet.
func (f *flowEnv) acceptedDuringOutage(t *testing.T, e cloudevents.Event, until time.Time) {
	t.Helper()
	f.keptn.FailUntil(keptnapi.ResourceRequests, until, http.StatusServiceUnavailable)
	status, _, body := f.post(t, e)
	require.Equal(t, http.StatusAccepted, status, body)
}

// tooLargeForRecord is an event that fits in a request but whose record cannot also hold the
// actions it matches: the published config gets an action of 200 KiB.
func (f *flowEnv) tooLargeForRecord(t *testing.T) cloudevents.Event {
	t.Helper()
	e := sized(t, f.deployment(t), handler.DefaultMaxBodyBytes-1024)
	script := strings.Repeat("echo large;", (200<<10)/len("echo large;"))
	f.keptn.Put("c1", keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}, "job/config.yaml", []byte(flowConfig+`
  - name: "Large"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks: [{name: "large", image: "alpine", args: ["`+script+`"]}]
`))
	return e
}

// TestFlowRecordKeepsWhatRecoveryNeeds: an event record holds the event and the actions it
// matched, not the rest of the job config; recovery from it creates the very Jobs the first
// delivery did (names from the actions' places in the whole config, the whole config's hash).
func TestFlowRecordKeepsWhatRecoveryNeeds(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	in := f.deployment(t)
	unrelated := strings.Repeat("echo unrelated;", 1000)
	f.keptn.Put("c1", keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}, "job/config.yaml", []byte(strings.Replace(flowConfig, "actions:\n", `actions:
  - name: "Unrelated"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks: [{name: "unrelated", image: "alpine", args: ["`+unrelated+`"]}]
`, 1)))
	f.send(t, in)
	jobLabels := func() map[string]string {
		list, err := f.client.BatchV1().Jobs("keptn").List(context.Background(), metav1.ListOptions{})
		require.NoError(t, err)
		out := map[string]string{}
		for _, j := range list.Items {
			out[j.Name] = j.Labels[jobs.LabelConfigHash]
		}
		return out
	}
	first := jobLabels()
	require.Len(t, first, 5)

	decoded, err := keptn.Decode(in)
	require.NoError(t, err)
	cm, err := f.client.CoreV1().ConfigMaps("keptn").Get(context.Background(), decoded.RecordName(), metav1.GetOptions{})
	require.NoError(t, err)
	size := 0
	for k, v := range cm.BinaryData {
		assert.False(t, strings.Contains(string(v), "unrelated"), "%s holds an action the event did not match", k)
		size += len(v)
	}
	for _, v := range cm.Data {
		size += len(v)
	}
	assert.Less(t, size, len(decoded.Raw())+len(flowConfig)*2, "the event and the matched actions")

	// The process died with the event unfinished and its Jobs gone.
	for name := range first {
		require.NoError(t, f.client.BatchV1().Jobs("keptn").Delete(context.Background(), name, metav1.DeleteOptions{}))
	}
	_, err = f.client.CoreV1().ConfigMaps("keptn").Patch(context.Background(), cm.Name, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+records.LabelFinished+`":"false"},"annotations":{"`+records.AnnotationFinishedAt+`":null}}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	f.restart(t)
	n, err := f.proc.Recover(context.Background())
	require.NoError(t, err)
	f.proc.Wait()
	assert.Equal(t, 1, n)
	assert.Equal(t, first, jobLabels(), "the same Jobs, with the same config hash")
}

// TestFlowOrphans: after start-up, events of instances whose lease expired are taken over;
// those of live instances are left to them.
func TestFlowOrphans(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	in := f.deployment(t)
	f.record(t, "dead-pod", in)
	other := in.Clone()
	other.SetID("owned-by-a-live-instance")
	f.record(t, "live-pod", other)
	f.liveLease(t, "live-pod")

	n, err := f.proc.ResumeOrphans(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, n, "only the dead instance's event")
	f.proc.Wait()
	var triggered []string
	for _, e := range f.keptn.Events() {
		triggered = append(triggered, e.TypeName()+" "+e.Triggeredid)
	}
	assert.Equal(t, []string{
		"sh.keptn.event.deployment.started " + in.ID(),
		"sh.keptn.event.deployment.finished " + in.ID(),
	}, triggered)
}

// TestFlowClusterUnreachableSaysSo: when the event record cannot be stored because the API
// server cannot be reached, the answer is a 503 that names the cluster, not the config source
// (which was read fine), and the event can be delivered again.
func TestFlowClusterUnreachableSaysSo(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	f.client.PrependReactor("create", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(`Post "https://10.96.0.1/api/v1/namespaces/keptn/configmaps": dial tcp 10.96.0.1:443: connect: connection refused`)
	})
	status, retryAfter, body := f.post(t, f.deployment(t))
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.NotEmpty(t, retryAfter, "deliver again later")
	assert.Equal(t, "cluster_unavailable", body["error"])
	assert.Contains(t, body["message"], "storing event record")
	assert.NotContains(t, body["message"], "config source")
	assert.Zero(t, f.jobCount(t))
	assert.Empty(t, f.types(), "nothing was sent")
}
