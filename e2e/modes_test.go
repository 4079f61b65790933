//go:build e2e

package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
)

// TestDeploymentModes runs the service with the environment each deployment mode gives it
// (README "Deployment modes") against a stand-in that plays the distributor's local proxy
// or the Knative broker: no token, resources at CONFIGURATION_SERVICE.
func TestDeploymentModes(t *testing.T) {
	t.Parallel()
	const cfg = `apiVersion: v2
actions:
  - name: "Mode"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks: [{name: "t", image: "alpine", cmd: [sh, -c, "echo mode-ok"]}]
`
	cases := []struct {
		name string
		env  func(url string) map[string]string
		// .started goes through the sender too, or only in the HTTP reply (Knative)
		wantAtSink []string
	}{
		{"distributor sidecar", func(url string) map[string]string {
			return map[string]string{"CONFIGURATION_SERVICE": url + "/resource-service", "EVENTBROKER": url + "/v1/event"}
		}, []string{"sh.keptn.event.test.started", "sh.keptn.event.test.finished"}},
		{"knative", func(url string) map[string]string {
			return map[string]string{"CONFIGURATION_SERVICE": url + "/resource-service", "K_SINK": url + "/v1/event"}
		}, []string{"sh.keptn.event.test.finished"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := namespace(t)
			api := keptnapi.New(keptnapi.Options{}) // the local proxy needs no token
			svc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}
			api.Put(keptnapi.Latest, svc, "job/config.yaml", []byte(cfg))
			url, err := api.Start("127.0.0.1:0")
			require.NoError(t, err)
			t.Cleanup(func() { _ = api.Close() })
			extra := tc.env(url)
			extra["KEPTN_API_ENDPOINT"], extra["KEPTN_API_TOKEN"] = "", "" // not set in these modes
			s := startService(t, api, ns, extra)

			ev := triggered(t, "sh.keptn.event.test.triggered", nil)
			r := sendBinary(t, s.URL, ev)
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			typ, _, triggeredID := startedFrom(t, r)
			assert.Equal(t, "sh.keptn.event.test.started", typ, "the reply carries .started in every mode")
			assert.Equal(t, ev.ID(), triggeredID)
			fin := waitEvent(t, api, ev, "sh.keptn.event.test.finished", 2*time.Minute)
			assert.Equal(t, "succeeded", dataString(fin, "status"))
			assert.Contains(t, dataString(fin, "message"), "mode-ok")
			time.Sleep(relQuiet)
			var types []string
			for _, e := range api.Events() {
				types = append(types, e.TypeName())
			}
			assert.Equal(t, tc.wantAtSink, types)
		})
	}
}
