package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// Recover resumes every unfinished event record that no live instance owns: this process's
// own after a restart in the same pod, and those of instances that stopped renewing their
// Lease. Jobs that exist are adopted, the rest created, and .finished is sent once. Call it
// at start-up; Maintain looks for orphans later.
func (p *Processor) Recover(ctx context.Context) (int, error) { return p.resume(ctx, true) }

// resume resumes records; after start-up (atStart false) records this instance owns are
// running here already and are left alone.
func (p *Processor) resume(ctx context.Context, atStart bool) (int, error) {
	if p.opts.Records == nil {
		return 0, nil
	}
	recs, err := p.opts.Records.Unfinished(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if p.ctx.Err() != nil {
			break // shutting down: leave it to the next instance
		}
		if !atStart && r.Owner == p.opts.Instance {
			continue
		}
		log := p.log.With(zap.String("record", r.Name), zap.String("previousOwner", r.Owner))
		in, loaded, actions, parseErr := fromRecord(r)
		if parseErr == nil {
			p.mu.Lock()
			_, running := p.events[in.Key()]
			p.mu.Unlock()
			if running {
				continue
			}
		}
		mine, err := p.opts.Records.Claim(ctx, r)
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
			p.record(ctx, log, func(rs Records) error { return rs.MarkFinished(ctx, r.Name, time.Now()) })
			continue
		}
		log = log.With(zap.String("keptnContext", in.KeptnContext), zap.String("eventID", in.Event.ID()), zap.String("type", in.Event.Type()))
		p.mu.Lock()
		if _, ok := p.events[in.Key()]; ok {
			p.mu.Unlock()
			continue
		}
		t := p.reserveLocked(in.Key())
		p.mu.Unlock()
		log.Info("resuming event after restart")
		t.reply = p.execute(in, t, loaded, actions, r.Started, log)
		close(t.ready)
		n++
	}
	return n, nil
}

func fromRecord(r records.Record) (*Incoming, *config.Loaded, []config.MatchedAction, error) {
	var e cloudevents.Event
	if err := json.Unmarshal(r.Event, &e); err != nil {
		return nil, nil, nil, fmt.Errorf("event: %w", err)
	}
	in, err := decodeKeptn(e)
	if err != nil {
		return nil, nil, nil, err
	}
	level, err := config.ParseLevel(r.Level)
	if err != nil {
		return nil, nil, nil, err
	}
	loaded, err := config.NewLoaded(r.Config, level)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("job config: %w", err)
	}
	actions, err := loaded.Config.Match(in.Event.Type(), in.Raw)
	if err != nil {
		return nil, nil, nil, err
	}
	return in, loaded, actions, nil
}

// Maintain resumes orphaned events (Recover) every interval and forgets finished records
// older than the de-duplication retention, until ctx ends.
func (p *Processor) Maintain(ctx context.Context, interval time.Duration) {
	if p.opts.Records == nil {
		return
	}
	var lastPrune time.Time
	for {
		if n, err := p.resume(ctx, false); err != nil {
			p.log.Warn("looking for orphaned events failed", zap.Error(err))
		} else if n > 0 {
			p.log.Info("resumed orphaned events", zap.Int("count", n))
		}
		if time.Since(lastPrune) > 10*time.Minute {
			lastPrune = time.Now()
			if n, err := p.opts.Records.Prune(ctx, time.Now(), p.opts.DedupRetention); err != nil {
				p.log.Warn("pruning event records failed", zap.Error(err))
			} else if n > 0 {
				p.log.Info("pruned finished event records", zap.Int("count", n))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
