//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// Policy scenarios: how installation settings and task fields end up in the Job, and how
// the service refuses, bounds and fails tasks. Every top-level test runs its own service
// process (its settings are environment variables) with one action per case; a case's
// event selects its action with a jsonpath match on data.test.teststrategy, so the cases
// of one service run in parallel.

// policyCase is one scenario: an action (its tasks) and what the .finished event, the
// Job and the pod must look like afterwards.
type policyCase struct {
	name string
	// tasks is the YAML list under the action's tasks:, unindented; @NS2@ is replaced by
	// the test's second namespace.
	tasks string
	// files are resources put beside job/config.yaml (path → content).
	files map[string]string
	// setup runs before the event is sent (namespace is the service's JOB_NAMESPACE).
	setup func(t *testing.T, ns string)
	// ok is the expected outcome: succeeded/pass or errored/fail.
	ok bool
	// message must contain all of these.
	message []string
	// within bounds the time from sending to .finished (0: 2 minutes).
	within time.Duration
	check  func(t *testing.T, r caseRun)
}

// caseRun is what a check gets to look at.
type caseRun struct {
	ns, ns2 string
	ev      cloudevents.Event
	fin     keptnapi.Event
	sent    time.Time
	// jobs are the Jobs of the event in any namespace when .finished arrived.
	jobs []batchv1.Job
	// actionIdx is the case's action index (for jobs.JobName).
	actionIdx int
}

// jobName is the Job name of the case's task i.
func (r caseRun) jobName(task int) string {
	return jobs.JobName(r.ev.Source(), r.ev.ID(), r.actionIdx, task)
}

// onlyJob returns the single Job of the event.
func (r caseRun) onlyJob(t *testing.T) batchv1.Job {
	t.Helper()
	require.Len(t, r.jobs, 1, "jobs of the event")
	return r.jobs[0]
}

// policyConfig renders one action per case.
func policyConfig(cases []policyCase, ns2 string) string {
	var b strings.Builder
	b.WriteString("apiVersion: v2\nactions:\n")
	for _, c := range cases {
		fmt.Fprintf(&b, "  - name: %q\n    events:\n      - name: \"sh.keptn.event.test.triggered\"\n"+
			"        jsonpath:\n          property: \"$.data.test.teststrategy\"\n          match: %q\n    tasks:\n", c.name, c.name)
		tasks := strings.ReplaceAll(strings.TrimSpace(c.tasks), "@NS2@", ns2)
		for _, line := range strings.Split(tasks, "\n") {
			b.WriteString("      " + line + "\n")
		}
	}
	return b.String()
}

// runPolicyCases starts a service with extraEnv and runs every case as a parallel subtest,
// sending the events round-robin as curl binary, curl structured and CloudEvents SDK.
func runPolicyCases(t *testing.T, extraEnv map[string]string, cases []policyCase) {
	ns := namespace(t)
	ns2 := namespace(t) // for namespace overrides; cheap enough to always have
	api := keptnAPI(t, policyConfig(cases, ns2))
	for _, c := range cases {
		for path, content := range c.files {
			api.Put(keptnapi.Latest, keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}, path, []byte(content))
		}
	}
	svc := startService(t, api, ns, extraEnv)
	for i, c := range cases {
		mode := []string{"binary", "structured", "sdk"}[i%3]
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.setup != nil {
				c.setup(t, ns)
			}
			ev := triggered(t, "sh.keptn.event.test.triggered", map[string]any{
				"test": map[string]any{"teststrategy": c.name},
			})
			sent := time.Now()
			sendAndExpectStarted(t, svc.URL, ev, mode)
			within := c.within
			if within == 0 {
				within = 2 * time.Minute
			}
			fin := waitEvent(t, api, ev, "sh.keptn.event.test.finished", within)
			took := time.Since(sent)
			t.Logf("%s: .finished after %.1fs (sent %s): %.200q", c.name, took.Seconds(), mode, dataString(fin, "message"))
			r := caseRun{ns: ns, ns2: ns2, ev: ev, fin: fin, sent: sent, jobs: eventJobs(t, ev), actionIdx: i}

			msg := dataString(fin, "message")
			assert.Equal(t, ev.ID(), fin.Triggeredid, "triggeredid")
			assert.Equal(t, ev.Extensions()["shkeptncontext"], fin.Shkeptncontext, "keptn context")
			if c.ok {
				assert.Equal(t, "succeeded", dataString(fin, "status"), msg)
				assert.Equal(t, "pass", dataString(fin, "result"), msg)
			} else {
				assert.Equal(t, "errored", dataString(fin, "status"), msg)
				assert.Equal(t, "fail", dataString(fin, "result"), msg)
			}
			for _, want := range c.message {
				assert.Contains(t, msg, want)
			}
			assertTestSpan(t, fin, sent)
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}

// sendAndExpectStarted sends ev in the given mode and checks the .started reply.
func sendAndExpectStarted(t *testing.T, url string, ev cloudevents.Event, mode string) {
	t.Helper()
	switch mode {
	case "sdk":
		started, err := sendSDK(t, url, ev)
		require.NoError(t, err)
		require.NotNil(t, started, "no reply event")
		assert.Equal(t, "sh.keptn.event.test.started", started.Type())
		assert.Equal(t, ev.ID(), started.Extensions()["triggeredid"])
	default:
		send := sendBinary
		if mode == "structured" {
			send = sendStructured
		}
		r := send(t, url, ev)
		require.Less(t, r.Status, 300, string(r.Body))
		typ, kctx, tid := startedFrom(t, r)
		assert.Equal(t, "sh.keptn.event.test.started", typ)
		assert.Equal(t, ev.Extensions()["shkeptncontext"], kctx)
		assert.Equal(t, ev.ID(), tid)
	}
}

// assertTestSpan checks data.test.start/end of a test.finished: RFC3339, ordered, and
// inside the time the test waited (one second of slack for the seconds-only format).
func assertTestSpan(t *testing.T, fin keptnapi.Event, sent time.Time) {
	t.Helper()
	test, _ := fin.DataMap()["test"].(map[string]any)
	require.NotNil(t, test, "test.finished without data.test: %s", fin.Raw)
	startS, _ := test["start"].(string)
	endS, _ := test["end"].(string)
	start, err := time.Parse(time.RFC3339, startS)
	require.NoError(t, err, "data.test.start")
	end, err := time.Parse(time.RFC3339, endS)
	require.NoError(t, err, "data.test.end")
	assert.False(t, end.Before(start), "start %s <= end %s", startS, endS)
	assert.False(t, start.Before(sent.Add(-time.Second).Truncate(time.Second)), "start %s before the event was sent (%s)", startS, sent)
	assert.False(t, end.After(fin.Received.Add(time.Second)), "end %s after .finished arrived (%s)", endS, fin.Received)
}

// eventJobs lists the Jobs of ev's Keptn context in all namespaces.
func eventJobs(t *testing.T, ev cloudevents.Event) []batchv1.Job {
	t.Helper()
	kctx := jobs.LabelValue(fmt.Sprint(ev.Extensions()["shkeptncontext"]))
	out, err := kubectl(t, "get", "jobs", "-A", "-l", jobs.LabelKeptnContext+"="+kctx, "-o", "json")
	require.NoError(t, err, out)
	var list batchv1.JobList
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	return list.Items
}

// jobPods lists the pods of a Job.
func jobPods(t *testing.T, ns, job string) []corev1.Pod {
	t.Helper()
	out, err := kubectl(t, "get", "pods", "-n", ns, "-l", jobs.LabelJob+"="+job, "-o", "json")
	require.NoError(t, err, out)
	var list corev1.PodList
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	return list.Items
}

// waitJobGone waits until the Job no longer exists.
func waitJobGone(t *testing.T, ns, name string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, err := kubectl(t, "get", "job", "-n", ns, name, "-o", "name", "--ignore-not-found")
		require.NoError(t, err, out)
		if strings.TrimSpace(out) == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s/%s still exists after %s", ns, name, d)
		}
		time.Sleep(time.Second)
	}
}

func container(t *testing.T, j batchv1.Job) corev1.Container {
	t.Helper()
	cs := j.Spec.Template.Spec.Containers
	require.Len(t, cs, 1)
	return cs[0]
}

// assertResources compares a resource list with want ("" entries must be absent).
func assertResources(t *testing.T, what string, got corev1.ResourceList, cpu, mem string) {
	t.Helper()
	for name, want := range map[corev1.ResourceName]string{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem} {
		q, ok := got[name]
		if want == "" {
			assert.False(t, ok, "%s.%s should be absent, is %s", what, name, q.String())
			continue
		}
		if assert.True(t, ok, "%s.%s missing (want %s)", what, name, want) {
			assert.Zero(t, q.Cmp(resource.MustParse(want)), "%s.%s = %s, want %s", what, name, q.String(), want)
		}
	}
	assert.LessOrEqual(t, len(got), 2, "%s has only cpu/memory: %v", what, got)
}

func kubectlOK(t *testing.T, args ...string) {
	t.Helper()
	out, err := kubectl(t, args...)
	require.NoError(t, err, out)
}

// sleeper is a task body (after its name) that runs far longer than any bound below.
const sleeper = `  image: busybox
  cmd: [sleep, "60"]`

// TestPolicies: task fields and the default installation policies, in one service with
// its own resource defaults.
func TestPolicies(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DEFAULT_RESOURCE_LIMITS_CPU":      "300m",
		"DEFAULT_RESOURCE_LIMITS_MEMORY":   "96Mi",
		"DEFAULT_RESOURCE_REQUESTS_CPU":    "20m",
		"DEFAULT_RESOURCE_REQUESTS_MEMORY": "32Mi",
		// Config-chosen identities used by the cases below (ns2 is e2e-<n>-testpolicies-<hex>).
		"ALLOWED_JOB_SERVICE_ACCOUNTS": "jes-e2e-sa",
		"ALLOWED_JOB_NAMESPACES":       "e2e-*-testpolicies-*",
	}
	runPolicyCases(t, env, []policyCase{
		{
			// With a file, so that the init container exists: it gets the defaults too.
			name:    "resources-default",
			files:   map[string]string{"policy/hello.txt": "hello from a file\n"},
			tasks:   "- name: t\n  image: alpine\n  files: [policy/hello.txt]\n  cmd: [cat, /keptn/policy/hello.txt]",
			ok:      true,
			message: []string{"hello from a file"},
			check: func(t *testing.T, r caseRun) {
				j := r.onlyJob(t)
				c := container(t, j)
				assertResources(t, "limits", c.Resources.Limits, "300m", "96Mi")
				assertResources(t, "requests", c.Resources.Requests, "20m", "32Mi")
				inits := j.Spec.Template.Spec.InitContainers
				require.Len(t, inits, 1)
				assertResources(t, "init limits", inits[0].Resources.Limits, "300m", "96Mi")
				assertResources(t, "init requests", inits[0].Resources.Requests, "20m", "32Mi")
			},
		},
		{
			name: "resources-block",
			tasks: `- name: t
  image: alpine
  cmd: ["true"]
  resources:
    limits: {cpu: 200m, memory: 64Mi}
    requests: {cpu: 10m, memory: 16Mi}`,
			ok: true,
			check: func(t *testing.T, r caseRun) {
				c := container(t, r.onlyJob(t))
				assertResources(t, "limits", c.Resources.Limits, "200m", "64Mi")
				assertResources(t, "requests", c.Resources.Requests, "10m", "16Mi")
			},
		},
		{
			name: "resources-cpu-only",
			tasks: `- name: t
  image: alpine
  cmd: ["true"]
  resources:
    limits: {cpu: 1}
    requests: {cpu: 50m}`,
			ok: true,
			check: func(t *testing.T, r caseRun) {
				c := container(t, r.onlyJob(t))
				assertResources(t, "limits", c.Resources.Limits, "1", "")
				assertResources(t, "requests", c.Resources.Requests, "50m", "")
			},
		},
		{
			name:  "resources-empty-block",
			tasks: "- name: t\n  image: alpine\n  cmd: [\"true\"]\n  resources: {}",
			ok:    true,
			check: func(t *testing.T, r caseRun) {
				c := container(t, r.onlyJob(t))
				assertResources(t, "limits", c.Resources.Limits, "", "")
				assertResources(t, "requests", c.Resources.Requests, "", "")
			},
		},
		{
			name: "namespace-override",
			tasks: `- name: elsewhere
  image: alpine
  namespace: @NS2@
  cmd: [sh, -c, "echo in other namespace"]
- name: default-ns
  image: alpine
  cmd: [sh, -c, "echo in job namespace"]`,
			ok: true,
			// Two pods one after the other: on a busy node each start took up to 82 s.
			within:  4 * time.Minute,
			message: []string{"in other namespace", "in job namespace"},
			check: func(t *testing.T, r caseRun) {
				require.Len(t, r.jobs, 2)
				where := map[string]string{}
				for _, j := range r.jobs {
					where[j.Name] = j.Namespace
				}
				assert.Equal(t, map[string]string{r.jobName(0): r.ns2, r.jobName(1): r.ns}, where)
			},
		},
		{
			name: "annotations",
			tasks: `- name: t
  image: alpine
  cmd: ["true"]
  annotations:
    - key1: value1
    - example.com/key2: "value 2"`,
			ok: true,
			check: func(t *testing.T, r caseRun) {
				j := r.onlyJob(t)
				for _, a := range []map[string]string{j.Annotations, j.Spec.Template.Annotations} {
					assert.Equal(t, "value1", a["key1"])
					assert.Equal(t, "value 2", a["example.com/key2"])
				}
			},
		},
		{
			name: "security-context-user",
			tasks: `- name: t
  image: alpine
  securityContext: {runAsUser: 7000, runAsGroup: 9000}
  cmd: [id]`,
			ok:      true,
			message: []string{"uid=7000", "gid=9000"},
		},
		{
			// Default security context: read-only root FS. /tmp is world-writable in the image,
			// so only the read-only mount can stop the write.
			name:    "rootfs-readonly-default",
			tasks:   "- name: t\n  image: busybox\n  cmd: [touch, /tmp/x]",
			ok:      false,
			message: []string{"Read-only file system", "exited with code 1"},
			check: func(t *testing.T, r caseRun) {
				sc := container(t, r.onlyJob(t)).SecurityContext
				require.NotNil(t, sc)
				assert.Equal(t, true, *sc.ReadOnlyRootFilesystem)
			},
		},
		{
			name: "rootfs-writable",
			tasks: `- name: t
  image: busybox
  securityContext: {readOnlyRootFilesystem: false}
  cmd: [sh, -c, "touch /tmp/x && echo WriteableFilesystem"]`,
			ok:      true,
			message: []string{"WriteableFilesystem"},
		},
		{
			name: "privileged-refused",
			tasks: `- name: harmless
  image: alpine
  cmd: ["true"]
- name: root-of-all-evil
  image: alpine
  securityContext: {privileged: true}
  cmd: ["true"]`,
			ok:      false,
			message: []string{"root-of-all-evil", "privileged"},
			check: func(t *testing.T, r caseRun) {
				assert.Empty(t, r.jobs, "no Job may exist for a refused action")
			},
		},
		{
			// Privilege beyond the privileged flag: the whole pod is held to the Pod Security
			// Standards (restricted by default), as the API server would hold it.
			name: "root-refused",
			tasks: `- name: root
  image: alpine
  securityContext: {runAsUser: 0, runAsNonRoot: false, allowPrivilegeEscalation: true, capabilities: {drop: []}}
  cmd: ["id", "-u"]`,
			ok:      false,
			message: []string{"root", `PodSecurity "restricted:latest"`, "runAsUser=0", "runAsNonRoot != true", "allowPrivilegeEscalation != false", "capabilities"},
			check: func(t *testing.T, r caseRun) {
				assert.Empty(t, r.jobs, "no Job may exist for a refused action")
			},
		},
		{
			name: "service-account",
			setup: func(t *testing.T, ns string) {
				kubectlOK(t, "create", "serviceaccount", "-n", ns, "jes-e2e-sa")
			},
			tasks:   "- name: t\n  image: alpine\n  serviceAccount: jes-e2e-sa\n  cmd: [\"true\"]",
			ok:      true,
			message: []string{"finished successfully"},
			check: func(t *testing.T, r caseRun) {
				j := r.onlyJob(t)
				assert.Equal(t, "jes-e2e-sa", j.Spec.Template.Spec.ServiceAccountName)
				pods := jobPods(t, j.Namespace, j.Name)
				require.NotEmpty(t, pods)
				assert.Equal(t, "jes-e2e-sa", pods[0].Spec.ServiceAccountName)
			},
		},
		{
			name:  "pull-policy-always",
			tasks: "- name: t\n  image: alpine:3.19\n  imagePullPolicy: Always\n  cmd: [\"true\"]",
			ok:    true,
			check: func(t *testing.T, r caseRun) {
				assert.Equal(t, corev1.PullAlways, container(t, r.onlyJob(t)).ImagePullPolicy)
			},
		},
		{
			name:  "pull-policy-ifnotpresent",
			tasks: "- name: t\n  image: busybox:1.35\n  imagePullPolicy: IfNotPresent\n  cmd: [\"true\"]",
			ok:    true,
			check: func(t *testing.T, r caseRun) {
				assert.Equal(t, corev1.PullIfNotPresent, container(t, r.onlyJob(t)).ImagePullPolicy)
			},
		},
		{
			name:    "max-poll-duration",
			tasks:   "- name: sleepy\n" + sleeper + "\n  maxPollDuration: 5",
			ok:      false,
			message: []string{"sleepy", "did not finish within 5s"},
			within:  40 * time.Second,
			check: func(t *testing.T, r caseRun) {
				// Aborted Jobs are deleted so that they stop using the cluster.
				waitJobGone(t, r.ns, r.jobName(0), 30*time.Second)
			},
		},
		{
			name:  "ttl-after-finished",
			tasks: "- name: t\n  image: alpine\n  cmd: [\"true\"]\n  ttlSecondsAfterFinished: 5",
			ok:    true,
			check: func(t *testing.T, r caseRun) {
				j := r.onlyJob(t)
				require.NotNil(t, j.Spec.TTLSecondsAfterFinished)
				assert.EqualValues(t, 5, *j.Spec.TTLSecondsAfterFinished)
				waitJobGone(t, j.Namespace, j.Name, 60*time.Second)
			},
		},
	})
}

// TestPoliciesIdentities: a config cannot choose the service's own service account
// (SERVICE_ACCOUNT_NAME) or a Secret of the installation (PROTECTED_SECRETS) even when the
// allow-lists say "*", nor a namespace outside ALLOWED_JOB_NAMESPACES: the action is refused
// before any Job exists, and the errored .finished names the task and the field. The account
// and the Secret really exist, so without the check the Jobs would run (and print the token).
func TestPoliciesIdentities(t *testing.T) {
	t.Parallel()
	const (
		ownSA      = "jes-e2e-service"
		tokenName  = "jes-e2e-keptn-token"
		tokenValue = "e2e-keptn-token-value"
	)
	env := map[string]string{
		"SERVICE_ACCOUNT_NAME":         ownSA,
		"PROTECTED_SECRETS":            "jes-e2e-record-key," + tokenName,
		"ALLOWED_JOB_SERVICE_ACCOUNTS": "*",
		"ALLOWED_JOB_SECRETS":          "*",
	}
	noJob := func(t *testing.T, r caseRun) {
		assert.Empty(t, r.jobs, "no Job may exist for a refused action")
		assert.NotContains(t, dataString(r.fin, "message"), tokenValue)
	}
	runPolicyCases(t, env, []policyCase{
		{
			name: "own-service-account",
			setup: func(t *testing.T, ns string) {
				kubectlOK(t, "create", "serviceaccount", "-n", ns, ownSA)
			},
			tasks: `- name: first
  image: alpine
  cmd: ["true"]
- name: escalate
  image: alpine
  serviceAccount: ` + ownSA + `
  cmd: ["true"]`,
			ok:      false,
			message: []string{"task 'escalate'", `serviceAccount "` + ownSA + `" is the service's own account`},
			check:   noJob,
		},
		{
			name: "protected-secret",
			setup: func(t *testing.T, ns string) {
				kubectlOK(t, "create", "secret", "generic", "-n", ns, tokenName, "--from-literal=KEPTN_API_TOKEN="+tokenValue)
			},
			tasks: `- name: leak
  image: alpine
  cmd: [sh, -c, 'echo "token=$KEPTN_API_TOKEN"']
  env:
    - {name: X, value: y, valueFrom: string}
    - {name: ` + tokenName + `, valueFrom: secret}`,
			ok:      false,
			message: []string{"task 'leak'", `env[1].valueFrom: secret "` + tokenName + `" is a secret of the installation itself`},
			check:   noJob,
		},
		{
			// Any other Secret still works with the "*" list (the default too).
			name: "own-secret-allowed",
			setup: func(t *testing.T, ns string) {
				kubectlOK(t, "create", "secret", "generic", "-n", ns, "jes-e2e-team-creds", "--from-literal=TEAM_KEY=team-value")
			},
			tasks: `- name: t
  image: alpine
  cmd: [sh, -c, 'echo "key=$TEAM_KEY"']
  env:
    - {name: jes-e2e-team-creds, valueFrom: secret}`,
			ok:      true,
			message: []string{"key=team-value"},
		},
		{
			name: "namespace-refused",
			tasks: `- name: t
  image: alpine
  namespace: kube-system
  cmd: ["true"]`,
			ok:      false,
			message: []string{"task 't'", `namespace "kube-system" is not in the allowed namespace list`},
			check:   noJob,
		},
	})
}

// TestPolicyAllowedImages: an image outside ALLOWED_IMAGE_LIST refuses the whole action
// before any Job exists, even when the first task's image is allowed.
func TestPolicyAllowedImages(t *testing.T) {
	t.Parallel()
	runPolicyCases(t, map[string]string{"ALLOWED_IMAGE_LIST": "docker.io/library/alpine*"}, []policyCase{
		{
			name:    "allowed",
			tasks:   "- name: t\n  image: alpine\n  cmd: [\"true\"]",
			ok:      true,
			message: []string{"finished successfully"},
		},
		{
			name: "second-task-refused",
			tasks: `- name: allowed-first
  image: alpine
  cmd: ["true"]
- name: refused-second
  image: busybox
  cmd: ["true"]`,
			ok:      false,
			message: []string{"refused-second", `"busybox" is not in the allowed image list`},
			check: func(t *testing.T, r caseRun) {
				assert.Empty(t, r.jobs, "no Job may exist for a refused action")
				assert.NotContains(t, dataString(r.fin, "message"), "allowed-first' finished")
			},
		},
	})
}

// TestPolicyPrivilegedAllowed: with ALLOW_PRIVILEGED_JOBS=true a privileged task gets a
// Job with privileged: true (whether this node runs it is not the point).
func TestPolicyPrivilegedAllowed(t *testing.T) {
	t.Parallel()
	runPolicyCases(t, map[string]string{"ALLOW_PRIVILEGED_JOBS": "true"}, []policyCase{{
		name:  "privileged",
		tasks: "- name: t\n  image: alpine\n  securityContext: {privileged: true}\n  cmd: [\"true\"]",
		ok:    true,
		check: func(t *testing.T, r caseRun) {
			sc := container(t, r.onlyJob(t)).SecurityContext
			require.NotNil(t, sc)
			require.NotNil(t, sc.Privileged)
			assert.True(t, *sc.Privileged)
		},
	}})
}

// TestPolicyBaseline: JOB_POD_SECURITY_LEVEL=baseline lets a task run as root (the
// restricted default refuses it) but still refuses what baseline forbids.
func TestPolicyBaseline(t *testing.T) {
	t.Parallel()
	runPolicyCases(t, map[string]string{"JOB_POD_SECURITY_LEVEL": "baseline"}, []policyCase{{
		name:    "root-runs",
		tasks:   "- name: t\n  image: busybox\n  securityContext: {runAsUser: 0, runAsNonRoot: false}\n  cmd: [sh, -c, \"echo uid=$(id -u)\"]",
		ok:      true,
		message: []string{"uid=0"},
	}, {
		name:    "sys-admin-refused",
		tasks:   "- name: t\n  image: busybox\n  securityContext: {capabilities: {add: [SYS_ADMIN]}}\n  cmd: [\"true\"]",
		ok:      false,
		message: []string{`PodSecurity "baseline:latest"`, "SYS_ADMIN"},
		check: func(t *testing.T, r caseRun) {
			assert.Empty(t, r.jobs, "no Job may exist for a refused action")
		},
	}})
}

// TestPolicyTaskDeadline: TASK_DEADLINE_SECONDS becomes activeDeadlineSeconds and
// Kubernetes kills the pod.
func TestPolicyTaskDeadline(t *testing.T) {
	t.Parallel()
	// 15 s, not 5: a deadline that passes before the pod runs (pod starts took 5-80 s on the
	// loaded 2-core node) had the Job controller report BackoffLimitExceeded once in CI.
	runPolicyCases(t, map[string]string{"TASK_DEADLINE_SECONDS": "15"}, []policyCase{{
		name: "deadline",
		// A plain sleep as PID 1 ignores SIGTERM and would hold the pod for the 30 s grace
		// period, and Kubernetes (>= 1.31) marks the Job Failed only after its pods ended.
		tasks:   "- name: sleepy\n  image: busybox\n  cmd: [sh, -c, 'trap \"exit 143\" TERM; sleep 60 & wait']",
		ok:      false,
		message: []string{"sleepy", "DeadlineExceeded"},
		within:  90 * time.Second,
		check: func(t *testing.T, r caseRun) {
			j := r.onlyJob(t)
			require.NotNil(t, j.Spec.ActiveDeadlineSeconds)
			assert.EqualValues(t, 15, *j.Spec.ActiveDeadlineSeconds)
		},
	}})
}

// TestFailFast: tasks that cannot start fail after FAIL_FAST_SECONDS (10 here), long
// before their maxPollDuration (300 s default), naming Kubernetes' reason.
func TestFailFast(t *testing.T) {
	t.Parallel()
	// 10 s grace + pull back-off, pod start on a busy 2-core node and slack: still far below
	// the 300 s maxPollDuration the test is about.
	const within = 2 * time.Minute
	runPolicyCases(t, map[string]string{"FAIL_FAST_SECONDS": "10", "ALLOWED_JOB_SERVICE_ACCOUNTS": "no-such-sa"}, []policyCase{
		{
			name:    "image-pull",
			tasks:   "- name: t\n  image: nosuchimage:9\n  cmd: [\"true\"]",
			ok:      false,
			message: []string{"nosuchimage:9"},
			within:  within,
			check: func(t *testing.T, r caseRun) {
				msg := dataString(r.fin, "message")
				assert.True(t, strings.Contains(msg, "ErrImagePull") || strings.Contains(msg, "ImagePullBackOff"), msg)
				stuckJobRemoved(t, r)
			},
		},
		{
			name:    "missing-secret",
			tasks:   "- name: t\n  image: alpine\n  cmd: [\"true\"]\n  env:\n    - {name: no-such-secret, valueFrom: secret}",
			ok:      false,
			message: []string{"CreateContainerConfigError", "no-such-secret"},
			within:  within,
			check:   stuckJobRemoved,
		},
		{
			name:    "missing-service-account",
			tasks:   "- name: t\n  image: alpine\n  serviceAccount: no-such-sa\n  cmd: [\"true\"]",
			ok:      false,
			message: []string{"FailedCreate", "no-such-sa"},
			within:  within,
			check:   stuckJobRemoved,
		},
		{
			// The shell keeps 64 MiB in a variable; the limit is 16 MiB.
			name: "oom",
			tasks: `- name: t
  image: busybox
  resources: {limits: {memory: 16Mi}}
  cmd: [sh, -c, 'x=$(head -c 67108864 /dev/zero | tr "\0" a); echo ${#x}']`,
			ok:      false,
			message: []string{"OOMKilled"},
			within:  within,
		},
	})
}

// stuckJobRemoved: a Job that could not start is deleted, not left retrying.
func stuckJobRemoved(t *testing.T, r caseRun) {
	t.Helper()
	waitJobGone(t, r.ns, r.jobName(0), 30*time.Second)
}
