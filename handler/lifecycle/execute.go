package lifecycle

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// runAction runs the tasks of one action in order and stops at the first failure, or, for a
// parallel action, all at once until each has ended. Every task
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
	if res.Refused = p.refusal(a); res.Refused != "" {
		return res
	}
	if a.Action.Parallel {
		res.Tasks = make([]keptn.TaskResult, len(a.Action.Tasks))
		var wg sync.WaitGroup
		for i, task := range a.Action.Tasks {
			wg.Go(func() {
				res.Tasks[i] = keptn.TaskResult{Name: task.Name, Result: p.runTask(ctx, pl, log, pl.taskInput(a, i))}
			})
		}
		wg.Wait()
		res.OK = true
		for _, t := range res.Tasks {
			res.OK = res.OK && t.Result.Succeeded
		}
		return res
	}
	for i, task := range a.Action.Tasks {
		r := p.runTask(ctx, pl, log, pl.taskInput(a, i))
		res.Tasks = append(res.Tasks, keptn.TaskResult{Name: task.Name, Result: r})
		if !r.Succeeded {
			return res
		}
	}
	res.OK = true
	return res
}

// refusal is why the service does not run action a at all, in the words of its .finished
// ("" when it may run): every task is checked before the first Job of the action exists.
func (p *Processor) refusal(a config.MatchedAction) string {
	if err := jobs.CheckTasks(p.opts.Settings, a.Action.Tasks); err != nil {
		return fmt.Sprintf("Action '%s' was not run: %v", a.Action.Name, err)
	}
	return ""
}

// taskInput is what the builder gets for task i of action a.
func (pl *plan) taskInput(a config.MatchedAction, i int) jobs.TaskInput {
	return jobs.TaskInput{
		Event: pl.in.JobEvent(), Action: a.Action.Name, ActionIdx: a.Index, Task: a.Action.Tasks[i], TaskIdx: i, ConfigHash: pl.configHash,
	}
}

// build collects the task's files and builds its objects; when it cannot, failed is the
// task's result (Reason FilesUnavailable or InvalidTask) and nothing is created.
func (p *Processor) build(ctx context.Context, pl *plan, input jobs.TaskInput) (built *jobs.Built, failed *jobs.Result) {
	if len(input.Task.Files) > 0 {
		p.recordStarted(ctx, pl) // reading files may take long, and no Job exists yet
		files, err := p.deps.Files(ctx, pl.in.ConfigRef(), pl.loaded.Level, input.Task.Files)
		if err != nil {
			return nil, &jobs.Result{Reason: "FilesUnavailable", Message: err.Error()}
		}
		input.Files = files
	}
	built, err := jobs.Build(p.opts.Settings, input)
	if err != nil {
		return nil, &jobs.Result{Reason: "InvalidTask", Message: err.Error()}
	}
	return built, nil
}

// runTask builds the task's objects and runs its Job to its end.
func (p *Processor) runTask(ctx context.Context, pl *plan, log *zap.Logger, input jobs.TaskInput) jobs.Result {
	built, failed := p.build(ctx, pl, input)
	if failed != nil {
		return *failed
	}
	log = log.With(zap.String("task", input.Task.Name), zap.String("job", built.Job.Name), zap.String("namespace", built.Namespace))
	log.Info("running task")
	r := p.deps.Runner.Run(ctx, built)
	p.deps.Metrics.task(r.Succeeded, r.End.Sub(r.Start).Seconds())
	log.Info("task finished", zap.Bool("succeeded", r.Succeeded), zap.String("reason", r.Reason))
	return r
}
