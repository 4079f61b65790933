package handler

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/google/uuid"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
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
	Event        cloudevents.Event
	KeptnContext string
	CommitID     string
	Data         keptnv2.EventData
	// Raw is the whole event in structured JSON form: the document env and match jsonpaths start at ("$").
	Raw []byte
}

// Key identifies an event for de-duplication: CloudEvents ids are unique per source.
func (in *Incoming) Key() string { return in.Event.Source() + "\x00" + in.Event.ID() }

// errBadEvent marks client errors in an incoming event (answered with 400).
var errBadEvent = errors.New("invalid event")

// decodeKeptn checks that a CloudEvent carries what a Keptn event needs and extracts it.
func decodeKeptn(e cloudevents.Event) (*Incoming, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadEvent, err)
	}
	in := &Incoming{Event: e}
	in.KeptnContext = extString(e, extContext)
	in.CommitID = extString(e, extCommitID)
	if len(e.Data()) == 0 {
		return nil, fmt.Errorf("%w: event %s has no data; Keptn events carry data.project, data.stage and data.service", errBadEvent, e.ID())
	}
	if err := json.Unmarshal(e.Data(), &in.Data); err != nil {
		return nil, fmt.Errorf("%w: data is not a Keptn event payload: %v", errBadEvent, err)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"data.project", in.Data.Project}, {"data.stage", in.Data.Stage}, {"data.service", in.Data.Service}} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s missing or empty", errBadEvent, strings.Join(missing, ", "))
	}
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadEvent, err)
	}
	in.Raw = raw
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

// isTriggered reports whether a Keptn task event asks for .started/.finished answers.
func isTriggered(eventType string) bool { return keptnv2.IsTriggeredEventType(eventType) }

// response builds an event answering in (same context, triggeredid = in's id).
func response(in *Incoming, eventType string, data any) cloudevents.Event {
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
	// The payload types here always marshal; SetData only fails for unencodable data.
	_ = out.SetData(cloudevents.ApplicationJSON, data)
	return out
}

func baseData(in *Incoming) keptnv2.EventData {
	return keptnv2.EventData{Project: in.Data.Project, Stage: in.Data.Stage, Service: in.Data.Service, Labels: in.Data.Labels}
}

// startedEvent is the .started answer to a .triggered event.
func startedEvent(in *Incoming) cloudevents.Event {
	t, _ := keptnv2.GetEventTypeForTriggeredEvent(in.Event.Type(), ".started")
	d := baseData(in)
	d.Status = keptnv2.StatusSucceeded
	return response(in, t, d)
}

// finishedEvent is the .finished answer; test.finished carries data.test.start/end (lighthouse needs them).
func finishedEvent(in *Incoming, ok bool, message string, start, end time.Time) cloudevents.Event {
	t, _ := keptnv2.GetEventTypeForTriggeredEvent(in.Event.Type(), ".finished")
	d := baseData(in)
	d.Message = message
	if ok {
		d.Status, d.Result = keptnv2.StatusSucceeded, keptnv2.ResultPass
	} else {
		d.Status, d.Result = keptnv2.StatusErrored, keptnv2.ResultFailed
	}
	if in.Event.Type() == testTriggered {
		return response(in, t, keptnv2.TestFinishedEventData{EventData: d, Test: keptnv2.TestFinishedDetails{
			Start: start.UTC().Format(time.RFC3339), End: end.UTC().Format(time.RFC3339),
		}})
	}
	return response(in, t, d)
}

// errorLogEvent reports a problem that has no .finished to carry it (e.g. a missing config).
func errorLogEvent(in *Incoming, message string) cloudevents.Event {
	task := ""
	if strings.HasPrefix(in.Event.Type(), "sh.keptn.event.") {
		task, _, _ = keptnv2.ParseTaskEventType(in.Event.Type()) // "" for anything else
	}
	return response(in, keptnv2.ErrorLogEventName, keptnv2.ErrorLogEvent{Message: message, IntegrationID: Source, Task: task})
}
