package jobs

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/keptn-contrib/job-executor-service/config"
)

// k8sExpand is a reference copy of the kubelet's variable expansion
// (k8s.io/kubernetes third_party/forked/golang/expansion, Expand as of v1.34), kept here so
// the tests do not depend on k8s.io/kubernetes. The rules:
//   - "$$" is an escaped "$" and becomes "$";
//   - "$(NAME)" becomes mapping(NAME); an unterminated "$(" stays as written;
//   - "$" followed by any other rune stays as written, a trailing "$" too.
//
// An invalid UTF-8 byte right after "$" becomes U+FFFD, as in Kubernetes (which decodes a
// rune there).
func k8sExpand(in string, mapping func(string) string) string {
	var b strings.Builder
	for i := 0; i < len(in); i++ {
		if in[i] != '$' || i+1 == len(in) {
			b.WriteByte(in[i])
			continue
		}
		rest := in[i+1:]
		r, size := utf8.DecodeRuneInString(rest)
		switch r {
		case '$':
			b.WriteByte('$')
			i += size
		case '(':
			if end := strings.IndexByte(rest, ')'); end >= 0 {
				b.WriteString(mapping(rest[1:end]))
				i += end + 1
			} else {
				b.WriteString("$(")
				i++
			}
		default:
			b.WriteByte('$')
			b.WriteRune(r)
			i += size
		}
	}
	return b.String()
}

// k8sMapping resolves names like the kubelet does for a container: from the given
// variables, unknown names stay as "$(NAME)".
func k8sMapping(vars map[string]string) func(string) string {
	return func(name string) string {
		if v, ok := vars[name]; ok {
			return v
		}
		return "$(" + name + ")"
	}
}

func TestK8sExpandReference(t *testing.T) {
	m := k8sMapping(map[string]string{"X": "x-value"})
	for in, want := range map[string]string{
		"$(X)":      "x-value",
		"$$(X)":     "$(X)",
		"$$$(X)":    "$x-value",
		"$(Y)":      "$(Y)",
		"$(X":       "$(X",
		"$X":        "$X",
		"a$":        "a$",
		"$":         "$",
		"$$":        "$",
		"$é$(X)":    "$éx-value",
		"$\xff":     "$\uFFFD",
		"no dollar": "no dollar",
	} {
		assert.Equal(t, want, k8sExpand(in, m), "%q", in)
	}
}

// eventDollarValues are event values that Kubernetes would change if they were copied
// verbatim into env[].value.
var eventDollarValues = []string{
	"http://x/$(SOME_SECRET_KEY)",
	"$(KEPTN_PROJECT)",
	"$$(SOME_SECRET_KEY)",
	"$$$(SOME_SECRET_KEY)",
	"$SOME_SECRET_KEY",
	"price: 5$",
	"$",
	"$$",
	"$(unterminated",
	"ünïcødé $(SOME_SECRET_KEY) 🚀$é",
	"plain",
	"",
}

// TestEventEnvIsLiteral: every env value built from the event (KEPTN_*, LABELS_*,
// valueFrom: event in every format) comes out of Kubernetes' expansion exactly as it was in
// the event, even with a secret in envFrom; values from the config still expand.
func TestEventEnvIsLiteral(t *testing.T) {
	secrets := map[string]string{"SOME_SECRET_KEY": "leaked-value", "X": "leaked-x"}
	for _, v := range eventDollarValues {
		t.Run(v, func(t *testing.T) {
			in := testInput(config.Task{Name: "t", Image: "alpine", Env: []config.Env{
				{Name: "locust-secret", ValueFrom: config.FromSecret},
				{Name: "HOST", Value: "$.data.value", ValueFrom: config.FromEvent},
				{Name: "HOST_STRING", Value: "$.data.value", ValueFrom: config.FromEvent, As: config.AsString},
				{Name: "HOST_JSON", Value: "$.data.value", ValueFrom: config.FromEvent, As: config.AsJSON},
				{Name: "HOST_YAML", Value: "$.data.value", ValueFrom: config.FromEvent, As: config.AsYAML},
				{Name: "OBJ", Value: "$.data.obj", ValueFrom: config.FromEvent},
				{Name: "EVENT", Value: "$", ValueFrom: config.FromEvent},
				{Name: "FROM_CONFIG", Value: "url=$(SOME_SECRET_KEY)", ValueFrom: config.FromString},
			}})
			raw := []byte(`{"data":{"value":` + jsonString(t, v) + `,"obj":{"k":` + jsonString(t, v) + `}}}`)
			in.Event.Raw = raw
			in.Event.Project, in.Event.Stage, in.Event.Service = v, v+"-stage", v+"-service"
			in.Event.Labels = map[string]string{"evil": v}

			b, err := Build(testSettings(), in)
			require.NoError(t, err)
			c := b.Job.Spec.Template.Spec.Containers[0]
			got := expandContainerEnv(c, secrets)

			want := map[string]string{
				"KEPTN_PROJECT": v, "KEPTN_STAGE": v + "-stage", "KEPTN_SERVICE": v + "-service",
				"LABELS_EVIL": v,
				"FROM_CONFIG": "url=leaked-value", // config-written values keep expansion
			}
			for _, e := range in.Task.Env {
				if e.ValueFrom != config.FromEvent {
					continue
				}
				ev, err := EnvFromEvent(raw, e.Value, e.As)
				require.NoError(t, err)
				want[e.Name] = ev
			}
			for name, w := range want {
				assert.Equal(t, w, got[name], "env %s", name)
			}
		})
	}
}

// expandContainerEnv resolves c.Env the way the kubelet does: envFrom variables first,
// then each env value expanded against everything defined before it.
func expandContainerEnv(c corev1.Container, secrets map[string]string) map[string]string {
	vars := map[string]string{}
	if len(c.EnvFrom) > 0 {
		for k, v := range secrets {
			vars[k] = v
		}
	}
	for _, e := range c.Env {
		vars[e.Name] = k8sExpand(e.Value, k8sMapping(vars))
	}
	return vars
}

func TestEscapeEventValue(t *testing.T) {
	for in, want := range map[string]string{
		"":        "",
		"plain":   "plain",
		"$":       "$$",
		"$(X)":    "$$(X)",
		"$$(X)":   "$$$$(X)",
		"a$b$":    "a$$b$$",
		"ü$(X)🚀$": "ü$$(X)🚀$$",
	} {
		assert.Equal(t, want, escapeEventValue(in), "%q", in)
	}
	m := k8sMapping(map[string]string{"X": "leaked"})
	for _, v := range eventDollarValues {
		assert.Equal(t, v, k8sExpand(escapeEventValue(v), m), "%q", v)
	}
}

// FuzzEscapeEventValue: whatever the event holds and whatever variables the container has,
// Kubernetes turns the escaped value back into exactly the event's value.
func FuzzEscapeEventValue(f *testing.F) {
	for _, v := range eventDollarValues {
		f.Add(v, "SOME_SECRET_KEY", "leaked-value")
	}
	f.Add("$(\xff)$\xff", "\xff", "x")
	f.Fuzz(func(t *testing.T, s, name, value string) {
		got := k8sExpand(escapeEventValue(s), k8sMapping(map[string]string{name: value, "X": "leaked"}))
		if got != s {
			t.Fatalf("expand(escape(%q)) = %q", s, got)
		}
	})
}

func jsonString(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	require.NoError(t, err)
	return string(b)
}
