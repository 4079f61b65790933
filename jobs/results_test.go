package jobs

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseResults(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		want      map[string]any
		err       string
	}{
		{name: "nothing written", msg: "", want: nil},
		{name: "whitespace", msg: " \n", want: nil},
		{name: "json object", msg: `{"passed": 42, "failed": 0, "suite": "smoke", "ok": true}` + "\n",
			want: map[string]any{"passed": json.Number("42"), "failed": json.Number("0"), "suite": "smoke", "ok": true}},
		{name: "nested json", msg: `{"a": {"b": [1, 2]}}`, want: map[string]any{"a": map[string]any{"b": []any{json.Number("1"), json.Number("2")}}}},
		{name: "key=value lines", msg: "# counts\npassed=42\nfailed = 0\n\nsuite=smoke=1\n",
			want: map[string]any{"passed": "42", "failed": "0", "suite": "smoke=1"}},
		{name: "json array", msg: `[1, 2]`, err: `results line 1 is neither key=value nor a JSON object: "[1, 2]"`},
		{name: "broken json", msg: `{"passed": 4`, err: "results are not a valid JSON object: unexpected EOF"},
		{name: "json then text", msg: `{"a": 1} trailing`, err: "results are not a valid JSON object: text after the object"},
		{name: "two objects", msg: `{"a": 1}{"b": 2}`, err: "results are not a valid JSON object: text after the object"},
		{name: "plain text", msg: "all good\n", err: `results line 1 is neither key=value nor a JSON object: "all good"`},
		{name: "empty key", msg: "=x", err: "results line 1 is neither key=value"},
		{name: "duplicate key", msg: "a=1\na=2", err: `results line 2: key "a" given twice`},
		{name: "too large", msg: strings.Repeat("a=1\n", 1100), err: "results are 4400 bytes, more than the 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseResults(tc.msg)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				assert.Nil(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func FuzzParseResults(f *testing.F) {
	for _, s := range []string{"", "a=1", `{"a":1}`, "{", `{"a":[1,{"b":null}]}`, "# c\nk = v\n", "\x00=\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		got, err := ParseResults(msg)
		if err != nil {
			assert.Nil(t, got)
			return
		}
		// Whatever is accepted can be sent on as JSON.
		_, err = json.Marshal(got)
		assert.NoError(t, err)
	})
}
