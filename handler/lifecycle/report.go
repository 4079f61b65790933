package lifecycle

import (
	"context"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/handler/keptn"
)

// reportStarted sends .started through the sink when the deployment wants it there too
// (not Knative: the HTTP reply carried it), unless it was delivered before a restart.
func (p *Processor) reportStarted(ctx context.Context, pl *plan) {
	if !p.opts.StartedViaSink || pl.startedSent {
		return
	}
	if p.emit(ctx, pl, *pl.started) == nil {
		p.updateRecord(ctx, pl, func(r Records) error { return r.MarkStarted(ctx, pl.in.RecordName()) })
	}
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
