package keptn

import (
	"errors"
	"fmt"
	"strings"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
)

const eventTypePrefix = "sh.keptn.event."

// CheckEvent reports every reason why e is not a Keptn event as Keptn would send it to this
// service, for senders (job-executor-service send) to check before sending: the receiver's
// own checks (Decode: required CloudEvents attributes, data with project, stage and service),
// a Keptn event type (sh.keptn.event.<task>.<kind> or sh.keptn.event.<stage>.<sequence>.<kind>)
// and, on a .triggered event, the shkeptncontext its .started and .finished carry back to the
// sequence.
func CheckEvent(e cloudevents.Event) error {
	var errs []error
	if _, err := Decode(e); err != nil {
		errs = append(errs, err)
	}
	t := e.Type()
	if !strings.HasPrefix(t, eventTypePrefix) || !keptnv2.IsValidEventType(t) {
		errs = append(errs, fmt.Errorf("type %q is not a Keptn event type: want sh.keptn.event.<task>.<kind>, e.g. sh.keptn.event.test.triggered", t))
	}
	if IsTriggered(t) && strings.TrimSpace(extString(e, extContext)) == "" {
		errs = append(errs, fmt.Errorf("a .triggered event needs the %s extension (the Keptn context its .started and .finished answer to)", extContext))
	}
	return errors.Join(errs...)
}
