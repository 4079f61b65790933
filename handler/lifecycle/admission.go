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
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// admission decides which deliveries become work: it remembers events by key (redeliveries
// get the first answer), bounds the events in flight (the queue, in number and bytes) and
// hands out the slots that bound the actions running Jobs at once.
type admission struct {
	maxQueued      int
	maxQueuedBytes int
	retention      time.Duration
	slots          chan struct{} // MaxConcurrentActions tokens

	mu     sync.Mutex
	events map[string]*ticket // by keptn.Incoming.Key
	// active and activeBytes count remembered events that are not done and their sizes (the
	// queue bounded by maxQueued and maxQueuedBytes).
	active, activeBytes int
	// rememberedBytes is what finished events keep for redeliveries (their replies, which
	// echo the event's labels), bounded by maxQueuedBytes too.
	rememberedBytes int
	lastPrune       time.Time
}

// ticket is one admitted event: the answer its first delivery got, for redeliveries.
type ticket struct {
	ready    chan struct{} // closed once reply/err are known
	reply    *cloudevents.Event
	err      error
	size     int // of the event, counted in activeBytes until done
	kept     int // of the reply, counted in rememberedBytes once done
	done     bool
	finished time.Time
}

func newAdmission(o Options) *admission {
	return &admission{
		maxQueued:      o.MaxQueuedEvents,
		maxQueuedBytes: o.MaxQueuedBytes,
		retention:      o.DedupRetention,
		slots:          make(chan struct{}, o.MaxConcurrentActions),
		events:         map[string]*ticket{},
	}
}

// admit reserves key for a new event of size bytes and returns its ticket; for a known key
// it returns the first delivery's ticket instead. A full queue gives ErrBusy, an event larger
// than the whole queue ErrTooLarge. The key is reserved before the (possibly slow) config
// lookup so that concurrent redeliveries are recognised.
func (a *admission) admit(key string, size int) (t, first *ticket, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if prior, ok := a.events[key]; ok {
		return nil, prior, nil
	}
	switch {
	case size > a.maxQueuedBytes:
		return nil, nil, fmt.Errorf("%w: the event takes %d bytes, more than the %d bytes all queued events may take", ErrTooLarge, size, a.maxQueuedBytes)
	case a.active >= a.maxQueued:
		return nil, nil, ErrBusy
	case a.activeBytes+size > a.maxQueuedBytes:
		return nil, nil, fmt.Errorf("%w: queued events take %d of %d bytes", ErrBusy, a.activeBytes, a.maxQueuedBytes)
	}
	return a.reserveLocked(key, size), nil, nil
}

// reserve is admit for recovery: no queue bound (the event was accepted before); false when
// the key is known already.
func (a *admission) reserve(key string, size int) (*ticket, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.events[key]; ok {
		return nil, false
	}
	return a.reserveLocked(key, size), true
}

func (a *admission) reserveLocked(key string, size int) *ticket {
	t := &ticket{ready: make(chan struct{}), size: size}
	a.events[key] = t
	a.active++
	a.activeBytes += size
	return t
}

// known reports whether key is remembered (in flight or recently finished).
func (a *admission) known(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.events[key]
	return ok
}

// settle records the first delivery's answer and releases redeliveries waiting for it.
func (t *ticket) settle(reply *cloudevents.Event, err error) {
	t.reply, t.err = reply, err
	close(t.ready)
}

// answer waits for the first delivery's answer.
func (t *ticket) answer(ctx context.Context) (*cloudevents.Event, error) {
	select {
	case <-t.ready:
		return t.reply, t.err
	case <-ctx.Done():
		return nil, unavailable(ctx.Err())
	}
}

// done marks the event finished: it leaves the queue but is remembered for the retention.
func (a *admission) done(t *ticket) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.done {
		return
	}
	t.done, t.finished = true, time.Now()
	a.active--
	a.activeBytes -= t.size
	if t.reply != nil {
		t.kept = len(t.reply.Data()) + len(t.reply.ID()) + len(t.reply.Type()) + len(t.reply.Source())
	}
	a.rememberedBytes += t.kept
	if now := time.Now(); now.Sub(a.lastPrune) > time.Minute || a.overRemembered() {
		a.lastPrune = now
		a.pruneLocked(now)
	}
}

// forget drops key, so that a later delivery is treated as new.
func (a *admission) forget(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.events[key]; ok {
		delete(a.events, key)
		if !t.done {
			a.active--
			a.activeBytes -= t.size
		}
		a.rememberedBytes -= t.kept
	}
}

// maxRemembered bounds the finished events kept in memory; older redeliveries are still
// recognised through the event records in the cluster.
const maxRemembered = 50_000

// overRemembered: too many finished events, or their replies take more than the queue may.
func (a *admission) overRemembered() bool {
	return len(a.events) > maxRemembered || a.rememberedBytes > a.maxQueuedBytes
}

// pruneLocked drops finished events older than the retention (all finished ones when there
// are too many or they take too much memory).
func (a *admission) pruneLocked(now time.Time) {
	cutoff := now.Add(-a.retention)
	if a.overRemembered() {
		cutoff = now
	}
	for k, t := range a.events {
		if t.done && !t.finished.After(cutoff) {
			delete(a.events, k)
			a.rememberedBytes -= t.kept
		}
	}
}

// slot waits for one of the MaxConcurrentActions slots; release gives it back. ok is false
// when ctx ended first.
func (a *admission) slot(ctx context.Context) (release func(), ok bool) {
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, true
	case <-ctx.Done():
		return nil, false
	}
}

// persist stores the event record before the first Job exists. An existing record means
// the event was accepted before this process knew it (restart, another replica): its owner
// runs it, and this delivery is answered as the first one was.
func (p *Processor) persist(ctx context.Context, pl *plan) error {
	if p.deps.Records == nil {
		return nil
	}
	rec, err := pl.record()
	if err != nil {
		return err
	}
	existing, err := p.deps.Records.Create(ctx, rec)
	if errors.Is(err, records.ErrTooLarge) {
		p.deps.Metrics.event("too_large")
		pl.log.Warn("refusing an event too large for its event record", zap.Error(err))
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	if err != nil {
		pl.log.Error("cannot store the event record", zap.Error(err))
		return fmt.Errorf("%w: %v", ErrClusterUnavailable, err)
	}
	if existing != nil {
		p.deps.Metrics.event("duplicate")
		pl.log.Info("event was accepted before (event record exists): running nothing", zap.Bool("finished", existing.Finished))
		pl.outcome = alreadyAccepted
	}
	return nil
}

// record is the event record of a plan that runs actions: the event, and of the job config
// only what recovery runs, the matched actions; the rest of a config can be large. A pending
// plan's record holds the event alone.
func (pl *plan) record() (records.Record, error) {
	if pl.outcome == configPending {
		return records.Record{Name: pl.in.RecordName(), Event: pl.in.Raw(), ConfigPending: true, KeptnContext: pl.in.KeptnContext}, nil
	}
	kept := config.Config{APIVersion: pl.loaded.Config.APIVersion}
	idx := make([]int, len(pl.matched))
	for i, a := range pl.matched {
		kept.Actions, idx[i] = append(kept.Actions, a.Action), a.Index
	}
	doc, err := kept.Document()
	if err != nil {
		return records.Record{}, fmt.Errorf("event record of %s: %w", pl.in.RecordName(), err)
	}
	return records.Record{Name: pl.in.RecordName(), Event: pl.in.Raw(), Config: doc, ActionIndex: idx,
		ConfigHash: pl.configHash, Level: pl.loaded.Level.String(), KeptnContext: pl.in.KeptnContext}, nil
}
