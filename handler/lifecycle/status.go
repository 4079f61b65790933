package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/jobs"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// RecordIndex finds the event records of a Keptn context (records.Index), for Status.
type RecordIndex interface {
	ByContext(keptnContext string) ([]records.Record, error)
}

// TaskStates reads what the cluster shows of a task's Job (run.Watcher), for Status.
type TaskStates interface {
	TaskState(ctx context.Context, namespace, name string) (state jobs.TaskState, found bool, err error)
}

// ErrNoStatus means the service holds no event of that Keptn context (or no event of that id
// in it): never accepted here, or its record was pruned.
var ErrNoStatus = errors.New("no event of this Keptn context is known")

// ErrStatusUnavailable means the cluster state could not be read (the index has not synced, a
// record could not be read); asking again later may succeed (503).
var ErrStatusUnavailable = errors.New("status unavailable")

func statusUnavailable(err error) error { return fmt.Errorf("%w: %w", ErrStatusUnavailable, err) }

// errStatusOff: Status needs the record index and the Job caches (Deps.Index, Deps.Tasks).
var errStatusOff = errors.New("status is not configured")

// maxStatusRecords bounds the records one status answer reads (one GET each): a Keptn context
// holds a handful of events; planted ConfigMaps with its label must not make a request costly.
const maxStatusRecords = 100

// Status is what the cluster says about the events of one Keptn context this service
// accepted: from their event records and their Jobs (GET /v1/status/{shkeptncontext}).
type Status struct {
	KeptnContext string        `json:"shkeptncontext"`
	Events       []EventStatus `json:"events"`
	// Unverified counts records labelled with this context whose signature does not verify:
	// not created by this service (or altered), so nothing of them is reported.
	Unverified int `json:"unverifiedRecords,omitempty"`
	// Truncated: the context has more records than one answer reads (maxStatusRecords).
	Truncated bool `json:"truncated,omitempty"`
}

// EventStatus is one accepted event.
type EventStatus struct {
	ID     string     `json:"id"`
	Source string     `json:"source"`
	Type   string     `json:"type"`
	Time   *time.Time `json:"time,omitempty"`
	// State is "running" until .finished was delivered (or, for silent actions, they ended),
	// "finished" afterwards; "config-pending" while the config source cannot be reached (no
	// actions known yet).
	State string `json:"state"`
	// StartedSent: .started was delivered, as the record says or, where it does not, as a Job
	// of a reporting action (created only after it) or the delivered .finished shows.
	StartedSent bool       `json:"startedSent"`
	FinishedAt  *time.Time `json:"finishedAt,omitempty"`
	// Owner is the service instance (pod) that runs the event.
	Owner   string         `json:"owner,omitempty"`
	Actions []ActionStatus `json:"actions"`
}

// ActionStatus is one matched action, its tasks in order.
type ActionStatus struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	// Silent actions send no .started/.finished.
	Silent bool         `json:"silent,omitempty"`
	Tasks  []TaskStatus `json:"tasks"`
}

// TaskStatus is one task and its Job (jobs.TaskState).
type TaskStatus struct {
	Name      string     `json:"name"`
	Job       string     `json:"job"`
	Namespace string     `json:"namespace"`
	Phase     string     `json:"phase"`
	Start     *time.Time `json:"start,omitempty"`
	End       *time.Time `json:"end,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	Message   string     `json:"message,omitempty"`
}

// Event states of an EventStatus.
const (
	EventRunning       = "running"
	EventFinished      = "finished"
	EventConfigPending = "config-pending"
)

// Status answers from the cluster: the event records labelled with keptnContext whose
// signature verifies and whose event carries exactly that context (and, when eventID is not
// empty, that CloudEvent id), with the phase of every task's Job from the informer caches.
// ErrNoStatus when there is none.
func (p *Processor) Status(ctx context.Context, keptnContext, eventID string) (*Status, error) {
	if p.deps.Index == nil || p.deps.Tasks == nil || p.deps.Records == nil {
		return nil, errStatusOff
	}
	listed, err := p.deps.Index.ByContext(keptnContext)
	if err != nil {
		return nil, statusUnavailable(err)
	}
	st := &Status{KeptnContext: keptnContext, Events: []EventStatus{}}
	if len(listed) > maxStatusRecords {
		listed, st.Truncated = listed[:maxStatusRecords], true
	}
	for _, l := range listed {
		if p.rejected.seen(l) {
			st.Unverified++
			continue
		}
		r, err := p.deps.Records.Load(ctx, l.Name)
		if err != nil {
			return nil, statusUnavailable(err)
		}
		if r == nil {
			continue // pruned meanwhile
		}
		if err := p.deps.Records.Verify(*r); err != nil {
			st.Unverified++
			continue
		}
		pl, err := planFromRecord(*r, p.deps.Log, p.opts)
		if err != nil {
			p.deps.Log.Warn("status: a verified event record cannot be read", zap.String("record", r.Name), zap.Error(err))
			continue
		}
		if pl.in.KeptnContext != keptnContext || eventID != "" && pl.in.Event.ID() != eventID {
			continue // another context with the same sanitised label, or another event
		}
		st.Events = append(st.Events, p.eventStatus(ctx, *r, pl))
	}
	if len(st.Events) == 0 {
		return nil, ErrNoStatus
	}
	sort.SliceStable(st.Events, func(a, b int) bool {
		ta, tb := st.Events[a].Time, st.Events[b].Time
		return ta != nil && tb != nil && ta.Before(*tb)
	})
	return st, nil
}

func (p *Processor) eventStatus(ctx context.Context, r records.Record, pl *plan) EventStatus {
	e := pl.in.Event
	es := EventStatus{ID: e.ID(), Source: e.Source(), Type: e.Type(), State: EventRunning, Owner: r.Owner,
		StartedSent: r.Started == records.StartedDelivered || r.Started == records.StartedUnrecorded && r.Finished,
		Actions:     make([]ActionStatus, 0, len(pl.matched))}
	if t := e.Time(); !t.IsZero() {
		es.Time = &t
	}
	if pl.outcome == configPending {
		es.State = EventConfigPending
	}
	if r.Finished {
		es.State = EventFinished
		if !r.FinishedAt.IsZero() {
			es.FinishedAt = &r.FinishedAt
		}
	}
	triggered := keptn.IsTriggered(e.Type())
	for _, a := range pl.matched {
		as := ActionStatus{Name: a.Action.Name, Index: a.Index, Silent: a.Action.Silent || !triggered, Tasks: make([]TaskStatus, 0, len(a.Action.Tasks))}
		ended := false // an earlier task failed or is gone: later ones without a Job never run
		for i, t := range a.Action.Tasks {
			ts := TaskStatus{Name: t.Name}
			ts.Namespace, ts.Job = jobs.JobRef(p.opts.Settings, pl.taskInput(a, i))
			state, found, err := p.deps.Tasks.TaskState(ctx, ts.Namespace, ts.Job)
			if found && !as.Silent && r.Started == records.StartedUnrecorded {
				es.StartedSent = true
			}
			switch {
			case err != nil:
				ts.Phase, ts.Reason, ts.Message = jobs.PhaseUnknown, "CacheUnavailable", err.Error()
			case !found && ended:
				ts.Phase = jobs.PhaseSkipped
			case !found && r.Finished:
				ts.Phase, ended = jobs.PhaseGone, !a.Action.Parallel
			case !found:
				ts.Phase = jobs.PhaseWaiting
			default:
				ts.Phase, ts.Reason, ts.Message = state.Phase, state.Reason, state.Message
				ts.Start, ts.End = timePtr(state.Start), timePtr(state.End)
				ended = state.Phase == jobs.PhaseFailed && !a.Action.Parallel // parallel tasks all start at once
			}
			as.Tasks = append(as.Tasks, ts)
		}
		es.Actions = append(es.Actions, as)
	}
	return es
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
