package jobs

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnvFromEvent(t *testing.T) {
	raw := []byte(`{"data":{"s":"text","n":1.50,"b":true,"z":null,"o":{"k":"v","l":[1,2]},"arr":["x","y"],"a.b":"dotted"}}`)
	cases := []struct{ path, as, want, err string }{
		{"$.data.s", "", "text", ""},
		{"$.data.n", "", "1.50", ""},
		{"$.data.b", "", "true", ""},
		{"$.data.z", "", "", ""},
		{"$.data.arr[1]", "", "y", ""},
		{"$.data.o", "", `{"k":"v","l":[1,2]}`, ""},
		{"$.data.arr", "", `["x","y"]`, ""},
		{"$.data.o", "string", `{"k":"v","l":[1,2]}`, ""},
		{"$.data.s", "json", `"text"`, ""},
		{"$.data.o", "yaml", "k: v\nl:\n- 1\n- 2\n", ""},
		{"$['data']['a.b']", "", "dotted", ""},
		{"$.data.missing", "", "", "jsonpath $.data.missing not found in event"},
		{"$.data.arr[5]", "", "", "not found"},
		{"$.data.s", "xml", "", "unknown format"},
	}
	for _, tc := range cases {
		got, err := EnvFromEvent(raw, tc.path, tc.as)
		if tc.err != "" {
			if assert.Error(t, err, tc.path) {
				assert.Contains(t, err.Error(), tc.err)
			}
			continue
		}
		require.NoError(t, err, tc.path)
		assert.Equal(t, tc.want, got, "%s as %s", tc.path, tc.as)
	}
	whole, err := EnvFromEvent(raw, "$", "")
	require.NoError(t, err)
	assert.True(t, json.Valid([]byte(whole)))
}

func FuzzEnvFromEvent(f *testing.F) {
	f.Add([]byte(testEvent), "$.data.deployment.deploymentURIsLocal[0]", "")
	f.Add([]byte(`{"a":[1,{"b":null}]}`), "$.a[1].b", "yaml")
	f.Add([]byte(`[]`), "$['x']", "json")
	f.Add([]byte(`{"a.b":{"*":1}}`), `$['a.b']["*"]`, "string")
	f.Fuzz(func(t *testing.T, raw []byte, path, as string) {
		v, err := EnvFromEvent(raw, path, as)
		if err != nil {
			return
		}
		if as == "json" && !json.Valid([]byte(v)) {
			t.Fatalf("as json gave invalid JSON %q", v)
		}
		v2, err := EnvFromEvent(raw, path, as)
		if err != nil || v2 != v {
			t.Fatal("not deterministic")
		}
	})
}
