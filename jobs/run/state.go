package run

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

// TaskState reads the Job ns/name and its pods from the watcher's caches (starting the
// namespace's informers on first use) and says what phase it is in; found is false when the
// Job does not exist. It sends no request per call: any number of status requests cost the
// informers' one watch per kind and namespace.
func (w *Watcher) TaskState(ctx context.Context, ns, name string) (state jobs.TaskState, found bool, err error) {
	nw, _, cancel, err := w.subscribe(ctx, ns, name)
	if err != nil {
		return jobs.TaskState{}, false, err
	}
	cancel() // the caches are all this needs; no notifications
	job, err := nw.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return jobs.TaskState{}, false, nil
	}
	if err != nil {
		return jobs.TaskState{}, false, fmt.Errorf("reading job %s/%s from the cache: %w", ns, name, err)
	}
	return jobState(job, jobPods(nw, job), failedCreate(nw, job)), true, nil
}

// jobState is the phase of a Job from its conditions and, while it runs, its pods: a task
// container that waits (ImagePullBackOff, CreateContainerConfigError) or a pod the Job
// controller could not create (FailedCreate) is the reason it is still Pending.
func jobState(job *batchv1.Job, pods []*corev1.Pod, failedCreate []*corev1.Event) jobs.TaskState {
	s := jobs.TaskState{Phase: jobs.PhasePending, Start: job.CreationTimestamp.Time}
	if job.Status.StartTime != nil {
		s.Start = job.Status.StartTime.Time
	}
	if c := endCondition(job); c != nil {
		s.End = c.LastTransitionTime.Time
		if c.Type == batchv1.JobComplete {
			s.Phase, s.Reason = jobs.PhaseSucceeded, ReasonCompleted
			if job.Status.CompletionTime != nil {
				s.End = job.Status.CompletionTime.Time
			}
			return s
		}
		s.Phase, s.Reason, s.Message = jobs.PhaseFailed, c.Reason, c.Message
		if s.Reason == "" {
			s.Reason = "Failed"
		}
		sorted := podValues(pods)
		sortPods(sorted)
		if t := terminatedState(sorted, jobs.TaskContainer); t != nil && t.Reason == ReasonOOMKilled {
			s.Reason = ReasonOOMKilled
		}
		return s
	}
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name != jobs.TaskContainer {
				continue
			}
			switch {
			case cs.State.Running != nil:
				s.Phase, s.Reason, s.Message = jobs.PhaseRunning, "", ""
				return s
			case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
				s.Reason, s.Message = cs.State.Waiting.Reason, cs.State.Waiting.Message
			}
		}
	}
	if s.Reason == "" && len(failedCreate) > 0 {
		e := failedCreate[len(failedCreate)-1]
		s.Reason, s.Message = e.Reason, e.Message
	}
	return s
}
