package lifecycle_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// barrierRunner lets a task end only once every task of the action is running at the same
// time; run one after another, the first would wait for the others in vain and fail.
type barrierRunner struct {
	n       int
	fail    string
	mu      sync.Mutex
	arrived int
	all     chan struct{}
}

func (r *barrierRunner) Run(_ context.Context, b *jobs.Built) jobs.Result {
	r.mu.Lock()
	r.arrived++
	if r.arrived == r.n {
		close(r.all)
	}
	r.mu.Unlock()
	select {
	case <-r.all:
	case <-time.After(10 * time.Second):
		return jobs.Result{Reason: "NotConcurrent", Message: "the other tasks never ran at the same time", Job: b.Job.Name}
	}
	if b.TaskName() == r.fail {
		return jobs.Result{Reason: "BackoffLimitExceeded", Message: "exit code 1", Job: b.Job.Name}
	}
	return jobs.Result{Succeeded: true, Logs: "log of " + b.TaskName() + "\n", Job: b.Job.Name}
}

func (r *barrierRunner) JobExists(context.Context, string, string) (bool, error) { return false, nil }

const parallelConfig = `apiVersion: v2
actions:
  - name: "Checks"
    parallel: true
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks:
      - {name: "lint", image: "alpine"}
      - {name: "unit", image: "alpine"}
      - {name: "scan", image: "alpine"}
`

// TestParallelTasks: the tasks of a parallel action run at the same time; every task runs
// even when one fails, the action fails then, and .finished reports each task in config order
// with its own logs.
func TestParallelTasks(t *testing.T) {
	for _, tc := range []struct {
		fail, status string
	}{{"", "succeeded"}, {"unit", "errored"}} {
		t.Run(tc.status, func(t *testing.T) {
			rec := &lct.Recorder{}
			runner := &barrierRunner{n: 3, fail: tc.fail, all: make(chan struct{})}
			p := newProcessor(lct.Loader{YAML: parallelConfig}, runner, rec, lifecycle.Options{})
			_, err := p.Accept(context.Background(), lct.Event(t, "sh.keptn.event.test.triggered", nil))
			require.NoError(t, err)
			p.Wait()
			d := rec.LastData(t)
			msg := d["message"].(string)
			assert.Equal(t, tc.status, d["status"], msg)
			assert.NotContains(t, msg, "NotConcurrent")
			lint, unit, scan := strings.Index(msg, "Task 'lint'"), strings.Index(msg, "Task 'unit'"), strings.Index(msg, "Task 'scan'")
			assert.True(t, lint >= 0 && lint < unit && unit < scan, "config order:\n%s", msg)
			if tc.fail != "" {
				assert.Contains(t, msg, "Task 'unit' failed: BackoffLimitExceeded: exit code 1")
				assert.Contains(t, msg, "Task 'scan' finished successfully!\n\nLogs:\nlog of scan", "the task after the failed one ran too")
			}
		})
	}
}
