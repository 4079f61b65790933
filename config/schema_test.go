package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/invopop/jsonschema"
	sjsonschema "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// The JSON Schema of job/config.yaml is generated from the model's types and doc comments by
// the test below; `go generate ./config` (or make schema) rewrites the committed file.

var updateSchema = flag.Bool("update-schema", false, "rewrite "+SchemaFile)

// SchemaID is where editors find the schema (the README's yaml-language-server modeline).
const schemaID = "https://raw.githubusercontent.com/keptn-contrib/job-executor-service/main/config/" + SchemaFile

// generateSchema reflects Config (json tags are the YAML names) into a JSON Schema, then adds
// what the parser enforces beyond Go types: enums, integer bounds, non-empty lists, and that
// any YAML scalar is taken as a string ("match: 200").
func generateSchema() ([]byte, error) {
	r := &jsonschema.Reflector{
		ExpandedStruct: true,
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			switch t {
			case quantityType:
				return &jsonschema.Schema{
					Description: "A Kubernetes quantity: a number (cpu: 1) or a string (memory: 512Mi, cpu: 50m).",
					AnyOf:       []*jsonschema.Schema{{Type: "string"}, {Type: "number"}},
				}
			case annotationsType:
				pairs := &jsonschema.Schema{Type: "object", AdditionalProperties: &jsonschema.Schema{Type: "string"}}
				return &jsonschema.Schema{
					Description: "Annotations of the Job and its pod: a map (key: value) or the spec's list of maps (- key: value).",
					AnyOf:       []*jsonschema.Schema{pairs, {Type: "array", Items: pairs}},
				}
			}
			return nil
		},
	}
	if err := r.AddGoComments("github.com/keptn-contrib/job-executor-service/config", "."); err != nil {
		return nil, err
	}
	s := r.Reflect(&Config{})
	s.ID = schemaID
	s.Title = "job-executor-service job/config.yaml (apiVersion v2)"
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	defs := doc["$defs"].(map[string]any)
	prop := func(def, name string) map[string]any {
		d := doc
		if def != "Config" {
			d = defs[def].(map[string]any)
		}
		return d["properties"].(map[string]any)[name].(map[string]any)
	}
	prop("Config", "apiVersion")["const"] = APIVersion
	prop("Task", "imagePullPolicy")["enum"] = []string{PullAlways, PullIfNotPresent, PullNever}
	prop("Env", "valueFrom")["enum"] = []string{FromEvent, FromSecret, FromString}
	prop("Env", "as")["enum"] = []string{AsString, AsJSON, AsYAML}
	prop("Toleration", "operator")["enum"] = []string{TolerationEqual, TolerationExists}
	prop("Toleration", "effect")["enum"] = []string{"", EffectNoSchedule, EffectPreferNoSchedule, EffectNoExecute}
	for field, b := range intBounds {
		def := "Task"
		switch field {
		case "runAsUser", "runAsGroup":
			def = "SecurityContext"
		case "tolerationSeconds":
			def = "Toleration"
		}
		prop(def, field)["minimum"], prop(def, field)["maximum"] = b.min, b.max
	}
	prop("Config", "actions")["minItems"] = 1
	prop("Action", "events")["minItems"] = 1
	prop("Action", "tasks")["minItems"] = 1
	// An absent match compares with "".
	defs["JSONPath"].(map[string]any)["required"] = []string{"property"}
	scalarStrings(doc)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	err = enc.Encode(doc)
	return out.Bytes(), err
}

// scalarStrings lets every string property without an enum take any YAML scalar, as the parser does.
func scalarStrings(v any) {
	switch v := v.(type) {
	case map[string]any:
		if v["type"] == "string" && v["enum"] == nil && v["const"] == nil {
			v["type"] = []string{"string", "number", "boolean"}
		}
		for _, c := range v {
			scalarStrings(c)
		}
	case []any:
		for _, c := range v {
			scalarStrings(c)
		}
	}
}

// TestJSONSchemaUpToDate fails when the committed schema is not what the model gives.
func TestJSONSchemaUpToDate(t *testing.T) {
	got, err := generateSchema()
	require.NoError(t, err)
	if *updateSchema {
		require.NoError(t, os.WriteFile(SchemaFile, got, 0o644))
	}
	want, err := os.ReadFile(SchemaFile)
	require.NoError(t, err)
	assert.Equal(t, string(got), string(want), "the model changed: run go generate ./config (make schema) and commit "+SchemaFile)
}

func compileSchema(t *testing.T) *sjsonschema.Schema {
	t.Helper()
	f, err := os.Open(SchemaFile)
	require.NoError(t, err)
	defer f.Close()
	doc, err := sjsonschema.UnmarshalJSON(f)
	require.NoError(t, err)
	c := sjsonschema.NewCompiler()
	require.NoError(t, c.AddResource(schemaID, doc))
	s, err := c.Compile(schemaID)
	require.NoError(t, err)
	return s
}

func validateYAML(s *sjsonschema.Schema, data []byte) error {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	v, err := sjsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// yamlBlocks are the job configs (apiVersion: v2) in a Markdown file's yaml code blocks.
func yamlBlocks(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out [][]byte
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(b, -1) {
		if bytes.Contains(m[1], []byte("apiVersion: v2")) {
			out = append(out, m[1])
		}
	}
	return out
}

// TestJSONSchemaAcceptsEveryConfig: every job config of the repository (the spec's examples in
// testdata, the demo's, the README's) is valid for the schema and for the parser.
func TestJSONSchemaAcceptsEveryConfig(t *testing.T) {
	s := compileSchema(t)
	files, err := filepath.Glob("testdata/valid/*.yaml")
	require.NoError(t, err)
	files = append(files, "../e2e/demo/config/sockshop/dev/carts/job/config.yaml")
	configs := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		configs[f] = b
	}
	readme := yamlBlocks(t, "../README.md")
	require.NotEmpty(t, readme)
	for i, b := range readme {
		configs["README.md block "+string(rune('0'+i))] = b
	}
	for name, b := range configs {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(b)
			require.NoError(t, err)
			assert.NoError(t, validateYAML(s, b))
		})
	}
}

// TestJSONSchemaRefuses: what the parser refuses for its fields, types, enums and bounds, the
// schema refuses too.
func TestJSONSchemaRefuses(t *testing.T) {
	s := compileSchema(t)
	head := "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.test.triggered}]\n    tasks:\n      - name: t\n        image: alpine\n"
	tests := map[string]string{
		"unknown task field":   head + "        workdir: /x\n",
		"unknown root field":   "kind: x\n" + head,
		"wrong apiVersion":     strings.Replace(head, "v2", "v1", 1),
		"no actions":           "apiVersion: v2\nactions: []\n",
		"no tasks":             "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: x}]\n    tasks: []\n",
		"no image":             "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: x}]\n    tasks: [{name: t}]\n",
		"pull policy":          head + "        imagePullPolicy: Sometimes\n",
		"valueFrom":            head + "        env: [{name: A, valueFrom: file}]\n",
		"as":                   head + "        env: [{name: A, value: $, valueFrom: event, as: toml}]\n",
		"maxPollDuration 0":    head + "        maxPollDuration: 0\n",
		"ttl too large":        head + "        ttlSecondsAfterFinished: 2147483648\n",
		"runAsUser negative":   head + "        securityContext: {runAsUser: -1}\n",
		"silent not a boolean": strings.Replace(head, "  - name: a\n", "  - name: a\n    silent: maybe\n", 1),
		"cmd not a list":       head + "        cmd: echo\n",
		"annotation value map": head + "        annotations: {a: {b: c}}\n",
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(cfg))
			require.Error(t, err, "the parser refuses it")
			assert.Error(t, validateYAML(s, []byte(cfg)), "the schema refuses it")
		})
	}
	// And takes what the parser takes beyond plain strings.
	for _, cfg := range []string{
		head + "        resources: {limits: {cpu: 1, memory: 512Mi}}\n",
		head + "        annotations: [{a: b}, {c: d}]\n",
		strings.Replace(head, "sh.keptn.event.test.triggered}", "sh.keptn.event.test.triggered, jsonpath: {property: $.data.x, match: 200}}", 1),
	} {
		_, err := Parse([]byte(cfg))
		require.NoError(t, err)
		assert.NoError(t, validateYAML(s, []byte(cfg)), cfg)
	}
}
