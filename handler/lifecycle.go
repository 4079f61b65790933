package handler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/jobs"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// ConfigLoader finds and parses the job config for an event (config.Loader).
type ConfigLoader interface {
	Load(ctx context.Context, ref config.Ref) (*config.Loaded, error)
}

// FileCollector reads a task's files from the config source, at the level the config came from.
type FileCollector func(ctx context.Context, ref config.Ref, level config.Level, paths []string) (map[string][]byte, error)

// TaskRunner runs one built Job to its end (run.Runner).
type TaskRunner interface {
	Run(ctx context.Context, b *jobs.Built) jobs.Result
}

// Records keep accepted events in the cluster (records.Store), for redeliveries after a
// restart and for recovery.
type Records interface {
	Create(ctx context.Context, r records.Record) (existing *records.Record, err error)
	MarkStarted(ctx context.Context, name string) error
	MarkFinished(ctx context.Context, name string, at time.Time) error
	Unfinished(ctx context.Context) ([]records.Record, error)
	Claim(ctx context.Context, r records.Record) (bool, error)
	Prune(ctx context.Context, now time.Time, retention time.Duration) (int, error)
}

// Options tune the lifecycle; zero values get the defaults noted.
type Options struct {
	// Records, when set, make accepted events durable (crash recovery, redelivery after restart).
	Records Records
	// Instance is this process's owner name on event records (the pod name).
	Instance string
	Settings jobs.Settings
	// AlwaysSendFinished answers a .triggered event whose config is missing with .started and an
	// errored .finished, not only a log.error (ALWAYS_SEND_FINISHED_EVENT).
	AlwaysSendFinished bool
	// StartedViaSink also sends .started through the Sender (Keptn API, distributor). Knative
	// deployments leave it off: the HTTP reply already carries .started to the broker.
	StartedViaSink bool
	// MaxConcurrentActions bounds the actions running Jobs at once (default 20); more wait their turn.
	MaxConcurrentActions int
	// MaxQueuedEvents bounds accepted, unfinished events (default 1000); beyond it the receiver answers 429.
	MaxQueuedEvents int
	// MaxMessageBytes bounds a .finished message with all task logs (default 96 KiB): Keptn's
	// event bus rejects large payloads, which the original hit with unbounded logs.
	MaxMessageBytes int
	// DedupRetention is how long a finished event is remembered to ignore redeliveries (default 1 h).
	DedupRetention time.Duration
}

// ErrBusy means the queue is full; the caller should retry later (429).
var ErrBusy = errors.New("too many events in flight")

// ErrUnavailable means the config source could not be reached; redelivery may succeed (503).
var ErrUnavailable = errors.New("config source unavailable")

// Processor runs the event lifecycle: match → .started → Jobs → .finished.
type Processor struct {
	loader  ConfigLoader
	files   FileCollector
	runner  TaskRunner
	sender  Sender
	log     *zap.Logger
	metrics *Metrics
	opts    Options

	ctx    context.Context // canceled on shutdown; workers outlive HTTP requests
	slots  chan struct{}   // MaxConcurrentActions tokens
	wg     sync.WaitGroup
	mu     sync.Mutex
	events map[string]*tracked // by Incoming.Key
	// active counts tracked events that are not done (the queue bounded by MaxQueuedEvents).
	active    int
	lastPrune time.Time
}

type tracked struct {
	ready    chan struct{}      // closed once reply/err are known
	reply    *cloudevents.Event // the answer given the first time, given again to redeliveries
	err      error
	done     bool
	finished time.Time
}

// NewProcessor wires the lifecycle. ctx bounds all background work.
func NewProcessor(ctx context.Context, loader ConfigLoader, files FileCollector, runner TaskRunner, sender Sender, log *zap.Logger, m *Metrics, opts Options) *Processor {
	if opts.MaxConcurrentActions <= 0 {
		opts.MaxConcurrentActions = 20
	}
	if opts.MaxQueuedEvents <= 0 {
		opts.MaxQueuedEvents = 1000
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 96 << 10
	}
	if opts.DedupRetention <= 0 {
		opts.DedupRetention = time.Hour
	}
	return &Processor{
		loader: loader, files: files, runner: runner, sender: sender, log: log, metrics: m, opts: opts,
		ctx: ctx, slots: make(chan struct{}, opts.MaxConcurrentActions), events: map[string]*tracked{},
	}
}

// Wait blocks until every accepted event has been handled (or ctx passed to NewProcessor ended).
func (p *Processor) Wait() { p.wg.Wait() }

// Accept handles one incoming event. It returns the reply to send in the HTTP response (the
// .started event, or nil), after handing the Jobs to a background worker.
func (p *Processor) Accept(ctx context.Context, e cloudevents.Event) (*cloudevents.Event, error) {
	in, err := decodeKeptn(e)
	if err != nil {
		p.metrics.event("rejected")
		return nil, err
	}
	log := p.log.With(zap.String("keptnContext", in.KeptnContext), zap.String("eventID", e.ID()), zap.String("type", e.Type()))

	p.mu.Lock()
	if t, ok := p.events[in.Key()]; ok {
		p.mu.Unlock()
		p.metrics.event("duplicate")
		log.Info("duplicate delivery: answering as the first time, running nothing")
		select {
		case <-t.ready:
			return t.reply, t.err
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		}
	}
	if p.active >= p.opts.MaxQueuedEvents {
		p.mu.Unlock()
		p.metrics.event("busy")
		return nil, ErrBusy
	}
	// Reserve the key before the (possibly slow) config lookup so that concurrent
	// redeliveries of the same event are recognised.
	t := p.reserveLocked(in.Key())
	p.mu.Unlock()

	reply, err := p.accept(ctx, in, t, log)
	t.reply, t.err = reply, err
	close(t.ready)
	if err != nil {
		p.forget(in) // let a later redelivery try again
	}
	return reply, err
}

func (p *Processor) accept(ctx context.Context, in *Incoming, t *tracked, log *zap.Logger) (*cloudevents.Event, error) {
	ref := config.Ref{Project: in.Data.Project, Stage: in.Data.Stage, Service: in.Data.Service, CommitID: in.CommitID}
	loaded, err := p.loader.Load(ctx, ref)
	var actions []config.MatchedAction
	if err == nil {
		if actions, err = loaded.Config.Match(in.Event.Type(), in.Raw); err != nil {
			// Not a source problem: delivering again would fail the same way.
			err = fmt.Errorf("%w: %v", config.ErrInvalid, err)
		}
	}
	triggered := isTriggered(in.Event.Type())
	switch {
	case errors.Is(err, config.ErrNotFound):
		p.metrics.event("config_error")
		log.Warn("no job config found", zap.Error(err))
		msg := fmt.Sprintf("job-executor-service: %v", err)
		if triggered && p.opts.AlwaysSendFinished {
			return p.fail(in, t, msg), nil
		}
		p.background(in, t, func(ctx context.Context) { p.send(ctx, errorLogEvent(in, msg), log) })
		return nil, nil
	case err != nil && !errors.Is(err, config.ErrInvalid):
		p.metrics.event("config_error")
		log.Error("reading job config failed", zap.Error(err))
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	case err != nil:
		p.metrics.event("config_error")
		log.Warn("invalid job config", zap.Error(err))
		// err starts with config.ErrInvalid ("invalid job config"): do not say it twice.
		msg := fmt.Sprintf("job-executor-service: %v", err)
		if triggered {
			return p.fail(in, t, msg), nil
		}
		p.background(in, t, func(ctx context.Context) { p.send(ctx, errorLogEvent(in, msg), log) })
		return nil, nil
	}
	if len(actions) == 0 {
		p.metrics.event("ignored")
		p.forget(in)
		log.Debug("no action matches")
		return nil, nil
	}
	p.metrics.event("matched")
	if p.opts.Records != nil {
		rec := records.Record{Name: recordName(in), Event: in.Raw, Config: loaded.Raw, Level: loaded.Level.String()}
		existing, err := p.opts.Records.Create(ctx, rec)
		if err != nil {
			log.Error("cannot store the event record", zap.Error(err))
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		if existing != nil {
			// Accepted before this process knew it (restart, another replica): the record's
			// owner runs it; answer as the first delivery was answered.
			p.metrics.event("duplicate")
			log.Info("event was accepted before (event record exists): running nothing", zap.Bool("finished", existing.Finished))
			p.markDone(t)
			if reporting, _ := split(actions, isTriggered(in.Event.Type())); len(reporting) > 0 {
				s := startedEvent(in)
				return &s, nil
			}
			return nil, nil
		}
	}
	return p.execute(in, t, loaded, actions, false, log), nil
}

// split separates actions that answer with .started/.finished from silent ones. Only a
// .triggered event has a .started/.finished to answer with.
func split(actions []config.MatchedAction, triggered bool) (reporting, silent []config.MatchedAction) {
	for _, a := range actions {
		if a.Action.Silent || !triggered {
			silent = append(silent, a)
		} else {
			reporting = append(reporting, a)
		}
	}
	return reporting, silent
}

func recordName(in *Incoming) string { return jobs.RecordName(in.Event.Source(), in.Event.ID()) }

// execute runs the matched actions in the background and returns the .started reply (nil
// when only silent actions matched). startedSent skips sending .started again (recovery).
func (p *Processor) execute(in *Incoming, t *tracked, loaded *config.Loaded, actions []config.MatchedAction, startedSent bool, log *zap.Logger) *cloudevents.Event {
	reporting, silent := split(actions, isTriggered(in.Event.Type()))
	var reply *cloudevents.Event
	if len(reporting) > 0 {
		s := startedEvent(in)
		reply = &s
	}
	log.Info("accepted", zap.Int("actions", len(reporting)), zap.Int("silentActions", len(silent)))
	p.background(in, t, func(ctx context.Context) {
		var wg sync.WaitGroup
		for _, a := range silent {
			wg.Go(func() { p.runAction(ctx, in, loaded, a, log) })
		}
		delivered := true
		if reply != nil {
			if p.opts.StartedViaSink && !startedSent && p.send(ctx, *reply, log) == nil {
				p.record(ctx, log, func(r Records) error { return r.MarkStarted(ctx, recordName(in)) })
			}
			results := make([]actionResult, len(reporting))
			var rwg sync.WaitGroup
			for i, a := range reporting {
				rwg.Go(func() { results[i] = p.runAction(ctx, in, loaded, a, log) })
			}
			rwg.Wait()
			if ctx.Err() != nil {
				// Shutting down: the Jobs go on; the next start resumes from the event record.
				log.Info("stopped before the actions ended; recovery will finish this event")
				wg.Wait()
				return
			}
			ok, msg, start, end := summarize(results, p.opts.MaxMessageBytes)
			delivered = p.send(ctx, finishedEvent(in, ok, msg, start, end), log) == nil
		}
		wg.Wait()
		if delivered && ctx.Err() == nil {
			p.record(ctx, log, func(r Records) error { return r.MarkFinished(ctx, recordName(in), time.Now()) })
		}
	})
	return reply
}

// record updates the event record, when records are kept; failures only cost a repeat
// after a restart, so they are logged.
func (p *Processor) record(ctx context.Context, log *zap.Logger, fn func(Records) error) {
	if p.opts.Records == nil {
		return
	}
	if err := fn(p.opts.Records); err != nil {
		log.Warn("updating the event record failed", zap.Error(err))
	}
}

// fail answers a .triggered event that cannot run with .started and an errored .finished.
func (p *Processor) fail(in *Incoming, t *tracked, msg string) *cloudevents.Event {
	s := startedEvent(in)
	log := p.log.With(zap.String("keptnContext", in.KeptnContext), zap.String("eventID", in.Event.ID()))
	p.background(in, t, func(ctx context.Context) {
		if p.opts.StartedViaSink {
			_ = p.send(ctx, s, log)
		}
		now := time.Now()
		_ = p.send(ctx, finishedEvent(in, false, msg, now, now), log)
	})
	return &s
}

// background runs fn on a worker goroutine and marks the event done afterwards.
func (p *Processor) background(in *Incoming, t *tracked, fn func(ctx context.Context)) {
	p.wg.Add(1)
	p.metrics.inflight(1)
	go func() {
		defer p.wg.Done()
		defer p.metrics.inflight(-1)
		fn(p.ctx)
		p.markDone(t)
	}()
}

// reserveLocked tracks a new event as in flight.
func (p *Processor) reserveLocked(key string) *tracked {
	t := &tracked{ready: make(chan struct{})}
	p.events[key] = t
	p.active++
	return t
}

func (p *Processor) markDone(t *tracked) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.done {
		return
	}
	t.done, t.finished = true, time.Now()
	p.active--
	if now := time.Now(); now.Sub(p.lastPrune) > time.Minute || len(p.events) > maxRemembered {
		p.lastPrune = now
		p.pruneLocked(now)
	}
}

func (p *Processor) forget(in *Incoming) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.events[in.Key()]; ok {
		delete(p.events, in.Key())
		if !t.done {
			p.active--
		}
	}
}

// maxRemembered bounds the finished events kept in memory; older redeliveries are still
// recognised through the event records in the cluster.
const maxRemembered = 50_000

// pruneLocked drops finished events older than the retention (all finished ones when there
// are too many).
func (p *Processor) pruneLocked(now time.Time) {
	cutoff := now.Add(-p.opts.DedupRetention)
	if len(p.events) > maxRemembered {
		cutoff = now
	}
	for k, t := range p.events {
		if t.done && !t.finished.After(cutoff) {
			delete(p.events, k)
		}
	}
}

func (p *Processor) send(ctx context.Context, e cloudevents.Event, log *zap.Logger) error {
	err := p.sender.Send(ctx, e)
	if err != nil {
		log.Error("event not delivered", zap.String("outgoingType", e.Type()), zap.Error(err))
	}
	return err
}

// taskOutcome is one task's part of the .finished message.
type taskOutcome struct {
	name   string
	result jobs.Result
}

type actionResult struct {
	name  string
	ok    bool
	err   string // why the action could not run at all (checks, files, build)
	tasks []taskOutcome
	start time.Time
	end   time.Time
}

// runAction runs the tasks of one action in order and stops at the first failure.
// res is a named result so that the deferred end time reaches the caller (an action refused
// before any task would otherwise report end 0001-01-01).
func (p *Processor) runAction(ctx context.Context, in *Incoming, loaded *config.Loaded, a config.MatchedAction, log *zap.Logger) (res actionResult) {
	res = actionResult{name: a.Action.Name, start: time.Now()}
	log = log.With(zap.String("action", a.Action.Name))
	defer func() {
		res.end = time.Now()
		p.metrics.action(res.ok)
		log.Info("action finished", zap.Bool("succeeded", res.ok))
	}()
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	case <-ctx.Done():
		res.err = fmt.Sprintf("Action '%s' was not started: the service is shutting down", a.Action.Name)
		return res
	}
	// Everything is checked before the first Job exists: a forbidden image in task 3 must not
	// let tasks 1 and 2 run.
	if err := jobs.CheckTasks(p.opts.Settings, a.Action.Tasks); err != nil {
		res.err = fmt.Sprintf("Action '%s' was not run: %v", a.Action.Name, err)
		return res
	}
	ref := config.Ref{Project: in.Data.Project, Stage: in.Data.Stage, Service: in.Data.Service, CommitID: in.CommitID}
	info := jobs.EventInfo{
		ID: in.Event.ID(), Source: in.Event.Source(), Type: in.Event.Type(), KeptnContext: in.KeptnContext,
		Project: in.Data.Project, Stage: in.Data.Stage, Service: in.Data.Service, Labels: in.Data.Labels, Raw: in.Raw,
	}
	for i, task := range a.Action.Tasks {
		tlog := log.With(zap.String("task", task.Name))
		input := jobs.TaskInput{Event: info, Action: a.Action.Name, ActionIdx: a.Index, Task: task, TaskIdx: i, ConfigHash: loaded.Hash}
		if len(task.Files) > 0 {
			files, err := p.files(ctx, ref, loaded.Level, task.Files)
			if err != nil {
				res.tasks = append(res.tasks, taskOutcome{task.Name, jobs.Result{Reason: "FilesUnavailable", Message: err.Error()}})
				return res
			}
			input.Files = files
		}
		built, err := jobs.Build(p.opts.Settings, input)
		if err != nil {
			res.tasks = append(res.tasks, taskOutcome{task.Name, jobs.Result{Reason: "InvalidTask", Message: err.Error()}})
			return res
		}
		tlog = tlog.With(zap.String("job", built.Job.Name), zap.String("namespace", built.Namespace))
		tlog.Info("running task")
		r := p.runner.Run(ctx, built)
		p.metrics.task(r.Succeeded, r.End.Sub(r.Start).Seconds())
		tlog.Info("task finished", zap.Bool("succeeded", r.Succeeded), zap.String("reason", r.Reason))
		res.tasks = append(res.tasks, taskOutcome{task.Name, r})
		if !r.Succeeded {
			return res
		}
	}
	res.ok = true
	return res
}
