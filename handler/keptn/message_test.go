package keptn

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/keptn-contrib/job-executor-service/jobs"
)

func TestSummarizeBoundsMessage(t *testing.T) {
	big := strings.Repeat("x", 50_000) + "THE-END\n"
	results := []ActionResult{{Name: "a", Tasks: []TaskResult{
		{"t1", jobs.Result{Succeeded: true, Logs: big}},
		{"t2", jobs.Result{Reason: "BackoffLimitExceeded", Logs: big}},
	}}}
	tests := []struct {
		max int
	}{{1 << 20}, {40_000}, {4_000}, {100}}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			s := Summarize(results, tc.max)
			assert.False(t, s.OK)
			assert.LessOrEqual(t, len(s.Message), tc.max)
			if tc.max >= 4_000 {
				assert.Contains(t, s.Message, "Task 't1' finished successfully!")
				assert.Contains(t, s.Message, "Task 't2' failed: BackoffLimitExceeded")
				assert.Equal(t, 2, strings.Count(s.Message, "THE-END"), "the tail of each task's logs is kept")
			}
		})
	}
}

// The span is when the task containers ran: Keptn evaluates metrics over exactly that window.
func TestSummarizeWindow(t *testing.T) {
	t0 := time.Date(2024, 5, 6, 7, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	job := func(start, end, from, to int) jobs.Result {
		r := jobs.Result{Succeeded: true, Start: at(start), End: at(end)}
		if from >= 0 {
			r.RanFrom = at(from)
		}
		if to >= 0 {
			r.RanTo = at(to)
		}
		return r
	}
	tests := []struct {
		name       string
		results    []ActionResult
		start, end time.Time
	}{
		{"queued action: containers, not the action", []ActionResult{{Start: at(0), End: at(100), Tasks: []TaskResult{
			{"t1", job(60, 70, 62, 68)}, {"t2", job(71, 99, 75, 97)}}}}, at(62), at(97)},
		{"container never started: its Job", []ActionResult{{Start: at(0), End: at(50), Tasks: []TaskResult{
			{"t1", job(10, 40, -1, -1)}}}}, at(10), at(40)},
		{"aborted while running: until the abort", []ActionResult{{Start: at(0), End: at(50), Tasks: []TaskResult{
			{"t1", job(10, 40, 12, -1)}}}}, at(12), at(40)},
		{"several actions: first start to last end", []ActionResult{
			{Start: at(0), End: at(30), Tasks: []TaskResult{{"a", job(5, 20, 7, 18)}}},
			{Start: at(0), End: at(90), Tasks: []TaskResult{{"b", job(40, 80, 45, 77)}}}}, at(7), at(77)},
		{"task without a Job is left out", []ActionResult{{Start: at(0), End: at(30), Tasks: []TaskResult{
			{"t1", job(5, 9, 6, 8)}, {"t2", jobs.Result{Reason: "FilesUnavailable"}}}}}, at(6), at(8)},
		{"no Job at all: the actions' span", []ActionResult{{Refused: "no", Start: at(3), End: at(4)}}, at(3), at(4)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Summarize(tc.results, DefaultMaxMessageBytes)
			assert.Equal(t, tc.start, s.Start)
			assert.Equal(t, tc.end, s.End)
		})
	}
}

// A task tried more than once (backoffLimit) says how often; one attempt says nothing more,
// so messages stay as they were for configs without retries.
func TestSummarizeAttempts(t *testing.T) {
	s := Summarize([]ActionResult{{Name: "a", Tasks: []TaskResult{
		{"once", jobs.Result{Succeeded: true, Attempts: 1}},
		{"flaky", jobs.Result{Succeeded: true, Attempts: 2}},
		{"broken", jobs.Result{Reason: "BackoffLimitExceeded", Message: "task 'broken' failed: container exited with code 1", Attempts: 3}},
	}}}, 1<<20)
	assert.Contains(t, s.Message, "Task 'once' finished successfully!\n")
	assert.Contains(t, s.Message, "Task 'flaky' finished successfully! (2 attempts)\n")
	assert.Contains(t, s.Message, "Task 'broken' failed: BackoffLimitExceeded: container exited with code 1 (3 attempts)")
}
