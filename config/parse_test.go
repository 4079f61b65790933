package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSpecExamples(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			cfg, err := Parse(data)
			require.NoError(t, err)
			require.NoError(t, cfg.Validate())
			assert.Equal(t, "v2", cfg.APIVersion)
			assert.NotEmpty(t, cfg.Actions)
			checkDocument(t, cfg)
		})
	}
}

// checkDocument: cfg as a Document parses back to cfg.
func checkDocument(t *testing.T, cfg *Config) {
	t.Helper()
	doc, err := cfg.Document()
	require.NoError(t, err)
	again, err := Parse(doc)
	require.NoError(t, err, "%s", doc)
	require.Equal(t, cfg, again, "%s", doc)
}

func ptr[T any](v T) *T { return &v }

func mustRead(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func TestParseModelValues(t *testing.T) {
	cfg, err := Parse(mustRead(t, "valid/resources.yaml"))
	require.NoError(t, err)
	r := cfg.Actions[0].Tasks[0].Resources
	require.NotNil(t, r)
	assert.Equal(t, Resources{
		Limits:   ResourceList{CPU: "1", Memory: "512Mi"},
		Requests: ResourceList{CPU: "50m", Memory: "128Mi"},
	}, *r)
	// An empty block is present (it disables the defaults), not nil.
	assert.NotNil(t, cfg.Actions[0].Tasks[2].Resources)

	cfg, err = Parse(mustRead(t, "valid/annotations.yaml"))
	require.NoError(t, err)
	assert.Equal(t, Annotations{"key1": "value1", "key2": "value2"}, cfg.Actions[0].Tasks[0].Annotations)
	assert.Equal(t, Annotations{"vault.hashicorp.com/agent-inject": "true", "key3": "value3"}, cfg.Actions[0].Tasks[1].Annotations)

	cfg, err = Parse(mustRead(t, "valid/security-context.yaml"))
	require.NoError(t, err)
	assert.Equal(t, &SecurityContext{RunAsUser: ptr(int64(7000)), RunAsGroup: ptr(int64(9000))}, cfg.Actions[0].Tasks[0].SecurityContext)
	assert.Equal(t, &SecurityContext{ReadOnlyRootFilesystem: ptr(false)}, cfg.Actions[0].Tasks[1].SecurityContext)
	assert.Equal(t, []string{"ALL"}, cfg.Actions[0].Tasks[2].SecurityContext.Capabilities.Drop)

	cfg, err = Parse(mustRead(t, "valid/poll-namespace-ttl.yaml"))
	require.NoError(t, err)
	task := cfg.Actions[0].Tasks[0]
	assert.Equal(t, ptr(1200), task.MaxPollDuration)
	assert.Equal(t, ptr(int32(600)), task.TTLSecondsAfterFinished)
	assert.Equal(t, "carts", task.Namespace)
	assert.Equal(t, []string{"--config", "/keptn/locust/locust.conf", "-f", "/keptn/locust/basic.py", "--host", "$(HOST)"}, task.Args)

	cfg, err = Parse(mustRead(t, "valid/silent.yaml"))
	require.NoError(t, err)
	assert.True(t, cfg.Actions[0].Silent)

	cfg, err = Parse(mustRead(t, "valid/pull-policy-sa.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "Always", cfg.Actions[0].Tasks[0].ImagePullPolicy)
	assert.Equal(t, ptr("your-service-account-name"), cfg.Actions[0].Tasks[1].ServiceAccount)
	assert.Nil(t, cfg.Actions[0].Tasks[0].ServiceAccount)

	cfg, err = Parse(mustRead(t, "valid/extensions.yaml"))
	require.NoError(t, err)
	assert.True(t, cfg.Actions[0].Parallel)
	task = cfg.Actions[0].Tasks[0]
	assert.Equal(t, ptr(int32(2)), task.BackoffLimit)
	assert.Equal(t, []string{"registry-credentials"}, task.ImagePullSecrets)
	assert.Equal(t, Quantity("100Mi"), task.KeptnVolumeSize)
	assert.Equal(t, map[string]string{"node-role.example.com/load-test": "true", "disk": "ssd"}, task.NodeSelector)
	assert.Equal(t, []Toleration{
		{Key: "dedicated", Operator: "Equal", Value: "load-test", Effect: "NoSchedule"},
		{Key: "node.kubernetes.io/unreachable", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: ptr(int64(60))},
	}, task.Tolerations)

	// Merge keys copy the anchored task; explicit keys win; numbers are accepted as strings.
	cfg, err = Parse(mustRead(t, "valid/anchors.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "200", cfg.Actions[0].Events[0].JSONPath.Match)
	second := cfg.Actions[0].Tasks[1]
	assert.Equal(t, "second", second.Name)
	assert.Equal(t, "alpine", second.Image)
	assert.Equal(t, []Env{{Name: "STAGE", Value: "$.data.stage", ValueFrom: "event"}}, second.Env)
}

const validHead = `apiVersion: v2
actions:
  - name: "a"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "t"
        image: "alpine"
`

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings that must all be in the error
	}{
		{"empty", "", []string{"config is empty"}},
		{"null", "~\n", []string{"config is empty"}},
		{"not yaml", "apiVersion: [v2\n", []string{"cannot parse config", "line"}},
		{"scalar root", "hello\n", []string{"line 1", "expected a mapping"}},
		{"two documents", validHead + "---\napiVersion: v2\n", []string{"line 9", "single YAML document"}},
		{"typo in task field", validHead + "        imagePulPolicy: Always\n",
			[]string{`line 9: unknown field "imagePulPolicy" in task actions[0].tasks[0]`}},
		{"case typo suggests", validHead + "        workingdir: /bin\n", []string{`line 9`, `did you mean "workingDir"?`}},
		{"unknown top level", "apiVersion: v2\nkind: Job\n" + validHead[len("apiVersion: v2\n"):], []string{`line 2: unknown field "kind" in config`}},
		{"duplicate field", validHead + "        image: busybox\n", []string{`line 9: duplicate field "image" in task`}},
		{"wrong api version", strings.Replace(validHead, "v2", "v1", 1), []string{`line 1`, `apiVersion must be "v2", got "v1"`}},
		{"missing api version", validHead[len("apiVersion: v2\n"):], []string{`apiVersion must be "v2", got ""`}},
		{"no actions", "apiVersion: v2\nactions: []\n", []string{"no actions"}},
		{"int expected", validHead + "        maxPollDuration: soon\n", []string{`line 9: actions[0].tasks[0].maxPollDuration: expected an integer, got "soon"`}},
		{"bool expected", strings.Replace(validHead, `  - name: "a"`, "  - name: a\n    silent: maybe", 1), []string{"line 4", "expected true or false"}},
		{"list expected", validHead + "        cmd: ls\n", []string{"line 9", "cmd: expected a list"}},
		{"string expected", validHead + "        image: [a]\n", []string{"duplicate field"}},
		{"mapping as string", strings.Replace(validHead, `image: "alpine"`, "image: {a: b}", 1), []string{"line 8", "image: expected a string, got a mapping"}},
		{"bad quantity type", validHead + "        resources:\n          limits:\n            cpu: [1]\n", []string{"line 11", "expected a quantity"}},
		{"bad quantity", validHead + "        resources:\n          limits:\n            memory: lots\n", []string{"line 11", `resources.limits.memory "lots" is not a valid quantity`}},
		{"annotations scalar", validHead + "        annotations: x\n", []string{"line 9", "expected a mapping or a list of mappings"}},
		{"annotations duplicate", validHead + "        annotations:\n          - a: b\n          - a: c\n", []string{"line 11", `duplicate key "a"`}},
		{"imagePullSecrets bad name", validHead + "        imagePullSecrets: [\"Not_A_Name\"]\n", []string{"line 9", `imagePullSecrets[0] "Not_A_Name"`}},
		{"imagePullSecrets twice", validHead + "        imagePullSecrets: [a, a]\n", []string{"line 9", `imagePullSecrets[1] "a" is listed twice`}},
		{"backoffLimit too high", validHead + "        backoffLimit: 11\n", []string{"line 9", "backoffLimit must be between 0 and 10, got 11"}},
		{"backoffLimit negative", validHead + "        backoffLimit: -1\n", []string{"line 9", "backoffLimit must be between 0 and 10, got -1"}},
		{"backoffLimit overflow", validHead + "        backoffLimit: 99999999999\n", []string{"line 9", "backoffLimit must be between 0 and 10"}},
		{"keptnVolumeSize bad", validHead + "        keptnVolumeSize: huge\n", []string{"line 9", `keptnVolumeSize "huge" is not a positive quantity`}},
		{"keptnVolumeSize zero", validHead + "        keptnVolumeSize: 0\n", []string{"line 9", `keptnVolumeSize "0" is not a positive quantity`}},
		{"nodeSelector list", validHead + "        nodeSelector: [a]\n", []string{"line 9", "nodeSelector: expected key: value pairs, got a list"}},
		{"nodeSelector nested", validHead + "        nodeSelector:\n          a: {b: c}\n", []string{"line 10", "keys and values must be strings"}},
		{"nodeSelector duplicate", validHead + "        nodeSelector:\n          a: b\n          a: c\n", []string{"line 11", `duplicate key "a"`}},
		{"nodeSelector bad key", validHead + "        nodeSelector:\n          \"bad key\": x\n", []string{"line 10", `nodeSelector key "bad key"`}},
		{"nodeSelector bad value", validHead + "        nodeSelector:\n          disk: \"s s d\"\n", []string{"line 10", `nodeSelector value "s s d" of "disk"`}},
		{"toleration unknown field", validHead + "        tolerations:\n          - key: a\n            operater: Exists\n", []string{"line 11", `unknown field "operater" in toleration`}},
		{"toleration bad operator", validHead + "        tolerations:\n          - key: a\n            operator: Maybe\n", []string{"line 11", `operator must be "Equal" or "Exists", got "Maybe"`}},
		{"toleration no key, Equal", validHead + "        tolerations:\n          - value: a\n", []string{"line 10", `a toleration without key must have operator "Exists"`}},
		{"toleration Exists with value", validHead + "        tolerations:\n          - key: a\n            operator: Exists\n            value: b\n", []string{"line 12", `operator "Exists" takes no value`}},
		{"toleration bad effect", validHead + "        tolerations:\n          - key: a\n            effect: NoWay\n", []string{"line 11", `effect must be empty`}},
		{"toleration seconds without NoExecute", validHead + "        tolerations:\n          - key: a\n            tolerationSeconds: 5\n", []string{"line 11", `tolerationSeconds needs effect "NoExecute"`}},
		{"toleration seconds negative", validHead + "        tolerations:\n          - key: a\n            effect: NoExecute\n            tolerationSeconds: -5\n", []string{"tolerationSeconds must be between 0"}},
		{"toleration bad key", validHead + "        tolerations:\n          - key: \"a b\"\n", []string{"line 10", `key "a b"`}},
		{"annotation bad key", validHead + "        annotations:\n          \"bad key!\": x\n", []string{"line 10", `annotation key "bad key!"`}},
		{"empty names", "apiVersion: v2\nactions:\n  - name: \"\"\n    events:\n      - name: \"\"\n    tasks:\n      - name: \"\"\n",
			[]string{"4 problems", `line 3: action 0 "": name must not be empty`, "line 5: ", "event name \"\"", `line 7: action 0 "" task 0 "": name must not be empty`, "image must not be empty"}},
		{"no events no tasks", "apiVersion: v2\nactions:\n  - name: x\n", []string{"line 3", "needs at least one event", "needs at least one task"}},
		{"bad event name", strings.Replace(validHead, "sh.keptn.event.test.triggered", "sh.keptn.event.test triggered", 1), []string{"line 5", "event name"}},
		{"bad jsonpath", strings.Replace(validHead, `"sh.keptn.event.test.triggered"`, "x\n        jsonpath:\n          property: \"$.data[\"\n          match: y", 1), []string{"line 7", "jsonpath property", "unclosed '['"}},
		{"env name", validHead + "        env:\n          - name: 1HOST\n            valueFrom: string\n            value: x\n", []string{"line 10", `env[0]: name "1HOST" must be a valid environment variable name`}},
		{"env secret name", validHead + "        env:\n          - name: My_Secret\n            valueFrom: secret\n", []string{"line 10", `secret name "My_Secret"`}},
		{"env valueFrom", validHead + "        env:\n          - name: X\n            valueFrom: file\n", []string{`line 11: action 0 "a" task 0 "t" env[0]: valueFrom must be one of "event", "secret", "string", got "file"`}},
		{"env missing valueFrom", validHead + "        env:\n          - name: X\n            value: y\n", []string{`got ""`}},
		{"env as", validHead + "        env:\n          - name: X\n            valueFrom: event\n            value: $\n            as: xml\n", []string{`line 13: action 0 "a" task 0 "t" env[0]: as must be one of "string", "json", "yaml", got "xml"`}},
		{"env as with string", validHead + "        env:\n          - name: X\n            valueFrom: string\n            value: y\n            as: json\n", []string{`line 13: `, `only allowed with valueFrom: event`}},
		{"env event path", validHead + "        env:\n          - name: X\n            valueFrom: event\n            value: $.data..x\n", []string{"recursive"}},
		{"image upper case", strings.Replace(validHead, `image: "alpine"`, `image: "evil/X"`, 1), []string{"line 8", `image "evil/X" is not a valid image reference`, "lowercase"}},
		{"image empty tag", strings.Replace(validHead, `image: "alpine"`, `image: "alpine:"`, 1), []string{"line 8", `image "alpine:" is not a valid image reference`}},
		{"poll duration overflow", validHead + "        maxPollDuration: 10000000000\n", []string{"line 9", "maxPollDuration must be between 1 and 2592000 seconds (30 days), got 10000000000"}},
		{"poll duration huge", validHead + "        maxPollDuration: 99999999999999999999\n", []string{"line 9", "maxPollDuration must be between 1 and 2592000"}},
		{"ttl overflow", validHead + "        ttlSecondsAfterFinished: 99999999999\n", []string{"line 9", "ttlSecondsAfterFinished must be between 0 and 2147483647 seconds, got 99999999999"}},
		{"run as user", validHead + "        securityContext: {runAsUser: -1, runAsGroup: 4294967296}\n",
			[]string{"2 problems", "line 9", "runAsUser must be between 0 and 2147483647, got -1", "runAsGroup must be between 0 and 2147483647, got 4294967296"}},
		{"run as user overflow", validHead + "        securityContext: {runAsUser: 9223372036854775808}\n", []string{"line 9", "runAsUser must be between 0 and 2147483647, got 9223372036854775808"}},
		{"pull policy", validHead + "        imagePullPolicy: Sometimes\n", []string{"line 9", `imagePullPolicy must be one of "Always", "IfNotPresent", "Never", got "Sometimes"`}},
		{"pull policy case", validHead + "        imagePullPolicy: always\n", []string{"line 9", `imagePullPolicy must be one of`}},
		{"poll duration", validHead + "        maxPollDuration: 0\n", []string{"line 9", "maxPollDuration must be between 1 and 2592000"}},
		{"ttl", validHead + "        ttlSecondsAfterFinished: -1\n", []string{"line 9", "ttlSecondsAfterFinished must be between 0 and 2147483647 seconds, got -1"}},
		{"namespace", validHead + "        namespace: Carts_NS\n", []string{"line 9", `namespace "Carts_NS"`}},
		{"service account", validHead + "        serviceAccount: \"no/slash\"\n", []string{"line 9", `serviceAccount "no/slash"`}},
		{"file traversal", validHead + "        files:\n          - ../secrets\n          - /a/../../b\n          - /\n          - a//b\n",
			[]string{"4 problems", "line 10", `files[0]: file path "../secrets"`, "line 11", "files[2]", `file path "/" is empty`, "files[3]"}},
		{"alias bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
			"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
			"apiVersion: v2\nactions:\n  - name: x\n    events: [{name: y}]\n    tasks:\n      - name: t\n        image: i\n        args: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
			[]string{`unknown field "a"`}},
		{"alias bomb in allowed field", aliasBomb(100), []string{"too large or too deeply aliased"}},
		{"too large", validHead + "# " + strings.Repeat("x", MaxConfigBytes) + "\n", []string{"larger than the limit"}},
		{"too many tasks", "apiVersion: v2\nactions:\n  - name: x\n    events: [{name: y}]\n    tasks:\n" + strings.Repeat("      - {name: t, image: i}\n", MaxTasks+1),
			[]string{"1001 tasks, more than the limit of 1000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml))
			require.Error(t, err)
			assert.Nil(t, cfg)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestValidateWithoutLines(t *testing.T) {
	cfg := &Config{APIVersion: "v2", Actions: []Action{{
		Name:   "a",
		Events: []Event{{Name: "x"}},
		Tasks:  []Task{{Name: "t", Image: "i", Env: []Env{{Name: "X", ValueFrom: "string", As: "json"}}}},
	}}}
	err := cfg.Validate()
	require.Error(t, err)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, []string{`action 0 "a" task 0 "t" env[0]: as: "json" is only allowed with valueFrom: event`}, ve.Problems)

	cfg.Actions[0].Tasks[0].Env[0].As = ""
	assert.NoError(t, cfg.Validate())
}

// TestParseWithLines: lint names the line of a task the service would refuse.
func TestParseWithLines(t *testing.T) {
	data := []byte("apiVersion: v2\nactions:\n  - name: a\n    events: [{name: x}]\n    tasks:\n      - name: t0\n        image: alpine\n\n      - image: alpine\n        name: t1\n")
	cfg, lines, err := ParseWithLines(data)
	require.NoError(t, err)
	require.Len(t, cfg.Actions[0].Tasks, 2)
	assert.Equal(t, 6, lines.Line(TaskPath(0, 0)))
	assert.Equal(t, 9, lines.Line(TaskPath(0, 1)))
	assert.Equal(t, 10, lines.Line(TaskPath(0, 1)+".name"))
	assert.Equal(t, 9, lines.Line(TaskPath(0, 1)+".cmd"), "absent: the nearest enclosing element")
	assert.Zero(t, lines.Line("nothing"))

	_, lines, err = ParseWithLines([]byte("apiVersion: v1\n"))
	assert.Error(t, err)
	assert.Nil(t, lines)
}

func TestCleanFilePath(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"locust/basic.py", "locust/basic.py", false},
		{"/helm", "helm", false},
		{"/helm/", "helm", false},
		{"a/b/c.txt", "a/b/c.txt", false},
		{"", "", true},
		{"/", "", true},
		{".", "", true},
		{"..", "", true},
		{"../x", "", true},
		{"a/../../x", "", true},
		{"a/./b", "", true},
		{"a//b", "", true},
		{"a\\b", "", true},
		{"a/..data/x", "", true}, // the ConfigMap volume's own entries start with ".."
		{"..hidden", "", true},
		{"a/.hidden", "a/.hidden", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := CleanFilePath(tt.in)
			if tt.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// aliasBomb builds a small config whose aliases expand to n*n*n nodes, all in
// fields the model accepts (actions -> tasks -> files).
func aliasBomb(n int) string {
	var b strings.Builder
	b.WriteString("apiVersion: v2\nactions:\n  - &a\n    name: a\n    events: [{name: e}]\n    tasks:\n      - &t {name: t, image: i, files: [")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("x")
	}
	b.WriteString("]}\n")
	for range n {
		b.WriteString("      - *t\n")
	}
	for range n {
		b.WriteString("  - *a\n")
	}
	return b.String()
}

// TestEveryIntegerFieldHasBounds: an integer field added to the model must get documented
// bounds in intBounds, so that no value can overflow where it is used.
func TestEveryIntegerFieldHasBounds(t *testing.T) {
	for typ := range typeNames {
		for i := range typ.NumField() {
			f := typ.Field(i)
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				_, ok := intBounds[name]
				assert.True(t, ok, "%s.%s (%s) has no entry in intBounds", typ.Name(), f.Name, name)
			}
		}
	}
}
