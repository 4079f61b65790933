package keptn

import (
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
