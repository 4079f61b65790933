package keptn

import (
	"fmt"
	"strings"
	"testing"

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
