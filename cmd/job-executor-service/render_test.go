package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/render")

const (
	renderDir   = "testdata/render"
	renderEvent = renderDir + "/event.json"
	renderFiles = renderDir + "/files"
)

// runRender runs the render command and returns its exit code, stdout and stderr.
func runRender(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	rc := render(args, getter(env), &stdout, &stderr)
	return rc, stdout.String(), stderr.String()
}

// eventOfType is the spec's sample event (with the spec's deployment data) as eventType.
func eventOfType(t *testing.T, eventType string) string {
	t.Helper()
	b, err := os.ReadFile(renderEvent)
	require.NoError(t, err)
	var ev map[string]any
	require.NoError(t, json.Unmarshal(b, &ev))
	ev["type"] = eventType
	b, err = json.Marshal(ev)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "event.json")
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// checkGolden compares got with testdata/render/<name>.golden (-update rewrites it).
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(renderDir, name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./cmd/job-executor-service -run TestRender -update")
	assert.Equal(t, string(want), got)
}

// documents splits render's output and decodes each document strictly into its kind.
func documents(t *testing.T, out string) []string {
	t.Helper()
	var kinds []string
	for _, doc := range strings.Split(out, "\n---\n") {
		var meta struct{ Kind string }
		require.NoError(t, yaml.Unmarshal([]byte(doc), &meta))
		switch meta.Kind {
		case "Job":
			var j batchv1.Job
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &j))
			require.NotEmpty(t, j.Name)
		case "ConfigMap":
			var cm corev1.ConfigMap
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &cm))
			require.NotEmpty(t, cm.BinaryData)
		default:
			t.Fatalf("unexpected document %q", doc)
		}
		kinds = append(kinds, meta.Kind)
	}
	return kinds
}

// TestRenderSpecExamples: every job config of the spec (config/testdata/valid) rendered for the
// spec's sample event, of the type its first action listens to, against a golden file.
func TestRenderSpecExamples(t *testing.T) {
	configs, err := filepath.Glob("../../config/testdata/valid/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, configs)
	// The settings under which the spec's examples that the defaults refuse are allowed.
	allowing := map[string][]string{
		"poll-namespace-ttl": {"--allowed-job-namespaces", "carts"},
		"pull-policy-sa":     {"--allowed-job-service-accounts", "your-service-account-name"},
		"extensions":         {"--allowed-job-tolerations", "dedicated,node.kubernetes.io/*"},
	}
	type example struct {
		name, cfg string
		flags     []string
	}
	var examples []example
	for _, cfg := range configs {
		name := strings.TrimSuffix(filepath.Base(cfg), ".yaml")
		examples = append(examples, example{name, cfg, nil})
		if flags, ok := allowing[name]; ok {
			examples = append(examples, example{name + "-allowed", cfg, flags})
		}
	}
	for _, ex := range examples {
		name, cfg := ex.name, ex.cfg
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(cfg)
			require.NoError(t, err)
			var doc struct {
				Actions []struct{ Events []struct{ Name string } }
			}
			require.NoError(t, yaml.Unmarshal(raw, &doc))
			eventType := strings.ReplaceAll(doc.Actions[0].Events[0].Name, "*", "test")
			args := []string{"--config", cfg, "--event", eventOfType(t, eventType), "--files", renderFiles,
				"--init-container-image", "ghcr.io/keptn-contrib/job-executor-service:1.0.0", "--job-namespace", "keptn"}
			args = append(args, ex.flags...)
			rc, stdout, stderr := runRender(t, nil, args...)
			if rc == 0 {
				documents(t, stdout)
			}
			// Deterministic: the same input twice gives the same bytes.
			rc2, stdout2, stderr2 := runRender(t, nil, args...)
			assert.Equal(t, []any{rc, stdout, stderr}, []any{rc2, stdout2, stderr2})
			checkGolden(t, name, fmt.Sprintf("# render %s for %s %s\n# exit %d\n# stderr:\n%s# stdout:\n%s", filepath.Base(cfg), eventType, strings.Join(ex.flags, " "), rc, stderr, stdout))
		})
	}
}

// TestRenderOutcomes: render says what the service would do, with its words and exit codes.
func TestRenderOutcomes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	head := "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.test.triggered}]\n    tasks:\n"
	two := write("two.yaml", head+"      - {name: ok, image: alpine}\n      - {name: evil, image: evil.example.com/miner}\n")
	files := write("carts/job/config.yaml", head+"      - {name: f, image: alpine, files: [scripts/run.sh]}\n")
	write("carts/scripts/run.sh", "echo hi\n")
	missing := write("missing.yaml", head+"      - {name: f, image: alpine, files: [scripts/run.sh]}\n")
	typo := write("typo.yaml", head+"      - {name: t, image: alpine, workdir: /x}\n")
	ev := eventOfType(t, "sh.keptn.event.test.triggered")
	other := eventOfType(t, "sh.keptn.event.deployment.triggered")
	bad := write("bad-event.json", `{"specversion":"1.0","id":"1","source":"s","type":"sh.keptn.event.test.triggered","data":{"project":"p"}}`)

	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		rc         int
		kinds      []string
		wantStderr []string
	}{
		{"all built", nil, []string{"--config", two, "--event", ev}, 0, []string{"Job", "Job"}, nil},
		{"refused action: nothing of it", nil, []string{"--config", two, "--event", ev, "--allowed-image-list", "alpine"}, 1, nil, []string{
			`Action 'a' was not run: task 'evil': image "evil.example.com/miner" is not in the allowed image list`,
		}},
		{"settings from the environment", map[string]string{"ALLOWED_IMAGE_LIST": "alpine"}, []string{"--config", two, "--event", ev}, 1, nil, []string{"not in the allowed image list"}},
		{"files beside job/ by default", nil, []string{"--config", files, "--event", ev}, 0, []string{"ConfigMap", "Job"}, nil},
		{"files not found", nil, []string{"--config", missing, "--event", ev, "--files", dir}, 1, nil, []string{
			"Task 'f' failed: FilesUnavailable: file or directory scripts/run.sh not found in service resources",
		}},
		{"no files directory", nil, []string{"--config", missing, "--event", ev}, 1, nil, []string{"give --files DIR"}},
		{"no action matches", nil, []string{"--config", two, "--event", other}, 1, nil, []string{
			"no action of " + two + " matches sh.keptn.event.deployment.triggered: the service would create nothing",
		}},
		{"invalid config with its line", nil, []string{"--config", typo, "--event", ev}, 1, nil, []string{
			typo + `: line 6: unknown field "workdir"`, "job-executor-service lint " + typo,
		}},
		{"event the receiver refuses", nil, []string{"--config", two, "--event", bad}, 1, nil, []string{"data.stage, data.service missing or empty", "400"}},
		{"bad setting", nil, []string{"--config", two, "--event", ev, "--job-pod-security-level", "strict"}, 2, nil, []string{"--job-pod-security-level"}},
		{"missing flag", nil, []string{"--config", two}, 2, nil, []string{"usage: job-executor-service render"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, stdout, stderr := runRender(t, tc.env, tc.args...)
			assert.Equal(t, tc.rc, rc, stderr)
			if tc.kinds != nil {
				assert.Equal(t, tc.kinds, documents(t, stdout))
			} else {
				assert.Empty(t, stdout)
			}
			for _, w := range tc.wantStderr {
				assert.Contains(t, stderr, w)
			}
			assert.NotContains(t, stderr, "\x1b[", "no colour when stderr is no terminal")
		})
	}
}

// Each render flag is a variable the service reads, and every variable that shapes the Jobs
// is a render flag: render cannot build what the service would not.
func TestRenderFlagsAreServiceSettings(t *testing.T) {
	var read []string
	_, err := readEnv(func(name string) string { read = append(read, name); return "" })
	require.NoError(t, err)
	var names []string
	for _, s := range renderSettings {
		names = append(names, s.name)
		assert.True(t, slices.Contains(read, s.name), "%s is no variable of the service", s.name)
	}
	var shaping []string
	(&reader{get: func(name string) string { shaping = append(shaping, name); return "" }}).settings()
	for _, name := range shaping {
		assert.Contains(t, names, name, "render has no flag for %s", name)
	}
}
