package jobs

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestJobName(t *testing.T) {
	n := JobName("shipyard-controller", "4fe1eed1-49e2-49a9-91af-a42c8b0f7811", 0, 1)
	assert.Equal(t, "jes-bf70b767f72bc2e0-0-1", n)
	assert.Equal(t, n, JobName("shipyard-controller", "4fe1eed1-49e2-49a9-91af-a42c8b0f7811", 0, 1))
	assert.NotEqual(t, n, JobName("shipyard-controller", "4fe1eed1-49e2-49a9-91af-a42c8b0f7811", 1, 0))
	assert.NotEqual(t, JobName("ab", "c", 0, 0), JobName("a", "bc", 0, 0))
	for _, id := range []string{"", "1", strings.Repeat("x", 1000)} {
		name := JobName("s", id, 99, -3)
		assert.Empty(t, validation.IsDNS1123Label(name), name)
	}
}

// The names of event records and leases are stored in the cluster: they must not change.
func TestRecordAndLeaseName(t *testing.T) {
	assert.Equal(t, "jes-e032b428294860fa-ev", RecordName("src", "a"))
	assert.NotEqual(t, RecordName("ab", "c"), RecordName("a", "bc"))
	assert.Equal(t, "jes-bffeebb7e4-owner", LeaseName("job-executor-service-7d9f8c6b5-x2x9q"))
	assert.Empty(t, validation.IsDNS1123Subdomain(LeaseName(strings.Repeat("x", 300))))
}

// ConfigHash labels a Job with the config it came from (16 hex digits of sha256; the value
// was computed with Python's hashlib, not with this code).
func TestConfigHash(t *testing.T) {
	assert.Equal(t, "2445b33e2e3490cf", ConfigHash([]byte("apiVersion: v2\n")))
	assert.NotEqual(t, ConfigHash([]byte("apiVersion: v2\n")), ConfigHash([]byte("apiVersion: v2\n\n")))
}

func TestLabelValue(t *testing.T) {
	cases := map[string]string{
		"":                      "",
		"sockshop":              "sockshop",
		"Sock Shop!":            "Sock_Shop",
		"-dev-":                 "dev",
		"a/b.c_d-e":             "a_b.c_d-e",
		"äöü":                   "",
		"___x___":               "x",
		strings.Repeat("a", 63): strings.Repeat("a", 63),
	}
	for in, want := range cases {
		assert.Equal(t, want, LabelValue(in), in)
	}
	long1, long2 := LabelValue(strings.Repeat("a", 64)), LabelValue(strings.Repeat("a", 65))
	assert.Len(t, long1, 63)
	assert.Equal(t, strings.Repeat("a", 52)+"-ffe054fe7a", long1)
	assert.NotEqual(t, long1, long2, "long values keep a hash of the whole input")
	assert.Empty(t, validation.IsValidLabelValue(LabelValue(strings.Repeat("_", 70)+"x")))
}

func TestLabelEnvName(t *testing.T) {
	cases := map[string]string{
		"build-id":   "LABELS_BUILD_ID",
		"owner name": "LABELS_OWNER_NAME",
		"testId":     "LABELS_TESTID",
		"a.b/c":      "LABELS_A_B_C",
		"ß":          "LABELS__",
		"日本":         "LABELS___",
	}
	for in, want := range cases {
		assert.Equal(t, want, LabelEnvName(in), in)
	}
}

func FuzzJobName(f *testing.F) {
	f.Add("shipyard-controller", "4fe1eed1-49e2-49a9-91af-a42c8b0f7811", 0, 1)
	f.Add("", "", -1, -9223372036854775808)
	f.Fuzz(func(t *testing.T, source, id string, a, b int) {
		n := JobName(source, id, a, b)
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			t.Fatalf("JobName(%q, %q, %d, %d) = %q: %v", source, id, a, b, n, errs)
		}
		if n != JobName(source, id, a, b) {
			t.Fatal("not deterministic")
		}
	})
}

func FuzzLabelValue(f *testing.F) {
	for _, s := range []string{"", "Sock Shop!", strings.Repeat("ab-", 40), "\xff\xfe", "_.-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := LabelValue(s)
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Fatalf("LabelValue(%q) = %q: %v", s, v, errs)
		}
		if validation.IsValidLabelValue(s) == nil && v != s {
			t.Fatalf("valid value %q changed to %q", s, v)
		}
	})
}
