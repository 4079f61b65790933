package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keptn-contrib/job-executor-service/config"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

// bound limits how long a test waits for something that should happen promptly; it
// only fails tests, it never decides an outcome.
const bound = 20 * time.Second

type runEnv struct {
	t       *testing.T
	client  *fake.Clientset
	runner  *Runner
	watches chan string
	ctx     context.Context
}

func newRunEnv(t *testing.T, opts Options, objs ...runtime.Object) *runEnv {
	client := fake.NewClientset(objs...)
	watches := make(chan string, 16)
	// Record when the informers' watches are registered with the tracker: changes
	// made before that would be missed by the fake (it has no resourceVersions).
	client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		var lo metav1.ListOptions
		if wa, ok := a.(k8stesting.WatchActionImpl); ok {
			lo = wa.ListOptions
		}
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace(), lo)
		if err != nil {
			return true, nil, err
		}
		watches <- a.GetResource().Resource
		return true, w, nil
	})
	r := New(client, zaptest.NewLogger(t), opts)
	t.Cleanup(r.Watcher().Stop)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	t.Cleanup(cancel)
	return &runEnv{t: t, client: client, runner: r, watches: watches, ctx: ctx}
}

// start runs b in the background and returns the Job once it exists and the informers
// watch, so that the test may drive it.
func (e *runEnv) start(b *jobs.Built) (*batchv1.Job, <-chan jobs.Result) {
	e.t.Helper()
	jw, err := e.client.BatchV1().Jobs(b.Namespace).Watch(e.ctx, metav1.ListOptions{})
	require.NoError(e.t, err)
	defer jw.Stop()
	<-e.watches // the test's own watch
	done := make(chan jobs.Result, 1)
	go func() { done <- e.runner.Run(e.ctx, b) }()
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case r := <-e.watches:
			seen[r] = true
		case <-e.ctx.Done():
			e.t.Fatalf("informers did not start watching: %v", seen)
		}
	}
	job := e.waitJob(jw, b.Job.Name)
	return job, done
}

func (e *runEnv) waitJob(jw watch.Interface, name string) *batchv1.Job {
	e.t.Helper()
	for {
		select {
		case ev := <-jw.ResultChan():
			if j, ok := ev.Object.(*batchv1.Job); ok && j.Name == name && ev.Type == watch.Added {
				return j
			}
		case <-e.ctx.Done():
			e.t.Fatal("job was not created")
		}
	}
}

func (e *runEnv) result(done <-chan jobs.Result) jobs.Result {
	e.t.Helper()
	select {
	case r := <-done:
		return r
	case <-e.ctx.Done():
		e.t.Fatal("Run did not return")
		return jobs.Result{}
	}
}

func (e *runEnv) setCondition(job *batchv1.Job, typ batchv1.JobConditionType, reason, msg string, edit ...func(*batchv1.JobStatus)) {
	e.t.Helper()
	job = job.DeepCopy()
	now := metav1.Now()
	job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{
		Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: msg, LastTransitionTime: now,
	})
	if typ == batchv1.JobComplete {
		job.Status.CompletionTime = &now
	}
	// Count the pods as the Job controller does before it sets a condition.
	list, err := e.client.Tracker().List(podsGVR, corev1.SchemeGroupVersion.WithKind("Pod"), job.Namespace)
	require.NoError(e.t, err)
	job.Status.Active, job.Status.Succeeded, job.Status.Failed = 0, 0, 0
	for _, p := range list.(*corev1.PodList).Items {
		switch p.Status.Phase {
		case corev1.PodSucceeded:
			job.Status.Succeeded++
		case corev1.PodFailed:
			job.Status.Failed++
		default:
			job.Status.Active++
		}
	}
	for _, f := range edit {
		f(&job.Status)
	}
	_, err = e.client.BatchV1().Jobs(job.Namespace).UpdateStatus(e.ctx, job, metav1.UpdateOptions{})
	require.NoError(e.t, err)
}

func (e *runEnv) pod(job *batchv1.Job, status corev1.PodStatus) *corev1.Pod {
	e.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-abcde", Namespace: job.Namespace, Labels: job.Spec.Template.Labels},
		Spec:       job.Spec.Template.Spec,
		Status:     status,
	}
	p, err := e.client.CoreV1().Pods(job.Namespace).Create(e.ctx, p, metav1.CreateOptions{})
	require.NoError(e.t, err)
	return p
}

func (e *runEnv) updatePod(p *corev1.Pod, status corev1.PodStatus) {
	e.t.Helper()
	p = p.DeepCopy()
	p.Status = status
	_, err := e.client.CoreV1().Pods(p.Namespace).UpdateStatus(e.ctx, p, metav1.UpdateOptions{})
	require.NoError(e.t, err)
}

func (e *runEnv) jobExists(b *jobs.Built) bool {
	_, err := e.client.BatchV1().Jobs(b.Namespace).Get(e.ctx, b.Job.Name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		e.t.Fatal(err)
	}
	return err == nil
}

// built is a task "x" built as the service would; the runner only looks at the objects'
// names, labels and containers.
func built(t *testing.T, files map[string][]byte) *jobs.Built {
	b, err := jobs.Build(jobs.Settings{
		Namespace:               "keptn",
		TTLSecondsAfterFinished: jobs.DefaultTTL,
		InitImage:               "ghcr.io/keptn-contrib/job-executor-service:dev",
	}, jobs.TaskInput{
		Event: jobs.EventInfo{
			ID:           "4fe1eed1-49e2-49a9-91af-a42c8b0f7811",
			Source:       "shipyard-controller",
			Type:         "sh.keptn.event.test.triggered",
			KeptnContext: "138f7bf1-f027-42c4-b705-9033b5f5871e",
			Project:      "sockshop", Stage: "dev", Service: "carts",
			Raw: []byte(`{}`),
		},
		Action:     "Run tests",
		Task:       config.Task{Name: "x", Image: "alpine", Cmd: []string{"echo"}},
		TaskIdx:    1,
		ConfigHash: "0123456789abcdef",
		Files:      files,
	})
	require.NoError(t, err)
	return b
}

func terminated(container string, code int32, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: container, State: corev1.ContainerState{
		Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason},
	}}
}

func waiting(container, reason, msg string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: container, State: corev1.ContainerState{
		Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg},
	}}
}

func TestRunCompletes(t *testing.T) {
	e := newRunEnv(t, Options{})
	b := built(t, map[string][]byte{"locust/basic.py": []byte("x")})
	job, done := e.start(b)
	e.pod(job, corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{terminated(jobs.TaskContainer, 0, "Completed")}})
	e.setCondition(job, batchv1.JobComplete, "", "")

	res := e.result(done)
	assert.True(t, res.Succeeded, res.Message)
	assert.Equal(t, ReasonCompleted, res.Reason)
	assert.Equal(t, "fake logs", res.Logs)
	assert.Equal(t, b.Job.Name, res.Job, "the result names the Job")
	assert.False(t, res.Start.IsZero())
	assert.False(t, res.End.Before(res.Start))

	cm, err := e.client.CoreV1().ConfigMaps(b.Namespace).Get(e.ctx, b.Job.Name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Len(t, cm.OwnerReferences, 1, "the Job owns its files so GC removes them")
	assert.Equal(t, "Job", cm.OwnerReferences[0].Kind)
	assert.Equal(t, job.Name, cm.OwnerReferences[0].Name)
	assert.Equal(t, b.Files.BinaryData, cm.BinaryData)
	exists, err := e.runner.JobExists(e.ctx, b.Namespace, b.Job.Name)
	require.NoError(t, err)
	assert.True(t, exists)
}

// TestRunRetries: a task with backoffLimit ran several pods; the result counts them and says
// why the last one failed, an eviction (e.g. /keptn over its sizeLimit) by the kubelet's words.
func TestRunRetries(t *testing.T) {
	e := newRunEnv(t, Options{})
	b := built(t, nil)
	b.Job.Spec.BackoffLimit = ptrTo(int32(2))
	job, done := e.start(b)
	failed := corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{terminated(jobs.TaskContainer, 1, "Error")}}
	evicted := corev1.PodStatus{Phase: corev1.PodFailed, Reason: ReasonEvicted, Message: `Usage of EmptyDir volume "keptn-files" exceeds the limit "20Mi". `}
	t0 := time.Now()
	for i, st := range []corev1.PodStatus{failed, failed, evicted} {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", job.Name, 3-i), Namespace: job.Namespace, Labels: job.Spec.Template.Labels,
				CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(i) * time.Second))},
			Spec: job.Spec.Template.Spec, Status: st,
		}
		_, err := e.client.CoreV1().Pods(job.Namespace).Create(e.ctx, p, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	// The controller declares the Job failed before it counts the last pod: that pod is still
	// in uncountedTerminatedPods.
	e.setCondition(job, batchv1.JobFailureTarget, "BackoffLimitExceeded", "Job has reached the specified backoff limit", func(s *batchv1.JobStatus) {
		s.Failed--
		s.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Failed: []types.UID{"last-pod"}}
	})
	res := e.result(done)
	assert.False(t, res.Succeeded)
	assert.Equal(t, int32(3), res.Attempts)
	assert.Equal(t, ReasonEvicted, res.Reason)
	assert.Equal(t, `task 'x' failed: pod evicted: Usage of EmptyDir volume "keptn-files" exceeds the limit "20Mi". `, res.Message)
}

func TestRunFailures(t *testing.T) {
	cases := []struct {
		name       string
		reason     string // Job condition reason
		condition  batchv1.JobConditionType
		containers []corev1.ContainerStatus
		init       []corev1.ContainerStatus
		wantReason string
		wantMsg    string
		wantLogs   string
	}{
		{"exit code", "BackoffLimitExceeded", batchv1.JobFailed, []corev1.ContainerStatus{terminated(jobs.TaskContainer, 3, "Error")}, nil,
			"BackoffLimitExceeded", "task 'x' failed: container exited with code 3", "fake logs"},
		{"oom", "BackoffLimitExceeded", batchv1.JobFailed, []corev1.ContainerStatus{terminated(jobs.TaskContainer, 137, "OOMKilled")}, nil,
			ReasonOOMKilled, "task 'x' failed: container ran out of memory (OOMKilled, exit code 137)", "fake logs"},
		{"deadline", "DeadlineExceeded", batchv1.JobFailed, nil, nil,
			"DeadlineExceeded", "task 'x' failed: DeadlineExceeded: Job was active longer than specified deadline", "fake logs"},
		// Kubernetes >= 1.31 says FailureTarget at the deadline and Failed only after the pods are gone.
		{"deadline, pods still terminating", "DeadlineExceeded", batchv1.JobFailureTarget, nil, nil,
			"DeadlineExceeded", "task 'x' failed: DeadlineExceeded: Job was active longer than specified deadline", "fake logs"},
		{"init failed", "BackoffLimitExceeded", batchv1.JobFailed, nil, []corev1.ContainerStatus{terminated(jobs.InitContainer, 1, "Error")},
			"BackoffLimitExceeded", "copying files (init container) exited with code 1",
			"--- init container (copy files) ---\nfake logs\n--- task ---\nfake logs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newRunEnv(t, Options{})
			b := built(t, nil)
			job, done := e.start(b)
			e.pod(job, corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: tc.containers, InitContainerStatuses: tc.init})
			msg := ""
			if tc.reason == "DeadlineExceeded" {
				msg = "Job was active longer than specified deadline"
			}
			e.setCondition(job, tc.condition, tc.reason, msg)
			res := e.result(done)
			assert.False(t, res.Succeeded)
			assert.Equal(t, tc.wantReason, res.Reason)
			assert.Contains(t, res.Message, tc.wantMsg)
			assert.Equal(t, tc.wantLogs, res.Logs)
			assert.True(t, e.jobExists(b), "failed Jobs are kept for inspection")
			assert.Equal(t, int32(1), res.Attempts)
		})
	}
}

func TestRunStuck(t *testing.T) {
	cases := []struct {
		name       string
		status     *corev1.PodStatus
		event      *corev1.Event
		wantReason string
		wantMsg    string
	}{
		{name: "image pull", status: &corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{
			waiting(jobs.TaskContainer, "ImagePullBackOff", `Back-off pulling image "nope"`)}},
			wantReason: "ImagePullBackOff", wantMsg: `task 'x': container task: ImagePullBackOff: Back-off pulling image "nope"`},
		{name: "invalid image", status: &corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{
			waiting(jobs.TaskContainer, "InvalidImageName", "couldn't parse image name")}},
			wantReason: "InvalidImageName", wantMsg: "couldn't parse image name"},
		{name: "missing secret", status: &corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{
			waiting(jobs.TaskContainer, "CreateContainerConfigError", `secret "locust-secret" not found`)}},
			wantReason: "CreateContainerConfigError", wantMsg: `secret "locust-secret" not found`},
		{name: "init image pull", status: &corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
			waiting(jobs.InitContainer, "ErrImagePull", "pull access denied")}},
			wantReason: "ErrImagePull", wantMsg: "container init-files: ErrImagePull: pull access denied"},
		{name: "missing service account", event: &corev1.Event{
			Reason:  "FailedCreate",
			Message: `Error creating: pods "x" is forbidden: error looking up service account keptn/nope: serviceaccount "nope" not found`,
		}, wantReason: "FailedCreate", wantMsg: `serviceaccount "nope" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newRunEnv(t, Options{FailFastAfter: time.Nanosecond})
			b := built(t, nil)
			job, done := e.start(b)
			if tc.status != nil {
				e.pod(job, *tc.status)
			}
			if tc.event != nil {
				ev := tc.event.DeepCopy()
				ev.Name, ev.Namespace = job.Name+".1", job.Namespace
				ev.InvolvedObject = corev1.ObjectReference{Kind: "Job", Namespace: job.Namespace, Name: job.Name}
				_, err := e.client.CoreV1().Events(job.Namespace).Create(e.ctx, ev, metav1.CreateOptions{})
				require.NoError(t, err)
			}
			res := e.result(done)
			assert.False(t, res.Succeeded)
			assert.Equal(t, tc.wantReason, res.Reason)
			assert.Contains(t, res.Message, tc.wantMsg)
			assert.False(t, e.jobExists(b), "stuck Jobs are deleted")
		})
	}
}

// A pull error that clears before the grace period ends does not fail the task.
func TestRunStuckRecovers(t *testing.T) {
	e := newRunEnv(t, Options{FailFastAfter: time.Hour})
	b := built(t, nil)
	job, done := e.start(b)
	p := e.pod(job, corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{
		waiting(jobs.TaskContainer, "ErrImagePull", "timeout")}})
	e.updatePod(p, corev1.PodStatus{Phase: corev1.PodRunning})
	e.setCondition(job, batchv1.JobComplete, "", "")
	res := e.result(done)
	assert.True(t, res.Succeeded, res.Message)
}

func TestRunAdoptsExistingJob(t *testing.T) {
	b := built(t, map[string][]byte{"a.txt": []byte("a")})
	existing := b.Job.DeepCopy()
	existing.UID = "first-delivery"
	e := newRunEnv(t, Options{}, existing, b.Files.DeepCopy())
	creates := 0
	e.client.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		creates++
		return false, nil, nil
	})

	done := make(chan jobs.Result, 1)
	go func() { done <- e.runner.Run(e.ctx, b) }()
	for range 3 {
		<-e.watches
	}
	// Run may or may not have looked at the Job yet; completing it now must be seen
	// either from the cache or from the watch.
	e.setCondition(existing, batchv1.JobComplete, "", "")
	res := e.result(done)
	assert.True(t, res.Succeeded, res.Message)
	assert.Equal(t, 1, creates, "one create attempt, answered AlreadyExists")
	assert.Equal(t, b.Job.Name, res.Job, "the adopted Job is the task's")
	list, err := e.client.BatchV1().Jobs(b.Namespace).List(e.ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1)
}

func TestRunMaxPollDuration(t *testing.T) {
	for _, keep := range []bool{false, true} {
		e := newRunEnv(t, Options{KeepAbortedJobs: keep})
		b := built(t, nil)
		b.MaxPollDuration = 10 * time.Millisecond
		_, done := e.start(b)
		res := e.result(done)
		assert.False(t, res.Succeeded)
		assert.Equal(t, ReasonMaxPoll, res.Reason)
		assert.Equal(t, "task 'x' did not finish within 10ms", res.Message)
		assert.Equal(t, keep, e.jobExists(b))
	}
	assert.Equal(t, "300s", durationText(jobs.DefaultMaxPollDuration))
}

func TestRunCanceled(t *testing.T) {
	e := newRunEnv(t, Options{})
	b := built(t, nil)
	ctx, cancel := context.WithCancel(e.ctx)
	e.ctx = ctx
	_, done := e.start(b)
	cancel()
	e.ctx = context.Background()
	select {
	case res := <-done:
		assert.Equal(t, ReasonCanceled, res.Reason)
	case <-time.After(bound):
		t.Fatal("Run did not return after cancel")
	}
	assert.True(t, e.jobExists(b), "a canceled wait leaves the Job for a redelivered event to adopt")
}

func TestRunJobDeleted(t *testing.T) {
	e := newRunEnv(t, Options{})
	b := built(t, nil)
	job, done := e.start(b)
	require.NoError(t, e.client.BatchV1().Jobs(job.Namespace).Delete(e.ctx, job.Name, metav1.DeleteOptions{}))
	res := e.result(done)
	assert.Equal(t, ReasonJobDeleted, res.Reason)
	assert.Contains(t, res.Message, "was deleted before it finished")
}

func TestRunCreateFails(t *testing.T) {
	e := newRunEnv(t, Options{})
	e.client.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "x", errors.New("no RBAC"))
	})
	b := built(t, map[string][]byte{"a.txt": []byte("a")})
	res := e.runner.Run(e.ctx, b)
	assert.Equal(t, ReasonCreateFailed, res.Reason)
	assert.Contains(t, res.Message, "task 'x': creating job keptn/"+b.Job.Name)
	assert.Contains(t, res.Message, "no RBAC")
	assert.Empty(t, res.Job, "no Job exists")
	exists, err := e.runner.JobExists(e.ctx, b.Namespace, b.Job.Name)
	require.NoError(t, err)
	assert.False(t, exists)
	_, err = e.client.CoreV1().ConfigMaps(b.Namespace).Get(e.ctx, b.Job.Name, metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "the files ConfigMap is removed again: %v", err)
	assert.Equal(t, ReasonCreateFailed, e.runner.Run(e.ctx, nil).Reason)
}

func TestReadTail(t *testing.T) {
	big := strings.Repeat("0123456789", 100_000) + "END"
	got, err := readTail(strings.NewReader(big), 64<<10)
	require.NoError(t, err)
	assert.Equal(t, jobs.BoundLogs(big, 64<<10), got)
	assert.True(t, strings.HasPrefix(got, "[... 934467 bytes truncated ...]\n"))
	assert.True(t, strings.HasSuffix(got, "END"))
}

func ran(code int32, from, to time.Time) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: jobs.TaskContainer, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, StartedAt: metav1.NewTime(from), FinishedAt: metav1.NewTime(to),
	}}}
}

// The result says when the task container ran, as the kubelet recorded it: Keptn queries
// metrics for exactly that window (data.test.start/end).
func TestRunTaskWindow(t *testing.T) {
	t0 := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	restarted := ran(0, at(20), at(25))
	restarted.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 1, StartedAt: metav1.NewTime(at(3)), FinishedAt: metav1.NewTime(at(6))}}
	cases := []struct {
		name     string
		pods     [][]corev1.ContainerStatus
		cond     batchv1.JobConditionType
		from, to time.Time
	}{
		{"one pod", [][]corev1.ContainerStatus{{ran(0, at(2), at(7))}}, batchv1.JobComplete, at(2), at(7)},
		{"retried in new pods", [][]corev1.ContainerStatus{{ran(1, at(2), at(4))}, {ran(1, at(9), at(12))}}, batchv1.JobFailed, at(2), at(12)},
		{"restarted in place", [][]corev1.ContainerStatus{{restarted}}, batchv1.JobComplete, at(3), at(25)},
		{"never started", [][]corev1.ContainerStatus{{waiting(jobs.TaskContainer, "PodInitializing", "")}}, batchv1.JobFailed, time.Time{}, time.Time{}},
		{"still running when the Job failed", [][]corev1.ContainerStatus{{ran(1, at(1), at(2))}, {{Name: jobs.TaskContainer,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at(5))}}}}},
			batchv1.JobFailureTarget, at(1), time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newRunEnv(t, Options{})
			b := built(t, nil)
			job, done := e.start(b)
			for i, cs := range tc.pods {
				p := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", job.Name, i), Namespace: job.Namespace, Labels: job.Spec.Template.Labels},
					Status:     corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: cs},
				}
				_, err := e.client.CoreV1().Pods(job.Namespace).Create(e.ctx, p, metav1.CreateOptions{})
				require.NoError(t, err)
			}
			e.setCondition(job, tc.cond, "BackoffLimitExceeded", "")
			res := e.result(done)
			assert.Equal(t, tc.from, res.RanFrom)
			assert.Equal(t, tc.to, res.RanTo)
			assert.False(t, res.Start.IsZero(), "the Job's creation is kept for when the container never ran")
		})
	}
}

// A task aborted at maxPollDuration ran until it was aborted: its container has no end.
func TestRunMaxPollWindow(t *testing.T) {
	b := built(t, nil)
	b.MaxPollDuration = 10 * time.Millisecond
	started := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: b.Job.Name + "-abcde", Namespace: b.Namespace, Labels: b.Job.Spec.Template.Labels},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: jobs.TaskContainer,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}}}}},
	}
	e := newRunEnv(t, Options{}, pod)
	_, done := e.start(b)
	res := e.result(done)
	assert.Equal(t, ReasonMaxPoll, res.Reason)
	assert.Equal(t, started, res.RanFrom)
	assert.True(t, res.RanTo.IsZero())
}

// builtFor is built(t, files) for another event, so that one Runner may run several tasks.
func builtFor(t *testing.T, eventID string, files map[string][]byte) *jobs.Built {
	b := built(t, files)
	nb, err := jobs.Build(jobs.Settings{
		Namespace:               "keptn",
		TTLSecondsAfterFinished: jobs.DefaultTTL,
		InitImage:               "ghcr.io/keptn-contrib/job-executor-service:dev",
	}, jobs.TaskInput{
		Event: jobs.EventInfo{
			ID: eventID, Source: "shipyard-controller", Type: "sh.keptn.event.test.triggered",
			KeptnContext: "138f7bf1-f027-42c4-b705-9033b5f5871e",
			Project:      "sockshop", Stage: "dev", Service: "carts", Raw: []byte(`{}`),
		},
		Action: "Run tests", Task: config.Task{Name: "x", Image: "alpine", Cmd: []string{"echo"}},
		TaskIdx: 1, ConfigHash: "0123456789abcdef", Files: files,
	})
	require.NoError(t, err)
	require.NotEqual(t, b.Job.Name, nb.Job.Name)
	return nb
}

var (
	jobsGVR = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
	podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
)

// TestRunRequestsPerTask counts the API requests one task costs the API server, watches
// excluded (issue 11: at most 4, however long the task runs). The cluster's side (the Job
// controller and the kubelet) writes through the tracker so that only Run's requests are
// recorded; a first task starts the shared informers, whose LIST and WATCH are per namespace.
func TestRunRequestsPerTask(t *testing.T) {
	e := newRunEnv(t, Options{})
	run := func(eventID string, updates int) []string {
		t.Helper()
		b := builtFor(t, eventID, map[string][]byte{"a.txt": []byte("a")})
		jw, err := e.client.BatchV1().Jobs(b.Namespace).Watch(e.ctx, metav1.ListOptions{})
		require.NoError(t, err)
		defer jw.Stop()
		<-e.watches // the test's own watch
		from := len(e.client.Actions())
		done := make(chan jobs.Result, 1)
		go func() { done <- e.runner.Run(e.ctx, b) }()
		job := e.waitJob(jw, b.Job.Name)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-abcde", Namespace: job.Namespace, Labels: job.Spec.Template.Labels,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending},
		}
		require.NoError(t, e.client.Tracker().Create(podsGVR, pod, job.Namespace))
		job = job.DeepCopy()
		job.Status.Active = 1
		require.NoError(t, e.client.Tracker().Update(jobsGVR, job, job.Namespace))
		// A longer task: the pod and the Job change while it runs.
		for i := range updates {
			pod = pod.DeepCopy()
			pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: jobs.TaskContainer,
				RestartCount: int32(i), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}
			require.NoError(t, e.client.Tracker().Update(podsGVR, pod, job.Namespace))
			job = job.DeepCopy()
			job.Status.Ready = ptrTo(int32(i % 2))
			require.NoError(t, e.client.Tracker().Update(jobsGVR, job, job.Namespace))
		}
		pod = pod.DeepCopy()
		pod.Status = corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{terminated(jobs.TaskContainer, 0, "Completed")}}
		require.NoError(t, e.client.Tracker().Update(podsGVR, pod, job.Namespace))
		job = job.DeepCopy()
		now := metav1.Now()
		job.Status.Active, job.Status.Succeeded, job.Status.CompletionTime = 0, 1, &now
		job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now}}
		require.NoError(t, e.client.Tracker().Update(jobsGVR, job, job.Namespace))
		res := e.result(done)
		require.True(t, res.Succeeded, res.Message)
		require.Equal(t, "fake logs", res.Logs)
		var reqs []string
		for _, a := range e.client.Actions()[from:] {
			if a.GetVerb() == "watch" {
				continue
			}
			r := a.GetVerb() + " " + a.GetResource().Resource
			if s := a.GetSubresource(); s != "" {
				r += "/" + s
			}
			reqs = append(reqs, r)
		}
		return reqs
	}

	// The first task also starts the namespace's informers; its count is not per task.
	run("00000000-0000-0000-0000-000000000001", 0)
	for range 3 {
		<-e.watches // the informers'
	}
	short := run("00000000-0000-0000-0000-000000000002", 0)
	long := run("00000000-0000-0000-0000-000000000003", 20)
	want := []string{"create configmaps", "create jobs", "patch configmaps", "get pods/log"}
	assert.Equal(t, want, short, "requests of one task")
	assert.Equal(t, short, long, "requests do not grow with the task's duration")
}

func ptrTo[T any](v T) *T { return &v }

// When the cache does not catch up with a finished Job's pods (here: the pods' watch
// never delivers), the pods are listed from the API server after a grace.
func TestRunPodsCacheLagFallsBackToList(t *testing.T) {
	defer func(g time.Duration) { cacheLagGrace = g }(cacheLagGrace)
	cacheLagGrace = 10 * time.Millisecond
	e := newRunEnv(t, Options{})
	silent := watch.NewFake()
	t.Cleanup(silent.Stop)
	e.client.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		e.watches <- "pods"
		return true, silent, nil
	})
	b := built(t, nil)
	job, done := e.start(b)
	e.pod(job, corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{terminated(jobs.TaskContainer, 0, "Completed")}})
	e.setCondition(job, batchv1.JobComplete, "", "")
	res := e.result(done)
	assert.True(t, res.Succeeded, res.Message)
	assert.Equal(t, "fake logs", res.Logs, "the pod listed from the API server")
	lists := 0
	for _, a := range e.client.Actions() {
		if la, ok := a.(k8stesting.ListAction); ok && la.GetResource().Resource == "pods" &&
			la.GetListRestrictions().Labels.String() == (labels.Set{jobs.LabelJob: job.Name}).String() {
			lists++
		}
	}
	assert.Equal(t, 1, lists, "one live LIST of the Job's pods")
}

// A Job deleted right after its creation, perhaps before the cache showed it to Run, ends
// the task without asking the API server about it.
func TestRunJobDeletedBeforeCached(t *testing.T) {
	e := newRunEnv(t, Options{})
	e.client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		job := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job).DeepCopy()
		job.UID = "created"
		for range 3 {
			<-e.watches // the fake misses changes made before the informers watch
		}
		if err := e.client.Tracker().Create(jobsGVR, job, job.Namespace); err != nil {
			return true, nil, err
		}
		return true, job, e.client.Tracker().Delete(jobsGVR, job.Namespace, job.Name)
	})
	b := built(t, nil)
	done := make(chan jobs.Result, 1)
	go func() { done <- e.runner.Run(e.ctx, b) }()
	res := e.result(done)
	assert.Equal(t, ReasonJobDeleted, res.Reason)
	for _, a := range e.client.Actions() {
		assert.False(t, a.GetVerb() == "get" && a.GetResource().Resource == "jobs", "no Job GET")
	}
}

// Should the cache never show the new Job (its events lost to a relist), the API server is
// asked after a grace whether it is gone.
func TestRunJobNeverCached(t *testing.T) {
	defer func(g time.Duration) { cacheLagGrace = g }(cacheLagGrace)
	cacheLagGrace = 10 * time.Millisecond
	e := newRunEnv(t, Options{})
	silent := watch.NewFake()
	t.Cleanup(silent.Stop)
	e.client.PrependWatchReactor("jobs", func(k8stesting.Action) (bool, watch.Interface, error) {
		return true, silent, nil
	})
	e.client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, a.(k8stesting.CreateAction).GetObject(), nil // created, and deleted at once
	})
	res := e.runner.Run(e.ctx, built(t, nil))
	assert.Equal(t, ReasonJobDeleted, res.Reason)
}

// TestRunResults: the task's termination message becomes its results, whether it succeeded
// or failed; what cannot be read is reported, not dropped.
func TestRunResults(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		cond      batchv1.JobConditionType
		want      map[string]any
		wantErr   string
	}{
		{"json on success", `{"passed": 3}`, batchv1.JobComplete, map[string]any{"passed": json.Number("3")}, ""},
		{"key=value on failure", "failed=2\n", batchv1.JobFailed, map[string]any{"failed": "2"}, ""},
		{"unreadable", "{oops", batchv1.JobComplete, nil, "results are not a valid JSON object"},
		{"nothing", "", batchv1.JobComplete, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRunEnv(t, Options{})
			b := built(t, nil)
			job, done := e.start(b)
			st := terminated(jobs.TaskContainer, 0, "Completed")
			phase := corev1.PodSucceeded
			if tc.cond == batchv1.JobFailed {
				st, phase = terminated(jobs.TaskContainer, 1, "Error"), corev1.PodFailed
			}
			st.State.Terminated.Message = tc.msg
			e.pod(job, corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{st}})
			e.setCondition(job, tc.cond, "", "")
			res := e.result(done)
			assert.Equal(t, tc.want, res.Results)
			if tc.wantErr == "" {
				assert.Empty(t, res.ResultsError)
			} else {
				assert.Contains(t, res.ResultsError, tc.wantErr)
			}
		})
	}
}
