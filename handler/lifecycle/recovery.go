package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// Recover resumes every unfinished event record that no live instance owns: this process's
// own after a restart in the same pod, and those of instances that stopped renewing their
// Lease. Jobs that exist are adopted, the rest created, and .finished is sent once. Call it
// at start-up; Maintain looks for orphans later.
func (p *Processor) Recover(ctx context.Context) (int, error) { return p.resume(ctx, true) }

// ResumeOrphans resumes the unfinished records of instances that stopped renewing their
// Lease; this instance's own are running here already and are left alone.
func (p *Processor) ResumeOrphans(ctx context.Context) (int, error) { return p.resume(ctx, false) }

func (p *Processor) resume(ctx context.Context, atStart bool) (int, error) {
	if p.deps.Records == nil {
		return 0, nil
	}
	recs, err := p.deps.Records.Unfinished(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if ctx.Err() != nil || p.ctx.Err() != nil {
			break // shutting down: leave it to the next instance
		}
		if !atStart && r.Owner == p.opts.Instance {
			continue
		}
		log := p.deps.Log.With(zap.String("record", r.Name), zap.String("previousOwner", r.Owner))
		if err := p.deps.Records.Verify(r); err != nil {
			// Not ours: anyone who can create ConfigMaps in the namespace can give one the
			// record labels. Never claim, run, finish or delete it.
			if p.rejected.first(r) {
				p.deps.Metrics.recordRejected()
				log.Warn("refusing to resume an event record that does not verify; leaving it alone", zap.Error(err))
			}
			continue
		}
		pl, parseErr := planFromRecord(r, log, p.opts.MaxEventBytes)
		if parseErr == nil && p.admit.known(pl.in.Key()) {
			continue
		}
		mine, err := p.deps.Records.Claim(ctx, r)
		if err != nil {
			log.Warn("cannot claim event record", zap.Error(err))
			continue
		}
		if !mine {
			continue // its owner is alive, or another instance was faster
		}
		if parseErr != nil {
			// It can never run; without this it would be retried forever.
			log.Error("event record cannot be resumed; dropping it", zap.Error(parseErr))
			if err := p.deps.Records.MarkFinished(ctx, r.Name, time.Now()); err != nil {
				log.Warn("updating the event record failed", zap.Error(err))
			}
			continue
		}
		t, ok := p.admit.reserve(pl.in.Key())
		if !ok {
			continue
		}
		pl.log.Info("resuming event after restart")
		t.settle(pl.reply(), nil)
		p.work(t, pl)
		n++
	}
	return n, nil
}

// rejectedRecords remembers the record versions recovery refused, so that Maintain's
// periodic scans log and count each one once, not every interval.
type rejectedRecords struct {
	mu   sync.Mutex
	seen map[string]bool // name + "/" + resourceVersion
}

// maxRejectedRemembered bounds the memory a flood of planted ConfigMaps can take; beyond it
// they are logged and counted again.
const maxRejectedRemembered = 10_000

func (rr *rejectedRecords) first(r records.Record) bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	key := r.Name + "/" + r.Version()
	if rr.seen[key] {
		return false
	}
	if rr.seen == nil || len(rr.seen) >= maxRejectedRemembered {
		rr.seen = map[string]bool{}
	}
	rr.seen[key] = true
	return true
}

// planFromRecord plans what the first delivery planned: the stored event against the stored
// config, so that recovery runs what that delivery would have run.
func planFromRecord(r records.Record, log *zap.Logger, maxEventBytes int) (*plan, error) {
	var e cloudevents.Event
	if err := json.Unmarshal(r.Event, &e); err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	in, err := keptn.Decode(e)
	if err != nil {
		return nil, err
	}
	level, err := config.ParseLevel(r.Level)
	if err != nil {
		return nil, err
	}
	loaded, err := config.NewLoaded(r.Config, level)
	if err != nil {
		return nil, fmt.Errorf("job config: %w", err)
	}
	actions, err := loaded.Config.Match(in.Event.Type(), in.Raw)
	if err != nil {
		return nil, err
	}
	pl := &plan{in: in, startedSent: r.Started,
		log: log.With(zap.String("keptnContext", in.KeptnContext), zap.String("eventID", in.Event.ID()), zap.String("type", in.Event.Type()))}
	pl.run(loaded, actions, maxEventBytes)
	return pl, nil
}

// Maintain resumes orphaned events every interval and forgets finished records older than
// the de-duplication retention, until ctx ends.
func (p *Processor) Maintain(ctx context.Context, interval time.Duration) {
	if p.deps.Records == nil {
		return
	}
	var lastPrune time.Time
	for {
		if n, err := p.ResumeOrphans(ctx); err != nil {
			p.deps.Log.Warn("looking for orphaned events failed", zap.Error(err))
		} else if n > 0 {
			p.deps.Log.Info("resumed orphaned events", zap.Int("count", n))
		}
		if time.Since(lastPrune) > 10*time.Minute {
			lastPrune = time.Now()
			if n, err := p.deps.Records.Prune(ctx, time.Now(), p.opts.DedupRetention); err != nil {
				p.deps.Log.Warn("pruning event records failed", zap.Error(err))
			} else if n > 0 {
				p.deps.Log.Info("pruned finished event records", zap.Int("count", n))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
