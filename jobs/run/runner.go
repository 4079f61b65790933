// Package run owns the side of a task that talks to Kubernetes: it creates the objects of
// a jobs.Built task and watches the Job to its end with shared informers (Watcher),
// collecting its result and logs. It must not build Jobs (that is jobs.Build, which is
// pure) nor know about Keptn events (that is handler/lifecycle).
package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

// Reasons of a jobs.Result set by the runner (Kubernetes' own, like BackoffLimitExceeded and
// DeadlineExceeded, are passed through).
const (
	ReasonCompleted       = "Completed"
	ReasonMaxPoll         = "MaxPollDurationExceeded"
	ReasonOOMKilled       = "OOMKilled"
	ReasonCreateFailed    = "CreateFailed"
	ReasonWatchFailed     = "WatchFailed"
	ReasonCanceled        = "Canceled"
	ReasonFailedCreatePod = "FailedCreate"
	ReasonJobDeleted      = "JobDeleted"
	// ReasonEvicted: the kubelet evicted the task's pod, e.g. for writing more to /keptn than
	// its keptnVolumeSize.
	ReasonEvicted = "Evicted"
)

// Defaults for the zero values of Options.
const (
	DefaultFailFastAfter = 30 * time.Second
	DefaultMaxLogBytes   = 64 << 10
)

// stuckReasons are container waiting reasons that will not resolve by themselves.
var stuckReasons = map[string]bool{
	"ErrImagePull":               true,
	"ImagePullBackOff":           true,
	"InvalidImageName":           true,
	"CreateContainerConfigError": true, // e.g. a missing secret for valueFrom: secret
}

// Options tune a Runner; zero values mean the defaults.
type Options struct {
	// FailFastAfter (FAIL_FAST_SECONDS) is how long a pod may wait on a hopeless reason
	// (image pull errors, missing secret) or the Job may fail to create pods (missing
	// service account) before the task fails. Default DefaultFailFastAfter.
	FailFastAfter time.Duration
	// MaxLogBytes bounds each task's logs (the tail is kept). Default DefaultMaxLogBytes.
	MaxLogBytes int
	// Watcher is shared by Runners; New creates one when nil.
	Watcher *Watcher
	// KeepAbortedJobs keeps Jobs that got stuck or exceeded maxPollDuration; by default
	// they are deleted so that they stop consuming the cluster.
	KeepAbortedJobs bool
}

// Runner creates the objects of a jobs.Built task and waits for its Job to finish.
type Runner struct {
	client kubernetes.Interface
	log    *zap.Logger
	opts   Options
	w      *Watcher
}

// New returns a Runner using client.
func New(client kubernetes.Interface, log *zap.Logger, opts Options) *Runner {
	if log == nil {
		log = zap.NewNop()
	}
	if opts.FailFastAfter <= 0 {
		opts.FailFastAfter = DefaultFailFastAfter
	}
	if opts.MaxLogBytes <= 0 {
		opts.MaxLogBytes = DefaultMaxLogBytes
	}
	if opts.Watcher == nil {
		opts.Watcher = NewWatcher(client, log)
	}
	return &Runner{client: client, log: log, opts: opts, w: opts.Watcher}
}

// Watcher returns the runner's watcher (to Stop it on shutdown).
func (r *Runner) Watcher() *Watcher { return r.w }

// Run creates the task's files ConfigMap and Job and waits until the Job completes,
// fails, gets stuck or exceeds b.MaxPollDuration. A Job that already exists (the same
// event delivered again) is adopted and watched instead of created twice.
func (r *Runner) Run(ctx context.Context, b *jobs.Built) jobs.Result {
	now := time.Now()
	if b == nil || b.Job == nil {
		return jobs.Result{Reason: ReasonCreateFailed, Message: "no job to run", Start: now, End: now}
	}
	task := b.TaskName()
	ns, name := b.Namespace, b.Job.Name
	log := r.log.With(zap.String("task", task), zap.String("job", name), zap.String("namespace", ns))
	fail := func(reason, format string, args ...any) jobs.Result {
		return jobs.Result{Reason: reason, Message: fmt.Sprintf(format, args...), Start: now, End: time.Now()}
	}

	// Subscribe before creating so that no change of the new Job can be missed.
	nw, sub, cancel, err := r.w.subscribe(ctx, ns, name)
	if err != nil {
		return fail(ReasonWatchFailed, "task '%s': %v", task, err)
	}
	defer cancel()

	createdFiles := false
	if b.Files != nil {
		_, err := r.client.CoreV1().ConfigMaps(ns).Create(ctx, b.Files, metav1.CreateOptions{})
		switch {
		case err == nil:
			createdFiles = true
		case apierrors.IsAlreadyExists(err):
			// Same name means same event and task: the content is the same.
		default:
			return fail(ReasonCreateFailed, "task '%s': creating files ConfigMap %s/%s: %v", task, ns, name, err)
		}
	}
	job, err := r.client.BatchV1().Jobs(ns).Create(ctx, b.Job, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		log.Info("job already exists, adopting it (event redelivered?)")
		job, err = r.client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		if createdFiles {
			r.deleteQuietly(ns, name, log, func(ctx context.Context) error {
				return r.client.CoreV1().ConfigMaps(ns).Delete(ctx, name, metav1.DeleteOptions{})
			})
		}
		return fail(ReasonCreateFailed, "task '%s': creating job %s/%s: %v", task, ns, name, err)
	}
	if b.Files != nil {
		r.ownFiles(ctx, job, log)
	}
	if !job.CreationTimestamp.IsZero() {
		now = job.CreationTimestamp.Time
	}
	// Only the Job's identity is kept while it runs: the built objects (a files ConfigMap may
	// hold up to a MiB) and the fields the API server added are garbage from here on.
	job.ManagedFields = nil
	res := r.wait(ctx, task, b.MaxPollDuration, nw, sub, job, log)
	res.Job, res.Start = job.Name, now
	if res.End.IsZero() || res.End.Before(res.Start) {
		res.End = time.Now()
	}
	return res
}

// JobExists asks the API server whether the named Job exists (recovery: a Job of an
// action that answers Keptn implies its .started was delivered).
func (r *Runner) JobExists(ctx context.Context, namespace, name string) (bool, error) {
	_, err := r.client.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// ownFiles makes the Job own its files ConfigMap so that deleting the Job (by hand or
// by its TTL) garbage-collects the ConfigMap. Failure only leaks a small object.
func (r *Runner) ownFiles(ctx context.Context, job *batchv1.Job, log *zap.Logger) {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": []metav1.OwnerReference{{
		APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID,
	}}}})
	if _, err := r.client.CoreV1().ConfigMaps(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		log.Warn("could not make the job own its files ConfigMap", zap.Error(err))
	}
}

func (r *Runner) wait(ctx context.Context, task string, maxPoll time.Duration, nw *nsWatch, sub *subscription, job *batchv1.Job, log *zap.Logger) jobs.Result {
	deadline := time.NewTimer(maxPoll)
	defer deadline.Stop()
	st := &stuckState{firstSeen: map[string]time.Time{}, grace: r.opts.FailFastAfter}
	var recheck *time.Timer
	defer func() {
		if recheck != nil {
			recheck.Stop()
		}
	}()
	seen := false
	// Since when the cache has lagged behind the new Job, and behind a finished Job's pods.
	var jobLag, podLag lag
	// Deleted by someone else: it will not finish.
	deleted := func() jobs.Result {
		return jobs.Result{Reason: ReasonJobDeleted, Message: fmt.Sprintf("task '%s': job %s/%s was deleted before it finished", task, job.Namespace, job.Name), End: time.Now()}
	}
	for {
		cur := job
		var lagNext time.Duration
		if j, err := nw.jobs.Jobs(job.Namespace).Get(job.Name); err == nil && (job.UID == "" || j.UID == job.UID) {
			cur, seen = j, true
		} else if seen || r.w.deleted(sub, job.UID) {
			return deleted()
		} else if lagNext = jobLag.left(); lagNext <= 0 {
			// A Job not in the cache yet needs no GET: the informers synced before it was
			// created, so its watch event comes, and a deletion before we looked is recorded
			// by the watcher. Only a relist in between (watch expired) could lose both, so
			// ask the API server should the cache lag for long.
			if r.jobGone(ctx, job) {
				return deleted()
			}
			jobLag = lag{}
			lagNext = jobLag.left()
		}
		if end := endCondition(cur); seen && end != nil {
			pods, ok := r.cachedPods(nw, cur)
			if !ok {
				// The pods' watch may deliver after the Job's: wait for it a little, then
				// ask the API server (e.g. pods deleted since the Job counted them).
				if lagNext = podLag.left(); lagNext <= 0 {
					pods, ok = r.listPods(ctx, cur, log), true
				}
			}
			if ok {
				return r.finished(ctx, cur, *end, pods, task)
			}
		}
		reason, msg, next := st.check(time.Now(), jobPods(nw, job), failedCreate(nw, job))
		if reason != "" {
			log.Info("task is stuck", zap.String("reason", reason), zap.String("message", msg))
			r.abort(job, log)
			return jobs.Result{Reason: reason, Message: fmt.Sprintf("task '%s': %s", task, msg), End: time.Now()}
		}
		if lagNext > 0 && (next == 0 || lagNext < next) {
			next = lagNext
		}
		var recheckC <-chan time.Time
		if next > 0 {
			if recheck != nil {
				recheck.Stop()
			}
			recheck = time.NewTimer(next)
			recheckC = recheck.C
		}
		select {
		case <-sub.c:
		case <-recheckC:
		case <-deadline.C:
			res := jobs.Result{
				Reason:  ReasonMaxPoll,
				Message: fmt.Sprintf("task '%s' did not finish within %s", task, durationText(maxPoll)),
				End:     time.Now(),
			}
			// The watched pods are as recent as anything at an arbitrary moment.
			pods := podValues(jobPods(nw, job))
			res.Logs = r.logsOf(ctx, job, pods)
			res.RanFrom, res.RanTo = taskRan(pods)
			r.abort(job, log)
			return res
		case <-ctx.Done():
			// Shutting down: leave the Job running; a redelivered event adopts it.
			return jobs.Result{Reason: ReasonCanceled, Message: fmt.Sprintf("task '%s': stopped waiting: %v", task, ctx.Err()), End: time.Now()}
		}
	}
}

// lag measures how long the cache has lagged behind what the runner knows.
type lag struct{ since time.Time }

// left starts the measure if needed and returns how much of cacheLagGrace is left.
func (l *lag) left() time.Duration {
	now := time.Now()
	if l.since.IsZero() {
		l.since = now
	}
	return cacheLagGrace - now.Sub(l.since)
}

// jobGone asks the API server whether a Job the cache does not know is gone.
func (r *Runner) jobGone(ctx context.Context, job *batchv1.Job) bool {
	j, err := r.client.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
	return apierrors.IsNotFound(err) || err == nil && job.UID != "" && j.UID != job.UID
}

func durationText(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", int64(d/time.Second))
	}
	return d.String()
}

// cacheLagGrace is how long the cache may lag behind a new Job, or a finished Job's pods
// behind it, before the API server is asked.
var cacheLagGrace = 3 * time.Second

// endCondition is the Job's first true Complete, Failed or FailureTarget condition; nil
// while it runs. FailureTarget (Kubernetes >= 1.31) is set as soon as the Job is bound to
// fail, e.g. at activeDeadlineSeconds; Failed follows only once all pods are gone, which can
// take the pods' whole termination grace period. Success waits for Complete (not the earlier
// SuccessCriteriaMet): by then the Job's status shows the succeeded pod, as anyone looking
// after .finished expects.
func endCondition(job *batchv1.Job) *batchv1.JobCondition {
	for i, c := range job.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed || c.Type == batchv1.JobFailureTarget) {
			return &job.Status.Conditions[i]
		}
	}
	return nil
}

// cachedPods returns the Job's pods from the cache, oldest first, and whether the cache
// has caught up with the Job's status: the Job controller counts a pod as succeeded or
// failed only after it saw it terminate (or go away), so the cache must show at least
// that many terminated pods, and its active ones.
func (r *Runner) cachedPods(nw *nsWatch, job *batchv1.Job) ([]corev1.Pod, bool) {
	pods := podValues(jobPods(nw, job))
	var done int32
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.DeletionTimestamp != nil {
			done++
		}
	}
	ended := job.Status.Succeeded + job.Status.Failed
	return pods, done >= ended && int32(len(pods)) >= ended+job.Status.Active
}

// podValues copies the cache's pods (which must not be modified), oldest first.
func podValues(ps []*corev1.Pod) []corev1.Pod {
	pods := make([]corev1.Pod, 0, len(ps))
	for _, p := range ps {
		pods = append(pods, *p)
	}
	sortPods(pods)
	return pods
}

func sortPods(pods []corev1.Pod) {
	sort.SliceStable(pods, func(i, j int) bool {
		return pods[i].CreationTimestamp.Before(&pods[j].CreationTimestamp)
	})
}

// finished reports the result of a Job whose end condition is c, pods being the Job's pods
// oldest first.
func (r *Runner) finished(ctx context.Context, job *batchv1.Job, c batchv1.JobCondition, pods []corev1.Pod, task string) jobs.Result {
	// Pods the Job controller has not yet moved into its counters are attempts too: it may
	// declare the Job failed before it counts the last failed pod.
	attempts := job.Status.Succeeded + job.Status.Failed
	if u := job.Status.UncountedTerminatedPods; u != nil {
		attempts += int32(len(u.Succeeded) + len(u.Failed))
	}
	if c.Type == batchv1.JobComplete {
		res := jobs.Result{Succeeded: true, Reason: ReasonCompleted, Logs: r.logsOf(ctx, job, pods), Attempts: attempts}
		if job.Status.CompletionTime != nil {
			res.End = job.Status.CompletionTime.Time
		}
		res.RanFrom, res.RanTo = taskRan(pods)
		readResults(&res, pods)
		return res
	}
	res := jobs.Result{Reason: c.Reason, End: c.LastTransitionTime.Time, Attempts: attempts}
	if res.Reason == "" {
		res.Reason = "Failed"
	}
	res.Message = fmt.Sprintf("task '%s' failed: %s", task, c.Reason)
	if c.Message != "" {
		res.Message += ": " + c.Message
	}
	if cs := terminatedState(pods, jobs.TaskContainer); cs != nil {
		switch {
		case cs.Reason == ReasonOOMKilled:
			res.Reason = ReasonOOMKilled
			res.Message = fmt.Sprintf("task '%s' failed: container ran out of memory (OOMKilled, exit code %d)", task, cs.ExitCode)
		case cs.ExitCode != 0:
			res.Message = fmt.Sprintf("task '%s' failed: container exited with code %d", task, cs.ExitCode)
		}
	}
	if cs := terminatedState(pods, jobs.InitContainer); cs != nil && cs.ExitCode != 0 {
		res.Message = fmt.Sprintf("task '%s' failed: copying files (init container) exited with code %d", task, cs.ExitCode)
		if cs.Reason == ReasonOOMKilled {
			res.Reason = ReasonOOMKilled
		}
	}
	if n := len(pods); n > 0 && pods[n-1].Status.Reason == ReasonEvicted {
		res.Reason = ReasonEvicted
		res.Message = fmt.Sprintf("task '%s' failed: pod evicted: %s", task, pods[n-1].Status.Message)
	}
	res.Logs = r.logsOf(ctx, job, pods)
	res.RanFrom, res.RanTo = taskRan(pods)
	readResults(&res, pods)
	return res
}

// readResults takes the task's results from its last run's termination message.
func readResults(res *jobs.Result, pods []corev1.Pod) {
	cs := terminatedState(pods, jobs.TaskContainer)
	if cs == nil {
		return
	}
	var err error
	if res.Results, err = jobs.ParseResults(cs.Message); err != nil {
		res.ResultsError = err.Error()
	}
}

// taskRan is when the task container ran over pods (retries included): its first start and
// its last finish as the kubelet recorded them. to is zero while it still runs somewhere, and
// both are zero if it never started (e.g. a pull error, or an init container that failed).
func taskRan(pods []corev1.Pod) (from, to time.Time) {
	running := false
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name != jobs.TaskContainer {
				continue
			}
			// A container restarted in place (restartPolicy OnFailure) ran before its current state.
			for _, st := range []corev1.ContainerState{cs.LastTerminationState, cs.State} {
				var start, end time.Time
				switch {
				case st.Terminated != nil:
					start, end = st.Terminated.StartedAt.Time, st.Terminated.FinishedAt.Time
				case st.Running != nil:
					start, running = st.Running.StartedAt.Time, true
				}
				if !start.IsZero() && (from.IsZero() || start.Before(from)) {
					from = start
				}
				if end.After(to) {
					to = end
				}
			}
		}
	}
	if running || from.IsZero() {
		to = time.Time{}
	}
	return from, to
}

// terminatedState is the terminated state of the named container in the newest pod.
func terminatedState(pods []corev1.Pod, container string) *corev1.ContainerStateTerminated {
	if len(pods) == 0 {
		return nil
	}
	p := pods[len(pods)-1]
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if cs.Name != container {
			continue
		}
		if cs.State.Terminated != nil {
			return cs.State.Terminated
		}
		return cs.LastTerminationState.Terminated
	}
	return nil
}

// listPods asks the API server for the Job's pods, oldest first: the fallback when the
// cache has not caught up with a finished Job.
func (r *Runner) listPods(ctx context.Context, job *batchv1.Job, log *zap.Logger) []corev1.Pod {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	list, err := r.client.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{jobs.LabelJob: job.Name}.String(),
	})
	if err != nil {
		log.Warn("listing the job's pods", zap.Error(err))
		return nil
	}
	pods := make([]corev1.Pod, 0, len(list.Items))
	for _, p := range list.Items {
		if ownedBy(&p, job) {
			pods = append(pods, p)
		}
	}
	sortPods(pods)
	return pods
}

func ownedBy(p *corev1.Pod, job *batchv1.Job) bool {
	if job.UID == "" {
		return true
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "Job" {
			return o.UID == job.UID
		}
	}
	return true
}

func jobPods(nw *nsWatch, job *batchv1.Job) []*corev1.Pod {
	pods, err := nw.pods.Pods(job.Namespace).List(labels.SelectorFromSet(labels.Set{jobs.LabelJob: job.Name}))
	if err != nil {
		return nil
	}
	out := pods[:0:0]
	for _, p := range pods {
		if ownedBy(p, job) {
			out = append(out, p)
		}
	}
	return out
}

func failedCreate(nw *nsWatch, job *batchv1.Job) []*corev1.Event {
	events, err := nw.events.Events(job.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []*corev1.Event
	for _, e := range events {
		o := e.InvolvedObject
		if o.Kind == "Job" && o.Name == job.Name && (job.UID == "" || o.UID == "" || o.UID == job.UID) && e.Reason == ReasonFailedCreatePod {
			out = append(out, e)
		}
	}
	return out
}

// stuckState remembers since when each hopeless condition has been seen, so that a
// task fails only after the grace period (an image pull may succeed on retry).
type stuckState struct {
	grace     time.Duration
	firstSeen map[string]time.Time
}

// check returns the reason and message of a condition that lasted longer than the grace
// period, or how long to wait before checking again (0: nothing pending).
func (s *stuckState) check(now time.Time, pods []*corev1.Pod, failedCreate []*corev1.Event) (reason, msg string, next time.Duration) {
	type cand struct{ key, reason, msg string }
	var cands []cand
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			if w := cs.State.Waiting; w != nil && stuckReasons[w.Reason] {
				// Pull errors alternate between ErrImagePull and ImagePullBackOff; count
				// them as one condition.
				kind := w.Reason
				if kind == "ImagePullBackOff" {
					kind = "ErrImagePull"
				}
				cands = append(cands, cand{p.Name + "/" + cs.Name + "/" + kind, w.Reason,
					fmt.Sprintf("container %s: %s: %s", cs.Name, w.Reason, w.Message)})
			}
		}
	}
	for _, e := range failedCreate {
		cands = append(cands, cand{"event/" + e.Reason, e.Reason, fmt.Sprintf("%s: %s", e.Reason, e.Message)})
	}
	seen := map[string]bool{}
	for _, c := range cands {
		seen[c.key] = true
		first, ok := s.firstSeen[c.key]
		if !ok {
			first = now
			s.firstSeen[c.key] = now
		}
		left := s.grace - now.Sub(first)
		if left <= 0 {
			return c.reason, strings.TrimSuffix(c.msg, ": "), 0
		}
		if next == 0 || left < next {
			next = left
		}
	}
	// A condition that cleared (the pull worked after all) starts over if it returns.
	for k := range s.firstSeen {
		if !seen[k] {
			delete(s.firstSeen, k)
		}
	}
	return "", "", next
}

// abort deletes a Job that will not finish by itself (and, through the owner
// reference, its ConfigMap) unless the options keep it.
func (r *Runner) abort(job *batchv1.Job, log *zap.Logger) {
	if r.opts.KeepAbortedJobs {
		return
	}
	r.deleteQuietly(job.Namespace, job.Name, log, func(ctx context.Context) error {
		bg := metav1.DeletePropagationBackground
		return r.client.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
	})
}

func (r *Runner) deleteQuietly(ns, name string, log *zap.Logger, del func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := del(ctx); err != nil && !apierrors.IsNotFound(err) {
		log.Warn("cleaning up", zap.String("object", ns+"/"+name), zap.Error(err))
	}
}

// logsOf reads the task container's logs of the newest pod, plus the init container's
// when it failed. Unreadable logs are reported in place of the logs.
func (r *Runner) logsOf(ctx context.Context, job *batchv1.Job, pods []corev1.Pod) string {
	if len(pods) == 0 {
		return ""
	}
	pod := pods[len(pods)-1]
	var b strings.Builder
	if cs := terminatedState(pods, jobs.InitContainer); cs != nil && cs.ExitCode != 0 {
		b.WriteString("--- init container (copy files) ---\n")
		b.WriteString(r.readLogs(ctx, pod.Namespace, pod.Name, jobs.InitContainer))
		b.WriteString("\n--- task ---\n")
	}
	b.WriteString(r.readLogs(ctx, pod.Namespace, pod.Name, jobs.TaskContainer))
	return b.String()
}

func (r *Runner) readLogs(ctx context.Context, ns, pod, container string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	rc, err := r.client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).Stream(ctx)
	if err != nil {
		return fmt.Sprintf("(logs of %s unavailable: %v)", container, err)
	}
	defer rc.Close()
	s, err := readTail(rc, r.opts.MaxLogBytes)
	if err != nil {
		s += fmt.Sprintf("\n(reading logs of %s: %v)", container, err)
	}
	return s
}

// readTail reads r to the end keeping only about the last max bytes in memory, and
// returns them bounded like jobs.BoundLogs.
func readTail(r io.Reader, max int) (string, error) {
	var buf []byte
	dropped := 0
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if len(buf) > 2*max+len(chunk) {
			cut := len(buf) - max
			for cut < len(buf) && !utf8.RuneStart(buf[cut]) {
				cut++
			}
			dropped += cut
			buf = append(buf[:0], buf[cut:]...)
		}
		if errors.Is(err, io.EOF) {
			return jobs.BoundLogsDropped(string(buf), max, dropped), nil
		}
		if err != nil {
			return jobs.BoundLogsDropped(string(buf), max, dropped), err
		}
	}
}
