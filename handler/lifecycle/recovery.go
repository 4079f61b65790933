package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
	n := 0
	alive := map[string]bool{} // by owner, asked once per scan
	err := p.deps.Records.Unfinished(ctx, func(r records.Record) error {
		if ctx.Err() != nil || p.ctx.Err() != nil {
			return errShuttingDown // leave the rest to the next instance
		}
		if p.resumeRecord(ctx, r, atStart, alive) {
			n++
		}
		return nil
	})
	if errors.Is(err, errShuttingDown) {
		err = nil
	}
	return n, err
}

var errShuttingDown = errors.New("shutting down")

// resumeRecord resumes one unfinished record, listed with its metadata only, unless a live
// instance runs it. Only then is the whole record (event and config) read: a backlog of
// records that others run costs neither memory nor reads.
func (p *Processor) resumeRecord(ctx context.Context, listed records.Record, atStart bool, alive map[string]bool) bool {
	log := p.deps.Log.With(zap.String("record", listed.Name), zap.String("previousOwner", listed.Owner))
	if p.inHand(ctx, listed, atStart, alive, log) || p.rejected.seen(listed) {
		return false
	}
	r, err := p.deps.Records.Load(ctx, listed.Name)
	if err != nil {
		log.Warn("cannot read event record", zap.Error(err))
		return false
	}
	if r == nil {
		return false // pruned meanwhile
	}
	if err := p.deps.Records.Verify(*r); err != nil {
		// Not ours: anyone who can create ConfigMaps in the namespace can give one the
		// record labels. Never claim, run, finish or delete it.
		if p.rejected.first(*r) {
			p.deps.Metrics.recordRejected()
			log.Warn("refusing to resume an event record that does not verify; leaving it alone", zap.Error(err))
		}
		return false
	}
	pl, parseErr := planFromRecord(*r, log, p.opts)
	if parseErr == nil && p.admit.known(pl.in.Key()) {
		return false
	}
	if parseErr == nil && r.Started == records.StartedUnrecorded && p.opts.StartedViaSink {
		if pl.startedSent, err = p.startedImplied(ctx, pl); err != nil {
			log.Warn("cannot tell whether .started was delivered; trying again later", zap.Error(err))
			return false
		}
	}
	mine, err := p.deps.Records.Claim(ctx, *r)
	if err != nil {
		log.Warn("cannot claim event record", zap.Error(err))
		return false
	}
	if !mine {
		return false // its owner is alive, or another instance was faster
	}
	if parseErr != nil {
		// It can never run; without this it would be retried forever.
		log.Error("event record cannot be resumed; dropping it", zap.Error(parseErr))
		if err := p.deps.Records.MarkFinished(ctx, r.Name, time.Now()); err != nil {
			log.Warn("updating the event record failed", zap.Error(err))
		}
		return false
	}
	t, ok := p.admit.reserve(pl.in.Key(), pl.in.Size())
	if !ok {
		return false
	}
	pl.log.Info("resuming event after restart")
	t.settle(pl.reply(), nil)
	p.work(t, pl)
	return true
}

// inHand reports whether a live instance runs the listed record: this process, unless it is
// starting, or an owner that renews its Lease. alive holds the owners asked about in this scan.
func (p *Processor) inHand(ctx context.Context, listed records.Record, atStart bool, alive map[string]bool, log *zap.Logger) bool {
	owner := listed.Owner
	switch {
	case owner == p.opts.Instance:
		return !atStart
	case owner == "":
		return false
	}
	live, known := alive[owner]
	if !known {
		var err error
		if live, err = p.deps.Records.Alive(ctx, owner); err != nil {
			log.Warn("cannot tell whether the owner of an event record is alive", zap.Error(err))
			return true // ask again next scan
		}
		alive[owner] = live
	}
	return live
}

// rejectedRecords remembers the record versions recovery refused, so that Maintain's
// periodic scans log and count each one once, not every interval.
type rejectedRecords struct {
	mu       sync.Mutex
	versions map[string]bool // name + "/" + resourceVersion
}

// maxRejectedRemembered bounds the memory a flood of planted ConfigMaps can take; beyond it
// they are logged and counted again.
const maxRejectedRemembered = 10_000

// first remembers r and reports whether it was new.
func (rr *rejectedRecords) first(r records.Record) bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	key := rejectedKey(r)
	if rr.versions[key] {
		return false
	}
	if rr.versions == nil || len(rr.versions) >= maxRejectedRemembered {
		rr.versions = map[string]bool{}
	}
	rr.versions[key] = true
	return true
}

// seen reports whether r, in this version, was refused before.
func (rr *rejectedRecords) seen(r records.Record) bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.versions[rejectedKey(r)]
}

func rejectedKey(r records.Record) string { return r.Name + "/" + r.Version() }

// planFromRecord plans what the first delivery planned: the stored event with the stored
// actions, so that recovery runs what that delivery would have run.
func planFromRecord(r records.Record, log *zap.Logger, opts Options) (*plan, error) {
	in, err := keptn.FromRaw(r.Event)
	if err != nil {
		return nil, err
	}
	log = log.With(zap.String("keptnContext", in.KeptnContext), zap.String("eventID", in.Event.ID()), zap.String("type", in.Event.Type()))
	if r.ConfigPending {
		return pendingPlan(in, log, r.Created), nil
	}
	level, err := config.ParseLevel(r.Level)
	if err != nil {
		return nil, err
	}
	loaded, err := config.NewLoaded(r.Config, level)
	if err != nil {
		return nil, fmt.Errorf("job config: %w", err)
	}
	actions, err := recordedActions(r, loaded, in)
	if err != nil {
		return nil, err
	}
	pl := &plan{in: in, startedSent: r.Started == records.StartedDelivered, startedUndelivered: r.Started == records.StartedUndelivered, log: log}
	pl.run(loaded, actions, opts)
	if r.ActionIndex != nil {
		pl.configHash = r.ConfigHash // of the whole config, as on the first delivery's Jobs
	}
	return pl, nil
}

// recordedActions are the actions the event matched on its first delivery, at their places
// in the whole config. A record of an earlier version holds the whole config: the event is
// matched against it again.
func recordedActions(r records.Record, loaded *config.Loaded, in *keptn.Incoming) ([]config.MatchedAction, error) {
	if r.ActionIndex == nil {
		return loaded.Config.Match(in.Event.Type(), in.Raw())
	}
	if len(r.ActionIndex) != len(loaded.Config.Actions) {
		return nil, fmt.Errorf("event record has %d actions but %d action indices", len(loaded.Config.Actions), len(r.ActionIndex))
	}
	out := make([]config.MatchedAction, len(r.ActionIndex))
	for i, a := range loaded.Config.Actions {
		out[i] = config.MatchedAction{Index: r.ActionIndex[i], Action: a}
	}
	return out, nil
}

// Maintain resumes orphaned events every interval and forgets finished records older than
// the de-duplication retention or beyond MaxFinishedRecords, until ctx ends.
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
			if n, err := p.deps.Records.Prune(ctx, time.Now(), p.opts.DedupRetention, p.opts.MaxFinishedRecords); err != nil {
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
