//go:build e2e

package e2e

// The chart's default mode for real: Keptn's own distributor (the unmodified 1.4.5 source,
// built by cluster.sh images) as the sidecar, NATS in the cluster, and the Keptn API stand-in
// behind Services named as Keptn names them. Nothing here stands in for the distributor.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/keptn/go-utils/pkg/api/models"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
)

// distributorConfig: test.triggered runs a task that reads a file fetched through the
// distributor's API proxy; deployment.triggered runs a task that waits for the test's gate
// (so that the distributor can be restarted while it runs).
const distributorConfig = `apiVersion: v2
actions:
  - name: "Via distributor"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "Greet"
        image: "busybox"
        files: [greeting.txt]
        cmd: ["sh", "-c", "cat /keptn/greeting.txt; echo for $(KEPTN_PROJECT)"]
  - name: "Until released"
    events:
      - name: "sh.keptn.event.deployment.triggered"
    tasks:
      - name: "Wait for the gate"
        image: "busybox"
        cmd: ["sh", "-c", "until wget -q -O /dev/null http://@GATE@/deployment; do sleep 1; done; echo released"]
  - name: "Loud"
    events:
      - name: "sh.keptn.event.evaluation.triggered"
    tasks:
      - name: "About 2 MiB of log"
        image: "busybox"
        cmd: ["sh", "-c", "yes 'a line of task output, 64 bytes long, repeated to fill the log..' | head -n 32768"]
`

const greeting = "hello through the distributor's proxy"

// outageConfig is the job config of the service "orders", read after a resource-service outage.
const outageConfig = `apiVersion: v2
actions:
  - name: "After the outage"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "Order"
        image: "busybox"
        cmd: ["echo", "ordered after the outage"]
`

// distributorWindow is longer than the distributor's whole delivery attempt of one event
// (keptn/go-utils v0_2_0.HTTPEventSender: a 5 s context, 3 retries after backoffs of 0.75 s,
// 1.5 s and 2.25 s ±50 %, then one more backoff before it gives up): a negative check that
// waits this long has seen every redelivery the distributor could make.
const distributorWindow = 12 * time.Second

// TestDistributorNATS installs the chart with its default values (only the image names
// changed) into a namespace that holds what a Keptn cluster offers the distributor: NATS as
// keptn-nats and the stand-in as resource-service and shipyard-controller. Events are
// published on NATS and the .started/.finished the distributor publishes there are counted.
func TestDistributorNATS(t *testing.T) {
	t.Parallel()
	helm := helmBinary(t)
	ns := namespace(t)
	kc := newKeptnCluster(t, ns)
	installWithDistributor(t, helm, ns)
	t.Cleanup(func() {
		if t.Failed() {
			dumpRelease(t, ns)
			out, _ := kubectl(t, "logs", "-n", ns, "deployment/"+deployFullname, "-c", "distributor", "--tail=60")
			t.Logf("distributor log:\n%s", out)
		}
	})
	kc.waitSubscribed(t, 1)

	if !t.Run("once", func(t *testing.T) {
		ev := triggered(t, "sh.keptn.event.test.triggered", nil)
		start := time.Now()
		kc.publish(t, ev)
		fin := kc.rec.wait(t, ev.ID(), "sh.keptn.event.test.finished", 2*time.Minute)
		t.Logf(".triggered on NATS → .finished on NATS: %s", time.Since(start).Round(time.Millisecond))
		assert.Equal(t, "succeeded", fin.Data["status"], fin.Raw)
		assert.Contains(t, fin.Data["message"], greeting+"\nfor sockshop", "the task file came through the API proxy")
		kc.rec.assertOnce(t, ev.ID(), "sh.keptn.event.test.started", "sh.keptn.event.test.finished")

		// The service fetched config and file through the distributor's proxy: the stand-in
		// behind the resource-service Service saw them (paths as the API gateway names them).
		var paths []string
		for _, r := range kc.api.Requests() {
			paths = append(paths, r.Path)
		}
		assert.Contains(t, paths, "/resource-service/v1/project/sockshop/stage/dev/service/carts/resource/job/config.yaml")
		assert.Contains(t, paths, "/resource-service/v1/project/sockshop/stage/dev/service/carts/resource/greeting.txt")
	}) {
		t.FailNow()
	}

	// The resource-service answers 503 for 20 s, longer than the distributor's whole delivery
	// of an event (5 s): the service takes the event in at once (202) and keeps it pending,
	// reads its config again until the outage is over, then runs it once. Another service of
	// the project, so that no cached config answers instead.
	t.Run("config-outage", func(t *testing.T) {
		sc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "orders"}
		kc.api.AddScope(keptnapi.Latest, sc)
		kc.api.Put(keptnapi.Latest, sc, "job/config.yaml", []byte(outageConfig))
		ev := triggered(t, "sh.keptn.event.test.triggered", map[string]any{"service": "orders"})
		sent := time.Now()
		end := sent.Add(20 * time.Second)
		kc.api.FailUntil(keptnapi.ResourceRequests, end, http.StatusServiceUnavailable)
		kc.publish(t, ev)
		kc.rec.wait(t, ev.ID(), "sh.keptn.event.test.started", 2*time.Minute)
		startedAfter := time.Since(sent)
		fin := kc.rec.wait(t, ev.ID(), "sh.keptn.event.test.finished", 2*time.Minute)
		finishedAfter := time.Since(sent)
		var refused []string
		for _, r := range kc.api.Requests() {
			if r.Status == http.StatusServiceUnavailable && strings.Contains(r.Path, "/service/orders/") {
				refused = append(refused, r.Time.Sub(sent).Round(100*time.Millisecond).String())
			}
		}
		t.Logf("FIGURE %s outage_s=20 started_after_s=%.1f finished_after_s=%.1f refused_config_reads_at=%v",
			t.Name(), startedAfter.Seconds(), finishedAfter.Seconds(), refused)
		assert.NotEmpty(t, refused, "the service read the config during the outage")
		assert.Greater(t, startedAfter, end.Sub(sent), ".started only once the outage was over")
		assert.Equal(t, "succeeded", fin.Data["status"], fin.Raw)
		assert.Contains(t, fin.Data["message"], "ordered after the outage")
		kc.rec.assertOnce(t, ev.ID(), "sh.keptn.event.test.started", "sh.keptn.event.test.finished")
		m := serviceMetrics(t, ns)
		t.Logf("service metrics:\n%s", grepLines(m, `^jes_events_received_total`))
		assert.Contains(t, m, `jes_events_received_total{outcome="config_pending"} 1`+"\n", "kept pending once")
		assert.NotRegexp(t, `jes_events_received_total\{outcome="duplicate"\} [1-9]`, m, "the distributor delivered it once")
		out, err := kubectl(t, "logs", "-n", ns, "deployment/"+deployFullname, "-c", "distributor")
		require.NoError(t, err, out)
		assert.NotContains(t, out, "could not send cloudevent", "the distributor never gave up on a delivery")
	})

	// A burst: the distributor forwards one event at a time (one mutex around each 5 s
	// delivery), so a slow or refusing receiver would lose events rather than get them again.
	t.Run("burst", func(t *testing.T) {
		const n = 100
		ids := make([]string, n)
		start := time.Now()
		for i := range ids {
			ev := triggered(t, "sh.keptn.event.test.triggered", map[string]any{"burst": i})
			ev.SetID(fmt.Sprintf("burst-%d-%d", i, time.Now().UnixNano()))
			ids[i] = ev.ID()
			kc.publish(t, ev)
		}
		published := time.Since(start)
		for _, id := range ids {
			kc.rec.wait(t, id, "sh.keptn.event.test.started", 3*time.Minute)
		}
		allStarted := time.Since(start)
		for _, id := range ids {
			fin := kc.rec.wait(t, id, "sh.keptn.event.test.finished", 5*time.Minute)
			assert.Equal(t, "succeeded", fin.Data["status"], fin.Raw)
		}
		t.Logf("burst of %d: published in %s, every .started after %s, every .finished after %s",
			n, published.Round(time.Millisecond), allStarted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		kc.rec.assertOnce(t, ids[0], "sh.keptn.event.test.started", "sh.keptn.event.test.finished")
		for _, id := range ids[1:] {
			assert.Equal(t, 1, kc.rec.count(id, "sh.keptn.event.test.started"), id)
			assert.Equal(t, 1, kc.rec.count(id, "sh.keptn.event.test.finished"), id)
		}
		m := serviceMetrics(t, ns)
		t.Logf("service metrics after the burst:\n%s", grepLines(m, `^jes_(events_received|outgoing_event_retries|outgoing_events)_total`))
		assert.NotRegexp(t, `jes_events_received_total\{outcome="(busy|duplicate)"\} [1-9]`, m)
		out, err := kubectl(t, "get", "pod", servicePod(t, ns), "-n", ns, "-o",
			`jsonpath={.status.containerStatuses[?(@.name=="distributor")].restartCount}`)
		require.NoError(t, err, out)
		assert.Equal(t, "0", strings.TrimSpace(out), "the distributor (chart limits 100m CPU, 32Mi) was never restarted")
	})

	// A task with about 2 MiB of log: the .finished the service sends through /event must fit the
	// distributor's limit there (API_PROXY_MAX_PAYLOAD_BYTES_KB, 128 KiB in the chart: above
	// it the distributor answers 500, which a sender retries) and NATS's max_payload (1 MiB).
	t.Run("large-finished", func(t *testing.T) {
		ev := triggered(t, "sh.keptn.event.evaluation.triggered", nil)
		kc.publish(t, ev)
		fin := kc.rec.wait(t, ev.ID(), "sh.keptn.event.evaluation.finished", 2*time.Minute)
		t.Logf(".finished of a task with about 2 MiB of log: %d bytes on NATS", len(fin.Raw))
		assert.Equal(t, "succeeded", fin.Data["status"])
		assert.Less(t, len(fin.Raw), 128<<10, "below the distributor's /event limit")
		assert.Contains(t, fin.Data["message"], "a line of task output")
		kc.rec.assertOnce(t, ev.ID(), "sh.keptn.event.evaluation.started", "sh.keptn.event.evaluation.finished")
		assert.Zero(t, retries(t, ns, "finished"), "no .finished was refused and retried")
	})

	// The distributor crashes twice while an action runs (the kubelet then backs off before
	// restarting it): the service's .finished meets no distributor, is retried and arrives once.
	t.Run("distributor-restart", func(t *testing.T) {
		ev := triggered(t, "sh.keptn.event.deployment.triggered", nil)
		kc.publish(t, ev)
		kc.rec.wait(t, ev.ID(), "sh.keptn.event.deployment.started", 2*time.Minute)
		before := retries(t, ns, "finished")
		down := crashDistributor(t, ns)
		kc.gate.open("deployment")
		fin := kc.rec.wait(t, ev.ID(), "sh.keptn.event.deployment.finished", 2*time.Minute)
		t.Logf("distributor down %s before the gate opened; .finished after %s", down.Round(time.Millisecond), time.Since(kc.gate.opened("deployment")).Round(time.Millisecond))
		assert.Equal(t, "succeeded", fin.Data["status"], fin.Raw)
		assert.Contains(t, fin.Data["message"], "released")
		assert.Greater(t, retries(t, ns, "finished"), before, "the .finished was sent while the distributor was down (retried)")
		kc.rec.assertOnce(t, ev.ID(), "sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished")
	})
}

// TestDistributorReplicas: two replicas, each with its distributor, in the one queue group
// the chart sets (PUBSUB_GROUP = the app name): every event reaches one replica only.
func TestDistributorReplicas(t *testing.T) {
	t.Parallel()
	helm := helmBinary(t)
	ns := namespace(t)
	kc := newKeptnCluster(t, ns)
	installWithDistributor(t, helm, ns, "--set", "replicaCount=2")
	t.Cleanup(func() {
		if t.Failed() {
			dumpRelease(t, ns)
		}
	})
	pods := podNames(t, ns)
	require.Len(t, pods, 2)
	// Both replicas register under one integration (same name and namespace).
	kc.waitSubscribed(t, 2)

	const n = 10
	ids := make([]string, n)
	for i := range ids {
		ev := triggered(t, "sh.keptn.event.test.triggered", map[string]any{"replicas": i})
		ev.SetID(fmt.Sprintf("replicas-%d-%d", i, time.Now().UnixNano()))
		ids[i] = ev.ID()
		kc.publish(t, ev)
	}
	for _, id := range ids {
		kc.rec.wait(t, id, "sh.keptn.event.test.finished", 3*time.Minute)
	}
	kc.rec.assertOnce(t, ids[0], "sh.keptn.event.test.started", "sh.keptn.event.test.finished")
	for _, id := range ids[1:] {
		assert.Equal(t, 1, kc.rec.count(id, "sh.keptn.event.test.started"), id)
		assert.Equal(t, 1, kc.rec.count(id, "sh.keptn.event.test.finished"), id)
	}
	// Each event was received by one replica: the receivers' counts add up to n.
	total := 0
	for _, p := range pods {
		out, err := kubectl(t, "exec", "-n", ns, p, "-c", "job-executor-service", "--",
			"wget", "-q", "-O", "-", "http://127.0.0.1:9090/metrics")
		require.NoError(t, err, out)
		got := 0
		if m := regexp.MustCompile(`(?m)^jes_events_received_total\{outcome="matched"\} (\d+)$`).FindStringSubmatch(out); m != nil {
			got, _ = strconv.Atoi(m[1])
		}
		assert.NotRegexp(t, `jes_events_received_total\{outcome="duplicate"\} [1-9]`, out, p)
		t.Logf("replica %s received %d of the %d events", p, got, n)
		total += got
	}
	assert.Equal(t, n, total, "every event reached exactly one replica")
}

// TestDistributorRemote: remoteControlPlane.enabled. The distributor registers with the
// control plane through the API, polls controlPlane/v1/event/triggered for each subscription
// and sends the service's events to the API's /v1/event, the token on every request.
func TestDistributorRemote(t *testing.T) {
	t.Parallel()
	require.NotEmpty(t, env.DistributorImage, "E2E_DISTRIBUTOR_IMAGE missing: run make e2e-images")
	helm := helmBinary(t)
	ns := namespace(t)
	api := nodeKeptnAPI(t, nodeInternalIP(t), strings.ReplaceAll(distributorConfig, "@GATE@", "127.0.0.1:1"))
	api.Put(keptnapi.Latest, keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}, "greeting.txt", []byte(greeting+"\n"))
	installWithDistributor(t, helm, ns, "--set", "remoteControlPlane.enabled=true",
		"--set", "remoteControlPlane.api.protocol=http",
		"--set", "remoteControlPlane.api.hostname="+api.Host,
		"--set", "remoteControlPlane.api.token="+apiToken)
	t.Cleanup(func() {
		if t.Failed() {
			dumpRelease(t, ns)
			out, _ := kubectl(t, "logs", "-n", ns, "deployment/"+deployFullname, "-c", "distributor", "--tail=60")
			t.Logf("distributor log:\n%s", out)
		}
	})

	// The poller polls the subscriptions of the last heartbeat answer: none before the first.
	deadline := time.Now().Add(2 * time.Minute)
	var reg keptnapi.Registration
	for {
		if regs := api.Registrations(); len(regs) == 1 && regs[0].Pings >= 1 {
			reg = regs[0]
			break
		}
		require.True(t, time.Now().Before(deadline), "the distributor did not register and send a heartbeat: %+v", api.Registrations())
		time.Sleep(200 * time.Millisecond)
	}
	assert.Equal(t, "job-executor-service", reg.Name)
	assert.Equal(t, "remote-execution-plane", reg.MetaData.Location)
	assert.Equal(t, ns, reg.MetaData.KubernetesMetaData.Namespace)
	var topics []string
	for _, s := range reg.Subscriptions {
		topics = append(topics, s.Event)
	}
	assert.ElementsMatch(t, []string{"sh.keptn.event.test.triggered", "sh.keptn.event.deployment.triggered",
		"sh.keptn.event.evaluation.triggered", "sh.keptn.event.release.triggered", "sh.keptn.event.approval.triggered"}, topics)

	ev := triggered(t, "sh.keptn.event.test.triggered", nil)
	var ce models.KeptnContextExtendedCE
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &ce))
	start := time.Now()
	api.Publish(ce)
	fin := waitEvent(t, api.Server, ev, "sh.keptn.event.test.finished", 2*time.Minute)
	t.Logf("open .triggered at the API → .finished at the API: %s (HTTP_POLLING_INTERVAL 10 s)", time.Since(start).Round(time.Millisecond))
	assert.Equal(t, "succeeded", dataString(fin, "status"), string(fin.Raw))
	assert.Contains(t, dataString(fin, "message"), greeting+"\nfor sockshop")
	assert.Equal(t, ev.ID(), fin.Triggeredid)

	// Once each, also after the distributor's delivery window and another poll of the (now
	// closed) triggered event.
	count := func(typ string) int {
		n := 0
		for _, e := range api.Events() {
			if e.TypeName() == typ && e.Triggeredid == ev.ID() {
				n++
			}
		}
		return n
	}
	assert.Never(t, func() bool {
		return count("sh.keptn.event.test.started") > 1 || count("sh.keptn.event.test.finished") > 1
	}, distributorWindow+10*time.Second, 200*time.Millisecond)
	assert.Equal(t, 1, count("sh.keptn.event.test.started"))
	assert.Equal(t, 1, count("sh.keptn.event.test.finished"))

	// Config and file came through the proxy, which escapes the resource URI once more for a
	// remote API (the resource-service unescapes it twice).
	var paths []string
	for _, r := range api.Requests() {
		paths = append(paths, r.Method+" "+r.Path)
	}
	assert.Contains(t, paths, "GET /resource-service/v1/project/sockshop/stage/dev/service/carts/resource/job%2Fconfig.yaml")
	assert.Contains(t, paths, "GET /controlPlane/v1/event/triggered/sh.keptn.event.test.triggered")
}

// installWithDistributor installs the chart with its default values except the images: the
// ko-built service and the distributor built from Keptn's source.
func installWithDistributor(t *testing.T, helm, ns string, extra ...string) {
	t.Helper()
	repo, digest, ok := strings.Cut(env.Image, "@")
	require.True(t, ok, "JES_IMAGE %q is not repository@digest", env.Image)
	drepo, dtag := splitTag(t, env.DistributorImage)
	args := []string{"install", deployRelease, "../chart", "-n", ns,
		"--set", "image.repository=" + repo, "--set", "image.digest=" + digest,
		"--set", "distributor.image.repository=" + drepo, "--set", "distributor.image.tag=" + dtag}
	runHelm(t, helm, append(append(args, extra...), "--wait", "--timeout", "120s")...)
}

// splitTag splits repository:tag (the repository may hold a registry port).
func splitTag(t *testing.T, ref string) (string, string) {
	i := strings.LastIndex(ref, ":")
	require.True(t, i > strings.LastIndex(ref, "/"), "image %q has no tag", ref)
	return ref[:i], ref[i+1:]
}

// keptnCluster is what the distributor finds in a Keptn cluster's namespace: NATS behind the
// Service keptn-nats and the Keptn API stand-in (on the node's IP) behind the Services
// resource-service and shipyard-controller. rec records every event on NATS.
type keptnCluster struct {
	api  *keptnapi.Server
	nc   *nats.Conn
	rec  *natsRecorder
	gate *gate
}

func newKeptnCluster(t *testing.T, ns string) *keptnCluster {
	t.Helper()
	require.NotEmpty(t, env.DistributorImage, "E2E_DISTRIBUTOR_IMAGE missing: run make e2e-images")
	require.NotEmpty(t, env.NATSImage, "E2E_NATS_IMAGE missing: run make e2e-images")
	nodeIP := nodeInternalIP(t)
	g := newGate(t, nodeIP)
	api := keptnapi.New(keptnapi.Options{}) // in the cluster Keptn's services take no token
	sc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}
	api.AddScope(keptnapi.Latest, sc)
	api.Put(keptnapi.Latest, sc, "job/config.yaml", []byte(strings.ReplaceAll(distributorConfig, "@GATE@", g.host)))
	api.Put(keptnapi.Latest, sc, "greeting.txt", []byte(greeting+"\n"))
	rsPort := serveOnNode(t, nodeIP, api.ResourceService())
	scPort := serveOnNode(t, nodeIP, api.ShipyardController())

	manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: keptn-nats, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: nats}}
  template:
    metadata: {labels: {app.kubernetes.io/name: nats}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: nats
          image: %[2]s
          args: ["--port", "4222", "--http_port", "8222"]
          ports: [{name: client, containerPort: 4222}]
          readinessProbe: {httpGet: {path: /healthz, port: 8222}, periodSeconds: 1}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {name: keptn-nats, namespace: %[1]s}
spec:
  selector: {app.kubernetes.io/name: nats}
  ports: [{name: client, port: 4222}]
%[3]s%[4]s`, ns, env.NATSImage, nodeService(ns, "resource-service", nodeIP, rsPort), nodeService(ns, "shipyard-controller", nodeIP, scPort))
	apply(t, manifest)
	out, err := kubectl(t, "rollout", "status", "deployment/keptn-nats", "-n", ns, "--timeout=120s")
	require.NoError(t, err, out)

	nc := connectNATS(t, ns)
	rec := newNATSRecorder(t, nc)
	return &keptnCluster{api: api, nc: nc, rec: rec, gate: g}
}

// nodeService is a Service without selector whose one endpoint is ip:port on the node.
func nodeService(ns, name, ip string, port int) string {
	return fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[2]s-node
  namespace: %[1]s
  labels: {kubernetes.io/service-name: %[2]s}
addressType: IPv4
ports: [{name: http, port: %[4]d, protocol: TCP}]
endpoints: [{addresses: ["%[3]s"]}]
`, ns, name, ip, port)
}

func apply(t *testing.T, manifest string) {
	t.Helper()
	cmd := exec.Command(env.Kubectl, "apply", "-f", "-")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s\n%s", out, manifest)
}

// serveOnNode serves h on the node's IP (reachable from pods) and returns the port.
func serveOnNode(t *testing.T, ip string, h http.Handler) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	require.NoError(t, err, "listen on the node IP so that pods reach it")
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// connectNATS connects to keptn-nats through its ClusterIP (kube-proxy routes it from the
// node) or a port-forward.
func connectNATS(t *testing.T, ns string) *nats.Conn {
	t.Helper()
	out, err := kubectl(t, "get", "service", "keptn-nats", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
	require.NoError(t, err, out)
	addr := net.JoinHostPort(strings.TrimSpace(out), "4222")
	nc, err := nats.Connect("nats://"+addr, nats.Timeout(5*time.Second), nats.RetryOnFailedConnect(false))
	if err != nil {
		t.Logf("NATS at %s not reachable from the host (%v); using kubectl port-forward", addr, err)
		addr = portForward(t, ns, "keptn-nats", "4222")
		nc, err = nats.Connect("nats://"+addr, nats.Timeout(5*time.Second))
		require.NoError(t, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// publish sends ev on NATS as the shipyard-controller does: structured JSON, subject = type.
func (k *keptnCluster) publish(t *testing.T, ev cloudevents.Event) {
	t.Helper()
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	require.NoError(t, k.nc.Publish(ev.Type(), b))
	require.NoError(t, k.nc.Flush())
}

// waitSubscribed waits until replicas distributors have applied their subscriptions. A
// distributor that registers with the control plane forwards an event only when it matches
// a subscription from a heartbeat answer (receiver.go: pullSubscriptions), and its first
// heartbeat comes HEARTBEAT_INTERVAL (10 s) after registering: events published before that
// are dropped. Heartbeats come from one loop that applies each answer before sleeping, so
// after a second heartbeat per replica the first one's subscriptions are in force.
func (k *keptnCluster) waitSubscribed(t *testing.T, replicas int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		regs := k.api.Registrations()
		if len(regs) == 1 && regs[0].Pings >= 2*replicas {
			require.NotEmpty(t, regs[0].Subscriptions)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the distributor did not register and send two heartbeats per replica: %+v", regs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// natsEvent is one event seen on NATS.
type natsEvent struct {
	Type        string         `json:"type"`
	ID          string         `json:"id"`
	TriggeredID string         `json:"triggeredid"`
	Data        map[string]any `json:"data"`
	Raw         string         `json:"-"`
}

// natsRecorder keeps every Keptn event published on NATS (subject sh.keptn.>).
type natsRecorder struct {
	mu     sync.Mutex
	events []natsEvent
}

func newNATSRecorder(t *testing.T, nc *nats.Conn) *natsRecorder {
	t.Helper()
	r := &natsRecorder{}
	sub, err := nc.Subscribe("sh.keptn.>", func(m *nats.Msg) {
		var e natsEvent
		if err := json.Unmarshal(m.Data, &e); err != nil {
			e.Type = "undecodable " + m.Subject
		}
		e.Raw = string(m.Data)
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
	})
	require.NoError(t, err)
	require.NoError(t, sub.SetPendingLimits(-1, -1)) // a burst must not be dropped on our side
	require.NoError(t, nc.Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return r
}

func (r *natsRecorder) find(triggeredID, eventType string) []natsEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []natsEvent
	for _, e := range r.events {
		if e.TriggeredID == triggeredID && e.Type == eventType {
			out = append(out, e)
		}
	}
	return out
}

func (r *natsRecorder) count(triggeredID, eventType string) int {
	return len(r.find(triggeredID, eventType))
}

// wait returns the first event of eventType for triggeredID, failing after d.
func (r *natsRecorder) wait(t *testing.T, triggeredID, eventType string, d time.Duration) natsEvent {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if got := r.find(triggeredID, eventType); len(got) > 0 {
			return got[0]
		}
		if time.Now().After(deadline) {
			r.mu.Lock()
			n := len(r.events)
			r.mu.Unlock()
			t.Fatalf("no %s for %s on NATS after %s (%d events seen)", eventType, triggeredID, d, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// assertOnce: each of the types was published exactly once for triggeredID, also after
// distributorWindow (every redelivery the distributor could make).
func (r *natsRecorder) assertOnce(t *testing.T, triggeredID string, types ...string) {
	t.Helper()
	assert.Never(t, func() bool {
		for _, typ := range types {
			if r.count(triggeredID, typ) > 1 {
				return true
			}
		}
		return false
	}, distributorWindow, 200*time.Millisecond, "an event published twice for %s", triggeredID)
	for _, typ := range types {
		assert.Equal(t, 1, r.count(triggeredID, typ), "%s for %s", typ, triggeredID)
	}
}

// gate answers GET /<name> with 200 once opened (404 before): tasks wait for it.
type gate struct {
	host string
	mu   sync.Mutex
	at   map[string]time.Time
}

func newGate(t *testing.T, ip string) *gate {
	g := &gate{at: map[string]time.Time{}}
	port := serveOnNode(t, ip, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		_, open := g.at[strings.TrimPrefix(r.URL.Path, "/")]
		g.mu.Unlock()
		if !open {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "open\n")
	}))
	g.host = net.JoinHostPort(ip, strconv.Itoa(port))
	return g
}

func (g *gate) open(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.at[name] = time.Now()
}

func (g *gate) opened(name string) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.at[name]
}

// servicePod is the release's one running service pod.
func servicePod(t *testing.T, ns string) string {
	t.Helper()
	names := podNames(t, ns)
	require.Len(t, names, 1, "service pods")
	return names[0]
}

// serviceMetrics is the service's /metrics, read inside its pod (the ingress policy admits
// no one to the monitoring port by default).
func serviceMetrics(t *testing.T, ns string) string {
	t.Helper()
	out, err := kubectl(t, "exec", "-n", ns, servicePod(t, ns), "-c", "job-executor-service", "--",
		"wget", "-q", "-O", "-", "http://127.0.0.1:9090/metrics")
	require.NoError(t, err, out)
	return out
}

// retries is jes_outgoing_event_retries_total{kind=kind} (0 when not yet counted).
func retries(t *testing.T, ns, kind string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^jes_outgoing_event_retries_total\{kind="` + kind + `"\} (\S+)$`).FindStringSubmatch(serviceMetrics(t, ns))
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

func grepLines(s, pattern string) string {
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// crashDistributor kills the distributor container (SIGKILL through containerd, as a crash
// or an OOM kill would) each time it runs again, until it has crashed three times and the
// kubelet holds it in CrashLoopBackOff: the next start is then 40 s away (the kubelet's
// backoff doubles from 10 s), a window in which nothing listens on 127.0.0.1:8081 in the pod.
// It returns how long the distributor has been down since the first kill.
func crashDistributor(t *testing.T, ns string) time.Duration {
	t.Helper()
	pod := servicePod(t, ns)
	sock := filepath.Join(env.Dir, "run", "containerd.sock")
	var firstKill time.Time
	killed := map[string]bool{}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		out, err := kubectl(t, "get", "pod", pod, "-n", ns, "-o", `jsonpath={range .status.containerStatuses[?(@.name=="distributor")]}{.containerID} {.restartCount} {.state.waiting.reason}{end}`)
		require.NoError(t, err, out)
		f := strings.Fields(out)
		require.GreaterOrEqual(t, len(f), 2, "distributor status %q", out)
		restarts, _ := strconv.Atoi(f[1])
		if len(f) == 3 && f[2] == "CrashLoopBackOff" && restarts >= 3 {
			return time.Since(firstKill)
		}
		if id, ok := strings.CutPrefix(f[0], "containerd://"); ok && len(f) == 2 && !killed[id] {
			out, err := exec.Command("ctr", "-a", sock, "-n", "k8s.io", "task", "kill", "-s", "SIGKILL", id).CombinedOutput()
			require.NoError(t, err, "ctr task kill %s: %s", id, out)
			killed[id] = true
			if firstKill.IsZero() {
				firstKill = time.Now()
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the distributor container of %s never reached CrashLoopBackOff after 3 restarts", pod)
	return 0
}
