//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"
)

// TestRenderServerDryRun: what `job-executor-service render` prints for the spec's example
// configs (and the demo config) is accepted by the API server as is: kubectl apply
// --dry-run=server -f - runs admission and validation on every Job and ConfigMap.
func TestRenderServerDryRun(t *testing.T) {
	ns := namespace(t)
	configs, err := filepath.Glob("../config/testdata/valid/*.yaml")
	require.NoError(t, err)
	configs = append(configs, "demo/config/sockshop/dev/carts/job/config.yaml")
	event := "../cmd/job-executor-service/testdata/render/event.json"
	files := "../cmd/job-executor-service/testdata/render/files"
	rendered := 0
	for _, cfg := range configs {
		t.Run(filepath.Base(cfg), func(t *testing.T) {
			args := []string{"render", "--config", cfg, "--event", event,
				// Every spec example allowed, so that all of them render.
				"--allowed-job-namespaces", "*", "--allowed-job-service-accounts", "*", "--allowed-job-tolerations", "*"}
			if !strings.HasPrefix(cfg, "demo/") {
				args = append(args, "--files", files)
			}
			cmd := exec.Command(serviceBin, args...)
			cmd.Env = []string{"JOB_NAMESPACE=" + ns, "INIT_CONTAINER_IMAGE=" + env.Image}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if stdout.Len() == 0 {
				// Configs whose actions the sample event does not match render nothing.
				t.Logf("nothing rendered: %v\n%s", err, stderr.String())
				return
			}
			require.NoError(t, err, stderr.String())
			// The spec's namespace example names its own namespace: run it in the test's.
			manifest := strings.ReplaceAll(stdout.String(), "namespace: carts", "namespace: "+ns)
			apply := exec.Command(env.Kubectl, "apply", "--dry-run=server", "-f", "-")
			apply.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
			apply.Stdin = strings.NewReader(manifest)
			out, err := apply.CombinedOutput()
			require.NoError(t, err, "%s\n%s", out, manifest)
			assert.Contains(t, string(out), "(server dry run)")
			rendered++
		})
	}
	assert.Greater(t, rendered, 5, "most examples render objects")
}

// TestRenderMatchesService: the Job `render` prints for an event is the Job the service creates
// when `send` delivers that event (name, labels, annotations, pod spec as built), and send
// prints the service's .started reply.
func TestRenderMatchesService(t *testing.T) {
	ns := namespace(t)
	api := keptnAPI(t, helloConfig)
	svc := startService(t, api, ns, nil)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(helloConfig), 0o600))
	ev := triggered(t, "sh.keptn.event.test.triggered", map[string]any{"labels": map[string]string{"build-id": "17"}})
	evJSON, err := ev.MarshalJSON()
	require.NoError(t, err)
	evFile := filepath.Join(dir, "event.json")
	require.NoError(t, os.WriteFile(evFile, evJSON, 0o600))

	run := func(args ...string) (string, string, error) {
		cmd := exec.Command(serviceBin, args...)
		// The settings startService gives the service that shape Jobs.
		cmd.Env = []string{"JOB_NAMESPACE=" + ns, "INIT_CONTAINER_IMAGE=" + env.Image}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	rendered, stderr, err := run("render", "--config", cfg, "--event", evFile)
	require.NoError(t, err, stderr)
	var want batchv1.Job
	require.NoError(t, yaml.Unmarshal([]byte(rendered), &want))

	out, stderr, err := run("send", "--to", svc.URL, "--file", evFile)
	require.NoError(t, err, stderr)
	t.Logf("job-executor-service send --to %s --file event.json\n%s", svc.URL, out)
	assert.True(t, strings.HasPrefix(out, "HTTP/1.1 200 OK\n"), out)
	assert.Contains(t, out, `"type": "sh.keptn.event.test.started"`)

	var got batchv1.Job
	require.Eventually(t, func() bool {
		o, err := kubectl(t, "get", "job", "-n", ns, want.Name, "-o", "json")
		return err == nil && json.Unmarshal([]byte(o), &got) == nil
	}, time.Minute, time.Second, "the service creates the rendered Job %s", want.Name)
	assert.Equal(t, want.Labels, got.Labels)
	assert.Equal(t, want.Annotations, got.Annotations)
	wc, gc := want.Spec.Template.Spec.Containers[0], got.Spec.Template.Spec.Containers[0]
	assert.Equal(t, []any{wc.Image, wc.Command, wc.Args, wc.Env, wc.Resources, wc.SecurityContext},
		[]any{gc.Image, gc.Command, gc.Args, gc.Env, gc.Resources, gc.SecurityContext})
	assert.Equal(t, want.Spec.Template.Spec.SecurityContext, got.Spec.Template.Spec.SecurityContext)
	assert.Equal(t, want.Spec.TTLSecondsAfterFinished, got.Spec.TTLSecondsAfterFinished)
}
