package keptn

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

// TestFinishedResults: what tasks hand back arrives in data.jobExecutor.results by task name
// (action/task where names repeat), unreadable results as an error there and in the message,
// and test.finished keeps what lighthouse reads; Keptn's own types decode the event unchanged.
func TestFinishedResults(t *testing.T) {
	in := incoming(t, "sh.keptn.event.test.triggered", nil)
	s := Summarize([]ActionResult{
		{Name: "Tests", OK: true, Tasks: []TaskResult{
			{"unit", jobs.Result{Succeeded: true, Results: map[string]any{"passed": json.Number("42"), "failed": json.Number("0")}}},
			{"report", jobs.Result{Succeeded: true, ResultsError: "results are not a valid JSON object: unexpected EOF"}},
			{"quiet", jobs.Result{Succeeded: true}},
			{"check", jobs.Result{Succeeded: true, Results: map[string]any{"ok": "yes"}}},
		}},
		{Name: "Smoke", OK: true, Tasks: []TaskResult{{"check", jobs.Result{Succeeded: true, Results: map[string]any{"ok": "no"}}}}},
	}, DefaultMaxMessageBytes)
	e := Finished(in, s, DefaultMaxEventBytes)
	d := data(t, e)
	je := d["jobExecutor"].(map[string]any)
	assert.Equal(t, map[string]any{
		"unit":        map[string]any{"passed": float64(42), "failed": float64(0)},
		"report":      map[string]any{"error": "results are not a valid JSON object: unexpected EOF"},
		"Tests/check": map[string]any{"ok": "yes"},
		"Smoke/check": map[string]any{"ok": "no"},
	}, je["results"])
	assert.NotContains(t, je, "resultsOmitted")
	assert.Contains(t, d["message"], "Task 'report' finished successfully!\nResults not used: results are not a valid JSON object: unexpected EOF\n")
	assert.Contains(t, d, "test", "lighthouse's data.test stays")

	var keptnData keptnv2.TestFinishedEventData
	require.NoError(t, json.Unmarshal(e.Data(), &keptnData))
	assert.Equal(t, keptnv2.StatusSucceeded, keptnData.Status)
	assert.NotEmpty(t, keptnData.Test.Start)

	none := Finished(in, Summarize([]ActionResult{{Name: "a", OK: true, Tasks: []TaskResult{{"t", jobs.Result{Succeeded: true}}}}}, DefaultMaxMessageBytes), DefaultMaxEventBytes)
	assert.NotContains(t, data(t, none), "jobExecutor", "no results, no key")
}

// TestFinishedResultsBounded: results beyond their share of the event are left out, and the
// event says which; the event stays within its bound.
func TestFinishedResultsBounded(t *testing.T) {
	in := incoming(t, "sh.keptn.event.deployment.triggered", nil)
	var tasks []TaskResult
	for i := range 40 {
		tasks = append(tasks, TaskResult{fmt.Sprintf("t%02d", i), jobs.Result{Succeeded: true, Results: map[string]any{"blob": strings.Repeat("x", 3500)}}})
	}
	const maxBytes = 64 << 10
	e := Finished(in, Summarize([]ActionResult{{Name: "a", OK: true, Tasks: tasks}}, DefaultMaxMessageBytes), maxBytes)
	assert.LessOrEqual(t, len(wire(t, e)), maxBytes)
	je := data(t, e)["jobExecutor"].(map[string]any)
	kept := len(je["results"].(map[string]any))
	assert.Equal(t, 4, kept, "a quarter of the event: 16 KiB of 3.5 KiB results")
	assert.Contains(t, je["results"], "t00", "in task order")
	assert.Equal(t, "the results of 36 tasks are left out: this event holds at most 16384 bytes of them", je["resultsOmitted"])
}
