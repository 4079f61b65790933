package keptn

import (
	"encoding/json"
	"strings"
	"time"

	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeRejectsBadEvents(t *testing.T) {
	tests := []struct {
		name string
		data any
		want string
	}{
		{"no data", nil, "has no data"},
		{"data not an object", "just a string", "not a Keptn event payload"},
		{"missing stage and service", map[string]any{"project": "p"}, "data.stage, data.service missing or empty"},
		{"blank project", map[string]any{"project": " ", "stage": "s", "service": "x"}, "data.project missing or empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := cloudevents.NewEvent()
			e.SetID("1")
			e.SetSource("s")
			e.SetType("sh.keptn.event.test.triggered")
			if tc.data != nil {
				require.NoError(t, e.SetData(cloudevents.ApplicationJSON, tc.data))
			}
			_, err := Decode(e)
			require.ErrorIs(t, err, ErrBadEvent)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestDecodeAndAnswers(t *testing.T) {
	e := cloudevents.NewEvent()
	e.SetID("id-1")
	e.SetSource("src")
	e.SetType("sh.keptn.event.test.triggered")
	e.SetExtension("shkeptncontext", "ctx-1")
	e.SetExtension("gitcommitid", "c0ffee")
	require.NoError(t, e.SetData(cloudevents.ApplicationJSON, map[string]any{"project": "p", "stage": "s", "service": "x", "labels": map[string]string{"a": "b"}}))
	in, err := Decode(e)
	require.NoError(t, err)
	assert.Equal(t, "p", in.ConfigRef().Project)
	assert.Equal(t, "c0ffee", in.ConfigRef().CommitID)
	assert.Equal(t, "ctx-1", in.JobEvent().KeptnContext)
	assert.True(t, IsTriggered(e.Type()))

	for _, out := range []cloudevents.Event{Started(in, nil, 0), Finished(in, Summary{OK: true}, 0), ErrorLog(in, "boom", 0)} {
		assert.Equal(t, Source, out.Source())
		assert.Equal(t, "id-1", out.Extensions()["triggeredid"])
		assert.Equal(t, "ctx-1", out.Extensions()["shkeptncontext"])
		assert.Equal(t, "c0ffee", out.Extensions()["gitcommitid"])
	}
	assert.Equal(t, "sh.keptn.event.test.started", Started(in, nil, 0).Type())
	assert.Equal(t, "sh.keptn.event.test.finished", Finished(in, Summary{}, 0).Type())
	assert.Equal(t, "sh.keptn.log.error", ErrorLog(in, "boom", 0).Type())
}

// TestRawIsMadeOnDemand: Decode does not encode the event; Raw is the event as structured
// JSON (what a record keeps and jsonpaths start at), after which the event holds its data only
// there; Size estimates it closely before, and is exact after.
func TestRawIsMadeOnDemand(t *testing.T) {
	for _, data := range []map[string]any{
		{"project": "sockshop", "stage": "dev", "service": "carts"},
		{"project": "sockshop", "stage": "dev", "service": "carts", "labels": map[string]string{"a": strings.Repeat("x", 5000)}, "deployment": map[string]any{"uris": []string{"http://a"}}},
	} {
		e := cloudevents.NewEvent()
		e.SetID("id-1")
		e.SetSource("test/source")
		e.SetType("sh.keptn.event.test.triggered")
		e.SetTime(time.Date(2026, 12, 3, 4, 0, 0, 123456789, time.UTC))
		e.SetExtension("shkeptncontext", "9b7ecd3b-26b0-4e9a-b3c6-4fef3e4c5a1b")
		e.SetExtension("gitcommitid", "c1")
		require.NoError(t, e.SetData(cloudevents.ApplicationJSON, data))
		want, err := json.Marshal(e)
		require.NoError(t, err)

		in, err := Decode(e)
		require.NoError(t, err)
		assert.NotNil(t, in.Event.Data(), "not encoded yet: the data is still the event's")
		estimate := in.Size()
		assert.InDelta(t, len(want), estimate, float64(len(want))*0.1+64, "estimate %d for %d bytes", estimate, len(want))

		assert.JSONEq(t, string(want), string(in.Raw()))
		assert.Nil(t, in.Event.Data(), "the data is held once, in Raw")
		assert.Equal(t, len(in.Raw()), in.Size(), "exact once encoded")

		again, err := FromRaw(in.Raw())
		require.NoError(t, err)
		assert.Equal(t, in.Raw(), again.Raw(), "a record's event is its Raw as stored")
		assert.Equal(t, in.Key(), again.Key())
		assert.Equal(t, in.Data, again.Data)
	}
}
