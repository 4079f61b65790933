package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLint(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	good := write("good.yaml", "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.test.triggered}]\n    tasks: [{name: t, image: alpine}]\n")
	typo := write("typo.yaml", "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.test.triggered}]\n    tasks:\n      - name: t\n        image: alpine\n        workdir: /bin\n")
	invalid := write("invalid.yaml", "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.test.triggered}]\n    tasks:\n      - name: t\n        image: ''\n        env: [{name: 1BAD, valueFrom: string, value: x}]\n")
	tests := []struct {
		name  string
		files []string
		rc    int
		want  []string
	}{
		{"valid", []string{good}, 0, []string{good + ": ok"}},
		{"unknown field with its line", []string{good, typo}, 1, []string{good + ": ok", typo + ": line 8: unknown field \"workdir\""}},
		{"every validation problem", []string{invalid}, 1, []string{invalid + ": ", "image", "1BAD"}},
		{"missing file", []string{filepath.Join(dir, "nope.yaml")}, 1, []string{"nope.yaml: open"}},
		{"no file", nil, 2, []string{"usage: job-executor-service lint [flags] FILE...", "-allowed-image-list"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			assert.Equal(t, tc.rc, lint(tc.files, getter(nil), &out))
			for _, w := range tc.want {
				assert.Contains(t, out.String(), w)
			}
		})
	}
}

// TestLintPolicy: lint refuses what the service would refuse before creating any Job, given
// the same settings as flags (or, without a flag, the environment).
func TestLintPolicy(t *testing.T) {
	dir := t.TempDir()
	// Each task starts on line 6, the next one task line further.
	write := func(name string, tasks ...string) string {
		p := filepath.Join(dir, name)
		body := "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.test.triggered}]\n    tasks:\n"
		for _, t := range tasks {
			body += "      - " + t + "\n"
		}
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	clean := write("clean.yaml", "{name: t, image: alpine}")
	root := write("root.yaml", "{name: root, image: alpine, securityContext: {runAsUser: 0, runAsNonRoot: false}}")
	ownSA := write("own-sa.yaml", "{name: t, image: alpine, serviceAccount: jes}")
	secret := write("secret.yaml", "{name: t, image: alpine, env: [{name: keptn-api-token, valueFrom: secret}]}")
	ns := write("ns.yaml", "{name: t, image: alpine, namespace: other}")
	files := write("files.yaml", "{name: t, image: alpine, files: [locust/basic.py]}")
	tolerate := write("tolerate.yaml", "{name: t, image: alpine, tolerations: [{key: dedicated, operator: Exists}]}")
	two := write("two.yaml", "{name: first, image: alpine}", "{name: second, image: docker.io/my-user/app}", "{name: third, image: busybox}")

	tests := []struct {
		name string
		args []string
		env  map[string]string
		rc   int
		want []string // lines of the output, exactly
	}{
		{"clean config", []string{clean}, nil, 0, []string{clean + ": ok"}},
		{"toleration refused by default", []string{tolerate}, nil, 1, []string{
			tolerate + `: line 6: action "a" task "t": tolerations[0]: taint key "dedicated" is not in the allowed toleration list (ALLOWED_JOB_TOLERATIONS)`,
		}},
		{"toleration allowed by flag", []string{"--allowed-job-tolerations", "dedicated", tolerate}, nil, 0, []string{tolerate + ": ok"}},
		{"toleration allowed by env", []string{tolerate}, map[string]string{"ALLOWED_JOB_TOLERATIONS": "*"}, 0, []string{tolerate + ": ok"}},
		{"root refused at restricted", []string{root}, nil, 1, []string{
			root + `: line 6: action "a" task "root": the pod would violate PodSecurity "restricted:latest": runAsNonRoot != true (container "task" must not set securityContext.runAsNonRoot=false), runAsUser=0 (container "task" must not set runAsUser=0)`,
		}},
		{"root accepted at baseline", []string{"--job-pod-security-level=baseline", root}, nil, 0, []string{root + ": ok"}},
		{"root accepted with the privileged switch", []string{"--allow-privileged-jobs", root}, nil, 0, []string{root + ": ok"}},
		{"level from the environment", []string{root}, map[string]string{"JOB_POD_SECURITY_LEVEL": "baseline"}, 0, []string{root + ": ok"}},
		{"the flag before the environment", []string{"--job-pod-security-level=restricted", root}, map[string]string{"JOB_POD_SECURITY_LEVEL": "baseline"}, 1, nil},
		{"default security context", []string{`--default-security-context={"privileged": true}`, clean}, nil, 1, nil},
		{"image outside the allowed list", []string{"--allowed-image-list=docker.io/my-user/*", clean}, nil, 1, []string{
			clean + `: line 6: action "a" task "t": image "alpine" is not in the allowed image list`,
		}},
		{"every refused task with its line", []string{"--allowed-image-list=docker.io/my-user/*", two}, nil, 1, []string{
			two + `: line 6: action "a" task "first": image "alpine" is not in the allowed image list`,
			two + `: line 8: action "a" task "third": image "busybox" is not in the allowed image list`,
		}},
		{"the service's own account", []string{"--service-account-name=jes", "--allowed-job-service-accounts=*", ownSA}, nil, 1, []string{
			ownSA + `: line 6: action "a" task "t": serviceAccount "jes" is the service's own account and is never allowed for a job`,
		}},
		{"another account allowed", []string{"--service-account-name=job-executor-service", "--allowed-job-service-accounts=j*", ownSA}, nil, 0, []string{ownSA + ": ok"}},
		{"the default job account", []string{"--default-job-service-account=jes", ownSA}, nil, 0, []string{ownSA + ": ok"}},
		{"a protected secret", []string{"--protected-secrets=other,keptn-api-token", secret}, nil, 1, []string{
			secret + `: line 6: action "a" task "t": env[0].valueFrom: secret "keptn-api-token" is a secret of the installation itself and is never allowed for a job`,
		}},
		{"a secret outside the list", []string{"--allowed-job-secrets=team-*", secret}, nil, 1, []string{
			secret + `: line 6: action "a" task "t": env[0].valueFrom: secret "keptn-api-token" is not in the allowed secret list (ALLOWED_JOB_SECRETS)`,
		}},
		{"a namespace outside the list", []string{"--allowed-job-namespaces=team-*", ns}, nil, 1, []string{
			ns + `: line 6: action "a" task "t": namespace "other" is not in the allowed namespace list (ALLOWED_JOB_NAMESPACES)`,
		}},
		{"namespaces from the environment", []string{ns}, map[string]string{"ALLOWED_JOB_NAMESPACES": "other"}, 0, []string{ns + ": ok"}},
		{"the job namespace", []string{"--job-namespace=other", ns}, nil, 0, []string{ns + ": ok"}},
		// Installations always set INIT_CONTAINER_IMAGE (the chart, the Knative manifests).
		{"files without an init image given", []string{files}, nil, 0, []string{files + ": ok"}},
		// Settings lint has no use for are not its business.
		{"other variables ignored", []string{clean}, map[string]string{"RCV_PORT": "eighty", "RECORD_SIGNING_KEY": "short"}, 0, []string{clean + ": ok"}},
		{"bad flag value", []string{"--job-pod-security-level=strict", clean}, nil, 2, []string{
			`job-executor-service lint: --job-pod-security-level: pod security level "strict": want restricted, baseline or privileged`,
		}},
		{"every bad value, flag or variable", []string{"--allow-privileged-jobs=maybe", "--allowed-job-namespaces=a.b", clean}, map[string]string{"ALLOWED_IMAGE_LIST": "docker.io/My-User/*"}, 2, []string{
			`job-executor-service lint: --allow-privileged-jobs="maybe": want true or false`,
			`job-executor-service lint: ALLOWED_IMAGE_LIST: "docker.io/My-User/*" is not a valid image pattern (an image reference in which '*' may stand for characters): invalid reference format: repository name (My-User/*) must be lowercase`,
			`job-executor-service lint: --allowed-job-namespaces: "a.b": must not contain dots`,
		}},
		{"unknown flag", []string{"--allowed-images=alpine", clean}, nil, 2, []string{"flag provided but not defined: -allowed-images"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			assert.Equal(t, tc.rc, lint(tc.args, getter(tc.env), &out), out.String())
			lines := strings.Split(out.String(), "\n")
			for _, w := range tc.want {
				assert.Contains(t, lines, w)
			}
		})
	}
}

// Each lint flag is named after a variable the service reads, so the two cannot drift apart.
func TestLintFlagsAreServiceSettings(t *testing.T) {
	var read []string
	_, err := readEnv(func(name string) string { read = append(read, name); return "" })
	require.NoError(t, err)
	require.NotEmpty(t, lintSettings)
	for _, s := range lintSettings {
		assert.True(t, slices.Contains(read, s.name), "%s is no variable of the service", s.name)
	}
}

// TestLintJSON: --format json gives every finding with its file, line, severity and message,
// the same findings the text lines show.
func TestLintJSON(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	head := "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.test.triggered}]\n    tasks:\n"
	good := write("good.yaml", head+"      - {name: t, image: alpine}\n")
	typo := write("typo.yaml", head+"      - name: t\n        image: alpine\n        workdir: /bin\n")
	invalid := write("invalid.yaml", head+"      - name: t\n        image: ''\n        env: [{name: 1BAD, valueFrom: string, value: x}]\n")
	broken := write("broken.yaml", "apiVersion: v2\nactions:\n  - name: [\n")
	refused := write("refused.yaml", head+"      - {name: t, image: busybox}\n")
	missing := filepath.Join(dir, "missing.yaml")

	run := func(args ...string) (int, []finding) {
		var out strings.Builder
		rc := lint(append([]string{"--format", "json"}, args...), getter(nil), &out)
		var got []finding
		require.NoError(t, json.Unmarshal([]byte(out.String()), &got), out.String())
		return rc, got
	}
	rc, got := run(good)
	assert.Equal(t, 0, rc)
	assert.Equal(t, []finding{}, got)

	rc, got = run("--allowed-image-list", "alpine", good, typo, invalid, broken, refused, missing)
	assert.Equal(t, 1, rc)
	want := []finding{
		{File: typo, Line: 8, Severity: "error", Message: `unknown field "workdir" in task actions[0].tasks[0]`},
		{File: invalid, Line: 6, Severity: "error", Message: `action 0 "a" task 0 "t": image must not be empty`},
		{File: invalid, Line: 8, Severity: "error", Message: `action 0 "a" task 0 "t" env[0]: name "1BAD" must be a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)`},
		{File: refused, Line: 6, Severity: "error", Message: `action "a" task "t": image "busybox" is not in the allowed image list`},
	}
	for _, w := range want {
		assert.Contains(t, got, w)
	}
	var brokenLine, missingLine = -1, -1
	for _, f := range got {
		switch f.File {
		case broken:
			brokenLine = f.Line
		case missing:
			missingLine = f.Line
			assert.Contains(t, f.Message, "no such file")
		}
	}
	assert.Equal(t, 3, brokenLine, "a YAML syntax error keeps its line")
	assert.Equal(t, 0, missingLine, "an unreadable file has no line")
	assert.Len(t, got, 6)

	// The text format shows the same findings, one per line.
	var out strings.Builder
	assert.Equal(t, 1, lint([]string{"--allowed-image-list", "alpine", good, typo, invalid, broken, refused, missing}, getter(nil), &out))
	assert.Equal(t, 7, strings.Count(out.String(), "\n"), out.String())
	assert.Contains(t, out.String(), good+": ok\n")

	var usage strings.Builder
	assert.Equal(t, 2, lint([]string{"--format", "xml", good}, getter(nil), &usage))
}
