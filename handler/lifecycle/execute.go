package lifecycle

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// runAction runs the tasks of one action in order and stops at the first failure. Every task
// is checked before the first Job exists: a forbidden image in task 3 must not let tasks 1
// and 2 run. res is a named result so that the deferred end time reaches the caller (an
// action refused before any task would otherwise report end 0001-01-01).
func (p *Processor) runAction(ctx context.Context, pl *plan, a config.MatchedAction) (res keptn.ActionResult) {
	res = keptn.ActionResult{Name: a.Action.Name, Start: time.Now()}
	log := pl.log.With(zap.String("action", a.Action.Name))
	defer func() {
		res.End = time.Now()
		p.deps.Metrics.action(res.OK)
		log.Info("action finished", zap.Bool("succeeded", res.OK))
	}()
	release, ok := p.admit.slot(ctx)
	if !ok {
		res.Refused = fmt.Sprintf("Action '%s' was not started: the service is shutting down", a.Action.Name)
		return res
	}
	defer release()
	if err := jobs.CheckTasks(p.opts.Settings, a.Action.Tasks); err != nil {
		res.Refused = fmt.Sprintf("Action '%s' was not run: %v", a.Action.Name, err)
		return res
	}
	for i, task := range a.Action.Tasks {
		r := p.runTask(ctx, pl, log, jobs.TaskInput{
			Event: pl.in.JobEvent(), Action: a.Action.Name, ActionIdx: a.Index, Task: task, TaskIdx: i, ConfigHash: pl.configHash,
		})
		res.Tasks = append(res.Tasks, keptn.TaskResult{Name: task.Name, Result: r})
		if !r.Succeeded {
			return res
		}
	}
	res.OK = true
	return res
}

// runTask collects the task's files, builds its Job and runs it to its end.
func (p *Processor) runTask(ctx context.Context, pl *plan, log *zap.Logger, input jobs.TaskInput) jobs.Result {
	if len(input.Task.Files) > 0 {
		files, err := p.deps.Files(ctx, pl.in.ConfigRef(), pl.loaded.Level, input.Task.Files)
		if err != nil {
			return jobs.Result{Reason: "FilesUnavailable", Message: err.Error()}
		}
		input.Files = files
	}
	built, err := jobs.Build(p.opts.Settings, input)
	if err != nil {
		return jobs.Result{Reason: "InvalidTask", Message: err.Error()}
	}
	log = log.With(zap.String("task", input.Task.Name), zap.String("job", built.Job.Name), zap.String("namespace", built.Namespace))
	log.Info("running task")
	r := p.deps.Runner.Run(ctx, built)
	p.deps.Metrics.task(r.Succeeded, r.End.Sub(r.Start).Seconds())
	log.Info("task finished", zap.Bool("succeeded", r.Succeeded), zap.String("reason", r.Reason))
	return r
}
