//go:build e2e

package e2e

// Feature scenarios (part A of "Real-cluster end-to-end suite"): env, files, task order,
// several/silent actions, matching, config levels and a missing config, each against a real
// service process, the Keptn API stand-in and the cluster.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
)

const finishTimeout = 4 * time.Minute // a 2-core node starting pods for 8 parallel scenarios

var cartsScope = keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}

// kctxOf is the Keptn context of an event built by triggered().
func kctxOf(ev cloudevents.Event) string { return fmt.Sprint(ev.Extensions()["shkeptncontext"]) }

// jobsOf lists the Jobs the service made for a Keptn context in ns.
func jobsOf(t *testing.T, ns string, ev cloudevents.Event) []batchv1.Job {
	t.Helper()
	out, err := kubectl(t, "-n", ns, "get", "jobs", "-l", "keptn.sh/context="+kctxOf(ev), "-o", "json")
	require.NoError(t, err, out)
	var list batchv1.JobList
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	return list.Items
}

// eventsOf returns the types of all events recorded for ev's Keptn context.
func eventsOf(api *keptnapi.Server, ev cloudevents.Event) []string {
	var types []string
	for _, e := range api.Events() {
		if e.Shkeptncontext == kctxOf(ev) {
			types = append(types, e.TypeName())
		}
	}
	return types
}

// assertSucceeded checks a .finished for ev is succeeded/pass and returns its message.
func assertSucceeded(t *testing.T, fin keptnapi.Event, ev cloudevents.Event) string {
	t.Helper()
	msg := dataString(fin, "message")
	assert.Equal(t, "succeeded", dataString(fin, "status"), msg)
	assert.Equal(t, "pass", dataString(fin, "result"), msg)
	assert.Equal(t, ev.ID(), fin.Triggeredid)
	assert.Equal(t, kctxOf(ev), fin.Shkeptncontext)
	return msg
}

// marked extracts the text a task printed between <<name and name>>.
func marked(t *testing.T, logs, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<<` + name + `\n(.*?)\n` + name + `>>`).FindStringSubmatch(logs)
	if !assert.NotNil(t, m, "no %s block in logs:\n%s", name, logs) {
		return ""
	}
	return m[1]
}

const envConfig = `apiVersion: v2
actions:
  - name: "Env"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "Print env"
        image: "alpine"
        env:
          - {name: HOST, value: "$.data.deployment.deploymentURIsLocal[0]", valueFrom: event}
          - {name: SECOND_URI, value: "$.data.deployment.deploymentURIsLocal[1]", valueFrom: event}
          - {name: DEPLOY_JSON, value: "$.data.deployment", valueFrom: event, as: json}
          - {name: DEPLOY_YAML, value: "$.data.deployment", valueFrom: event, as: yaml}
          - {name: DEPLOY_DEFAULT, value: "$.data.deployment", valueFrom: event}
          - {name: EVENT, value: "$", valueFrom: event, as: json}
          - {name: e2e-secret, valueFrom: secret}
          - {name: DATA_DIR, value: /tmp/data, valueFrom: string}
        cmd: [sh]
        args:
          - -c
          - |
            echo "ARGS host=$(HOST) file=$(FILE) dir=$(DATA_DIR) project=$(KEPTN_PROJECT) build=$(LABELS_BUILD_ID) unknown=\$(NOT_DEFINED)"
            printf '<<HOST\n%s\nHOST>>\n' "$HOST"
            printf '<<SECOND\n%s\nSECOND>>\n' "$SECOND_URI"
            printf '<<JSON\n%s\nJSON>>\n' "$DEPLOY_JSON"
            printf '<<YAML\n%s\nYAML>>\n' "$DEPLOY_YAML"
            printf '<<DEFAULT\n%s\nDEFAULT>>\n' "$DEPLOY_DEFAULT"
            printf '<<EVENT\n%s\nEVENT>>\n' "$EVENT"
            printf '<<SECRET\n%s %s\nSECRET>>\n' "$FILE" "$SECRET_HOST"
            printf '<<STRING\n%s\nSTRING>>\n' "$DATA_DIR"
            printf '<<KEPTN\n%s/%s/%s\nKEPTN>>\n' "$KEPTN_PROJECT" "$KEPTN_STAGE" "$KEPTN_SERVICE"
            printf '<<LABELS\n%s|%s\nLABELS>>\n' "$LABELS_BUILD_ID" "$LABELS_OWNER"
`

// TestFeatureEnv: env from the event (jsonpath with array index, as json/yaml, map default
// JSON, "$" whole event), from a secret (all keys via envFrom), from a string; KEPTN_* and
// LABELS_*; $(VAR) expansion in args. Sent with the CloudEvents SDK client.
func TestFeatureEnv(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	out, err := kubectl(t, "-n", ns, "create", "secret", "generic", "e2e-secret",
		"--from-literal=FILE=basic.py", "--from-literal=SECRET_HOST=https://secret.example")
	require.NoError(t, err, out)
	api := keptnAPI(t, envConfig)
	svc := startService(t, api, ns, nil)

	deployment := map[string]any{
		"deploymentNames":     []any{"user_managed"},
		"deploymentURIsLocal": []any{"https://keptn.sh", "http://second.example"},
		"gitCommit":           "eb5fc3d",
	}
	ev := triggered(t, "sh.keptn.event.test.triggered", map[string]any{
		"deployment": deployment,
		"labels":     map[string]any{"build-id": "build-17", "owner": "JohnDoe"},
	})
	started, err := sendSDK(t, svc.URL, ev)
	require.NoError(t, err)
	require.NotNil(t, started)
	assert.Equal(t, "sh.keptn.event.test.started", started.Type())

	fin := waitEvent(t, api, ev, "sh.keptn.event.test.finished", finishTimeout)
	logs := assertSucceeded(t, fin, ev)

	assert.Contains(t, logs, "ARGS host=https://keptn.sh file=basic.py dir=/tmp/data project=sockshop build=build-17 unknown=$(NOT_DEFINED)",
		"$(VAR) in args expands env, secret and label variables; unknown ones stay as written")
	assert.Equal(t, "https://keptn.sh", marked(t, logs, "HOST"))
	assert.Equal(t, "http://second.example", marked(t, logs, "SECOND"))
	var asJSON, asDefault, asYAML map[string]any
	require.NoError(t, json.Unmarshal([]byte(marked(t, logs, "JSON")), &asJSON))
	assert.Equal(t, deployment, asJSON)
	assert.NotContains(t, marked(t, logs, "JSON"), "\n", "as: json is compact")
	require.NoError(t, json.Unmarshal([]byte(marked(t, logs, "DEFAULT")), &asDefault), "a map without as: is JSON")
	assert.Equal(t, deployment, asDefault)
	yml := marked(t, logs, "YAML")
	assert.Contains(t, yml, "deploymentURIsLocal:\n- https://keptn.sh", "as: yaml is YAML, not JSON")
	require.NoError(t, yaml.Unmarshal([]byte(yml), &asYAML))
	assert.Equal(t, deployment, asYAML)

	var whole map[string]any
	require.NoError(t, json.Unmarshal([]byte(marked(t, logs, "EVENT")), &whole), "$ is the whole event as JSON")
	assert.Equal(t, ev.ID(), whole["id"])
	assert.Equal(t, "sh.keptn.event.test.triggered", whole["type"])
	assert.Equal(t, kctxOf(ev), whole["shkeptncontext"])
	if data, ok := whole["data"].(map[string]any); assert.True(t, ok, "event.data") {
		assert.Equal(t, "sockshop", data["project"])
		assert.Equal(t, deployment, data["deployment"])
	}

	assert.Equal(t, "basic.py https://secret.example", marked(t, logs, "SECRET"), "every key of the secret is a variable")
	assert.Equal(t, "/tmp/data", marked(t, logs, "STRING"))
	assert.Equal(t, "sockshop/dev/carts", marked(t, logs, "KEPTN"))
	assert.Equal(t, "build-17|JohnDoe", marked(t, logs, "LABELS"))

	// The secret reaches the pod by reference only: the service never reads it.
	jobs := jobsOf(t, ns, ev)
	require.Len(t, jobs, 1)
	c := jobs[0].Spec.Template.Spec.Containers[0]
	require.Len(t, c.EnvFrom, 1)
	require.NotNil(t, c.EnvFrom[0].SecretRef)
	assert.Equal(t, "e2e-secret", c.EnvFrom[0].SecretRef.Name)
	for _, e := range c.Env {
		assert.NotEqual(t, "https://secret.example", e.Value, "secret value copied into the Job spec (%s)", e.Name)
	}
}

const envLiteralConfig = `apiVersion: v2
actions:
  - name: "Env literal"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "Echo args"
        image: "alpine"
        env:
          - {name: e2e-leak-secret, valueFrom: secret}
          - {name: HOST, value: "$.data.deployment.deploymentURIsLocal[0]", valueFrom: event}
          - {name: DEPLOY_JSON, value: "$.data.deployment", valueFrom: event, as: json}
          - {name: DEPLOY_YAML, value: "$.data.deployment", valueFrom: event, as: yaml}
          - {name: FROM_CONFIG, value: "cfg=$(CONFIG_KEY)", valueFrom: string}
        cmd: [echo]
        args: ["ARGS", "host=$(HOST)", "evil=$(LABELS_EVIL)", "double=$(LABELS_DOUBLE)", "service=$(KEPTN_SERVICE)", "cfg=$(FROM_CONFIG)", "direct=$(CONFIG_KEY)"]
      - name: "Print env"
        image: "alpine"
        env:
          - {name: e2e-leak-secret, valueFrom: secret}
          - {name: HOST, value: "$.data.deployment.deploymentURIsLocal[0]", valueFrom: event}
          - {name: DEPLOY_JSON, value: "$.data.deployment", valueFrom: event, as: json}
          - {name: DEPLOY_YAML, value: "$.data.deployment", valueFrom: event, as: yaml}
        cmd: [sh]
        args:
          - -c
          - |
            printf '<<HOST\n%s\nHOST>>\n' "$HOST"
            printf '<<EVIL\n%s\nEVIL>>\n' "$LABELS_EVIL"
            printf '<<DOUBLE\n%s\nDOUBLE>>\n' "$LABELS_DOUBLE"
            printf '<<JSON\n%s\nJSON>>\n' "$DEPLOY_JSON"
            printf '<<YAML\n%s\nYAML>>\n' "$DEPLOY_YAML"
`

// TestFeatureEnvLiteral: values from the event reach the task literally even when they
// contain $(NAME) of a secret key from envFrom: in env (jsonpath as string/json/yaml,
// LABELS_*) and through $(VAR) in args. Values written in the config still expand. The
// service name cannot carry "$": Keptn (and the API stand-in) only know sockshop/dev/carts.
func TestFeatureEnvLiteral(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	out, err := kubectl(t, "-n", ns, "create", "secret", "generic", "e2e-leak-secret",
		"--from-literal=SOME_SECRET_KEY=leaked-value", "--from-literal=CONFIG_KEY=from-secret")
	require.NoError(t, err, out)
	api := keptnAPI(t, envLiteralConfig)
	svc := startService(t, api, ns, nil)

	const host = "http://x/$(SOME_SECRET_KEY)"
	deployment := map[string]any{"deploymentURIsLocal": []any{host}, "note": "$$(SOME_SECRET_KEY) $X 5$"}
	ev := triggered(t, "sh.keptn.event.test.triggered", map[string]any{
		"deployment": deployment,
		"labels":     map[string]any{"evil": "$(SOME_SECRET_KEY)", "double": "$$(SOME_SECRET_KEY)"},
	})
	r := sendBinary(t, svc.URL, ev)
	require.Less(t, r.Status, 300, string(r.Body))

	fin := waitEvent(t, api, ev, "sh.keptn.event.test.finished", finishTimeout)
	logs := assertSucceeded(t, fin, ev)

	assert.NotContains(t, logs, "leaked-value", "a $(SECRET) in an event value was expanded")
	assert.Contains(t, logs, "$(SOME_SECRET_KEY)")
	assert.Contains(t, logs, "ARGS host="+host+" evil=$(SOME_SECRET_KEY) double=$$(SOME_SECRET_KEY) service=carts cfg=cfg=from-secret direct=from-secret",
		"$(VAR) in args gives event values literally; config values still expand")
	assert.Equal(t, host, marked(t, logs, "HOST"))
	assert.Equal(t, "$(SOME_SECRET_KEY)", marked(t, logs, "EVIL"))
	assert.Equal(t, "$$(SOME_SECRET_KEY)", marked(t, logs, "DOUBLE"))
	var asJSON, asYAML map[string]any
	require.NoError(t, json.Unmarshal([]byte(marked(t, logs, "JSON")), &asJSON))
	assert.Equal(t, deployment, asJSON)
	require.NoError(t, yaml.Unmarshal([]byte(marked(t, logs, "YAML")), &asYAML))
	assert.Equal(t, deployment, asYAML)

	// The Job spec holds the escaped form, which Kubernetes turns back into the event's value.
	jobs := jobsOf(t, ns, ev)
	require.Len(t, jobs, 2)
	for _, j := range jobs {
		for _, e := range j.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "HOST" {
				assert.Equal(t, "http://x/$$(SOME_SECRET_KEY)", e.Value)
			}
		}
	}
}

const filesConfig = `apiVersion: v2
actions:
  - name: "Files"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "Show files"
        image: "alpine"
        files:
          - scripts/hello.sh
          - /data/version.txt
          - /helm
        workingDir: /keptn/helm
        cmd: [sh]
        args:
          - -c
          - |
            printf '<<PWD\n%s\nPWD>>\n' "$(pwd)"
            sh /keptn/scripts/hello.sh
            printf '<<VERSION\n%s\nVERSION>>\n' "$(cat /keptn/data/version.txt)"
            printf '<<CHART\n%s\nCHART>>\n' "$(cat Chart.yaml)"
            printf '<<DEEP\n%s\nDEEP>>\n' "$(cat templates/sub/deep.txt)"
            printf '<<LS\n%s\nLS>>\n' "$(ls -R /keptn)"
            echo written-by-task > /keptn/out.txt && printf '<<WRITE\n%s\nWRITE>>\n' "$(cat /keptn/out.txt)"
`

// TestFeatureFiles: single files and a whole directory (recursive), with and without a
// leading "/", read at the event's gitcommitid; /keptn is writable; workingDir is honoured.
// Sent structured (commit A) and binary (commit B, latest).
func TestFeatureFiles(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, "")
	files := func(commit, version string) {
		api.Put(commit, cartsScope, "job/config.yaml", []byte(filesConfig))
		api.Put(commit, cartsScope, "scripts/hello.sh", []byte("echo hello from script\n"))
		api.Put(commit, cartsScope, "data/version.txt", []byte(version))
		api.Put(commit, cartsScope, "helm/Chart.yaml", []byte("name: carts-"+version))
		api.Put(commit, cartsScope, "helm/templates/sub/deep.txt", []byte("deep "+version))
		api.Put(commit, cartsScope, "other/unlisted.txt", []byte("not asked for"))
	}
	files(keptnapi.Latest, "latest")
	files("commitA", "A")
	files("commitB", "B")
	svc := startService(t, api, ns, nil)

	cases := []struct {
		commit, version string
		send            func(t *testing.T, url string, ev cloudevents.Event) reply
	}{
		{"commitA", "A", sendStructured},
		{"commitB", "B", sendBinary},
		{"", "latest", sendBinary},
	}
	for _, c := range cases {
		t.Run("version "+c.version, func(t *testing.T) {
			ev := triggered(t, "sh.keptn.event.test.triggered", nil)
			if c.commit != "" {
				ev.SetExtension("gitcommitid", c.commit)
			}
			r := c.send(t, svc.URL, ev)
			require.Less(t, r.Status, 300, string(r.Body))
			typ, kctx, tid := startedFrom(t, r)
			if typ == "" { // structured reply
				var got map[string]any
				require.NoError(t, json.Unmarshal(r.Body, &got), string(r.Body))
				typ, kctx, tid = fmt.Sprint(got["type"]), fmt.Sprint(got["shkeptncontext"]), fmt.Sprint(got["triggeredid"])
			}
			assert.Equal(t, "sh.keptn.event.test.started", typ)
			assert.Equal(t, kctxOf(ev), kctx)
			assert.Equal(t, ev.ID(), tid)

			fin := waitEvent(t, api, ev, "sh.keptn.event.test.finished", finishTimeout)
			logs := assertSucceeded(t, fin, ev)
			assert.Equal(t, "/keptn/helm", marked(t, logs, "PWD"), "workingDir")
			assert.Contains(t, logs, "hello from script")
			assert.Equal(t, c.version, marked(t, logs, "VERSION"), "file content at the event's commit")
			assert.Equal(t, "name: carts-"+c.version, marked(t, logs, "CHART"))
			assert.Equal(t, "deep "+c.version, marked(t, logs, "DEEP"), "directories are copied recursively")
			assert.NotContains(t, marked(t, logs, "LS"), "unlisted", "only listed files are copied")
			assert.Equal(t, "written-by-task", marked(t, logs, "WRITE"), "/keptn is writable")
			if c.commit != "" {
				for _, rq := range api.Requests() {
					if strings.Contains(rq.Path, "/data/version.txt") || strings.Contains(rq.Path, "data%2Fversion.txt") {
						if rq.Query.Get("gitCommitID") == c.commit {
							return
						}
					}
				}
				t.Errorf("no resource request for data/version.txt at gitCommitID=%s", c.commit)
			}
		})
	}
}

const orderConfig = `apiVersion: v2
actions:
  - name: "Pipeline"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "first"
        image: "alpine"
        cmd: [sh, -c, "echo first ran"]
      - name: "second fails"
        image: "busybox:1.35"
        cmd: [sh, -c, "echo second about to fail; exit 3"]
      - name: "third"
        image: "alpine"
        cmd: [sh, -c, "echo third ran"]
`

// TestFeatureTaskOrder: tasks run in order; a failing middle task (exit 3) stops the action:
// no Job for the third, an errored/fail .finished naming the failed task with its logs.
func TestFeatureTaskOrder(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, orderConfig)
	svc := startService(t, api, ns, nil)

	ev := triggered(t, "sh.keptn.event.test.triggered", nil)
	r := sendBinary(t, svc.URL, ev)
	require.Less(t, r.Status, 300, string(r.Body))
	fin := waitEvent(t, api, ev, "sh.keptn.event.test.finished", finishTimeout)
	msg := dataString(fin, "message")
	assert.Equal(t, "errored", dataString(fin, "status"), msg)
	assert.Equal(t, "fail", dataString(fin, "result"), msg)
	assert.Equal(t, ev.ID(), fin.Triggeredid)
	assert.Contains(t, msg, "Task 'first' finished successfully")
	assert.Contains(t, msg, "first ran")
	assert.Contains(t, msg, "Task 'second fails' failed")
	assert.Contains(t, msg, "second about to fail", "the failed task's logs are in the message")
	assert.Contains(t, msg, "exited with code 3", "the exit code is reported")
	assert.NotContains(t, msg, "third")
	assert.Less(t, strings.Index(msg, "first ran"), strings.Index(msg, "second about to fail"), "in task order")

	jobs := jobsOf(t, ns, ev)
	byTask := map[string]batchv1.Job{}
	for _, j := range jobs {
		byTask[j.Labels["job-executor-service/task-index"]] = j
	}
	require.Len(t, jobs, 2, "no Job for the task after the failing one")
	assert.Equal(t, int32(1), byTask["0"].Status.Succeeded)
	assert.Equal(t, int32(0), byTask["1"].Status.Succeeded)
	assert.NotContains(t, byTask, "2")
	// The first Job ended before the second began.
	if a, b := byTask["0"].Status.CompletionTime, byTask["1"].Status.StartTime; assert.NotNil(t, a) && assert.NotNil(t, b) {
		assert.False(t, b.Before(a), "task 2 started %v before task 1 completed %v", b, a)
	}
}

const actionsConfig = `apiVersion: v2
actions:
  - name: "Action A"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - {name: "a", image: "alpine", cmd: [sh, -c, "echo output of action A"]}
  - name: "Action B"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - {name: "b", image: "busybox", cmd: [sh, -c, "echo output of action B"]}
  - name: "Quiet"
    silent: true
    events:
      - name: "sh.keptn.event.deployment.triggered"
    tasks:
      - {name: "q", image: "alpine", cmd: [sh, -c, "echo quiet"]}
  - name: "After deployment"
    events:
      - name: "sh.keptn.event.deployment.finished"
    tasks:
      - {name: "after", image: "alpine", cmd: [sh, -c, "echo after deployment"]}
  - name: "After deployment, quietly"
    silent: true
    events:
      - name: "sh.keptn.event.deployment.finished"
    tasks:
      - {name: "after-quietly", image: "busybox", cmd: [sh, -c, "echo after deployment, quietly"]}
`

// TestFeatureActions: two matching actions both run and are reported in one .finished; a
// silent action sends no events at all but its Job still runs to completion; an event that is
// not .triggered runs every matching action, silent or not, and is answered with nothing.
func TestFeatureActions(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, actionsConfig)
	svc := startService(t, api, ns, nil)

	t.Run("several matching actions", func(t *testing.T) {
		ev := triggered(t, "sh.keptn.event.test.triggered", nil)
		started, err := sendSDK(t, svc.URL, ev)
		require.NoError(t, err)
		require.NotNil(t, started)
		fin := waitEvent(t, api, ev, "sh.keptn.event.test.finished", finishTimeout)
		msg := assertSucceeded(t, fin, ev)
		assert.Contains(t, msg, "output of action A")
		assert.Contains(t, msg, "output of action B")
		assert.Len(t, jobsOf(t, ns, ev), 2)
		// Exactly one .started and one .finished for the context.
		assert.ElementsMatch(t, []string{"sh.keptn.event.test.started", "sh.keptn.event.test.finished"}, eventsOf(api, ev))
	})

	t.Run("silent", func(t *testing.T) {
		ev := triggered(t, "sh.keptn.event.deployment.triggered", nil)
		r := sendStructured(t, svc.URL, ev)
		require.Less(t, r.Status, 300, string(r.Body))
		assert.Empty(t, r.Body, "no .started in the reply")
		var job batchv1.Job
		require.Eventually(t, func() bool {
			jobs := jobsOf(t, ns, ev)
			if len(jobs) == 1 && jobs[0].Status.Succeeded == 1 {
				job = jobs[0]
				return true
			}
			return false
		}, finishTimeout, 500*time.Millisecond, "the silent action's Job completes")
		assert.Equal(t, "Quiet", job.Annotations["job-executor-service/action"])
		// The service is done with the action once it logs so; nothing may have been sent.
		require.Eventually(t, func() bool {
			return regexp.MustCompile(`"msg":"action finished".*"action":"Quiet"|"action":"Quiet".*"msg":"action finished"`).
				MatchString(svc.logs.String())
		}, 30*time.Second, 200*time.Millisecond)
		assert.Empty(t, eventsOf(api, ev), "a silent action sends no events")
	})

	t.Run("not .triggered", func(t *testing.T) {
		ev := triggered(t, "sh.keptn.event.deployment.finished", nil)
		r := sendStructured(t, svc.URL, ev)
		require.Less(t, r.Status, 300, string(r.Body))
		assert.Empty(t, r.Body, "no .started in the reply")
		require.Eventually(t, func() bool {
			jobs := jobsOf(t, ns, ev)
			return len(jobs) == 2 && jobs[0].Status.Succeeded == 1 && jobs[1].Status.Succeeded == 1
		}, finishTimeout, 500*time.Millisecond, "both matching actions' Jobs complete")
		waitIdle(t, svc)
		assert.Empty(t, eventsOf(api, ev), "there is no .triggered to answer, not even for the non-silent action")
	})
}

const matchConfig = `apiVersion: v2
actions:
  - name: "Locust anywhere"
    events:
      - name: "sh.keptn.event.*.triggered"
        jsonpath:
          property: "$.data.test.teststrategy"
          match: "locust"
    tasks:
      - {name: "m", image: "alpine", cmd: [sh, -c, "echo matched"]}
`

// TestFeatureMatching: an anchored glob plus a jsonpath condition; a non-match gets no reply
// event, no events at the API and no Job.
func TestFeatureMatching(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, matchConfig)
	svc := startService(t, api, ns, nil)

	cases := []struct {
		name, eventType, strategy string
		match                     bool
	}{
		{"test locust", "sh.keptn.event.test.triggered", "locust", true},
		{"other task by glob", "sh.keptn.event.evaluation.triggered", "locust", true},
		{"jsonpath mismatch", "sh.keptn.event.test.triggered", "health", false},
		{"glob is anchored", "sh.keptn.event.test.finished", "locust", false},
		{"glob prefix anchored", "xsh.keptn.event.test.triggered", "locust", false},
	}
	var misses []cloudevents.Event
	var matched []cloudevents.Event
	for _, c := range cases {
		ev := triggered(t, c.eventType, map[string]any{"test": map[string]any{"teststrategy": c.strategy}})
		r := sendBinary(t, svc.URL, ev)
		require.Less(t, r.Status, 300, "%s: %s", c.name, r.Body)
		typ, _, _ := startedFrom(t, r)
		if c.match {
			assert.Equal(t, strings.TrimSuffix(c.eventType, ".triggered")+".started", typ, c.name)
			matched = append(matched, ev)
		} else {
			assert.Empty(t, typ, "%s: no .started for a non-match", c.name)
			misses = append(misses, ev)
		}
	}
	for _, ev := range matched {
		fin := waitEvent(t, api, ev, strings.TrimSuffix(ev.Type(), ".triggered")+".finished", finishTimeout)
		assert.Contains(t, assertSucceeded(t, fin, ev), "matched")
	}
	// The non-matches were decided before their HTTP reply (the reply had no .started), and
	// the matches sent after them are finished: anything they caused would be visible now.
	for i, ev := range misses {
		assert.Empty(t, eventsOf(api, ev), "non-match %d (%s) sent events", i, ev.Type())
		assert.Empty(t, jobsOf(t, ns, ev), "non-match %d (%s) made a Job", i, ev.Type())
	}
}

func levelConfig(level string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v2
actions:
  - name: "Level"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "l"
        image: "alpine"
        files: [level.txt]
        cmd: [sh, -c, "echo config from %s level; cat /keptn/level.txt"]
`, level))
}

// TestFeatureConfigLevels: the service config wins over stage over project; removing a level
// falls back to the next; task files come from the level the config was found at; with a
// gitcommitid the stage level is read at that commit (the project level's latest version:
// levels_test.go).
func TestFeatureConfigLevels(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, "")
	svcScope, stageScope, projScope := cartsScope, keptnapi.Scope{Project: "sockshop", Stage: "dev"}, keptnapi.Scope{Project: "sockshop"}
	for name, sc := range map[string]keptnapi.Scope{"service": svcScope, "stage": stageScope, "project": projScope} {
		api.Put(keptnapi.Latest, sc, "job/config.yaml", levelConfig(name))
		api.Put(keptnapi.Latest, sc, "level.txt", []byte("file from "+name+" level"))
	}
	// Commit c1 of dev has only a stage config, which the head loses below.
	api.AddScope("c1", svcScope)
	api.Put("c1", stageScope, "job/config.yaml", levelConfig("stage@c1"))
	api.Put("c1", stageScope, "level.txt", []byte("file from stage level at c1"))
	// No caching of commit-less configs, so a removed level is noticed at once.
	svc := startService(t, api, ns, map[string]string{"CONFIG_CACHE_TTL_SECONDS": "0"})

	steps := []struct {
		name, commit, want, wantFile string
		remove                       *keptnapi.Scope // before sending
	}{
		{"all levels", "", "service", "service", nil},
		{"no service config", "", "stage", "stage", &svcScope},
		{"only project config", "", "project", "project", &stageScope},
		{"at a commit", "c1", "stage@c1", "stage level at c1", nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.remove != nil {
				api.Delete(keptnapi.Latest, *s.remove, "job/config.yaml")
			}
			ev := triggered(t, "sh.keptn.event.test.triggered", nil)
			if s.commit != "" {
				ev.SetExtension("gitcommitid", s.commit)
			}
			r := sendStructured(t, svc.URL, ev)
			require.Less(t, r.Status, 300, string(r.Body))
			fin := waitEvent(t, api, ev, "sh.keptn.event.test.finished", finishTimeout)
			msg := assertSucceeded(t, fin, ev)
			assert.Contains(t, msg, "config from "+s.want+" level\n")
			assert.Contains(t, msg, "file from "+s.wantFile)
		})
	}
}

// TestFeatureMissingConfig: without any job/config.yaml the service answers with a
// sh.keptn.log.error only; with ALWAYS_SEND_FINISHED_EVENT=true with .started and an errored
// .finished saying why.
func TestFeatureMissingConfig(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, "")

	t.Run("default", func(t *testing.T) {
		svc := startService(t, api, ns, nil)
		ev := triggered(t, "sh.keptn.event.test.triggered", nil)
		r := sendBinary(t, svc.URL, ev)
		require.Less(t, r.Status, 300, string(r.Body))
		typ, _, _ := startedFrom(t, r)
		assert.Empty(t, typ, "no .started in the reply")
		logErr := waitEvent(t, api, ev, "sh.keptn.log.error", finishTimeout)
		assert.Contains(t, dataString(logErr, "message"), "job/config.yaml")
		assert.Equal(t, "test", dataString(logErr, "task"))
		// log.error is the last thing the service sends for the event.
		assert.Equal(t, []string{"sh.keptn.log.error"}, eventsOf(api, ev))
		assert.Empty(t, jobsOf(t, ns, ev))
	})

	t.Run("ALWAYS_SEND_FINISHED_EVENT", func(t *testing.T) {
		svc := startService(t, api, ns, map[string]string{"ALWAYS_SEND_FINISHED_EVENT": "true"})
		ev := triggered(t, "sh.keptn.event.test.triggered", nil)
		started, err := sendSDK(t, svc.URL, ev)
		require.NoError(t, err)
		require.NotNil(t, started)
		assert.Equal(t, "sh.keptn.event.test.started", started.Type())
		waitEvent(t, api, ev, "sh.keptn.event.test.started", finishTimeout)
		fin := waitEvent(t, api, ev, "sh.keptn.event.test.finished", finishTimeout)
		msg := dataString(fin, "message")
		assert.Equal(t, "errored", dataString(fin, "status"), msg)
		assert.Equal(t, "fail", dataString(fin, "result"), msg)
		assert.Equal(t, ev.ID(), fin.Triggeredid)
		assert.Contains(t, msg, "job/config.yaml")
		assert.Contains(t, msg, "not found")
		assert.NotContains(t, eventsOf(api, ev), "sh.keptn.log.error")
		assert.Empty(t, jobsOf(t, ns, ev))
	})
}

// waitIdle waits until svc has no accepted event left unfinished (jes_events_in_flight 0).
// An event's worker sends everything it will ever send, retries included, before it ends, so
// after a delivery's reply this is the point past which nothing more can arrive for it.
func waitIdle(t *testing.T, svc *service) {
	t.Helper()
	var last string
	require.Eventually(t, func() bool {
		resp, err := http.Get(svc.URL + "metrics")
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			last = err.Error()
			return false
		}
		last = string(b)
		return regexp.MustCompile(`(?m)^jes_events_in_flight 0$`).Match(b)
	}, finishTimeout, 200*time.Millisecond, "service still busy; /metrics:\n%s", last)
}

// invalidConfig has an unknown field on line 7; it is the project's only config, as the chart
// subscribes the service to other services' tasks too (evaluation, approval, release).
const invalidConfig = `apiVersion: v2
actions:
  - name: "Test"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks:
      - name: "t"
        imagePulPolicy: Always
        image: "alpine"
`

// TestFeatureInvalidConfig: a config that does not parse or validate is treated like a missing
// one. Another service's task (evaluation) gets no .started and no .finished from this
// service, only a sh.keptn.log.error naming the line; with ALWAYS_SEND_FINISHED_EVENT=true
// .started and an errored .finished carry the same reason.
func TestFeatureInvalidConfig(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, invalidConfig)
	const reason = `line 7: unknown field "imagePulPolicy"`

	t.Run("default", func(t *testing.T) {
		svc := startService(t, api, ns, nil)
		ev := triggered(t, "sh.keptn.event.evaluation.triggered", nil)
		r := sendBinary(t, svc.URL, ev)
		require.Less(t, r.Status, 300, string(r.Body))
		typ, _, _ := startedFrom(t, r)
		assert.Empty(t, typ, "no .started in the reply")
		waitIdle(t, svc)
		require.Equal(t, []string{"sh.keptn.log.error"}, eventsOf(api, ev), "only a log.error, the evaluation is not ours to fail")
		logErr := waitEvent(t, api, ev, "sh.keptn.log.error", time.Second)
		msg := dataString(logErr, "message")
		assert.Contains(t, msg, "invalid job config")
		assert.Contains(t, msg, reason)
		assert.Equal(t, "evaluation", dataString(logErr, "task"))
		assert.Equal(t, ev.ID(), logErr.Triggeredid)
		assert.Empty(t, jobsOf(t, ns, ev))
	})

	t.Run("ALWAYS_SEND_FINISHED_EVENT", func(t *testing.T) {
		svc := startService(t, api, ns, map[string]string{"ALWAYS_SEND_FINISHED_EVENT": "true"})
		ev := triggered(t, "sh.keptn.event.evaluation.triggered", nil)
		started, err := sendSDK(t, svc.URL, ev)
		require.NoError(t, err)
		require.NotNil(t, started)
		assert.Equal(t, "sh.keptn.event.evaluation.started", started.Type())
		waitIdle(t, svc)
		require.Equal(t, []string{"sh.keptn.event.evaluation.started", "sh.keptn.event.evaluation.finished"}, eventsOf(api, ev))
		fin := waitEvent(t, api, ev, "sh.keptn.event.evaluation.finished", time.Second)
		msg := dataString(fin, "message")
		assert.Equal(t, "errored", dataString(fin, "status"), msg)
		assert.Equal(t, "fail", dataString(fin, "result"), msg)
		assert.Equal(t, ev.ID(), fin.Triggeredid)
		assert.Contains(t, msg, reason)
		assert.Empty(t, jobsOf(t, ns, ev))
	})
}
