package lifecycle

import (
	"context"
	"errors"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// Rendering is what the service would create for one event with one job config, in the order
// it would create it: the dry run behind `job-executor-service render`.
type Rendering struct {
	// Problem is the message of the sh.keptn.log.error (or errored .finished) the service would
	// send instead of running anything; empty when it runs the matched actions.
	Problem string
	// Actions are the matched actions in config order; none when no action matches.
	Actions []RenderedAction
}

// RenderedAction is one matched action.
type RenderedAction struct {
	Name  string
	Index int
	// Silent actions (and every action of an event that is not .triggered) send no
	// .started/.finished.
	Silent bool
	// Refused is the reason the service gives for not running the action at all (its checks,
	// before any Job exists); the action then has no Tasks.
	Refused string
	// Tasks are the tasks the service would create objects for, in order, up to and including
	// the first one that cannot be built.
	Tasks []RenderedTask
}

// RenderedTask is one task's objects, or why the service could not make them.
type RenderedTask struct {
	Name  string
	Built *jobs.Built
	// Failed is the task's result when it cannot be built (Built is nil); the service stops
	// the action there.
	Failed *jobs.Result
}

// Failures are the refused actions and failed tasks of r as the service's .finished reports
// them (keptn.Summarize), "" when there are none.
func (r *Rendering) Failures() string {
	var results []keptn.ActionResult
	for _, a := range r.Actions {
		res := keptn.ActionResult{Name: a.Name, Refused: a.Refused}
		for _, t := range a.Tasks {
			if t.Failed != nil {
				res.Tasks = append(res.Tasks, keptn.TaskResult{Name: t.Name, Result: *t.Failed})
			}
		}
		if res.Refused != "" || len(res.Tasks) > 0 {
			results = append(results, res)
		}
	}
	if len(results) == 0 {
		return ""
	}
	return keptn.Summarize(results, keptn.DefaultMaxMessageBytes).Message
}

// Render is Accept without its side effects: the event is decoded and the config matched as
// in plan, each matched action checked and each task built as in execute, with settings s and
// the task files from files; nothing is stored, created or sent. It assumes every task
// succeeds (the service stops an action at its first failed task). The error is the event's:
// one the receiver answers with 400 (keptn.ErrBadEvent).
func Render(ctx context.Context, s jobs.Settings, e cloudevents.Event, loaded *config.Loaded, files FileCollector) (*Rendering, error) {
	in, err := keptn.Decode(e)
	if err != nil {
		return nil, err
	}
	p := New(ctx, Deps{Loader: fixedLoader{loaded}, Files: files, Log: zap.NewNop()}, Options{Settings: s})
	pl, err := p.plan(ctx, in, p.deps.Log)
	if err != nil {
		return nil, err
	}
	out := &Rendering{}
	switch pl.outcome {
	case reportProblem:
		out.Problem = pl.problem
		return out, nil
	case ignore:
		return out, nil
	}
	silent := map[int]bool{}
	for _, a := range pl.silent {
		silent[a.Index] = true
	}
	for _, a := range pl.matched {
		ra := RenderedAction{Name: a.Action.Name, Index: a.Index, Silent: silent[a.Index], Refused: p.refusal(a)}
		for i := range a.Action.Tasks {
			if ra.Refused != "" {
				break
			}
			built, failed := p.build(ctx, pl, pl.taskInput(a, i))
			ra.Tasks = append(ra.Tasks, RenderedTask{Name: a.Action.Tasks[i].Name, Built: built, Failed: failed})
			if failed != nil {
				break
			}
		}
		out.Actions = append(out.Actions, ra)
	}
	return out, nil
}

// fixedLoader is the one config Render is given, for every ref.
type fixedLoader struct{ loaded *config.Loaded }

func (f fixedLoader) Load(context.Context, config.Ref) (*config.Loaded, error) {
	if f.loaded == nil {
		return nil, errors.New("no job config given")
	}
	return f.loaded, nil
}
