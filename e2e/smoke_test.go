//go:build e2e

package e2e

import (
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const helloConfig = `apiVersion: v2
actions:
  - name: "Hello"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "Say hello"
        image: "alpine"
        cmd:
          - sh
        args:
          - -c
          - echo hello from $(KEPTN_PROJECT)
`

// TestSmokeHelloWorld: a matched test.triggered is answered with .started at once and ends
// with a succeeded/pass .finished carrying the task's output, in every way an event can come.
func TestSmokeHelloWorld(t *testing.T) {
	ns := namespace(t)
	api := keptnAPI(t, helloConfig)
	svc := startService(t, api, ns, nil)

	modes := []struct {
		name string
		send func(t *testing.T, ev cloudevents.Event) (startedType string)
	}{
		{"binary", func(t *testing.T, ev cloudevents.Event) string {
			r := sendBinary(t, svc.URL, ev)
			require.Less(t, r.Status, 300, string(r.Body))
			typ, kctx, tid := startedFrom(t, r)
			assert.Equal(t, ev.Extensions()["shkeptncontext"], kctx)
			assert.Equal(t, ev.ID(), tid)
			return typ
		}},
		{"structured", func(t *testing.T, ev cloudevents.Event) string {
			r := sendStructured(t, svc.URL, ev)
			require.Less(t, r.Status, 300, string(r.Body))
			typ, _, _ := startedFrom(t, r)
			return typ
		}},
		{"sdk", func(t *testing.T, ev cloudevents.Event) string {
			started, err := sendSDK(t, svc.URL, ev)
			require.NoError(t, err)
			require.NotNil(t, started, "no reply event")
			return started.Type()
		}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			ev := triggered(t, "sh.keptn.event.test.triggered", nil)
			assert.Equal(t, "sh.keptn.event.test.started", m.send(t, ev))

			fin := waitEvent(t, api, ev, "sh.keptn.event.test.finished", 2*time.Minute)
			assert.Equal(t, "succeeded", dataString(fin, "status"), string(fin.Raw))
			assert.Equal(t, "pass", dataString(fin, "result"), string(fin.Raw))
			assert.Contains(t, dataString(fin, "message"), "hello from sockshop")
			assert.Equal(t, ev.ID(), fin.Triggeredid)
			test, _ := fin.DataMap()["test"].(map[string]any)
			assert.NotEmpty(t, test["start"], "test.finished carries start/end")
			assert.NotEmpty(t, test["end"], "test.finished carries start/end")
		})
	}
}
