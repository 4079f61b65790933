package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

// virtualNode takes the pods the harness makes for Jobs in scale mode: it exists for the API
// server (which forwards a pod's log request to its kubelet address, the real kubelet here,
// which answers 404 for a pod it does not run) and is unschedulable, so nothing else lands
// on it and the real kubelet never runs its pods.
const virtualNode = "jes-bench-virtual"

// cluster is the driver's own client, unthrottled: it measures, it is not measured.
type cluster struct {
	kube kubernetes.Interface
	ns   string
}

func newCluster(kubeconfig string) (*cluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	cfg.UserAgent = "jes-bench"
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &cluster{kube: kube}, nil
}

func (c *cluster) setUp(ctx context.Context, ns string) error {
	c.ns = ns
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	real, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(real.Items) == 0 {
		return fmt.Errorf("no node to borrow the kubelet address from: %v", err)
	}
	_ = c.kube.CoreV1().Nodes().Delete(ctx, virtualNode, metav1.DeleteOptions{})
	if _, err := c.kube.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: virtualNode},
		Spec:       corev1.NodeSpec{Unschedulable: true},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// The node controllers write to a new node too (taints): retry on their conflicts.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.kube.CoreV1().Nodes().Get(ctx, virtualNode, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Addresses = real.Items[0].Status.Addresses
		n.Status.DaemonEndpoints = real.Items[0].Status.DaemonEndpoints
		_, err = c.kube.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

func (c *cluster) tearDown() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = c.kube.CoreV1().Nodes().Delete(ctx, virtualNode, metav1.DeleteOptions{})
	_ = c.kube.CoreV1().Namespaces().Delete(ctx, c.ns, metav1.DeleteOptions{})
}

// jobController turns Kubernetes' Job controller on or off through the harness.
func jobController(on bool) error {
	state := "off"
	if on {
		state = "on"
	}
	cmd := exec.Command("bash", "e2e/cluster.sh", "jobcontroller", state)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// createConfigMaps is the baseline of accepting an event: one durable write, a ConfigMap the
// size of an event record, from bare client-go.
func (c *cluster) createConfigMaps(ctx context.Context, round, n, conc int) sample {
	payload := strings.Repeat("x", 1024)
	return closedLoop(n, conc, 0, func(i int) (int, error) {
		_, err := c.kube.CoreV1().ConfigMaps(c.ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("baseline-%d-%d", round, i), Labels: map[string]string{"bench": "baseline"}},
			Data:       map[string]string{"event": payload},
		}, metav1.CreateOptions{})
		if err != nil {
			return 0, err
		}
		return 201, nil
	}, 201)
}

// waitJobs waits until the namespace holds n Jobs of the given Keptn contexts and returns them.
func (c *cluster) waitJobs(ctx context.Context, contexts map[string]bool, timeout time.Duration) ([]batchv1.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		list, err := c.kube.BatchV1().Jobs(c.ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			var out []batchv1.Job
			for _, j := range list.Items {
				if contexts[j.Labels[jobs.LabelKeptnContext]] {
					out = append(out, j)
				}
			}
			if len(out) == len(contexts) {
				return out, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %d Jobs: %w", len(contexts), ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// complete does what the Job controller and a kubelet would for a task that ran and
// succeeded: a pod (on the virtual node) that terminated with exit code 0, then the Job's
// Complete condition. It returns when each Job's status was written, by Keptn context.
func (c *cluster) complete(ctx context.Context, js []batchv1.Job, conc int) (map[string]time.Time, error) {
	done := map[string]time.Time{}
	var mu sync.Mutex
	var firstErr error
	work := make(chan batchv1.Job)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for j := range work {
				at, err := c.completeOne(ctx, j)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("completing job %s: %w", j.Name, err)
				}
				done[j.Labels[jobs.LabelKeptnContext]] = at
				mu.Unlock()
			}
		})
	}
	for _, j := range js {
		work <- j
	}
	close(work)
	wg.Wait()
	return done, firstErr
}

func (c *cluster) completeOne(ctx context.Context, j batchv1.Job) (time.Time, error) {
	start := metav1.NewTime(time.Now().Add(-time.Second).Truncate(time.Second))
	end := metav1.NewTime(time.Now().Truncate(time.Second))
	spec := *j.Spec.Template.Spec.DeepCopy()
	spec.NodeName = virtualNode
	pod, err := c.kube.CoreV1().Pods(c.ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: j.Name + "-bench", Labels: j.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: j.Name, UID: j.UID, Controller: ptr(true)}}},
		Spec: spec,
	}, metav1.CreateOptions{})
	if err != nil {
		return time.Time{}, err
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodSucceeded, StartTime: &start}
	for _, ctr := range spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{Name: ctr.Name, Image: ctr.Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: start, FinishedAt: end}}})
	}
	if _, err := c.kube.CoreV1().Pods(c.ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return time.Time{}, err
	}
	job := j.DeepCopy()
	job.Status = batchv1.JobStatus{StartTime: &start, CompletionTime: &end, Succeeded: 1, Ready: ptr(int32(0)), Terminating: ptr(int32(0)),
		UncountedTerminatedPods: &batchv1.UncountedTerminatedPods{},
		Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastProbeTime: end, LastTransitionTime: end},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastProbeTime: end, LastTransitionTime: end},
		}}
	if _, err := c.kube.BatchV1().Jobs(c.ns).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}

func ptr[T any](v T) *T { return &v }

// observeCompletions is the baseline for the lag rows: the least the service's path from
// Complete to .finished costs on this API server at this moment. The driver follows the
// Jobs of ctxs with an informer (a raw watch gave no samples at 1,000 Jobs: it ended early;
// an informer re-lists) and, when one is Complete, reads its pod's log as the service does; the
// result (by Keptn context) says when that read returned. Stop with the returned func.
func (c *cluster) observeCompletions(ctx context.Context, ctxs map[string]bool) (func() map[string]time.Time, error) {
	read := map[string]time.Time{}
	seen := map[string]bool{}
	var mu sync.Mutex
	var reads sync.WaitGroup
	factory := informers.NewSharedInformerFactoryWithOptions(c.kube, 0, informers.WithNamespace(c.ns))
	inf := factory.Batch().V1().Jobs().Informer()
	onJob := func(obj any) {
		j, ok := obj.(*batchv1.Job)
		if !ok {
			return
		}
		key := j.Labels[jobs.LabelKeptnContext]
		mu.Lock()
		defer mu.Unlock()
		if !ctxs[key] || seen[key] || !complete(j) {
			return
		}
		seen[key] = true
		reads.Go(func() {
			container := j.Spec.Template.Spec.Containers[0].Name
			// A pod on the virtual node: the kubelet answers 404, as it does to the service.
			_, _ = c.kube.CoreV1().Pods(c.ns).GetLogs(j.Name+"-bench", &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
			mu.Lock()
			read[key] = time.Now()
			mu.Unlock()
		})
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onJob, UpdateFunc: func(_, obj any) { onJob(obj) },
	}); err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	factory.Start(stop)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		close(stop)
		return nil, fmt.Errorf("jobs informer did not sync")
	}
	return func() map[string]time.Time {
		// The service saw every completion already; give the driver's informer as long.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			mu.Lock()
			n := len(seen)
			mu.Unlock()
			if n == len(ctxs) {
				break
			}
		}
		close(stop)
		factory.Shutdown()
		reads.Wait()
		mu.Lock()
		defer mu.Unlock()
		return read
	}, nil
}

func complete(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
