//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
)

// deployConfig's task prints what the scenario checks inside the Job's container: the project
// (env from the service), the uid (the chart's default pod security context) and whether a
// service account token is mounted (the chart's job service account has none). The second
// action's Job cannot create its pod: only the Events informer (RBAC: list/watch events)
// reports that, so it checks the chart's Role from the service's side. The third action's
// task runs in another namespace (@NS2@, replaced): it needs what the chart installs there
// for jobConfig.extraNamespaces.
const deployConfig = `apiVersion: v2
actions:
  - name: "Deployed"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "Greet"
        image: "busybox"
        cmd: ["sh"]
        args:
          - -c
          - echo "deployed by helm for $(KEPTN_PROJECT)"; echo "uid=$(id -u)"; ls /var/run/secrets/kubernetes.io/serviceaccount/token 2>/dev/null || echo "no-sa-token"
  - name: "Cannot start"
    events:
      - name: "sh.keptn.event.deployment.triggered"
    tasks:
      - name: "Missing account"
        image: "busybox"
        serviceAccount: "no-such-sa"
        cmd: ["true"]
  - name: "Elsewhere"
    events:
      - name: "sh.keptn.event.release.triggered"
    tasks:
      - name: "Other namespace"
        image: "busybox"
        namespace: "@NS2@"
        cmd: ["sh"]
        args:
          - -c
          - echo "released in another namespace for $(KEPTN_PROJECT)"; echo "uid=$(id -u)"; ls /var/run/secrets/kubernetes.io/serviceaccount/token 2>/dev/null || echo "no-sa-token"
`

const (
	deployRelease = "jes"
	// deployFullname is the chart's fullname for release "jes" (release + chart name).
	deployFullname = deployRelease + "-job-executor-service"
	jobLabelKey    = "e2e-rev"
)

// TestDeployHelm installs the chart for real (direct API mode: the distributor image is not
// available offline), runs an event through the in-cluster Service, checks the RBAC the chart
// grants, upgrades the release and uninstalls it. The subtests depend on each other in order.
func TestDeployHelm(t *testing.T) {
	t.Parallel()
	helm := helmBinary(t)
	ns := namespace(t)
	ns2 := namespace(t) // an extra job namespace: created first, as the chart README asks
	nodeIP := nodeInternalIP(t)
	api := nodeKeptnAPI(t, nodeIP, strings.ReplaceAll(deployConfig, "@NS2@", ns2))

	installDirect(t, helm, ns, api.Host,
		"--set", "jobConfig.labels."+jobLabelKey+"=one",
		"--set", "jobConfig.allowedServiceAccounts=no-such-sa", // the "Cannot start" action
		"--set", "jobConfig.extraNamespaces={"+ns2+"}", // the "Elsewhere" action: RBAC there and allowed
		"--set-json", `extraEnv=[{"name":"FAIL_FAST_SECONDS","value":"2"}]`)
	t.Cleanup(func() {
		if t.Failed() {
			dumpRelease(t, ns)
		}
	})
	// The chart composes <protocol>://<hostname>/api; the stand-in is mounted under /api.
	assert.Equal(t, "http://"+api.Host+"/api", configValue(t, ns, "keptn_api_endpoint"))

	svcURL := serviceURL(t, ns, deployFullname)
	// Direct API mode: the chart made a receiver token; events without it are refused.
	token := secretValue(t, ns, deployFullname+"-receiver-token", "token")
	require.Len(t, token, 48)
	auth := http.Header{"Authorization": {"Bearer " + token}}
	var unauthenticated cloudevents.Event
	t.Run("no-token", func(t *testing.T) {
		unauthenticated = triggered(t, "sh.keptn.event.test.triggered", nil)
		for _, h := range []http.Header{nil, {"X-Token": {"wrong"}}} {
			r := sendBinaryWith(t, svcURL, unauthenticated, h)
			assert.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
			assert.Contains(t, string(r.Body), `"error":"unauthorized"`)
			assert.Empty(t, r.Header.Get("ce-type"), "no .started")
		}
	})
	if !t.Run("install", func(t *testing.T) {
		ev := triggered(t, "sh.keptn.event.test.triggered", nil)
		r := sendBinaryWith(t, svcURL, ev, auth)
		require.Less(t, r.Status, 300, string(r.Body))
		typ, kctx, tid := startedFrom(t, r)
		assert.Equal(t, "sh.keptn.event.test.started", typ)
		assert.Equal(t, ev.Extensions()["shkeptncontext"], kctx)
		assert.Equal(t, ev.ID(), tid)

		fin := waitEvent(t, api.Server, ev, "sh.keptn.event.test.finished", 2*time.Minute)
		assert.Equal(t, "succeeded", dataString(fin, "status"), string(fin.Raw))
		assert.Equal(t, "pass", dataString(fin, "result"), string(fin.Raw))
		msg := dataString(fin, "message")
		assert.Contains(t, msg, "deployed by helm for sockshop")
		assert.Contains(t, msg, "uid=1000", "chart default pod security context")
		assert.Contains(t, msg, "no-sa-token", "a Job's container must not see a service account token")
		assert.Equal(t, ev.ID(), fin.Triggeredid)

		job := onlyJob(t, ns, jobLabelKey+"=one")
		assert.EqualValues(t, 1, job.Status.Succeeded)
		assert.Equal(t, "one", job.Metadata.Labels[jobLabelKey])
	}) {
		t.FailNow()
	}

	// The status route (direct API mode: token and signed records) works under the chart's RBAC.
	t.Run("status", func(t *testing.T) {
		ev := triggered(t, "sh.keptn.event.test.triggered", nil)
		started, err := sendSDK(t, svcURL, ev, auth)
		require.NoError(t, err)
		require.NotNil(t, started, "no .started reply")
		waitEvent(t, api.Server, ev, "sh.keptn.event.test.finished", 2*time.Minute)
		get := func(h http.Header) reply {
			req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(svcURL, "/")+"/v1/status/"+kctxOf(ev), nil)
			require.NoError(t, err)
			for k := range h {
				req.Header.Set(k, h.Get(k))
			}
			return do(t, req)
		}
		assert.Equal(t, http.StatusUnauthorized, get(nil).Status)
		deadline := time.Now().Add(time.Minute)
		for {
			r := get(auth)
			if r.Status == http.StatusOK && strings.Contains(string(r.Body), `"state":"finished"`) {
				assert.Contains(t, string(r.Body), `"phase":"Succeeded"`)
				assert.Contains(t, string(r.Body), ev.ID())
				break
			}
			require.True(t, time.Now().Before(deadline), "status: %d %s", r.Status, r.Body)
			time.Sleep(200 * time.Millisecond) // polling interval; the answer decides
		}
	})

	t.Run("failed-create", func(t *testing.T) {
		ev := triggered(t, "sh.keptn.event.deployment.triggered", nil)
		started, err := sendSDK(t, svcURL, ev, auth)
		require.NoError(t, err)
		require.NotNil(t, started, "no .started reply")
		fin := waitEvent(t, api.Server, ev, "sh.keptn.event.deployment.finished", time.Minute)
		assert.Equal(t, "errored", dataString(fin, "status"), string(fin.Raw))
		assert.Contains(t, dataString(fin, "message"), "FailedCreate")
		assert.Contains(t, dataString(fin, "message"), "no-such-sa")
	})

	// A task in another namespace runs under the chart's RBAC alone: the service's Role and
	// the default job account are in that namespace too.
	t.Run("extra-namespace", func(t *testing.T) {
		ev := triggered(t, "sh.keptn.event.release.triggered", nil)
		started, err := sendSDK(t, svcURL, ev, auth)
		require.NoError(t, err)
		require.NotNil(t, started, "no .started reply")
		fin := waitEvent(t, api.Server, ev, "sh.keptn.event.release.finished", 2*time.Minute)
		assert.Equal(t, "succeeded", dataString(fin, "status"), string(fin.Raw))
		msg := dataString(fin, "message")
		assert.Contains(t, msg, "released in another namespace for sockshop")
		assert.Contains(t, msg, "uid=1000", "chart default pod security context")
		assert.Contains(t, msg, "no-sa-token", "the job account there has no token either")
		job := onlyJob(t, ns2, jobLabelKey+"=one")
		assert.EqualValues(t, 1, job.Status.Succeeded)
	})

	t.Run("rbac", func(t *testing.T) { checkRBAC(t, ns, ns2) })

	if !t.Run("upgrade", func(t *testing.T) {
		before := podNames(t, ns)
		runHelm(t, helm, "upgrade", deployRelease, "../chart", "-n", ns, "--reuse-values",
			"--set", "jobConfig.labels."+jobLabelKey+"=two", "--wait", "--timeout", "120s")
		assert.JSONEq(t, `{"`+jobLabelKey+`":"two"}`, configValue(t, ns, "job_labels"))
		// The settings checksum annotation must have rolled the pod: env is read once at start.
		after := waitPods(t, ns, func(names []string) bool {
			return len(names) == 1 && !contains(before, names[0])
		})
		t.Logf("service pod %v replaced by %v", before, after)
		// An old pod without running actions exits at once; until kube-proxy drops its endpoint
		// the ClusterIP may still lead to it (seen under load: a connect that hangs). Send only
		// once it is gone and the Service answers again.
		for _, p := range before {
			out, err := kubectl(t, "wait", "--for=delete", "pod/"+p, "-n", ns, "--timeout=60s")
			require.NoError(t, err, out)
		}
		require.True(t, healthy(svcURL, 30*time.Second), "Service %s not answering after the upgrade", svcURL)

		ev := triggered(t, "sh.keptn.event.test.triggered", map[string]any{"labels": map[string]string{"run": "upgrade"}})
		started, err := sendSDK(t, svcURL, ev, auth)
		require.NoError(t, err)
		require.NotNil(t, started, "no .started reply")
		assert.Equal(t, "sh.keptn.event.test.started", started.Type())
		fin := waitEvent(t, api.Server, ev, "sh.keptn.event.test.finished", 2*time.Minute)
		assert.Equal(t, "succeeded", dataString(fin, "status"), string(fin.Raw))
		assert.Contains(t, dataString(fin, "message"), "deployed by helm for sockshop")
		job := onlyJob(t, ns, jobLabelKey+"=two")
		assert.EqualValues(t, 1, job.Status.Succeeded)
	}) {
		t.FailNow()
	}

	// The refused event was never accepted, so nothing could send events for it later; by now
	// two authorised events have run to their .finished.
	for _, e := range api.Server.Events() {
		assert.NotEqual(t, unauthenticated.ID(), e.Triggeredid, "an event for the unauthenticated POST: %s", e.Type)
	}

	t.Run("uninstall", func(t *testing.T) {
		runHelm(t, helm, "uninstall", deployRelease, "-n", ns, "--wait", "--timeout", "60s")
		for _, obj := range []struct{ ns, name string }{
			{ns, "deployment/" + deployFullname},
			{ns, "service/" + deployFullname},
			{ns, "serviceaccount/" + deployFullname},
			{ns, "serviceaccount/default-job-account"},
			{ns, "role.rbac.authorization.k8s.io/" + deployFullname},
			{ns, "rolebinding.rbac.authorization.k8s.io/" + deployFullname},
			{ns, "configmap/job-service-config"},
			{ns, "secret/job-service-keptn-secrets"},
			{ns, "secret/" + deployFullname + "-record-key"},
			{ns, "secret/" + deployFullname + "-receiver-token"},
			{ns, "networkpolicy.networking.k8s.io/jes-ingress-network-policy"},
			{ns2, "serviceaccount/default-job-account"},
			{ns2, "role.rbac.authorization.k8s.io/" + deployFullname},
			{ns2, "rolebinding.rbac.authorization.k8s.io/" + deployFullname},
		} {
			out, err := kubectl(t, "get", "-n", obj.ns, obj.name, "--ignore-not-found", "-o", "name")
			require.NoError(t, err, out)
			assert.Empty(t, strings.TrimSpace(out), "%s in %s survived helm uninstall", obj.name, obj.ns)
		}
		waitPods(t, ns, func(names []string) bool { return len(names) == 0 })
		// Jobs (and the ConfigMaps they own) are the service's, not the release's: they stay
		// until their ttlSecondsAfterFinished.
		out, err := kubectl(t, "get", "jobs", "-n", ns, "-l", "app.kubernetes.io/managed-by=job-executor-service", "-o", "name")
		require.NoError(t, err, out)
		assert.Len(t, strings.Fields(out), 3, "the three Jobs the service ran (install, status, upgrade) remain after uninstall")
		out, err = kubectl(t, "get", "jobs", "-n", ns2, "-l", "app.kubernetes.io/managed-by=job-executor-service", "-o", "name")
		require.NoError(t, err, out)
		assert.Len(t, strings.Fields(out), 1, "and the one in the extra namespace")
	})
}

// checkRBAC asks the API server (SubjectAccessReview via kubectl auth can-i) what the chart's
// service accounts may do, with the groups a real service account token carries. ns is the
// release (and job) namespace, extra a namespace of jobConfig.extraNamespaces.
func checkRBAC(t *testing.T, ns, extra string) {
	svcSA := "system:serviceaccount:" + ns + ":" + deployFullname
	jobSA := "system:serviceaccount:" + ns + ":default-job-account"
	extraJobSA := "system:serviceaccount:" + extra + ":default-job-account"
	cases := []struct {
		as, verb, resource, ns string
		want                   bool
	}{
		// What the service does, in the job namespace.
		{svcSA, "create", "jobs.batch", ns, true},
		{svcSA, "watch", "jobs.batch", ns, true},
		{svcSA, "delete", "jobs.batch", ns, true},
		{svcSA, "list", "pods", ns, true},
		{svcSA, "watch", "pods", ns, true},
		{svcSA, "get", "pods/log", ns, true},
		{svcSA, "list", "events", ns, true},
		{svcSA, "watch", "events", ns, true},
		{svcSA, "create", "configmaps", ns, true},
		{svcSA, "get", "configmaps", ns, true},
		{svcSA, "list", "configmaps", ns, true},
		{svcSA, "patch", "configmaps", ns, true},
		{svcSA, "delete", "configmaps", ns, true},
		{svcSA, "watch", "configmaps", ns, true}, // direct API mode: the status route's record index
		{svcSA, "create", "leases.coordination.k8s.io", ns, true},
		{svcSA, "update", "leases.coordination.k8s.io", ns, true},
		// What it must not do.
		{svcSA, "get", "secrets", ns, false},
		{svcSA, "list", "secrets", ns, false},
		{svcSA, "watch", "secrets", ns, false},
		{svcSA, "update", "configmaps", ns, false}, // records are patched, never replaced
		{svcSA, "list", "events.events.k8s.io", ns, false},
		{svcSA, "create", "pods", ns, false},
		{svcSA, "create", "pods/exec", ns, false},
		{svcSA, "create", "rolebindings.rbac.authorization.k8s.io", ns, false},
		{svcSA, "create", "serviceaccounts/token", ns, false},
		{svcSA, "list", "jobs.batch", "default", false},
		{svcSA, "create", "jobs.batch", "default", false},
		{svcSA, "create", "configmaps", "kube-system", false},
		{svcSA, "get", "secrets", "kube-system", false},
		{svcSA, "list", "namespaces", "", false},
		{svcSA, "list", "leases.coordination.k8s.io", ns, false},
		{svcSA, "update", "leases.coordination.k8s.io", "kube-system", false},
		{svcSA, "list", "nodes", "", false},
		// The Jobs' identity can do nothing.
		{jobSA, "create", "jobs.batch", ns, false},
		{jobSA, "get", "pods", ns, false},
		{jobSA, "list", "configmaps", ns, false},
		{jobSA, "get", "secrets", ns, false},
		{jobSA, "list", "events", ns, false},
		{jobSA, "create", "pods", ns, false},
		// The extra namespace: the same Role for the service, and a job account without rights.
		{svcSA, "create", "jobs.batch", extra, true},
		{svcSA, "watch", "pods", extra, true},
		{svcSA, "get", "pods/log", extra, true},
		{svcSA, "watch", "events", extra, true},
		{svcSA, "create", "configmaps", extra, true},
		{svcSA, "get", "secrets", extra, false},
		{svcSA, "create", "pods", extra, false},
		{extraJobSA, "create", "jobs.batch", extra, false},
		{extraJobSA, "get", "pods", extra, false},
		{extraJobSA, "get", "secrets", extra, false},
		{jobSA, "get", "pods", extra, false},
	}
	for _, c := range cases {
		// "pods/log" would be read as the pod named log: subresources need --subresource.
		res, sub, _ := strings.Cut(c.resource, "/")
		saNS := strings.Split(c.as, ":")[2] // system:serviceaccount:<namespace>:<name>
		args := []string{"auth", "can-i", c.verb, res, "--subresource=" + sub, "--as", c.as,
			"--as-group", "system:serviceaccounts", "--as-group", "system:serviceaccounts:" + saNS,
			"--as-group", "system:authenticated"}
		if c.ns != "" {
			args = append(args, "-n", c.ns)
		}
		out, _ := kubectl(t, args...) // exit status 1 means "no"
		// The answer is the last line; kubectl may warn before it (cluster-scoped resources).
		lines := strings.Split(strings.TrimSpace(out), "\n")
		got := strings.TrimSpace(lines[len(lines)-1])
		want := map[bool]string{true: "yes", false: "no"}[c.want]
		who := strings.TrimPrefix(c.as, "system:serviceaccount:")
		assert.Equal(t, want, got, "%s can-i %s %s -n %q", who, c.verb, c.resource, c.ns)
	}

	for _, n := range []string{ns, extra} {
		out, err := kubectl(t, "get", "serviceaccount", "default-job-account", "-n", n,
			"-o", "jsonpath={.automountServiceAccountToken}")
		require.NoError(t, err, out)
		assert.Equal(t, "false", out, "job service account in %s must not automount a token", n)
		checkJobPods(t, n)
	}
}

// checkJobPods: the pods of the Jobs that ran in ns have the default job identity and no token
// volume or mount.
func checkJobPods(t *testing.T, ns string) {
	t.Helper()
	out, err := kubectl(t, "get", "pods", "-n", ns, "-l", "app.kubernetes.io/managed-by=job-executor-service", "-o", "json")
	require.NoError(t, err, out)
	var pods struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct {
				ServiceAccountName string `json:"serviceAccountName"`
				Volumes            []map[string]any
				Containers         []struct {
					VolumeMounts []struct {
						MountPath string `json:"mountPath"`
					} `json:"volumeMounts"`
				}
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &pods))
	require.NotEmpty(t, pods.Items, "no Job pod in %s", ns)
	for _, p := range pods.Items {
		assert.Equal(t, "default-job-account", p.Spec.ServiceAccountName, p.Metadata.Name)
		for _, v := range p.Spec.Volumes {
			assert.NotRegexp(t, `^kube-api-access-`, v["name"], "%s has a token volume", p.Metadata.Name)
		}
		for _, c := range p.Spec.Containers {
			for _, m := range c.VolumeMounts {
				assert.NotContains(t, m.MountPath, "serviceaccount", "%s mounts a token", p.Metadata.Name)
			}
		}
	}
}

// TestDeployKnativeDryRun validates knative/*.yaml server-side against the real Knative CRDs
// (knative/dry-run.sh: modules cached under ~/.cache/jes/knative, CRDs applied once).
func TestDeployKnativeDryRun(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cmd := exec.Command("bash", "../knative/dry-run.sh")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig, "NAMESPACE="+ns,
		"PATH="+filepath.Dir(env.Kubectl)+string(os.PathListSeparator)+os.Getenv("PATH"))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	t.Logf("dry-run took %s", time.Since(start).Round(time.Millisecond))
	for _, obj := range []string{
		"role.rbac.authorization.k8s.io/job-executor-service",
		"service.serving.knative.dev/job-executor-service",
		"sinkbinding.sources.knative.dev/job-executor-service",
		"trigger.eventing.knative.dev/job-executor-service-test-triggered",
	} {
		assert.Contains(t, string(out), obj+" created (server dry run)")
	}
	assert.Equal(t, 5, strings.Count(string(out), "trigger.eventing.knative.dev/"), string(out))
}

// nodeAPI is a Keptn API stand-in reachable from pods: it listens on the node's IP and serves
// under /api like the real API gateway.
type nodeAPI struct {
	*keptnapi.Server
	Host string // ip:port
}

func nodeKeptnAPI(t *testing.T, ip, jobConfig string) nodeAPI {
	t.Helper()
	api := keptnapi.New(keptnapi.Options{Token: apiToken})
	sc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}
	api.AddScope(keptnapi.Latest, sc)
	api.Put(keptnapi.Latest, sc, "job/config.yaml", []byte(jobConfig))
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	require.NoError(t, err, "the stand-in must listen on the node IP so that pods reach it")
	mux := http.NewServeMux()
	mux.Handle("/api/", http.StripPrefix("/api", api.Handler()))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return nodeAPI{Server: api, Host: ln.Addr().String()}
}

// helmBinary is $HELM, the Makefile's tools cache, or helm on PATH.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	home, _ := os.UserHomeDir()
	if p := filepath.Join(home, ".cache", "jes", "tools", "bin", "helm"); fileExists(p) {
		return p
	}
	p, err := exec.LookPath("helm")
	require.NoError(t, err, "helm not found: run make tools")
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// installDirect installs the chart in direct API mode (no distributor) with the ko-built image,
// talking to the Keptn API stand-in at apiHost, plus the extra helm arguments; it waits for it.
func installDirect(t *testing.T, helm, ns, apiHost string, extra ...string) {
	t.Helper()
	repo, digest, ok := strings.Cut(env.Image, "@")
	require.True(t, ok, "JES_IMAGE %q is not repository@digest", env.Image)
	args := []string{"install", deployRelease, "../chart", "-n", ns,
		"--set", "image.repository=" + repo, "--set", "image.digest=" + digest,
		"--set", "distributor.enabled=false",
		"--set", "remoteControlPlane.api.protocol=http",
		"--set", "remoteControlPlane.api.hostname=" + apiHost,
		"--set", "remoteControlPlane.api.token=" + apiToken}
	runHelm(t, helm, append(append(args, extra...), "--wait", "--timeout", "120s")...)
}

func runHelm(t *testing.T, helm string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "helm %s:\n%s", strings.Join(args, " "), out)
	t.Logf("helm %s: %s", args[0], time.Since(start).Round(time.Millisecond))
}

func nodeInternalIP(t *testing.T) string {
	t.Helper()
	out, err := kubectl(t, "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	require.NoError(t, err, out)
	ip := strings.TrimSpace(out)
	require.NotNil(t, net.ParseIP(ip), "node InternalIP %q", ip)
	return ip
}

// secretValue is one decoded value of a Secret.
func secretValue(t *testing.T, ns, name, key string) string {
	t.Helper()
	out, err := kubectl(t, "get", "secret", name, "-n", ns, "-o", "jsonpath={.data."+key+"}")
	require.NoError(t, err, out)
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	require.NoError(t, err, out)
	return string(b)
}

func configValue(t *testing.T, ns, key string) string {
	t.Helper()
	out, err := kubectl(t, "get", "configmap", "job-service-config", "-n", ns, "-o", "jsonpath={.data."+key+"}")
	require.NoError(t, err, out)
	return out
}

// serviceURL is the Service's ClusterIP (kube-proxy routes it from the host too), or a
// kubectl port-forward to it when the ClusterIP is not reachable from here.
func serviceURL(t *testing.T, ns, name string) string {
	t.Helper()
	out, err := kubectl(t, "get", "service", name, "-n", ns, "-o", "jsonpath={.spec.clusterIP}:{.spec.ports[0].port}")
	require.NoError(t, err, out)
	u := "http://" + strings.TrimSpace(out) + "/"
	if healthy(u, 15*time.Second) {
		return u
	}
	t.Logf("ClusterIP %s not reachable from the host; using kubectl port-forward", u)
	u = "http://" + portForward(t, ns, name, "8080") + "/"
	require.True(t, healthy(u, 15*time.Second), "service not reachable through port-forward either")
	return u
}

// portForward runs kubectl port-forward to the Service's port for the rest of the test and
// returns the local address (127.0.0.1:port).
func portForward(t *testing.T, ns, name, port string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, env.Kubectl, "port-forward", "-n", ns, "service/"+name, ":"+port)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "port-forward did not start")
	m := regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindStringSubmatch(line)
	require.NotNil(t, m, "port-forward said %q", line)
	return "127.0.0.1:" + m[1]
}

// healthy polls base+healthz until it answers 200 or d has passed.
func healthy(base string, d time.Duration) bool {
	// New connections each time: a pooled one may still lead to a pod that is gone.
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := c.Get(base + "healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	return false
}

type jobObject struct {
	Metadata struct {
		Name   string
		Labels map[string]string
	}
	Status struct{ Succeeded int }
}

// onlyJob returns the single Job the service created in ns that matches the label selector.
func onlyJob(t *testing.T, ns, selector string) jobObject {
	t.Helper()
	out, err := kubectl(t, "get", "jobs", "-n", ns, "-l", "app.kubernetes.io/managed-by=job-executor-service,"+selector, "-o", "json")
	require.NoError(t, err, out)
	var list struct{ Items []jobObject }
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list.Items, 1, "Jobs with %s in %s", selector, ns)
	return list.Items[0]
}

// podNames lists the release's running (not terminating) service pods.
func podNames(t *testing.T, ns string) []string {
	t.Helper()
	out, err := kubectl(t, "get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance="+deployRelease, "-o", "json")
	require.NoError(t, err, out)
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string
				DeletionTimestamp *string `json:"deletionTimestamp"`
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	var names []string
	for _, p := range list.Items {
		if p.Metadata.DeletionTimestamp == nil {
			names = append(names, p.Metadata.Name)
		}
	}
	return names
}

// waitPods waits up to a minute until the release's pods satisfy ok.
func waitPods(t *testing.T, ns string, ok func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		names := podNames(t, ns)
		if ok(names) {
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("service pods %v did not reach the expected state", names)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// dumpRelease logs what helps when an install fails: pods, their events and the service log.
func dumpRelease(t *testing.T, ns string) {
	for _, args := range [][]string{
		{"get", "all", "-n", ns, "-o", "wide"},
		{"describe", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=" + deployRelease},
		{"logs", "-n", ns, "deployment/" + deployFullname, "--tail=80"},
	} {
		out, _ := kubectl(t, args...)
		t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
	}
}
