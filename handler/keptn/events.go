// Package keptn owns the Keptn side of an event's life: decoding an incoming CloudEvent into
// the fields Keptn events carry (and CheckEvent, what a sender checks before posting one), and
// building the events this service answers with (.started, .finished with its bounded message,
// sh.keptn.log.error). It is pure: it must not send anything, talk to Kubernetes or read configs.
package keptn

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/google/uuid"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// Source is the CloudEvents source of every event this service sends.
const Source = "job-executor-service"

// Keptn CloudEvents extensions.
const (
	extContext     = "shkeptncontext"
	extTriggeredID = "triggeredid"
	extCommitID    = "gitcommitid"
	extSpecVersion = "shkeptnspecversion"
	keptnSpecVer   = "0.2.4"
	testTriggered  = "sh.keptn.event.test.triggered"
)

// Incoming is a decoded Keptn CloudEvent with the fields the lifecycle needs.
type Incoming struct {
	// Event has the attributes and extensions; its data only until Raw holds it, so that a
	// queued event does not hold its data twice.
	Event        cloudevents.Event
	KeptnContext string
	CommitID     string
	Data         keptnv2.EventData

	rawOnce sync.Once
	raw     []byte
}

// Raw is the whole event in structured JSON form: the document env and match jsonpaths start
// at ("$"), and what the event record keeps. It is encoded on first use, since an event that
// matches no action needs none; call it once before sharing in between goroutines that read
// Event (the lifecycle does, when it accepts an event).
func (in *Incoming) Raw() []byte {
	in.rawOnce.Do(func() {
		if in.raw != nil {
			return
		}
		// Decode checked the data is JSON: the event encodes.
		in.raw, _ = json.Marshal(in.Event)
		in.Event.DataEncoded = nil
	})
	return in.raw
}

// Size is the event's size as structured JSON, what the queue bound counts (MAX_QUEUED_BYTES):
// exact once Raw was made, else estimated from the data and attributes without encoding.
func (in *Incoming) Size() int {
	if in.raw != nil {
		return len(in.raw)
	}
	c := in.Event.Context
	n := len(in.Event.DataEncoded) + len(`{"specversion":"1.0","id":"","source":"","type":"","datacontenttype":"","time":"2006-01-02T15:04:05.999999999Z","data":}`)
	n += len(c.GetID()) + len(c.GetSource()) + len(c.GetType()) + len(c.GetDataContentType()) + len(c.GetSubject()) + len(c.GetDataSchema())
	for k, v := range c.GetExtensions() {
		n += len(k) + len(fmt.Sprint(v)) + len(`,"":""`)
	}
	return n
}

// FromRaw is the event decoded from its structured JSON (an event record), keeping raw as its
// Raw.
func FromRaw(raw []byte) (*Incoming, error) {
	var e cloudevents.Event
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	in, err := Decode(e)
	if err != nil {
		return nil, err
	}
	in.raw = raw
	in.Event.DataEncoded = nil
	return in, nil
}

// Key identifies an event for de-duplication: CloudEvents ids are unique per source.
func (in *Incoming) Key() string { return in.Event.Source() + "\x00" + in.Event.ID() }

// ConfigRef is where the event's job config and task files are looked up.
func (in *Incoming) ConfigRef() config.Ref {
	return config.Ref{Project: in.Data.Project, Stage: in.Data.Stage, Service: in.Data.Service, CommitID: in.CommitID}
}

// JobEvent is what a Job is told about the event (names, labels, env).
func (in *Incoming) JobEvent() jobs.EventInfo {
	return jobs.EventInfo{
		ID: in.Event.ID(), Source: in.Event.Source(), Type: in.Event.Type(), KeptnContext: in.KeptnContext,
		Project: in.Data.Project, Stage: in.Data.Stage, Service: in.Data.Service, Labels: in.Data.Labels, Raw: in.Raw(),
	}
}

// RecordName names the event's durable record in the cluster.
func (in *Incoming) RecordName() string { return jobs.RecordName(in.Event.Source(), in.Event.ID()) }

// ErrBadEvent marks client errors in an incoming event (the receiver answers 400).
var ErrBadEvent = errors.New("invalid event")

// Decode checks that a CloudEvent carries what a Keptn event needs and extracts it.
func Decode(e cloudevents.Event) (*Incoming, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEvent, err)
	}
	in := &Incoming{Event: e}
	in.KeptnContext = extString(e, extContext)
	in.CommitID = extString(e, extCommitID)
	if len(e.Data()) == 0 {
		return nil, fmt.Errorf("%w: event %s has no data; Keptn events carry data.project, data.stage and data.service", ErrBadEvent, e.ID())
	}
	if err := json.Unmarshal(e.Data(), &in.Data); err != nil {
		return nil, fmt.Errorf("%w: data is not a Keptn event payload: %v", ErrBadEvent, err)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"data.project", in.Data.Project}, {"data.stage", in.Data.Stage}, {"data.service", in.Data.Service}} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s missing or empty", ErrBadEvent, strings.Join(missing, ", "))
	}
	return in, nil
}

func extString(e cloudevents.Event, name string) string {
	v, ok := e.Extensions()[name]
	if !ok {
		return ""
	}
	s, err := types.ToString(v)
	if err != nil {
		return ""
	}
	return s
}

// IsTriggered reports whether a Keptn task event asks for .started/.finished answers.
func IsTriggered(eventType string) bool { return keptnv2.IsTriggeredEventType(eventType) }

// header is an answer to in (same context, triggeredid = in's id) without data: its id and
// time stay the same however often the data is set while the event is fitted to its bound.
func header(in *Incoming, eventType string) cloudevents.Event {
	out := cloudevents.NewEvent()
	out.SetID(uuid.NewString())
	out.SetSource(Source)
	out.SetType(eventType)
	out.SetTime(time.Now().UTC())
	out.SetExtension(extContext, in.KeptnContext)
	out.SetExtension(extTriggeredID, in.Event.ID())
	out.SetExtension(extSpecVersion, keptnSpecVer)
	if in.CommitID != "" {
		out.SetExtension(extCommitID, in.CommitID)
	}
	return out
}

func withData(h cloudevents.Event, data any) cloudevents.Event {
	out := h.Clone()
	// The payload types here always marshal; SetData only fails for unencodable data.
	_ = out.SetData(cloudevents.ApplicationJSON, data)
	return out
}

func baseData(in *Incoming) keptnv2.EventData {
	return keptnv2.EventData{Project: in.Data.Project, Stage: in.Data.Stage, Service: in.Data.Service, Labels: in.Data.Labels}
}

// PlannedTask is one task .started announces: its name and the Job that will run it.
type PlannedTask struct {
	Name      string `json:"name"`
	Job       string `json:"job"`
	Namespace string `json:"namespace"`
}

// PlannedAction is one action .started announces, its tasks in the order they run.
type PlannedAction struct {
	Name  string        `json:"name"`
	Tasks []PlannedTask `json:"tasks"`
}

// StartedData is the .started payload: Keptn's EventData plus, in data.jobExecutor, the
// actions and tasks that will run. Keptn keeps data fields it does not know (the
// shipyard-controller stores the whole event; its models read only EventData's fields).
type StartedData struct {
	keptnv2.EventData
	JobExecutor *StartedTasks `json:"jobExecutor,omitempty"`
}

// StartedTasks is data.jobExecutor of .started.
type StartedTasks struct {
	Actions []PlannedAction `json:"actions"`
}

// Started is the .started answer to a .triggered event, within maxBytes as encoded (0: no
// bound), announcing the planned actions. Echoed labels come first: when the event with the
// plan and every label would not fit, it goes without the plan, and labels that do not fit
// are not echoed.
func Started(in *Incoming, planned []PlannedAction, maxBytes int) cloudevents.Event {
	t, _ := keptnv2.GetEventTypeForTriggeredEvent(in.Event.Type(), ".started")
	h := header(in, t)
	data := func(labels map[string]string, planned []PlannedAction) StartedData {
		d := StartedData{EventData: baseData(in)}
		d.Labels, d.Status = labels, keptnv2.StatusSucceeded
		if len(planned) > 0 {
			d.JobExecutor = &StartedTasks{Actions: planned}
		}
		return d
	}
	if len(planned) > 0 {
		if e := withData(h, data(in.Data.Labels, planned)); maxBytes <= 0 || encodedSize(e) <= maxBytes {
			return e
		}
	}
	return fitted(maxBytes, in.Data.Labels, "", nil, func(labels map[string]string, _ string) cloudevents.Event {
		return withData(h, data(labels, nil))
	})
}

// Finished is the .finished answer; test.finished carries data.test.start/end (lighthouse needs
// them). The event fits in maxBytes as encoded (0: no bound): the message is shortened (logs
// keep their tails) and labels that do not fit are not echoed, which the message says.
func Finished(in *Incoming, s Summary, maxBytes int) cloudevents.Event {
	t, _ := keptnv2.GetEventTypeForTriggeredEvent(in.Event.Type(), ".finished")
	h := header(in, t)
	results := finishedResults(s.results, resultsBytes(maxBytes))
	return fitted(maxBytes, in.Data.Labels, s.Message, s.fit, func(labels map[string]string, message string) cloudevents.Event {
		d := baseData(in)
		d.Labels, d.Message = labels, message
		if s.OK {
			d.Status, d.Result = keptnv2.StatusSucceeded, keptnv2.ResultPass
		} else {
			d.Status, d.Result = keptnv2.StatusErrored, keptnv2.ResultFailed
		}
		fd := FinishedData{EventData: d, JobExecutor: results}
		if in.Event.Type() == testTriggered {
			fd.Test = &keptnv2.TestFinishedDetails{Start: s.Start.UTC().Format(time.RFC3339), End: s.End.UTC().Format(time.RFC3339)}
		}
		return withData(h, fd)
	})
}

// MaxResultsBytes bounds the task results in one .finished as JSON; a quarter of the event's
// own bound when that is smaller, so that the message keeps room.
const MaxResultsBytes = 32 << 10

func resultsBytes(maxEventBytes int) int {
	if maxEventBytes > 0 {
		return min(MaxResultsBytes, maxEventBytes/4)
	}
	return MaxResultsBytes
}

// FinishedData is the .finished payload: Keptn's EventData, data.test for test.finished (what
// lighthouse reads), and in data.jobExecutor what the tasks handed back. Keptn passes data
// fields it does not know on to the next task of the sequence.
type FinishedData struct {
	keptnv2.EventData
	Test        *keptnv2.TestFinishedDetails `json:"test,omitempty"`
	JobExecutor *FinishedResults             `json:"jobExecutor,omitempty"`
}

// FinishedResults is data.jobExecutor of .finished.
type FinishedResults struct {
	// Results are, per task name ("<action>/<task>" where two actions share a task name),
	// what the task wrote to its termination message, or {"error": why it cannot be used}.
	Results map[string]any `json:"results,omitempty"`
	// ResultsOmitted says which results did not fit in the event.
	ResultsOmitted string `json:"resultsOmitted,omitempty"`
}

// finishedResults collects the tasks' results for .finished, at most maxBytes of them as JSON
// (in task order; the rest are named in ResultsOmitted); nil when no task handed any back.
func finishedResults(actions []ActionResult, maxBytes int) *FinishedResults {
	names := map[string]int{}
	for _, a := range actions {
		for _, t := range a.Tasks {
			names[t.Name]++
		}
	}
	out := &FinishedResults{Results: map[string]any{}}
	size, omitted := 0, 0
	for _, a := range actions {
		for _, t := range a.Tasks {
			var v any
			switch {
			case t.Result.ResultsError != "":
				v = map[string]string{"error": t.Result.ResultsError}
			case t.Result.Results != nil:
				v = t.Result.Results
			default:
				continue
			}
			key := t.Name
			if names[t.Name] > 1 {
				key = a.Name + "/" + t.Name
			}
			b, _ := json.Marshal(map[string]any{key: v})
			if size+len(b) > maxBytes {
				omitted++
				continue
			}
			size += len(b)
			out.Results[key] = v
		}
	}
	if omitted > 0 {
		out.ResultsOmitted = fmt.Sprintf("the results of %d tasks are left out: this event holds at most %d bytes of them", omitted, maxBytes)
	}
	if len(out.Results) == 0 && omitted == 0 {
		return nil
	}
	return out
}

// ErrorLog reports a problem that has no .finished to carry it (e.g. a missing config), within
// maxBytes as encoded (0: no bound; the message keeps its tail).
func ErrorLog(in *Incoming, message string, maxBytes int) cloudevents.Event {
	task := ""
	if strings.HasPrefix(in.Event.Type(), "sh.keptn.event.") {
		task, _, _ = keptnv2.ParseTaskEventType(in.Event.Type()) // "" for anything else
	}
	h := header(in, keptnv2.ErrorLogEventName)
	fit := func(encoded int) string { return boundTotal(message, budget{raw: -1, encoded: encoded}) }
	return fitted(maxBytes, nil, message, fit, func(_ map[string]string, message string) cloudevents.Event {
		return withData(h, keptnv2.ErrorLogEvent{Message: message, IntegrationID: Source, Task: task})
	})
}
