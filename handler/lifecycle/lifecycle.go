// Package lifecycle owns the life of an accepted Keptn event, one step per file:
//
//	admission.go  admit: de-duplicate deliveries, bound the queue, store the durable record
//	plan.go       plan: find the job config, match actions, decide what to answer
//	execute.go    execute: run each action's tasks as Jobs, in order, on worker goroutines
//	report.go     report: .started, .finished and sh.keptn.log.error, the one place events leave
//	pending.go    keep an event whose config cannot be read yet, and plan it once it can
//	recovery.go   resume what a stopped instance left unfinished
//	render.go     Render: plan and execute's checks and builder without side effects (the render command)
//	status.go     Status: what the event records and Jobs of a Keptn context show (GET /v1/status)
//
// It must not speak HTTP (handler does), build Jobs (jobs does), talk to Kubernetes directly
// (jobs/run and jobs/records do) or encode Keptn events (handler/keptn does).
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
	"github.com/keptn-contrib/job-executor-service/handler/sink"
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
	// JobExists asks the cluster whether a Job exists (recovery).
	JobExists(ctx context.Context, namespace, name string) (bool, error)
}

// Records keep accepted events in the cluster (records.Store), for redeliveries after a
// restart and for recovery.
type Records interface {
	Create(ctx context.Context, r records.Record) (existing *records.Record, err error)
	MarkStarted(ctx context.Context, name string, delivered bool) error
	MarkFinished(ctx context.Context, name string, at time.Time) error
	// Resolve stores the actions of an event whose record was created config-pending.
	Resolve(ctx context.Context, r records.Record) error
	// Unfinished lists the metadata of unfinished records; Load reads a whole one.
	Unfinished(ctx context.Context, fn func(records.Record) error) error
	Load(ctx context.Context, name string) (*records.Record, error)
	// Verify reports whether a record was created by a service holding the signing key;
	// recovery resumes nothing else.
	Verify(r records.Record) error
	Alive(ctx context.Context, instance string) (bool, error)
	Claim(ctx context.Context, r records.Record) (bool, error)
	Prune(ctx context.Context, now time.Time, retention time.Duration, keep int) (int, error)
}

// Deps are the collaborators of a Processor.
type Deps struct {
	Loader ConfigLoader
	// Files may be nil when no task has files (tests).
	Files  FileCollector
	Runner TaskRunner
	Sender sink.Sender
	// Records, when set, make accepted events durable (crash recovery, redelivery after restart).
	Records Records
	Log     *zap.Logger
	// Metrics may be nil: nothing is recorded.
	Metrics *Metrics
	// Index and Tasks, with Records, answer Status; without them Status is off.
	Index RecordIndex
	Tasks TaskStates
}

// Defaults of the Options (and of the environment variables that set them).
const (
	DefaultMaxConcurrentActions = 20
	DefaultMaxQueuedEvents      = 1000
	// DefaultMaxQueuedBytes keeps the queue well inside the chart's 512 MiB memory limit. A
	// queued event takes 1.1 times its size in memory (TestQueuedEventHeldOnce), 3 times when
	// its bulk is in data.labels (kept decoded and in the .started reply): at most ~200 MiB,
	// next to the ~60 MB the service takes under load (e2e).
	DefaultMaxQueuedBytes     = 64 << 20
	DefaultDedupRetention     = time.Hour
	DefaultMaxFinishedRecords = 1000
	// DefaultConfigPendingTimeout is how long an event is kept while its config cannot be read.
	DefaultConfigPendingTimeout = 10 * time.Minute
)

// Options tune the lifecycle; zero values get the defaults.
type Options struct {
	// Instance is this process's owner name on event records (the pod name).
	Instance string
	Settings jobs.Settings
	// AlwaysSendFinished answers a .triggered event whose config is missing or invalid with
	// .started and an errored .finished instead of a log.error (ALWAYS_SEND_FINISHED_EVENT).
	AlwaysSendFinished bool
	// StartedViaSink also sends .started through the Sender (Keptn API, distributor). Knative
	// deployments leave it off: the HTTP reply already carries .started to the broker.
	StartedViaSink bool
	// MaxConcurrentActions bounds the actions running Jobs at once; more wait their turn.
	MaxConcurrentActions int
	// MaxQueuedEvents bounds accepted, unfinished events; beyond it Accept returns ErrBusy.
	MaxQueuedEvents int
	// MaxQueuedBytes bounds the size of those events (structured JSON) together: beyond it
	// Accept returns ErrBusy, and ErrTooLarge for an event larger than all of it.
	MaxQueuedBytes int
	// MaxMessageBytes bounds a .finished message with all task logs (keptn.DefaultMaxMessageBytes).
	MaxMessageBytes int
	// MaxEventBytes bounds every event sent as encoded on the wire, message and echoed labels
	// included (keptn.DefaultMaxEventBytes): the distributor's proxy refuses larger ones.
	MaxEventBytes int
	// DedupRetention is how long a finished event is remembered to ignore redeliveries.
	DedupRetention time.Duration
	// MaxFinishedRecords bounds the finished event records kept for DedupRetention: beyond
	// it the oldest are pruned earlier.
	MaxFinishedRecords int
	// ConfigPendingTimeout bounds how long an event is kept, with StartedViaSink, while the
	// config source cannot be reached (pending.go); then Keptn is told, as of a missing config.
	ConfigPendingTimeout time.Duration
}

func (o *Options) defaults() {
	if o.MaxConcurrentActions <= 0 {
		o.MaxConcurrentActions = DefaultMaxConcurrentActions
	}
	if o.MaxQueuedEvents <= 0 {
		o.MaxQueuedEvents = DefaultMaxQueuedEvents
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = keptn.DefaultMaxMessageBytes
	}
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = keptn.DefaultMaxEventBytes
	}
	if o.DedupRetention <= 0 {
		o.DedupRetention = DefaultDedupRetention
	}
	if o.MaxFinishedRecords <= 0 {
		o.MaxFinishedRecords = DefaultMaxFinishedRecords
	}
	if o.ConfigPendingTimeout <= 0 {
		o.ConfigPendingTimeout = DefaultConfigPendingTimeout
	}
}

// ErrBusy means the queue is full; the caller should retry later (429).
var ErrBusy = errors.New("too many events in flight")

// ErrTooLarge means the event is too large to be stored as an event record or to be queued at
// all; delivering it again cannot help (413).
var ErrTooLarge = errors.New("event too large to accept")

// ErrUnavailable means the config source could not be reached, and ErrClusterUnavailable
// that the event record could not be stored; redelivery may succeed (503).
var (
	ErrUnavailable        = errors.New("config source unavailable")
	ErrClusterUnavailable = errors.New("cluster unavailable")
)

// Processor runs the lifecycle of every accepted event.
type Processor struct {
	deps  Deps
	opts  Options
	admit *admission
	// rejected are the event records recovery refused (signature), logged once each.
	rejected rejectedRecords

	ctx context.Context // canceled on shutdown; workers outlive HTTP requests
	wg  sync.WaitGroup
}

// New wires the lifecycle. ctx bounds all background work.
func New(ctx context.Context, deps Deps, opts Options) *Processor {
	opts.defaults()
	if deps.Log == nil {
		deps.Log = zap.NewNop()
	}
	return &Processor{deps: deps, opts: opts, admit: newAdmission(opts), ctx: ctx}
}

// Wait blocks until every accepted event has been handled (or ctx passed to New ended).
func (p *Processor) Wait() { p.wg.Wait() }

// Accept is the life of one delivery, step by step. It returns the reply for the HTTP
// response (the .started event, or nil) once the work is handed to a worker.
func (p *Processor) Accept(ctx context.Context, e cloudevents.Event) (*cloudevents.Event, error) {
	in, err := keptn.Decode(e)
	if err != nil {
		p.deps.Metrics.event("rejected")
		return nil, err
	}
	log := p.deps.Log.With(zap.String("keptnContext", in.KeptnContext), zap.String("eventID", e.ID()), zap.String("type", e.Type()))

	// 1. Admit: a redelivery gets the first delivery's answer; a full queue says so.
	t, first, err := p.admit.admit(in.Key(), in.Size())
	if err != nil {
		outcome := "busy"
		if errors.Is(err, ErrTooLarge) {
			outcome = "too_large"
		}
		p.deps.Metrics.event(outcome)
		return nil, err
	}
	if first != nil {
		p.deps.Metrics.event("duplicate")
		log.Info("duplicate delivery: answering as the first time, running nothing")
		return first.answer(ctx)
	}
	// 2. Plan: config, matching, and what to answer. A config source that cannot be reached
	// keeps the event pending where no one would deliver it again (pending.go).
	pl, err := p.plan(ctx, in, log)
	if errors.Is(err, ErrUnavailable) && p.opts.StartedViaSink {
		pl, err = p.pending(in, log, time.Now()), nil
	}
	if err == nil && (pl.outcome == runActions || pl.outcome == configPending) {
		// 3. Make it durable; an event someone accepted before runs nowhere again. Its JSON is
		// made here, before workers share it (an unmatched event never needs it).
		if len(in.Raw()) == 0 {
			err = fmt.Errorf("%w: the event cannot be encoded as JSON", keptn.ErrBadEvent)
		} else {
			err = p.persist(ctx, pl)
		}
	}
	t.settle(pl.reply(), err)
	switch {
	case err != nil:
		p.admit.forget(in.Key()) // let a later redelivery try again
		return nil, err
	case pl.outcome == ignore:
		p.admit.forget(in.Key())
	case pl.outcome == alreadyAccepted:
		p.admit.done(t)
	default:
		// 4. Execute and report, on a worker.
		p.work(t, pl)
	}
	return pl.reply(), nil
}

// work runs the plan on a worker goroutine and marks the event done afterwards.
func (p *Processor) work(t *ticket, pl *plan) {
	if pl.outcome == runActions {
		pl.log.Info("accepted", zap.Int("actions", len(pl.reporting)), zap.Int("silentActions", len(pl.silent)))
	}
	p.wg.Add(1)
	p.deps.Metrics.inflight(1)
	go func() {
		defer p.wg.Done()
		defer p.deps.Metrics.inflight(-1)
		defer p.admit.done(t)
		p.carryOut(p.ctx, pl)
	}()
}

// carryOut is what a worker does with a plan: wait for a pending config, report a problem,
// or run the actions between .started and .finished.
func (p *Processor) carryOut(ctx context.Context, pl *plan) {
	switch pl.outcome {
	case configPending:
		p.awaitConfig(ctx, pl)
		return
	case reportProblem:
		p.reportProblem(ctx, pl)
		return
	}
	var silent sync.WaitGroup
	for _, a := range pl.silent {
		silent.Go(func() { p.runAction(ctx, pl, a) })
	}
	delivered := true
	if len(pl.reporting) > 0 {
		p.reportStarted(ctx, pl)
		results := make([]keptn.ActionResult, len(pl.reporting))
		if len(pl.reporting) == 1 {
			// The common case runs on this worker: a goroutine (and its stack) less per event.
			results[0] = p.runAction(ctx, pl, pl.reporting[0])
		} else {
			var wg sync.WaitGroup
			for i, a := range pl.reporting {
				wg.Go(func() { results[i] = p.runAction(ctx, pl, a) })
			}
			wg.Wait()
		}
		if ctx.Err() != nil {
			// Shutting down: the Jobs go on; the next start resumes from the event record.
			pl.log.Info("stopped before the actions ended; recovery will finish this event")
			silent.Wait()
			return
		}
		if !anyJob(results) {
			p.recordStarted(ctx, pl) // .finished may take long to deliver; no Job tells recovery
		}
		delivered = p.reportFinished(ctx, pl, keptn.Summarize(results, p.opts.MaxMessageBytes))
	}
	silent.Wait()
	if delivered {
		p.finishRecord(ctx, pl)
	}
}

// finishRecord marks the event's record finished, unless shutting down (the next instance
// then resumes it).
func (p *Processor) finishRecord(ctx context.Context, pl *plan) {
	if ctx.Err() == nil {
		p.updateRecord(ctx, pl, func(r Records) error { return r.MarkFinished(ctx, pl.in.RecordName(), time.Now()) })
	}
}

// updateRecord updates the event record, when records are kept; failures only cost a repeat
// after a restart, so they are logged.
func (p *Processor) updateRecord(ctx context.Context, pl *plan, fn func(Records) error) {
	if p.deps.Records == nil {
		return
	}
	if err := fn(p.deps.Records); err != nil {
		pl.log.Warn("updating the event record failed", zap.Error(err))
	}
}

func unavailable(err error) error { return fmt.Errorf("%w: %v", ErrUnavailable, err) }
