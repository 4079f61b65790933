package run

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

func TestJobState(t *testing.T) {
	created := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	started := metav1.NewTime(created.Add(time.Second))
	ended := metav1.NewTime(created.Add(time.Minute))
	job := func(conds ...batchv1.JobCondition) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: created}, Status: batchv1.JobStatus{StartTime: &started, Conditions: conds}}
	}
	pod := func(s corev1.ContainerState) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: created}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: jobs.TaskContainer, State: s}}}}
	}
	complete := job(batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: ended})
	complete.Status.CompletionTime = &ended
	tests := []struct {
		name   string
		job    *batchv1.Job
		pods   []*corev1.Pod
		events []*corev1.Event
		want   jobs.TaskState
	}{
		{"created, no pod", job(), nil, nil, jobs.TaskState{Phase: jobs.PhasePending, Start: started.Time}},
		{"image pull backoff", job(), []*corev1.Pod{pod(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "back-off pulling"}})}, nil,
			jobs.TaskState{Phase: jobs.PhasePending, Start: started.Time, Reason: "ImagePullBackOff", Message: "back-off pulling"}},
		{"pod not created", job(), nil, []*corev1.Event{{Reason: ReasonFailedCreatePod, Message: "exceeded quota"}},
			jobs.TaskState{Phase: jobs.PhasePending, Start: started.Time, Reason: ReasonFailedCreatePod, Message: "exceeded quota"}},
		{"running", job(), []*corev1.Pod{pod(corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})}, nil,
			jobs.TaskState{Phase: jobs.PhaseRunning, Start: started.Time}},
		{"complete", complete, nil, nil, jobs.TaskState{Phase: jobs.PhaseSucceeded, Start: started.Time, End: ended.Time, Reason: ReasonCompleted}},
		{"failed", job(batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: ended}), nil, nil,
			jobs.TaskState{Phase: jobs.PhaseFailed, Start: started.Time, End: ended.Time, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}},
		{"deadline (failure target, pods still terminating)", job(batchv1.JobCondition{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "DeadlineExceeded", LastTransitionTime: ended}), nil, nil,
			jobs.TaskState{Phase: jobs.PhaseFailed, Start: started.Time, End: ended.Time, Reason: "DeadlineExceeded"}},
		{"out of memory", job(batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastTransitionTime: ended}),
			[]*corev1.Pod{pod(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: ReasonOOMKilled, ExitCode: 137}})}, nil,
			jobs.TaskState{Phase: jobs.PhaseFailed, Start: started.Time, End: ended.Time, Reason: ReasonOOMKilled}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, jobState(tc.job, tc.pods, tc.events))
		})
	}
}
