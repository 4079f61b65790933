package lifecycle

import (
	"context"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// reportStarted sends .started through the sink when the deployment wants it there too
// (not Knative: the HTTP reply carried it), unless it was delivered before a restart.
//
// A delivery is not written to the event record: it would be one more write per event, and
// the Jobs of the reporting actions, created only after it, tell recovery (startedImplied).
// Where no such Job may exist for a while, recordStarted writes it. A failed delivery is
// written, so that recovery sends it again although Jobs exist.
func (p *Processor) reportStarted(ctx context.Context, pl *plan) {
	if !p.opts.StartedViaSink || pl.startedSent {
		return
	}
	if p.emit(ctx, pl, *pl.started) != nil {
		p.updateRecord(ctx, pl, func(r Records) error { return r.MarkStarted(ctx, pl.in.RecordName(), false) })
		return
	}
	if pl.startedUndelivered {
		p.updateRecord(ctx, pl, func(r Records) error { return r.MarkStarted(ctx, pl.in.RecordName(), true) })
		return
	}
	pl.startedRecord.Lock()
	pl.startedRecord.pending = true
	pl.startedRecord.Unlock()
}

// recordStarted writes .started's delivery to the event record, once, if this run delivered
// it and has not written it: before a step that may take long while no Job of the event
// implies the delivery, so that a crash then does not make recovery send .started twice.
func (p *Processor) recordStarted(ctx context.Context, pl *plan) {
	pl.startedRecord.Lock()
	defer pl.startedRecord.Unlock()
	if pl.startedRecord.pending {
		pl.startedRecord.pending = false
		p.updateRecord(ctx, pl, func(r Records) error { return r.MarkStarted(ctx, pl.in.RecordName(), true) })
	}
}

// startedImplied reports whether a Job of an action that answers Keptn exists: such a Job is
// created only after .started was delivered (or its failure was recorded).
func (p *Processor) startedImplied(ctx context.Context, pl *plan) (bool, error) {
	for _, a := range pl.reporting {
		for i := range a.Action.Tasks {
			ns, name := jobs.JobRef(p.opts.Settings, pl.taskInput(a, i))
			if ok, err := p.deps.Runner.JobExists(ctx, ns, name); ok || err != nil {
				return ok, err
			}
		}
	}
	return false, nil
}

// anyJob reports whether a task of the actions got a Job.
func anyJob(results []keptn.ActionResult) bool {
	for _, a := range results {
		for _, t := range a.Tasks {
			if t.Result.Job != "" {
				return true
			}
		}
	}
	return false
}

// reportFinished sends .finished and reports whether it was delivered.
func (p *Processor) reportFinished(ctx context.Context, pl *plan, s keptn.Summary) bool {
	return p.emit(ctx, pl, keptn.Finished(pl.in, s, p.opts.MaxEventBytes)) == nil
}

// reportProblem tells Keptn that the event could not run: .started and an errored .finished,
// or a sh.keptn.log.error when there is no .finished to carry it.
func (p *Processor) reportProblem(ctx context.Context, pl *plan) {
	if !pl.problemAsFinished {
		_ = p.emit(ctx, pl, keptn.ErrorLog(pl.in, pl.problem, p.opts.MaxEventBytes))
		return
	}
	if p.opts.StartedViaSink {
		_ = p.emit(ctx, pl, *pl.started)
	}
	now := time.Now()
	_ = p.emit(ctx, pl, keptn.Finished(pl.in, keptn.Summary{OK: false, Message: pl.problem, Start: now, End: now}, p.opts.MaxEventBytes))
}

// emit is the one place an event leaves the service.
func (p *Processor) emit(ctx context.Context, pl *plan, e cloudevents.Event) error {
	err := p.deps.Sender.Send(ctx, e)
	if err != nil {
		pl.log.Error("event not delivered", zap.String("outgoingType", e.Type()), zap.Error(err))
	}
	return err
}
