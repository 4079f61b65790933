package keptn

import (
	"encoding/json"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const checkSample = `{"specversion":"1.0","id":"1","source":"s","type":"sh.keptn.event.test.triggered",
"shkeptncontext":"c","datacontenttype":"application/json","data":{"project":"p","stage":"d","service":"x"}}`

func sampleWith(t *testing.T, change func(e *cloudevents.Event)) cloudevents.Event {
	t.Helper()
	var e cloudevents.Event
	require.NoError(t, json.Unmarshal([]byte(checkSample), &e))
	if change != nil {
		change(&e)
	}
	return e
}

func TestCheckEvent(t *testing.T) {
	tests := []struct {
		name   string
		change func(e *cloudevents.Event)
		want   []string // every problem, in order; none for a good event
	}{
		{"task event", nil, nil},
		{"sequence event", func(e *cloudevents.Event) { e.SetType("sh.keptn.event.dev.delivery.triggered") }, nil},
		{"finished without context", func(e *cloudevents.Event) {
			e.SetType("sh.keptn.event.test.finished")
			e.SetExtension("shkeptncontext", nil)
		}, nil},
		{"triggered without context", func(e *cloudevents.Event) { e.SetExtension("shkeptncontext", nil) }, []string{"needs the shkeptncontext extension"}},
		{"not a Keptn type", func(e *cloudevents.Event) { e.SetType("com.example.test.triggered") }, []string{`type "com.example.test.triggered" is not a Keptn event type`}},
		{"Keptn prefix, wrong shape", func(e *cloudevents.Event) { e.SetType("sh.keptn.event.test") }, []string{"not a Keptn event type"}},
		{"every problem at once", func(e *cloudevents.Event) {
			e.SetType("sh.keptn.event..triggered")
			e.SetExtension("shkeptncontext", nil)
			require.NoError(t, e.SetData(cloudevents.ApplicationJSON, map[string]string{"project": "p"}))
		}, []string{"data.stage, data.service missing or empty", "not a Keptn event type"}},
		{"no id", func(e *cloudevents.Event) { e.SetID("") }, []string{"id is required to be a non-empty string"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckEvent(sampleWith(t, tc.change))
			if tc.want == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// FuzzCheckEvent: any JSON a user gives send is checked without panicking, and an event it
// accepts is one the receiver decodes.
func FuzzCheckEvent(f *testing.F) {
	f.Add([]byte(checkSample))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"sh.keptn.event.a.b.c.triggered","data":{}}`))
	f.Add([]byte(`{"specversion":"0.3","id":"1","source":"s","type":"x","data":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e cloudevents.Event
		if json.Unmarshal(data, &e) != nil {
			return
		}
		if CheckEvent(e) != nil {
			return
		}
		if _, err := Decode(e); err != nil {
			t.Fatalf("checked event does not decode: %v", err)
		}
		if IsTriggered(e.Type()) && extString(e, extContext) == "" {
			t.Fatal("a .triggered event without shkeptncontext passed")
		}
	})
}
