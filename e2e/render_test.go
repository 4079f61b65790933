//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
				"--allowed-job-namespaces", "*", "--allowed-job-service-accounts", "*"}
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
