package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// An event whose job config cannot be read (the config source unreachable) is answered 503
// where its sender delivers it again (a Knative Broker). Keptn's distributor does not: it
// gives a delivery 5 s and then drops the event. So where .started goes through the Sender
// (distributor, Keptn API), such an event is kept instead: its record holds the event alone
// (config pending), the delivery gets 202 and no reply, and a worker reads the config again
// with backoff, then goes on as the delivery would have. An outage longer than
// ConfigPendingTimeout is reported to Keptn as a config problem is; a pending record left by
// a stopped instance is resumed by recovery, the bound counted from the record's creation.

// pending is the plan of an event taken in at since whose config cannot be read yet.
func (p *Processor) pending(in *keptn.Incoming, log *zap.Logger, since time.Time) *plan {
	p.deps.Metrics.event("config_pending")
	log.Warn("config source unreachable: event kept, its config will be read again", zap.Duration("atMost", p.opts.ConfigPendingTimeout))
	return pendingPlan(in, log, since)
}

func pendingPlan(in *keptn.Incoming, log *zap.Logger, since time.Time) *plan {
	return &plan{in: in, log: log, outcome: configPending, pendingSince: since}
}

// pendingBackoff spaces the reads of a pending event's config: from 1 s, doubling, up to
// 10 s (each up to 20 % longer), so that an event runs at most about 12 s after an outage
// ends. Concurrent reads of one config share a request (config.Loader).
func pendingBackoff() wait.Backoff {
	return wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.2, Steps: math.MaxInt32, Cap: 10 * time.Second}
}

// awaitConfig plans a pending event again after each backoff step until its config can be
// read, then carries it out as its delivery would have been; past ConfigPendingTimeout it
// reports the outage instead. When ctx ends (shutdown) the record stays pending for recovery.
func (p *Processor) awaitConfig(ctx context.Context, pending *plan) {
	since := pending.pendingSince
	if since.IsZero() {
		since = time.Now() // a record without a creation time
	}
	deadline := since.Add(p.opts.ConfigPendingTimeout)
	backoff := pendingBackoff()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(backoff.Step(), time.Until(deadline))):
		}
		pl, err := p.replan(ctx, pending)
		switch {
		case err == nil:
			p.finishPending(ctx, pl)
			return
		case errors.Is(err, records.ErrNotPending):
			pending.log.Info("pending event taken over by another instance; leaving it", zap.Error(err))
			return
		case ctx.Err() != nil:
			return
		case !time.Now().Before(deadline):
			p.giveUpPending(ctx, pending, err)
			return
		}
	}
}

// replan plans a pending event again; a plan that runs actions is stored in its record first,
// as Accept stores it, so that recovery runs what this plan runs.
func (p *Processor) replan(ctx context.Context, pending *plan) (*plan, error) {
	pl, err := p.configure(ctx, pending.in, pending.log)
	if err != nil {
		return nil, err
	}
	if pl.outcome == runActions && p.deps.Records != nil {
		rec, err := pl.record()
		if err == nil {
			err = p.deps.Records.Resolve(ctx, rec)
		}
		if errors.Is(err, records.ErrTooLarge) {
			// Delivering again cannot help; a delivery would have got 413.
			pl = &plan{in: pl.in, log: pl.log}
			pl.reportProblem(fmt.Sprintf("job-executor-service: %v", err), keptn.IsTriggered(pl.in.Event.Type()) && p.opts.AlwaysSendFinished, p.opts.MaxEventBytes)
		} else if err != nil {
			pl.log.Warn("storing the actions of a pending event failed", zap.Error(err))
			return nil, err
		}
	}
	p.deps.Metrics.event(receivedOutcome(pl, nil))
	return pl, nil
}

// finishPending goes on with a pending event whose config was read, as Accept would have.
// Only an event that runs actions needs its record further (carryOut finishes it).
func (p *Processor) finishPending(ctx context.Context, pl *plan) {
	switch pl.outcome {
	case runActions:
		pl.log.Info("config of the pending event read: accepted", zap.Int("actions", len(pl.reporting)), zap.Int("silentActions", len(pl.silent)))
		p.carryOut(ctx, pl)
		return
	case reportProblem:
		p.reportProblem(ctx, pl)
	}
	p.finishRecord(ctx, pl)
}

// giveUpPending tells Keptn that the event did not run because its config could not be read
// for ConfigPendingTimeout, as a missing config is reported, and finishes its record.
func (p *Processor) giveUpPending(ctx context.Context, pl *plan, err error) {
	cause := "the resource-service was unreachable"
	if !errors.Is(err, ErrUnavailable) {
		cause = "its event record could not be stored"
	}
	pl.log.Error("giving up on a pending event", zap.Duration("after", p.opts.ConfigPendingTimeout), zap.Error(err))
	pl.reportProblem(fmt.Sprintf("job-executor-service: the job config could not be read: %s for %s (CONFIG_PENDING_TIMEOUT_SECONDS): %v",
		cause, p.opts.ConfigPendingTimeout, err), keptn.IsTriggered(pl.in.Event.Type()) && p.opts.AlwaysSendFinished, p.opts.MaxEventBytes)
	p.reportProblem(ctx, pl)
	p.finishRecord(ctx, pl)
}
