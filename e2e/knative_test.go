//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
	"github.com/keptn-contrib/job-executor-service/knative"
)

// knativeNS is the namespace knative/*.yaml name (JOB_NAMESPACE, the resource-service URL):
// the scenario applies them there unchanged, apart from the image and the Serving swap.
const knativeNS = "keptn"

// knativeConfig: the shipped Triggers route test/deployment .triggered to the service; the
// overflow type has only the scenario's own Trigger (no retries worth waiting for, and a
// dead-letter sink).
const knativeConfig = `apiVersion: v2
actions:
  - name: "Broker flow"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks: [{name: "greet", image: "busybox", cmd: ["sh", "-c", "echo knative-broker-ok"]}]
  - name: "Hold the queue"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks: [{name: "hold", image: "busybox", cmd: ["sh", "-c", "sleep 15; echo held"]}]
  - name: "Overflow"
    events: [{name: "sh.keptn.event.overflow.triggered"}]
    tasks: [{name: "never", image: "busybox", cmd: ["sh", "-c", "echo must-not-run"]}]
`

// requireKnative fails (not skips) without Knative Eventing: make e2e always installs it.
func requireKnative(t *testing.T) {
	t.Helper()
	vals, err := readEnvFile(env.Dir + "/e2e.env")
	require.NoError(t, err)
	require.NotEmpty(t, vals["E2E_KNATIVE_EVENTING"], "Knative Eventing not installed: run e2e/cluster.sh knative (make e2e does)")
}

// TestKnativeBroker runs knative/*.yaml on real Knative Eventing (cluster.sh knative: controller,
// webhook, in-memory channel, MT channel-based Broker). Knative Serving cannot run here, so the
// Knative Service becomes a Deployment + Service with the same pod spec (knativeManifests);
// everything else is applied as shipped. Events go in at the Broker's ingress, and a recording
// Trigger (no filter) sees everything on the Broker.
func TestKnativeBroker(t *testing.T) {
	t.Parallel()
	requireKnative(t)
	knativeNamespace(t)
	nodeIP := nodeInternalIP(t)
	api := resourceService(t, nodeIP, knativeConfig)
	rec := newRecorder(t, nodeIP)
	t.Cleanup(func() {
		if t.Failed() {
			for _, args := range [][]string{
				{"get", "brokers,triggers,sinkbindings,deployments,pods,jobs", "-n", knativeNS, "-o", "wide"},
				{"logs", "-n", knativeNS, "deployment/job-executor-service", "--tail=100"},
				{"logs", "-n", "knative-eventing", "deployment/mt-broker-filter", "--tail=40"},
			} {
				out, _ := kubectl(t, args...)
				t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
			}
		}
	})

	// README "Install": namespace (above), Broker, record key, then the manifests.
	kubectlApply(t, map[string]any{
		"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
		"metadata": map[string]any{"name": "default", "namespace": knativeNS},
	})
	out, err := kubectl(t, "create", "secret", "generic", "-n", knativeNS, "job-executor-service-record-key",
		"--from-literal=key="+recordSigningKey)
	require.NoError(t, err, out)
	objs, retries := knativeManifests(t, env.Image)
	kubectlApply(t, objs...)
	// Test-only Triggers: the recorder sees every event on the Broker; the overflow Trigger gives
	// up after two quick retries and hands the event to the dead-letter sink.
	kubectlApply(t, map[string]any{
		"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
		"metadata": map[string]any{"name": "e2e-recorder", "namespace": knativeNS},
		"spec":     map[string]any{"broker": "default", "subscriber": map[string]any{"uri": rec.URL + "/events"}},
	}, map[string]any{
		"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
		"metadata": map[string]any{"name": "e2e-overflow", "namespace": knativeNS},
		"spec": map[string]any{
			"broker":     "default",
			"filter":     map[string]any{"attributes": map[string]any{"type": "sh.keptn.event.overflow.triggered"}},
			"subscriber": map[string]any{"ref": map[string]any{"apiVersion": "v1", "kind": "Service", "name": "job-executor-service"}},
			"delivery": map[string]any{"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.5S",
				"deadLetterSink": map[string]any{"uri": rec.URL + "/dead-letter"}},
		},
	})

	start := time.Now()
	for _, args := range [][]string{
		{"wait", "-n", knativeNS, "broker/default", "--for=condition=Ready", "--timeout=180s"},
		{"wait", "-n", knativeNS, "trigger", "--all", "--for=condition=Ready", "--timeout=180s"},
	} {
		out, err := kubectl(t, args...)
		require.NoError(t, err, out)
	}
	// The SinkBinding's webhook injects K_SINK into the Deployment (a second rollout).
	sink := poll(t, 2*time.Minute, "K_SINK injected into the Deployment", func() (string, bool) {
		out, _ := kubectl(t, "get", "deployment", "-n", knativeNS, "job-executor-service", "-o",
			`jsonpath={.spec.template.spec.containers[0].env[?(@.name=="K_SINK")].value}`)
		return out, strings.HasPrefix(out, "http")
	})
	assert.Equal(t, "http://broker-ingress.knative-eventing.svc.cluster.local/"+knativeNS+"/default", sink)
	rolledOut(t)
	t.Logf("FIGURE %s broker_triggers_service_ready_s=%.1f", t.Name(), time.Since(start).Seconds())
	ingress := brokerIngress(t)

	var flow cloudevents.Event
	t.Run("triggered-started-finished", func(t *testing.T) {
		flow = triggered(t, "sh.keptn.event.test.triggered", nil)
		ev := flow
		sent := time.Now()
		postEvent(t, ingress, ev)
		started := rec.await(t, "/events", ofType(ev, "sh.keptn.event.test.started"), time.Minute)
		fin := rec.await(t, "/events", ofType(ev, "sh.keptn.event.test.finished"), 2*time.Minute)
		t.Logf("FIGURE %s started_s=%.1f finished_s=%.1f", t.Name(), started.at.Sub(sent).Seconds(), fin.at.Sub(sent).Seconds())
		assert.Equal(t, ev.ID(), started.ev.Extensions()["triggeredid"])
		assert.Equal(t, ev.ID(), fin.ev.Extensions()["triggeredid"])
		var data map[string]any
		require.NoError(t, fin.ev.DataAs(&data))
		assert.Equal(t, "succeeded", data["status"], string(fin.ev.Data()))
		assert.Contains(t, data["message"], "knative-broker-ok")
		assert.Equal(t, 1, jobCount(t, ev), "one Job for the event")
	})

	// While one action holds the queue (MAX_QUEUED_EVENTS=1: the only setting changed here), the
	// service answers 429: the shipped Trigger redelivers until it is accepted; the overflow
	// Trigger's two retries run out and its dead-letter sink gets the event.
	var hold, queued, overflow cloudevents.Event
	t.Run("busy-redelivery-dead-letter", func(t *testing.T) {
		out, err := kubectl(t, "set", "env", "-n", knativeNS, "deployment/job-executor-service", "MAX_QUEUED_EVENTS=1")
		require.NoError(t, err, out)
		rolledOut(t)

		hold = triggered(t, "sh.keptn.event.deployment.triggered", nil)
		postEvent(t, ingress, hold)
		holdStarted := rec.await(t, "/events", ofType(hold, "sh.keptn.event.deployment.started"), time.Minute)
		// The queued event's redeliveries span the shipped schedule (about a minute) from when it
		// is sent; on a busy node the hold's pod alone can take that long to start. Send it once
		// the hold's 15 s sleep runs, so the hold ends well inside the schedule, and after the
		// overflow event's 1.5 s of retries.
		poll(t, 2*time.Minute, "the hold's pod running", func() (string, bool) {
			out, _ := kubectl(t, "get", "pods", "-n", knativeNS, "-o", "jsonpath={.items[*].status.phase}",
				"-l", "keptn.sh/context="+fmt.Sprint(hold.Extensions()["shkeptncontext"]))
			return out, out == "Running"
		})
		queued = triggered(t, "sh.keptn.event.test.triggered", nil)
		overflow = triggered(t, "sh.keptn.event.overflow.triggered", nil)
		// Both at once: the in-memory channel answers the ingress only when the subscriber has
		// (after every redelivery), so the queued event's POST lasts until it is accepted.
		sent := time.Now()
		queuedPost := postEventAsync(t, ingress, queued)
		overflowPost := postEventAsync(t, ingress, overflow)

		dead := rec.await(t, "/dead-letter", func(e cloudevents.Event) bool { return e.ID() == overflow.ID() }, time.Minute)
		assert.Equal(t, "429", fmt.Sprint(dead.ev.Extensions()["knativeerrorcode"]), "dead-lettered after 429s: %v", dead.ev.Extensions())

		holdFin := rec.await(t, "/events", ofType(hold, "sh.keptn.event.deployment.finished"), 2*time.Minute)
		qStarted := rec.await(t, "/events", ofType(queued, "sh.keptn.event.test.started"), 2*time.Minute)
		qFin := rec.await(t, "/events", ofType(queued, "sh.keptn.event.test.finished"), 2*time.Minute)
		q, o := <-queuedPost, <-overflowPost
		require.NoError(t, q.err, "broker ingress, queued event")
		require.NoError(t, o.err, "broker ingress, overflow event")
		t.Logf("FIGURE %s ingress_post_queued_s=%.1f ingress_post_overflow_s=%.1f dead_letter_after_s=%.1f", t.Name(),
			q.took.Seconds(), o.took.Seconds(), dead.at.Sub(sent).Seconds())
		t.Logf("FIGURE %s hold_s=%.1f queued_accepted_after_s=%.1f queued_finished_after_s=%.1f", t.Name(),
			holdFin.at.Sub(holdStarted.at).Seconds(), qStarted.at.Sub(sent).Seconds(), qFin.at.Sub(sent).Seconds())
		// Sent while the queue was full, so only a redelivery after the hold ended got it in.
		assert.True(t, sent.Before(holdFin.at), "the queued event was sent while the hold ran")
		assert.True(t, qStarted.at.After(holdFin.at), "queued event accepted (%s) only after the hold finished (%s)", qStarted.at, holdFin.at)
		var data map[string]any
		require.NoError(t, qFin.ev.DataAs(&data))
		assert.Equal(t, "succeeded", data["status"], string(qFin.ev.Data()))
		assert.Equal(t, 0, jobCount(t, overflow), "a dead-lettered event runs nothing")
	})

	// While the resource-service answers 503, so does the service (config_unavailable): the
	// shipped Trigger redelivers until the outage is over. Another service of the project, so
	// that no cached config answers instead.
	var outage cloudevents.Event
	t.Run("unavailable-redelivery", func(t *testing.T) {
		sc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "orders"}
		api.AddScope(keptnapi.Latest, sc)
		api.Put(keptnapi.Latest, sc, "job/config.yaml", []byte(knativeConfig))
		outage = triggered(t, "sh.keptn.event.test.triggered", map[string]any{"service": "orders"})
		sent := time.Now()
		end := sent.Add(5 * time.Second)
		api.FailUntil(keptnapi.ResourceRequests, end, http.StatusServiceUnavailable)
		postEvent(t, ingress, outage)
		started := rec.await(t, "/events", ofType(outage, "sh.keptn.event.test.started"), 2*time.Minute)
		fin := rec.await(t, "/events", ofType(outage, "sh.keptn.event.test.finished"), 2*time.Minute)
		t.Logf("FIGURE %s accepted_after_s=%.1f finished_after_s=%.1f", t.Name(), started.at.Sub(sent).Seconds(), fin.at.Sub(sent).Seconds())
		var refused int
		for _, r := range api.Requests() {
			if r.Status == http.StatusServiceUnavailable && strings.Contains(r.Path, "/service/orders/") {
				refused++
			}
		}
		assert.NotZero(t, refused, "the service read the config during the outage")
		assert.True(t, started.at.After(end), "accepted (%s) only after the outage ended (%s)", started.at, end)
		var data map[string]any
		require.NoError(t, fin.ev.DataAs(&data))
		assert.Equal(t, "succeeded", data["status"], string(fin.ev.Data()))
	})

	// Exactly one of each, after longer than the shipped Triggers' whole retry schedule: any
	// redelivery of an accepted event would have arrived by then.
	t.Run("nothing-lost-or-doubled", func(t *testing.T) {
		quiet := retries + 10*time.Second
		t.Logf("waiting %s (shipped retry schedule %s) for late duplicates", quiet, retries)
		time.Sleep(quiet)
		test := map[string]int{"sh.keptn.event.test.triggered": 1, "sh.keptn.event.test.started": 1, "sh.keptn.event.test.finished": 1}
		for _, c := range []struct {
			ev    cloudevents.Event
			types map[string]int
			jobs  int
		}{
			{flow, test, 1},
			{hold, map[string]int{"sh.keptn.event.deployment.triggered": 1, "sh.keptn.event.deployment.started": 1, "sh.keptn.event.deployment.finished": 1}, 1},
			{queued, test, 1},
			{overflow, map[string]int{"sh.keptn.event.overflow.triggered": 1}, 0},
			{outage, test, 1},
		} {
			require.NotEmpty(t, c.ev.ID(), "a subtest before failed")
			assert.Equal(t, c.types, rec.types("/events", c.ev), "events on the Broker for %s", c.ev.Type())
			assert.Equal(t, c.jobs, jobCount(t, c.ev), "Jobs for %s", c.ev.Type())
		}
		dead := rec.all("/dead-letter")
		require.Len(t, dead, 1, "dead-letter sink")
		assert.Equal(t, overflow.ID(), dead[0].ev.ID())
	})
}

// rolledOut waits for the Deployment's rollout and for its old pods to be gone. Rollout status
// ends when an old pod is marked for deletion; on a busy node its kubelet may not have sent it
// SIGTERM yet, and an event it accepts then belongs to an instance about to stop (another
// instance resumes it only after the old one's lease expires).
func rolledOut(t *testing.T) {
	t.Helper()
	out, err := kubectl(t, "rollout", "status", "-n", knativeNS, "deployment/job-executor-service", "--timeout=180s")
	require.NoError(t, err, out)
	poll(t, 3*time.Minute, "one pod of the Deployment, not terminating", func() (string, bool) {
		out, _ := kubectl(t, "get", "pods", "-n", knativeNS, "-l", "app.kubernetes.io/name=job-executor-service",
			"-o", `jsonpath={range .items[*]}{.metadata.name} deleting={.metadata.deletionTimestamp}{"\n"}{end}`)
		pods := strings.Fields(out)
		return out, len(pods) == 2 && pods[1] == "deleting="
	})
}

// knativeNamespace makes the namespace the manifests name, after a kept one of a failed run is gone.
func knativeNamespace(t *testing.T) {
	t.Helper()
	if out, err := kubectl(t, "get", "namespace", knativeNS, "--ignore-not-found", "-o", "name"); err == nil && strings.TrimSpace(out) != "" {
		t.Logf("namespace %s exists (a failed run's): deleting it first", knativeNS)
		out, err := kubectl(t, "delete", "namespace", knativeNS, "--timeout=180s")
		require.NoError(t, err, out)
	}
	createNamespace(t, knativeNS)
	// README step 1: SinkBinding injection in inclusion mode (not needed in v0.50.0's exclusion mode).
	out, err := kubectl(t, "label", "namespace", knativeNS, "bindings.knative.dev/include=true")
	require.NoError(t, err, out)
}

// knativeManifests reads knative/*.yaml and makes two changes: the image (image: and
// INIT_CONTAINER_IMAGE), and the Knative Service becomes a Deployment and a Service with its
// pod spec, which the Triggers and the SinkBinding then name. It also returns the longest
// retry schedule of the shipped Triggers' delivery specs.
func knativeManifests(t *testing.T, image string) ([]any, time.Duration) {
	t.Helper()
	files, err := filepath.Glob("../knative/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var objs []any
	var ksvcs, triggers, bindings int
	var schedule time.Duration
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else {
				require.NoError(t, err, f)
			}
			if obj == nil {
				continue
			}
			spec, _ := obj["spec"].(map[string]any)
			switch fmt.Sprint(obj["apiVersion"], " ", obj["kind"]) {
			case "serving.knative.dev/v1 Service":
				ksvcs++
				objs = append(objs, deploymentFor(t, obj, image)...)
				continue
			case "eventing.knative.dev/v1 Trigger":
				triggers++
				ref := spec["subscriber"].(map[string]any)["ref"].(map[string]any)
				require.Equal(t, "serving.knative.dev/v1", ref["apiVersion"])
				ref["apiVersion"], ref["kind"] = "v1", "Service"
				schedule = max(schedule, retrySchedule(t, spec["delivery"]))
			case "sources.knative.dev/v1 SinkBinding":
				bindings++
				subject := spec["subject"].(map[string]any)
				require.Equal(t, "serving.knative.dev/v1", subject["apiVersion"])
				subject["apiVersion"], subject["kind"] = "apps/v1", "Deployment"
			}
			objs = append(objs, obj)
		}
	}
	require.Equal(t, 1, ksvcs)
	require.Equal(t, 1, bindings)
	require.NotZero(t, triggers)
	return objs, schedule
}

// retrySchedule is how long Knative keeps redelivering under a delivery spec: the sum of its
// backoff delays (exponential: delay·2^i, linear: delay·i, i = 0…retry-1, as in
// knative.dev/eventing/pkg/kncloudevents).
func retrySchedule(t *testing.T, delivery any) time.Duration {
	d, _ := delivery.(map[string]any)
	require.NotNil(t, d, "the shipped Triggers have a delivery spec")
	retry := int(d["retry"].(float64))
	delay, err := time.ParseDuration(strings.ToLower(strings.TrimPrefix(fmt.Sprint(d["backoffDelay"]), "PT")))
	require.NoError(t, err, "backoffDelay %v (PTnS only)", d["backoffDelay"])
	var sum time.Duration
	for i := range retry {
		switch d["backoffPolicy"] {
		case "exponential":
			sum += delay << i
		default:
			sum += delay * time.Duration(i)
		}
	}
	return sum
}

// deploymentFor is what Knative Serving would run for the Knative Service ksvc, minus the
// autoscaler and the queue-proxy: a Deployment with its pod spec (one replica, its min-scale)
// and a Service on port 80, as a Knative Service is addressed. Serving fills in the probes'
// port with the container port; the pod spec is otherwise as shipped.
func deploymentFor(t *testing.T, ksvc map[string]any, image string) []any {
	t.Helper()
	raw, err := json.Marshal(ksvc)
	require.NoError(t, err)
	var svc knative.Service
	require.NoError(t, json.Unmarshal(raw, &svc))
	pod := svc.Spec.Template.Spec.PodSpec
	require.Len(t, pod.Containers, 1)
	c := &pod.Containers[0]
	require.Len(t, c.Ports, 1)
	port := c.Ports[0].ContainerPort
	c.Image = image
	var initImage bool
	for i := range c.Env {
		if c.Env[i].Name == "INIT_CONTAINER_IMAGE" {
			c.Env[i].Value, initImage = image, true
		}
	}
	require.True(t, initImage, "INIT_CONTAINER_IMAGE in service.yaml")
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.IntValue() == 0 {
			p.HTTPGet.Port = intstr.FromInt32(port)
		}
	}
	labels := svc.Spec.Template.Metadata.Labels
	require.NotEmpty(t, labels)
	one := int32(1)
	dep := appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: svc.Metadata.Name, Namespace: svc.Metadata.Namespace, Labels: svc.Metadata.Labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: svc.Spec.Template.Metadata, Spec: pod},
		},
	}
	service := corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: svc.Metadata.Name, Namespace: svc.Metadata.Namespace, Labels: svc.Metadata.Labels},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(port)}},
		},
	}
	return []any{dep, service}
}

// kubectlApply applies objects (anything that marshals to a Kubernetes object) as one List.
func kubectlApply(t *testing.T, objs ...any) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": objs})
	require.NoError(t, err)
	cmd := exec.Command(env.Kubectl, "apply", "-f", "-")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
}

// resourceService serves a Keptn API stand-in with jobConfig as Keptn's resource-service in the
// namespace (the CONFIGURATION_SERVICE of service.yaml): a Service without selector whose
// EndpointSlice is the stand-in on the node's IP.
func resourceService(t *testing.T, nodeIP, jobConfig string) *keptnapi.Server {
	t.Helper()
	api := keptnapi.New(keptnapi.Options{})
	sc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}
	api.AddScope(keptnapi.Latest, sc)
	api.Put(keptnapi.Latest, sc, "job/config.yaml", []byte(jobConfig))
	ln, err := net.Listen("tcp", net.JoinHostPort(nodeIP, "0"))
	require.NoError(t, err)
	h := api.Handler()
	// The resource-service serves /v1/...; the stand-in has it under /resource-service as the gateway does.
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = "/resource-service" + r.URL.Path
		r.URL.RawPath = ""
		h.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	kubectlApply(t, map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "resource-service", "namespace": knativeNS},
		"spec":     map[string]any{"ports": []any{map[string]any{"name": "http", "port": 8080, "targetPort": port}}},
	}, map[string]any{
		"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
		"metadata": map[string]any{"name": "resource-service-node", "namespace": knativeNS,
			"labels": map[string]any{"kubernetes.io/service-name": "resource-service"}},
		"addressType": "IPv4",
		"endpoints":   []any{map[string]any{"addresses": []any{nodeIP}}},
		"ports":       []any{map[string]any{"name": "http", "port": port, "protocol": "TCP"}},
	})
	return api
}

// brokerIngress is the Broker's address as reachable from the host (kube-proxy routes ClusterIPs).
func brokerIngress(t *testing.T) string {
	t.Helper()
	out, err := kubectl(t, "get", "service", "-n", "knative-eventing", "broker-ingress", "-o", "jsonpath={.spec.clusterIP}")
	require.NoError(t, err, out)
	return "http://" + strings.TrimSpace(out) + "/" + knativeNS + "/default"
}

// postEvent sends ev to the Broker ingress (binary mode), requires it to be taken and returns
// how long the ingress took to answer.
func postEvent(t *testing.T, url string, ev cloudevents.Event) time.Duration {
	t.Helper()
	start := time.Now()
	r := sendBinary(t, url, ev)
	require.Equal(t, http.StatusAccepted, r.Status, "broker ingress: %s", r.Body)
	return time.Since(start)
}

// posted is how a POST to the Broker ingress ended.
type posted struct {
	took time.Duration
	err  error
}

// postEventAsync is postEvent on its own goroutine, for POSTs that last as long as the
// subscriber's redeliveries; the result arrives on the channel.
func postEventAsync(t *testing.T, url string, ev cloudevents.Event) <-chan posted {
	t.Helper()
	req := binaryRequest(t, url, ev, nil)
	done := make(chan posted, 1)
	go func() {
		start := time.Now()
		resp, err := (&http.Client{Timeout: 3 * time.Minute}).Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
			}
		}
		done <- posted{took: time.Since(start), err: err}
	}()
	return done
}

// recorder is a CloudEvents sink in the test process on the node's IP, where the recording
// Trigger and the dead-letter sink deliver; events are kept per URL path.
type recorder struct {
	URL    string
	mu     sync.Mutex
	events map[string][]recordedEvent
}

type recordedEvent struct {
	ev cloudevents.Event
	at time.Time
}

func newRecorder(t *testing.T, ip string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	require.NoError(t, err)
	rec := &recorder{URL: "http://" + ln.Addr().String(), events: map[string][]recordedEvent{}}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec.mu.Lock()
		rec.events[r.URL.Path] = append(rec.events[r.URL.Path], recordedEvent{ev: *e, at: time.Now()})
		rec.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return rec
}

func (r *recorder) all(path string) []recordedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recordedEvent(nil), r.events[path]...)
}

// types counts the events at path in the Keptn context of ev, by type.
func (r *recorder) types(path string, ev cloudevents.Event) map[string]int {
	n := map[string]int{}
	for _, e := range r.all(path) {
		if e.ev.Extensions()["shkeptncontext"] == ev.Extensions()["shkeptncontext"] {
			n[e.ev.Type()]++
		}
	}
	return n
}

// await waits up to d for the first event at path that match accepts.
func (r *recorder) await(t *testing.T, path string, match func(cloudevents.Event) bool, d time.Duration) recordedEvent {
	t.Helper()
	var got recordedEvent
	poll(t, d, "event at "+path, func() (string, bool) {
		for _, e := range r.all(path) {
			if match(e.ev) {
				got = e
				return "", true
			}
		}
		var seen []string
		for _, e := range r.all(path) {
			seen = append(seen, e.ev.Type()+" "+fmt.Sprint(e.ev.Extensions()["shkeptncontext"]))
		}
		return strings.Join(seen, "\n"), false
	})
	return got
}

// ofType matches events of type typ in the Keptn context of ev.
func ofType(ev cloudevents.Event, typ string) func(cloudevents.Event) bool {
	return func(e cloudevents.Event) bool {
		return e.Type() == typ && e.Extensions()["shkeptncontext"] == ev.Extensions()["shkeptncontext"]
	}
}

// poll calls f every 250 ms until it reports done or d has passed (then fails with its last value).
func poll(t *testing.T, d time.Duration, what string, f func() (string, bool)) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v, ok := f()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s; last seen:\n%s", what, d, v)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// jobCount is the number of the service's Jobs for ev's Keptn context.
func jobCount(t *testing.T, ev cloudevents.Event) int {
	t.Helper()
	out, err := kubectl(t, "get", "jobs", "-n", knativeNS, "-o", "name",
		"-l", "app.kubernetes.io/managed-by=job-executor-service,keptn.sh/context="+fmt.Sprint(ev.Extensions()["shkeptncontext"]))
	require.NoError(t, err, out)
	return len(strings.Fields(out))
}
