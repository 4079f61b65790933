package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/gjson"
)

func seedConfigs(f *testing.F) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(validHead + "        imagePulPolicy: Always\n"))
	f.Add([]byte("a: &a [x, x]\nb: [*a, *a]\n"))
	f.Add([]byte(aliasBomb(3)))
}

func FuzzParse(f *testing.F) {
	seedConfigs(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config does not re-validate: %v", err)
		}
		checkDocument(t, cfg)
		// Matching a valid config must not fail or panic.
		if _, err := cfg.Match("sh.keptn.event.test.triggered", []byte(`{"data":{"test":{"teststrategy":"locust"}}}`)); err != nil {
			t.Fatalf("match on a valid config: %v", err)
		}
	})
}

func FuzzMatch(f *testing.F) {
	event, err := os.ReadFile("testdata/events/test-triggered.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add("sh.keptn.event.*.triggered", "sh.keptn.event.test.triggered", "$.data.test.teststrategy", "locust", event)
	f.Add("sh.keptn.event.test.triggered", "xsh.keptn.event.test.triggeredx", "$", "", event)
	f.Add("*", "", "$.data['a.b'][0]", "1", []byte(`{"data":{"a.b":[1]}}`))
	f.Add("a*b*c", "abc", "data.x", "y", []byte(`not json`))
	f.Fuzz(func(t *testing.T, glob, eventType, property, match string, ev []byte) {
		// Without "*", a glob is plain equality.
		if !containsStar(glob) && GlobMatch(glob, eventType) != (glob == eventType) {
			t.Fatalf("glob %q vs %q", glob, eventType)
		}
		if GlobMatch(glob, eventType) && !containsStar(glob) && len(glob) != len(eventType) {
			t.Fatal("anchoring violated")
		}
		cfg := &Config{APIVersion: APIVersion, Actions: []Action{
			{Name: "a", Events: []Event{{Name: glob, JSONPath: &JSONPath{Property: property, Match: match}}}},
			{Name: "b", Events: []Event{{Name: glob}}},
		}}
		got, err := cfg.Match(eventType, ev)
		if err != nil {
			return
		}
		for i, m := range got {
			if i > 0 && m.Index <= got[i-1].Index {
				t.Fatal("matches not in config order")
			}
		}
	})
}

func containsStar(s string) bool {
	for i := range len(s) {
		if s[i] == '*' {
			return true
		}
	}
	return false
}

func FuzzJSONPath(f *testing.F) {
	for _, s := range []string{"$", "$.data.x", "$.data.deployment.deploymentURIsLocal[0]", "$.data['key.with.dots']",
		"$.data.test.teststrategy", "data.x", "$..x", "$.a[", `$["a]b"]`, "$[0][1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		g, err := JSONPathToGJSON(p)
		if err != nil {
			return
		}
		if g == "" {
			t.Fatalf("%q translated to an empty path", p)
		}
		// The translation must be usable by gjson.
		_ = gjson.Get(`{"data":{"x":1,"arr":[1,2]}}`, g)
	})
}

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/valid/env.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
