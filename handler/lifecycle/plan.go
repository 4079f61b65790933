package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// outcome is what an event comes to once its config has been looked at.
type outcome int

const (
	// ignore: no action matches; nothing runs, nothing is answered or remembered.
	ignore outcome = iota
	// runActions: the matched actions run between .started and .finished.
	runActions
	// alreadyAccepted: an event record exists; whoever owns it runs the event.
	alreadyAccepted
	// reportProblem: the config is missing or invalid; Keptn is told so (a log.error, or
	// .started and an errored .finished with ALWAYS_SEND_FINISHED_EVENT).
	reportProblem
	// configPending: the config source cannot be reached; the event is kept and planned
	// again once it can (pending.go).
	configPending
)

// plan is everything the later steps need to know about one event.
type plan struct {
	in      *keptn.Incoming
	log     *zap.Logger
	outcome outcome

	loaded     *config.Loaded
	configHash string
	// matched are all the matched actions, in config order: what the event record keeps.
	matched []config.MatchedAction
	// reporting actions answer with .started/.finished; silent ones (and every action of an
	// event that is not .triggered) answer nothing.
	reporting, silent []config.MatchedAction
	// started is the .started answer, nil when there is nothing to answer.
	started *cloudevents.Event
	// startedSent: .started was delivered before a restart (recovery).
	startedSent bool
	// startedUndelivered: the record says .started was not delivered; a delivery must say otherwise.
	startedUndelivered bool
	// startedRecord guards writing .started's delivery to the record (recordStarted).
	startedRecord struct {
		sync.Mutex
		pending bool // delivered in this run, not yet written
	}

	// problem is what Keptn is told about a missing or invalid config: in an errored
	// .finished after .started when problemAsFinished, in a sh.keptn.log.error otherwise.
	problem           string
	problemAsFinished bool

	// pendingSince is when a configPending event was taken in: the bound counts from there.
	pendingSince time.Time
}

// reply is the answer to the delivery (the .started event), nil for none.
func (pl *plan) reply() *cloudevents.Event {
	if pl == nil {
		return nil
	}
	return pl.started
}

// plan looks up the event's job config and matches its actions. A config source that cannot
// be reached is an error (the delivery may succeed later); a missing or invalid config is a
// problem to report, since delivering again would fail the same way. Only a matched action
// makes a task ours: its refusal (image, policy, files) fails the event in execute.
func (p *Processor) plan(ctx context.Context, in *keptn.Incoming, log *zap.Logger) (*plan, error) {
	pl, err := p.configure(ctx, in, log)
	p.deps.Metrics.event(receivedOutcome(pl, err))
	return pl, err
}

// receivedOutcome is the jes_events_received_total outcome of a plan.
func receivedOutcome(pl *plan, err error) string {
	switch {
	case err != nil || pl.outcome == reportProblem:
		return "config_error"
	case pl.outcome == ignore:
		return "ignored"
	}
	return "matched"
}

// configure is plan without counting: the config, the matched actions, what to answer.
func (p *Processor) configure(ctx context.Context, in *keptn.Incoming, log *zap.Logger) (*plan, error) {
	pl := &plan{in: in, log: log}
	loaded, err := p.deps.Loader.Load(ctx, in.ConfigRef())
	var actions []config.MatchedAction
	if err == nil {
		var event []byte
		if loaded.Config.NeedsEvent(in.Event.Type()) {
			event = in.Raw()
		}
		if actions, err = loaded.Config.Match(in.Event.Type(), event); err != nil {
			err = fmt.Errorf("%w: %v", config.ErrInvalid, err)
		}
	}
	switch {
	case err != nil && !errors.Is(err, config.ErrNotFound) && !errors.Is(err, config.ErrInvalid):
		log.Error("reading job config failed", zap.Error(err))
		return nil, unavailable(err)
	case err != nil:
		// A config we cannot use says nothing about which tasks are ours: the chart subscribes
		// to other services' tasks too, so answering them with an errored .finished would fail
		// an evaluation or approval that is not ours. Like a missing config (and like the
		// original), tell the Bridge with a log.error unless .finished is asked for.
		log.Warn("no usable job config", zap.Error(err))
		// An invalid config's err starts with "invalid job config": the message says it once.
		pl.reportProblem(fmt.Sprintf("job-executor-service: %v", err), keptn.IsTriggered(in.Event.Type()) && p.opts.AlwaysSendFinished, p.opts.MaxEventBytes)
		return pl, nil
	case len(actions) == 0:
		log.Debug("no action matches")
		pl.outcome = ignore
		return pl, nil
	}
	pl.run(loaded, actions, p.opts)
	return pl, nil
}

func (pl *plan) reportProblem(msg string, asFinished bool, maxEventBytes int) {
	pl.outcome, pl.problem, pl.problemAsFinished = reportProblem, msg, asFinished
	if asFinished {
		s := keptn.Started(pl.in, nil, maxEventBytes)
		pl.started = &s
	}
}

// run plans the matched actions. Only a .triggered event has a .started/.finished to answer
// with; its .started names the tasks of the reporting actions and their Jobs.
func (pl *plan) run(loaded *config.Loaded, actions []config.MatchedAction, opts Options) {
	pl.outcome, pl.loaded, pl.configHash, pl.matched = runActions, loaded, jobs.ConfigHash(loaded.Raw), actions
	triggered := keptn.IsTriggered(pl.in.Event.Type())
	var planned []keptn.PlannedAction
	for _, a := range actions {
		if a.Action.Silent || !triggered {
			pl.silent = append(pl.silent, a)
			continue
		}
		pl.reporting = append(pl.reporting, a)
		pa := keptn.PlannedAction{Name: a.Action.Name, Tasks: make([]keptn.PlannedTask, len(a.Action.Tasks))}
		for i, t := range a.Action.Tasks {
			ns, name := jobs.JobRef(opts.Settings, pl.taskInput(a, i))
			pa.Tasks[i] = keptn.PlannedTask{Name: t.Name, Namespace: ns, Job: name}
		}
		planned = append(planned, pa)
	}
	if len(pl.reporting) > 0 {
		s := keptn.Started(pl.in, planned, opts.MaxEventBytes)
		pl.started = &s
	}
}
