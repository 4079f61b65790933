package keptn

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

// escapeLine is what a coloured log looks like: 17 bytes, 53 as JSON.
const escapeLine = "\x1b[1;31m<&>\x01\x02\x1b[0m\n"

func incoming(t testing.TB, eventType string, labels map[string]string) *Incoming {
	t.Helper()
	e := cloudevents.NewEvent()
	e.SetID("4fe1eed1-49e2-49a9-91af-a42c8b0f7811")
	e.SetSource("shipyard-controller")
	e.SetType(eventType)
	e.SetExtension("shkeptncontext", "138f7bf1-f027-42c4-b705-9033b5f5871e")
	e.SetExtension("gitcommitid", "c0ffee")
	require.NoError(t, e.SetData(cloudevents.ApplicationJSON, map[string]any{"project": "sockshop", "stage": "dev", "service": "carts", "labels": labels}))
	in, err := Decode(e)
	require.NoError(t, err)
	return in
}

func wire(t testing.TB, e cloudevents.Event) []byte {
	t.Helper()
	b, err := json.Marshal(e)
	require.NoError(t, err)
	return b
}

// data decodes the event's data; the JSON must be valid whatever was cut.
func data(t testing.TB, e cloudevents.Event) map[string]any {
	t.Helper()
	var d map[string]any
	require.NoError(t, json.Unmarshal(e.Data(), &d))
	return d
}

func TestEncodedLen(t *testing.T) {
	for _, s := range []string{"", "plain", escapeLine, "\"\\\b\f\n\r\t", "<&>", "\x7f", "é€😀", "\u2028\u2029", "\xff\xfe", "\xe2\x82", "a\xc3"} {
		b, err := json.Marshal(s)
		require.NoError(t, err)
		assert.Equal(t, len(b)-2, encodedLen(s), "%q", s)
	}
	assert.Equal(t, 53, encodedLen(escapeLine))
}

// FuzzEncodedLen: encodedLen is what encoding/json (and so the CloudEvents SDK) writes.
func FuzzEncodedLen(f *testing.F) {
	for _, s := range []string{"", escapeLine, "\u2028", "\xff", "é€😀", "<&>\"\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := json.Marshal(s)
		require.NoError(t, err)
		if encodedLen(s) != len(b)-2 {
			t.Fatalf("encodedLen(%q) = %d, json has %d", s, encodedLen(s), len(b)-2)
		}
	})
}

var notice = regexp.MustCompile(`^\[\.\.\. (\d+) bytes truncated \.\.\.\]\n`)

// FuzzTail: a cut log is a notice of how much was cut and the end of the log within both
// bounds (boundTotal: the notice counted too, or nothing).
func FuzzTail(f *testing.F) {
	f.Add(strings.Repeat(escapeLine, 50)+"END", 100, 200)
	f.Add("\xff\xfe\u2028abc", 2, 7)
	f.Add("short", -1, 3)
	f.Fuzz(func(t *testing.T, s string, raw, encoded int) {
		b := budget{max(raw%4096, -1), max(encoded%4096, -1)}
		check := func(what, out string) string {
			if out == s {
				return out
			}
			m := notice.FindStringSubmatch(out)
			kept := notice.ReplaceAllString(out, "")
			if m == nil || m[1] != fmt.Sprint(len(s)-len(kept)) || !strings.HasSuffix(s, kept) {
				t.Fatalf("%s(%q, %v) = %q: not a notice and the end of the log", what, s, b, out)
			}
			return kept
		}
		if kept := check("tail", tail(s, b)); !b.fits(kept) {
			t.Fatalf("tail(%q, %v) keeps %q", s, b, kept)
		}
		total := boundTotal(s, b)
		if !b.fits(total) {
			t.Fatalf("boundTotal(%q, %v) = %q", s, b, total)
		}
		if total != "" {
			check("boundTotal", total)
		}
	})
}

func escapeResults() []ActionResult {
	logs := jobs.BoundLogs(strings.Repeat(escapeLine, 300_000/len(escapeLine))+"END-OF-LOG\n", 64<<10)
	return []ActionResult{{Name: "a", OK: true, Tasks: []TaskResult{
		{"first", jobs.Result{Succeeded: true, Logs: logs}},
		{"second", jobs.Result{Succeeded: true, Logs: logs}},
	}}}
}

// Logs of ANSI colours and control characters triple as JSON: the event, not the message's
// raw bytes, must fit the distributor's proxy.
func TestFinishedFitsEncoded(t *testing.T) {
	in := incoming(t, testTriggered, map[string]string{"buildId": "17"})
	s := Summarize(escapeResults(), DefaultMaxMessageBytes)
	require.LessOrEqual(t, len(s.Message), DefaultMaxMessageBytes)
	unfitted := len(wire(t, Finished(in, s, 0)))
	e := Finished(in, s, DefaultMaxEventBytes)
	size := len(wire(t, e))
	t.Logf("escape-heavy .finished: %d bytes as JSON unbounded, %d bounded (message %d raw bytes before, %d after)",
		unfitted, size, len(s.Message), len(data(t, e)["message"].(string)))
	assert.Greater(t, unfitted, 128<<10, "the raw message cap alone does not fit the proxy")
	assert.LessOrEqual(t, size, DefaultMaxEventBytes)
	assert.Greater(t, size, DefaultMaxEventBytes-2<<10, "the room is used")
	d := data(t, e)
	msg := d["message"].(string)
	assert.Equal(t, 2, strings.Count(msg, "END-OF-LOG"), "each task's logs keep their tails")
	assert.Contains(t, msg, "Task 'first' finished successfully!")
	assert.Contains(t, msg, "Task 'second' finished successfully!")
	assert.Contains(t, msg, escapeLine, "logs are kept as printed")
	assert.Equal(t, map[string]any{"buildId": "17"}, d["labels"])
	assert.Equal(t, "succeeded", d["status"])
	assert.Contains(t, d, "test")
}

// Labels are echoed while they fit; the message says how many were not; the small ones stay.
func TestFinishedBoundsLabels(t *testing.T) {
	labels := map[string]string{"buildId": "17", "zz-last": "small"}
	for i := range 40 {
		labels[fmt.Sprintf("note-%02d", i)] = strings.Repeat("<&>", 400) // 7,200 bytes as JSON
	}
	in := incoming(t, testTriggered, labels)
	for _, tc := range []struct {
		name string
		s    Summary
	}{
		{"escape-heavy logs", Summarize(escapeResults(), DefaultMaxMessageBytes)},
		{"short message", Summarize([]ActionResult{{Name: "a", OK: true, Tasks: []TaskResult{{"t", jobs.Result{Succeeded: true, Logs: "ok\n"}}}}}, DefaultMaxMessageBytes)},
		{"problem", Summary{Message: "job-executor-service: " + strings.Repeat("<bad>", 50_000)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Finished(in, tc.s, DefaultMaxEventBytes)
			size := len(wire(t, e))
			assert.LessOrEqual(t, size, DefaultMaxEventBytes)
			d := data(t, e)
			kept, _ := d["labels"].(map[string]any)
			assert.Equal(t, "17", kept["buildId"])
			assert.Equal(t, "small", kept["zz-last"], "a small label after huge ones is kept")
			assert.Less(t, len(kept), len(labels))
			msg := d["message"].(string)
			assert.True(t, strings.HasPrefix(msg, fmt.Sprintf("[%d of %d event labels not echoed: this event must fit in %d bytes]\n\n", len(labels)-len(kept), len(labels), DefaultMaxEventBytes)), msg[:min(len(msg), 200)])
			t.Logf("%d of %d labels echoed, %d bytes", len(kept), len(labels), size)
		})
	}
}

// .started echoes labels too, and log.error carries a message: both fit.
func TestStartedAndErrorLogFit(t *testing.T) {
	labels := map[string]string{"buildId": "17"}
	for i := range 40 {
		labels[fmt.Sprintf("note-%02d", i)] = strings.Repeat("<&>", 400)
	}
	in := incoming(t, testTriggered, labels)
	started := Started(in, nil, DefaultMaxEventBytes)
	assert.LessOrEqual(t, len(wire(t, started)), DefaultMaxEventBytes)
	d := data(t, started)
	assert.Equal(t, "17", d["labels"].(map[string]any)["buildId"])
	assert.Equal(t, "succeeded", d["status"])
	assert.NotContains(t, d, "message")

	small := incoming(t, testTriggered, map[string]string{"a": "b"})
	assert.Equal(t, map[string]any{"a": "b"}, data(t, Started(small, nil, DefaultMaxEventBytes))["labels"], "untouched when it fits")

	e := ErrorLog(small, strings.Repeat("\x1b[31m<oops>", 60_000)+"LAST", DefaultMaxEventBytes)
	assert.LessOrEqual(t, len(wire(t, e)), DefaultMaxEventBytes)
	assert.True(t, strings.HasSuffix(data(t, e)["message"].(string), "LAST"))
}

// The bound holds for small budgets too, and an event whose own fields exceed it is still
// sent, without labels and message.
func TestFittedSmallBudgets(t *testing.T) {
	in := incoming(t, testTriggered, map[string]string{"k": strings.Repeat("v", 3000)})
	s := Summarize(escapeResults(), DefaultMaxMessageBytes)
	for _, maxBytes := range []int{4096, 2000, 1200} {
		e := Finished(in, s, maxBytes)
		assert.LessOrEqual(t, len(wire(t, e)), maxBytes, "max %d", maxBytes)
		assert.Equal(t, "succeeded", data(t, e)["status"])
	}
	tiny := Finished(in, s, 100)
	assert.NotContains(t, data(t, tiny), "message")
	assert.NotContains(t, data(t, tiny), "labels")
}

// FuzzFinished: whatever the logs, labels and failure texts, the .finished fits its bound and
// is valid JSON that keeps the status.
func FuzzFinished(f *testing.F) {
	f.Add(strings.Repeat(escapeLine, 1000), "k", strings.Repeat("<", 2000), "BackoffLimitExceeded", 8192)
	f.Add("\xff\u2028\x00", "\x1b", "\x01", "", 4096)
	f.Fuzz(func(t *testing.T, logs, key, value, reason string, maxBytes int) {
		maxBytes = 4096 + abs(maxBytes)%(64<<10)
		in := incoming(t, testTriggered, map[string]string{key: value, "buildId": "17"})
		r := jobs.Result{Reason: reason, Message: reason, Logs: logs + logs}
		s := Summarize([]ActionResult{{Name: "a", Tasks: []TaskResult{{"t1", r}, {"t2", jobs.Result{Succeeded: true, Logs: logs}}}}}, 1<<20)
		e := Finished(in, s, maxBytes)
		if n := len(wire(t, e)); n > maxBytes {
			t.Fatalf("%d bytes, max %d", n, maxBytes)
		}
		assert.Equal(t, "errored", data(t, e)["status"])
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// .started announces the planned tasks in data.jobExecutor, which Keptn's models read past:
// the payload still decodes as keptnv2.EventData. When the plan and every echoed label would
// not fit, the labels win and the plan is left out.
func TestStartedAnnouncesTasks(t *testing.T) {
	planned := []PlannedAction{{Name: "Deploy", Tasks: []PlannedTask{
		{Name: "prepare", Job: "jes-0123456789abcdef-0-0", Namespace: "keptn"},
		{Name: "apply", Job: "jes-0123456789abcdef-0-1", Namespace: "team-a"},
	}}}
	in := incoming(t, testTriggered, map[string]string{"buildId": "17"})
	e := Started(in, planned, DefaultMaxEventBytes)
	var d StartedData
	require.NoError(t, json.Unmarshal(e.Data(), &d))
	require.NotNil(t, d.JobExecutor)
	assert.Equal(t, planned, d.JobExecutor.Actions)
	var keptnData keptnv2.EventData
	require.NoError(t, json.Unmarshal(e.Data(), &keptnData))
	assert.Equal(t, keptnv2.StatusSucceeded, keptnData.Status)
	assert.Equal(t, "17", keptnData.Labels["buildId"])
	assert.Equal(t, in.Data.Project, keptnData.Project)

	many := []PlannedAction{{Name: "Big"}}
	for i := range 3000 {
		many[0].Tasks = append(many[0].Tasks, PlannedTask{Name: fmt.Sprintf("task-%04d", i), Job: fmt.Sprintf("jes-0123456789abcdef-0-%d", i), Namespace: "keptn"})
	}
	big := Started(in, many, DefaultMaxEventBytes)
	assert.LessOrEqual(t, len(wire(t, big)), DefaultMaxEventBytes)
	bd := data(t, big)
	assert.NotContains(t, bd, "jobExecutor")
	assert.Equal(t, "17", bd["labels"].(map[string]any)["buildId"])
	assert.NotContains(t, data(t, Started(in, nil, 0)), "jobExecutor", "no plan, no field")
}
