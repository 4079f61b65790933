package config

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"sh.keptn.event.test.triggered", "sh.keptn.event.test.triggered", true},
		{"sh.keptn.event.test.triggered", "xsh.keptn.event.test.triggeredx", false},
		{"sh.keptn.event.test.triggered", "sh.keptn.event.test.triggeredx", false},
		{"sh.keptn.event.test.triggered", "sh.keptn.event.testXtriggered", false}, // '.' is literal
		{"sh.keptn.event.*.triggered", "sh.keptn.event.test.triggered", true},
		{"sh.keptn.event.*.triggered", "sh.keptn.event.deployment.triggered", true},
		{"sh.keptn.event.*.triggered", "sh.keptn.event.a.b.triggered", true}, // '*' spans dots
		{"sh.keptn.event.*.triggered", "sh.keptn.event.test.finished", false},
		{"sh.keptn.event.*.triggered", "sh.keptn.event..triggered", true},
		{"*", "", true},
		{"*", "anything", true},
		{"", "", true},
		{"", "a", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYYcZ", false},
		{"*.finished", "sh.keptn.event.test.finished", true},
		{"sh.*", "sh.keptn.event.test.finished", true},
		{"a**b", "ab", true},
		{"a*a*a*b", "aaaaaaaaaaaaaaaaaaaa", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"~"+tt.s, func(t *testing.T) {
			assert.Equal(t, tt.want, GlobMatch(tt.pattern, tt.s))
		})
	}
}

func TestJSONPathToGJSON(t *testing.T) {
	tests := []struct {
		in, want string
		err      string
	}{
		{"$", "@this", ""},
		{" $ ", "@this", ""},
		{"$.data.x", "data.x", ""},
		{"$.data.test.teststrategy", "data.test.teststrategy", ""},
		{"$.data.deployment.deploymentURIsLocal[0]", "data.deployment.deploymentURIsLocal.0", ""},
		{"$.data.arr[12].x", "data.arr.12.x", ""},
		{"$.data['key.with.dots']", `data.key\.with\.dots`, ""},
		{`$["a b"].c`, "a b.c", ""},
		{"$.data['a]b']", `data.a\]b`, ""},
		{"$.labels.build-id", "labels.build-id", ""},
		{"$.x*y", `x\*y`, ""},
		{"$[0]", "0", ""},
		{"data.x", "data.x", ""}, // gjson-native
		{"data.arr.#", "data.arr.#", ""},
		{"", "", "empty"},
		{"$data", "", "expected '.' or '['"},
		{"$.", "", "empty or recursive"},
		{"$..x", "", "recursive"},
		{"$.a[", "", "unclosed"},
		{"$.a[]", "", "empty index"},
		{"$.a[-1]", "", "non-negative integer"},
		{"$.a[x]", "", "non-negative integer"},
		{"$.a['x]", "", "unterminated quoted key"},
		{"$.a['']", "", "empty key"},
		{"$.*", "", "wildcards"},
		{"$.a]", "", "unexpected character"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := JSONPathToGJSON(tt.in)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestMatch(t *testing.T) {
	cfg, err := Parse([]byte(`apiVersion: v2
actions:
  - name: locust
    events:
      - name: "sh.keptn.event.test.triggered"
        jsonpath:
          property: "$.data.test.teststrategy"
          match: "locust"
    tasks: [{name: t, image: i}]
  - name: any-triggered
    events:
      - name: "sh.keptn.event.*.triggered"
    tasks: [{name: t, image: i}]
  - name: health
    events:
      - name: "sh.keptn.event.test.triggered"
        jsonpath: {property: "$.data.test.teststrategy", match: "health"}
      - name: "sh.keptn.event.evaluation.finished"
    tasks: [{name: t, image: i}]
  - name: labels
    events:
      - name: "sh.keptn.event.test.triggered"
        jsonpath: {property: "data.labels.testId", match: "4711"}
    tasks: [{name: t, image: i}]
`))
	require.NoError(t, err)
	locustEvent := mustRead(t, "events/test-triggered.json")
	healthEvent := mustRead(t, "events/deployment-test-triggered.json")

	tests := []struct {
		name      string
		eventType string
		event     []byte
		want      []int
	}{
		{"jsonpath and glob, config order", "sh.keptn.event.test.triggered", locustEvent, []int{0, 1, 3}},
		{"other strategy", "sh.keptn.event.test.triggered", healthEvent, []int{1, 2}},
		{"second event of an action", "sh.keptn.event.evaluation.finished", locustEvent, []int{2}},
		{"glob only", "sh.keptn.event.deployment.triggered", []byte(`{}`), []int{1}},
		{"anchored", "xsh.keptn.event.test.triggeredx", locustEvent, nil},
		{"no match", "sh.keptn.event.test.finished", locustEvent, nil},
		{"missing property", "sh.keptn.event.test.triggered", []byte(`{"data":{}}`), []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cfg.Match(tt.eventType, tt.event)
			require.NoError(t, err)
			var idx []int
			for _, m := range got {
				idx = append(idx, m.Index)
				assert.Equal(t, cfg.Actions[m.Index].Name, m.Action.Name)
			}
			assert.Equal(t, tt.want, idx)
		})
	}

	_, err = cfg.Match("sh.keptn.event.test.triggered", []byte(`{not json`))
	assert.ErrorContains(t, err, "not valid JSON")
	// No jsonpath condition involved: invalid JSON does not matter.
	got, err := cfg.Match("sh.keptn.event.deployment.triggered", []byte(`{not json`))
	require.NoError(t, err)
	assert.Len(t, got, 1)
}

func TestMatchNonStringValues(t *testing.T) {
	cfg := &Config{APIVersion: "v2", Actions: []Action{
		{Name: "num", Events: []Event{{Name: "e", JSONPath: &JSONPath{Property: "$.data.code", Match: "200"}}}},
		{Name: "bool", Events: []Event{{Name: "e", JSONPath: &JSONPath{Property: "$.data.ok", Match: "true"}}}},
		{Name: "dotted", Events: []Event{{Name: "e", JSONPath: &JSONPath{Property: "$.data['a.b']", Match: "x"}}}},
		{Name: "bad", Events: []Event{{Name: "f", JSONPath: &JSONPath{Property: "$..a", Match: "x"}}}},
	}}
	got, err := cfg.Match("e", []byte(`{"data":{"code":200,"ok":true,"a.b":"x"}}`))
	require.NoError(t, err)
	assert.Len(t, got, 3)
	_, err = cfg.Match("f", []byte(`{}`))
	assert.ErrorContains(t, err, `action 3 "bad"`)
}

func BenchmarkMatch(b *testing.B) {
	cfg := &Config{APIVersion: "v2"}
	for i := range 50 {
		cfg.Actions = append(cfg.Actions, Action{
			Name: fmt.Sprintf("a%d", i),
			Events: []Event{
				{Name: fmt.Sprintf("sh.keptn.event.task%d.*", i)},
				{Name: "sh.keptn.event.*.triggered", JSONPath: &JSONPath{Property: "$.data.test.teststrategy", Match: fmt.Sprint("s", i)}},
			},
			Tasks: []Task{{Name: "t", Image: "i"}},
		})
	}
	event := mustRead(b, "events/test-triggered.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cfg.Match("sh.keptn.event.test.triggered", event); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNeedsEvent: only a jsonpath condition of an action the type would match needs the
// event; Match then works without one.
func TestNeedsEvent(t *testing.T) {
	cfg, err := Parse([]byte(`apiVersion: v2
actions:
  - name: a
    events: [{name: "sh.keptn.event.test.triggered", jsonpath: {property: "$.data.test.teststrategy", match: locust}}]
    tasks: [{name: t, image: alpine}]
  - name: b
    events: [{name: "sh.keptn.event.*.finished"}]
    tasks: [{name: t, image: alpine}]
`))
	require.NoError(t, err)
	assert.True(t, cfg.NeedsEvent("sh.keptn.event.test.triggered"))
	assert.False(t, cfg.NeedsEvent("sh.keptn.event.deployment.finished"))
	assert.False(t, cfg.NeedsEvent("sh.keptn.event.approval.triggered"))
	got, err := cfg.Match("sh.keptn.event.deployment.finished", nil)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "b", got[0].Action.Name)
	got, err = cfg.Match("sh.keptn.event.approval.triggered", nil)
	require.NoError(t, err)
	assert.Empty(t, got)
}
