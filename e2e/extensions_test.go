//go:build e2e

package e2e

// Job config fields beyond the original (backoffLimit, keptnVolumeSize, nodeSelector,
// tolerations), each proven by its effect on the real cluster.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
)

// extensionRun is one scenario: a service in namespace ns with the job config, and a
// triggered event of eventType sent to it.
type extensionRun struct {
	ns  string
	api *keptnapi.Server
	svc *service
	ev  cloudevents.Event
}

// runExtension starts a service with cfg (and extra settings) in a fresh namespace and sends
// it a triggered event of eventType, which must be accepted.
func runExtension(t *testing.T, ns, cfg, eventType string, extra map[string]string) extensionRun {
	t.Helper()
	api := keptnAPI(t, cfg)
	svc := startService(t, api, ns, extra)
	return extensionRun{ns: ns, api: api, svc: svc, ev: sendTriggered(t, svc, eventType)}
}

// sendTriggered sends svc a triggered event of eventType, which must be accepted.
func sendTriggered(t *testing.T, svc *service, eventType string) cloudevents.Event {
	t.Helper()
	ev := triggered(t, eventType, nil)
	r := sendBinary(t, svc.URL, ev)
	require.Less(t, r.Status, 300, string(r.Body))
	return ev
}

// finished waits for the .finished of the run's event.
func (x extensionRun) finished(t *testing.T) keptnapi.Event {
	t.Helper()
	return waitEvent(t, x.api, x.ev, strings.Replace(x.ev.Type(), ".triggered", ".finished", 1), finishTimeout)
}

// attemptCounter answers GET /attempt/<name>: 500 the first time for a name, 200 after. A task
// that fetches it fails on its first attempt only, whatever the timing.
type attemptCounter struct {
	mu    sync.Mutex
	count map[string]int
	Addr  string // host:port on the node IP, reachable from pods
}

func newAttemptCounter(t *testing.T) *attemptCounter {
	t.Helper()
	c := &attemptCounter{count: map[string]int{}}
	ln, err := net.Listen("tcp", net.JoinHostPort(nodeInternalIP(t), "0"))
	require.NoError(t, err)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/attempt/")
		c.mu.Lock()
		c.count[name]++
		n := c.count[name]
		c.mu.Unlock()
		if n == 1 {
			http.Error(w, "first attempt fails", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	c.Addr = ln.Addr().String()
	return c
}

func (c *attemptCounter) attempts(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[name]
}

// TestExtensionRetries: a task with backoffLimit that fails once succeeds on its retry, and a
// task that always fails is tried backoffLimit+1 times; .finished says how often each ran.
func TestExtensionRetries(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	counter := newAttemptCounter(t)
	host, port, err := net.SplitHostPort(counter.Addr)
	require.NoError(t, err)
	fetch := fmt.Sprintf(`printf 'GET /attempt/flaky HTTP/1.0\r\n\r\n' | nc -w 10 %s %s | head -n 1 | grep ' 200 '`, host, port)
	cfg := `apiVersion: v2
actions:
  - name: "Flaky"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks:
      - name: "flaky"
        image: "busybox"
        backoffLimit: 2
        cmd: [sh, -c, "` + strings.ReplaceAll(fetch, `\`, `\\`) + `"]
  - name: "Broken"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks:
      - {name: "broken", image: "busybox", backoffLimit: 1, cmd: [sh, -c, "echo broken; exit 4"]}
`
	x := runExtension(t, ns, cfg, "sh.keptn.event.test.triggered", nil)
	fin, ev := x.finished(t), x.ev
	msg := dataString(fin, "message")
	assert.Equal(t, "errored", dataString(fin, "status"), msg)
	assert.Contains(t, msg, "Task 'flaky' finished successfully! (2 attempts)")
	assert.Contains(t, msg, "Task 'broken' failed: BackoffLimitExceeded: container exited with code 4 (2 attempts)")
	assert.Equal(t, 2, counter.attempts("flaky"), "the flaky task ran twice")
	for _, j := range jobsOf(t, ns, ev) {
		switch j.Annotations["job-executor-service/task"] {
		case "flaky":
			assert.Equal(t, int32(2), *j.Spec.BackoffLimit)
			assert.Equal(t, int32(1), j.Status.Succeeded)
			assert.Equal(t, int32(1), j.Status.Failed)
		case "broken":
			assert.Equal(t, int32(2), j.Status.Failed)
		}
	}
}

// TestExtensionVolumeSize: /keptn is bounded by keptnVolumeSize; a task writing more is
// evicted by the kubelet and .finished says so, while one within its size completes.
func TestExtensionVolumeSize(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cfg := `apiVersion: v2
actions:
  - name: "Volume"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks:
      - name: "within"
        image: "busybox"
        keptnVolumeSize: 30Mi
        cmd: [sh, -c, "dd if=/dev/zero of=/keptn/data bs=1M count=20 && echo wrote 20Mi"]
      - name: "beyond"
        image: "busybox"
        keptnVolumeSize: 5Mi
        maxPollDuration: 180
        cmd: [sh, -c, "dd if=/dev/zero of=/keptn/data bs=1M count=20; echo wrote 20Mi; sleep 170"]
`
	x := runExtension(t, ns, cfg, "sh.keptn.event.test.triggered", nil)
	fin, ev := x.finished(t), x.ev
	msg := dataString(fin, "message")
	assert.Equal(t, "errored", dataString(fin, "status"), msg)
	assert.Contains(t, msg, "Task 'within' finished successfully!")
	assert.Contains(t, msg, "Task 'beyond' failed: Evicted: pod evicted:")
	assert.Contains(t, msg, "exceeds the limit")
	for _, j := range jobsOf(t, ns, ev) {
		want := map[string]string{"within": "30Mi", "beyond": "5Mi"}[j.Annotations["job-executor-service/task"]]
		assert.Equal(t, want, j.Spec.Template.Spec.Volumes[0].EmptyDir.SizeLimit.String())
	}
}

// virtualNode registers a Ready node that no kubelet runs, tainted and labelled for this
// test alone: the real scheduler binds pods to it, which shows where a task may go without
// tainting the node every other scenario shares. Pods bound to it never start.
func virtualNode(t *testing.T, name, label, taintKey string) {
	t.Helper()
	node := map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": name, "labels": map[string]string{label: "yes", "kubernetes.io/hostname": name}},
		"spec":     map[string]any{"taints": []map[string]string{{"key": taintKey, "value": "yes", "effect": "NoSchedule"}}},
	}
	b, err := json.Marshal(node)
	require.NoError(t, err)
	f := filepath.Join(t.TempDir(), "node.json")
	require.NoError(t, os.WriteFile(f, b, 0o600))
	out, err := kubectl(t, "create", "-f", f)
	require.NoError(t, err, out)
	t.Cleanup(func() {
		// Pods bound to a node without kubelet never terminate by themselves.
		_, _ = kubectl(t, "delete", "node", name, "--wait=false")
	})
	now := time.Now().UTC().Format(time.RFC3339)
	status := map[string]any{"status": map[string]any{
		"capacity":    map[string]string{"cpu": "4", "memory": "8Gi", "pods": "20"},
		"allocatable": map[string]string{"cpu": "4", "memory": "8Gi", "pods": "20"},
		"conditions": []map[string]string{{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "virtual",
			"lastHeartbeatTime": now, "lastTransitionTime": now}},
	}}
	b, err = json.Marshal(status)
	require.NoError(t, err)
	out, err = kubectl(t, "patch", "node", name, "--subresource=status", "--type=merge", "-p", string(b))
	require.NoError(t, err, out)
}

// TestExtensionPlacement: nodeSelector and tolerations reach the scheduler. A task selecting
// a tainted node without tolerating its taint is not scheduled at all; with the toleration it
// is bound to that node; a toleration the installation does not allow is refused before any
// Job exists.
func TestExtensionPlacement(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	node, label, taint := "jes-e2e-virtual-"+ns, "jes-e2e/pool-"+ns, "jes-e2e/dedicated-"+ns
	virtualNode(t, node, label, taint)
	cfg := fmt.Sprintf(`apiVersion: v2
actions:
  - name: "Untolerated"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks:
      - {name: "untolerated", image: "busybox", maxPollDuration: 30, nodeSelector: {%[1]s: "yes"}, cmd: [sh, -c, "true"]}
  - name: "Tolerated"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks:
      - name: "tolerated"
        image: "busybox"
        maxPollDuration: 30
        nodeSelector: {%[1]s: "yes"}
        tolerations: [{key: %[2]s, operator: Equal, value: "yes", effect: NoSchedule}]
        cmd: [sh, -c, "true"]
  - name: "Refused"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks:
      - {name: "refused", image: "busybox", tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]}
`, label, taint)
	x := runExtension(t, ns, cfg, "sh.keptn.event.test.triggered", map[string]string{"ALLOWED_JOB_TOLERATIONS": "jes-e2e/*"})
	ev := x.ev
	// Both Jobs' pods exist while the actions wait (maxPollDuration): read where they went.
	var untolerated, tolerated *corev1.Pod
	require.Eventually(t, func() bool {
		out, err := kubectl(t, "-n", ns, "get", "pods", "-l", "keptn.sh/context="+kctxOf(ev), "-o", "json")
		if err != nil {
			return false
		}
		var list corev1.PodList
		if json.Unmarshal([]byte(out), &list) != nil {
			return false
		}
		untolerated, tolerated = nil, nil
		for i, p := range list.Items {
			switch p.Labels["job-executor-service/action-index"] { // pods carry the Job's labels
			case "0": // untolerated
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
						untolerated = &list.Items[i]
					}
				}
			case "1": // tolerated
				if p.Spec.NodeName != "" {
					tolerated = &list.Items[i]
				}
			}
		}
		return untolerated != nil && tolerated != nil
	}, 60*time.Second, 500*time.Millisecond, "the scheduler decided about both pods")
	assert.Empty(t, untolerated.Spec.NodeName, "not placed anywhere: the selected node is tainted, the others are not selected")
	assert.Equal(t, node, tolerated.Spec.NodeName, "the toleration let it onto the selected node")

	msg := dataString(x.finished(t), "message")
	assert.Contains(t, msg, "Task 'untolerated' failed: MaxPollDurationExceeded")
	assert.Contains(t, msg, "Task 'tolerated' failed: MaxPollDurationExceeded")

	refused := sendTriggered(t, x.svc, "sh.keptn.event.deployment.triggered")
	fin := waitEvent(t, x.api, refused, "sh.keptn.event.deployment.finished", finishTimeout)
	msg = dataString(fin, "message")
	assert.Equal(t, "errored", dataString(fin, "status"), msg)
	assert.Contains(t, msg, `tolerations[0]: taint key "node-role.kubernetes.io/control-plane" is not in the allowed toleration list (ALLOWED_JOB_TOLERATIONS)`)
	assert.Empty(t, jobsOf(t, ns, refused), "refused before any Job")
}

// TestExtensionParallel: the tasks of a parallel action run at the same time on the cluster:
// each Job starts before the other completes.
func TestExtensionParallel(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cfg := `apiVersion: v2
actions:
  - name: "Together"
    parallel: true
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks:
      - {name: "one", image: "busybox", cmd: [sh, -c, "echo one; sleep 8"]}
      - {name: "two", image: "busybox", cmd: [sh, -c, "echo two; sleep 8"]}
`
	x := runExtension(t, ns, cfg, "sh.keptn.event.test.triggered", nil)
	fin, ev := x.finished(t), x.ev
	msg := assertSucceeded(t, fin, ev)
	assert.Contains(t, msg, "Task 'one' finished successfully!\n\nLogs:\none")
	assert.Contains(t, msg, "Task 'two' finished successfully!\n\nLogs:\ntwo")
	jobs := jobsOf(t, ns, ev)
	require.Len(t, jobs, 2)
	a, b := jobs[0].Status, jobs[1].Status
	require.NotNil(t, a.StartTime)
	require.NotNil(t, b.StartTime)
	require.NotNil(t, a.CompletionTime)
	require.NotNil(t, b.CompletionTime)
	assert.True(t, a.StartTime.Before(b.CompletionTime) && b.StartTime.Before(a.CompletionTime),
		"the Jobs overlap: %v-%v and %v-%v", a.StartTime, a.CompletionTime, b.StartTime, b.CompletionTime)
}

// TestExtensionResults: a task hands data back through its termination message; it arrives
// in .finished under data.jobExecutor.results.<task>, and unreadable results are reported.
func TestExtensionResults(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cfg := `apiVersion: v2
actions:
  - name: "Tests"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks:
      - {name: "unit", image: "busybox", cmd: [sh, -c, "echo running; printf '{\"passed\": 42, \"failed\": 0}' > /dev/termination-log"]}
      - {name: "counts", image: "busybox", cmd: [sh, -c, "printf 'suite=smoke\\nduration=3s\\n' > /dev/termination-log"]}
      - {name: "broken", image: "busybox", cmd: [sh, -c, "printf '{not json' > /dev/termination-log"]}
`
	x := runExtension(t, ns, cfg, "sh.keptn.event.test.triggered", nil)
	fin, ev := x.finished(t), x.ev
	msg := assertSucceeded(t, fin, ev)
	assert.Contains(t, msg, "Task 'broken' finished successfully!\nResults not used: results are not a valid JSON object")
	var d struct {
		JobExecutor struct {
			Results map[string]any `json:"results"`
		} `json:"jobExecutor"`
		Test map[string]string `json:"test"`
	}
	raw, err := json.Marshal(fin.Data)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &d), string(raw))
	assert.Equal(t, map[string]any{"passed": float64(42), "failed": float64(0)}, d.JobExecutor.Results["unit"])
	assert.Equal(t, map[string]any{"suite": "smoke", "duration": "3s"}, d.JobExecutor.Results["counts"])
	assert.Contains(t, d.JobExecutor.Results["broken"], "error")
	assert.NotEmpty(t, d.Test["start"], "lighthouse's window is still there")
}

// authRegistry is a registry that requires a login: a proxy in front of the harness's local
// registry that answers 401 without Basic credentials, on 127.0.0.1 (containerd speaks plain
// HTTP to localhost registries). /v2/<repo>/... serves the local registry's library/busybox
// under any repository name, so that each scenario pulls a reference the node has not cached.
type authRegistry struct {
	Host       string // host:port
	user, pass string
	mu         sync.Mutex
	refused    int // requests without valid credentials
}

func newAuthRegistry(t *testing.T, user, pass string) *authRegistry {
	t.Helper()
	upstream, err := url.Parse("http://" + env.Registry)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	reg := &authRegistry{user: user, pass: pass}
	repo := regexp.MustCompile(`^/v2/[^/]+/busybox/`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != reg.user || p != reg.pass {
			reg.mu.Lock()
			reg.refused++
			reg.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="e2e"`)
			http.Error(w, "login first", http.StatusUnauthorized)
			return
		}
		r.URL.Path = repo.ReplaceAllString(r.URL.Path, "/v2/library/busybox/")
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	reg.Host = ln.Addr().String()
	return reg
}

// TestExtensionImagePullSecrets: a private image pulls with the task's imagePullSecrets, or
// the installation's (DEFAULT_IMAGE_PULL_SECRETS); without credentials the pull is refused
// and the task fails fast with Kubernetes' reason; a protected Secret is refused before any Job.
func TestExtensionImagePullSecrets(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	reg := newAuthRegistry(t, "e2e-user", "e2e-"+ns)
	out, err := kubectl(t, "-n", ns, "create", "secret", "docker-registry", "registry-creds",
		"--docker-server="+reg.Host, "--docker-username=e2e-user", "--docker-password=e2e-"+ns)
	require.NoError(t, err, out)
	cfg := fmt.Sprintf(`apiVersion: v2
actions:
  - name: "Without"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks:
      - {name: "no-creds", image: "%[1]s/without/busybox:1.35", imagePullPolicy: Always, cmd: [sh, -c, "echo pulled"]}
  - name: "With"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks:
      - {name: "creds", image: "%[1]s/with/busybox:1.35", imagePullPolicy: Always, imagePullSecrets: [registry-creds], cmd: [sh, -c, "echo pulled with the task secret"]}
  - name: "Default"
    events: [{name: "sh.keptn.event.release.triggered"}]
    tasks:
      - {name: "default-creds", image: "%[1]s/default/busybox:1.35", imagePullPolicy: Always, cmd: [sh, -c, "echo pulled with the installation secret"]}
  - name: "Protected"
    events: [{name: "sh.keptn.event.approval.triggered"}]
    tasks:
      - {name: "protected", image: "%[1]s/with/busybox:1.35", imagePullSecrets: [keptn-api-token]}
`, reg.Host)

	// FAIL_FAST_SECONDS: a refused pull fails the task after 15 s instead of the default.
	x := runExtension(t, ns, cfg, "sh.keptn.event.test.triggered", map[string]string{"FAIL_FAST_SECONDS": "15", "PROTECTED_SECRETS": "keptn-api-token"})
	msg := dataString(x.finished(t), "message")
	assert.Regexp(t, `Task 'no-creds' failed: (ErrImagePull|ImagePullBackOff)`, msg)
	reg.mu.Lock()
	assert.Positive(t, reg.refused, "the pull without credentials was refused by the registry")
	reg.mu.Unlock()

	with := sendTriggered(t, x.svc, "sh.keptn.event.deployment.triggered")
	assertSucceeded(t, waitEvent(t, x.api, with, "sh.keptn.event.deployment.finished", finishTimeout), with)

	protected := sendTriggered(t, x.svc, "sh.keptn.event.approval.triggered")
	msg = dataString(waitEvent(t, x.api, protected, "sh.keptn.event.approval.finished", finishTimeout), "message")
	assert.Contains(t, msg, `imagePullSecrets[0]: secret "keptn-api-token" is a secret of the installation itself`)
	assert.Empty(t, jobsOf(t, ns, protected), "refused before any Job")

	api := keptnAPI(t, cfg)
	svc := startService(t, api, ns, map[string]string{"DEFAULT_IMAGE_PULL_SECRETS": "registry-creds", "INSTANCE_ID": "default-pull-secrets"})
	def := sendTriggered(t, svc, "sh.keptn.event.release.triggered")
	assertSucceeded(t, waitEvent(t, api, def, "sh.keptn.event.release.finished", finishTimeout), def)
	for _, j := range jobsOf(t, ns, def) {
		assert.Equal(t, "registry-creds", j.Spec.Template.Spec.ImagePullSecrets[0].Name)
	}
}
