package keptnapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keptn/go-utils/pkg/api/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func call(t *testing.T, ts *httptest.Server, method, path, body string) (int, []byte) {
	t.Helper()
	return send(t, ts, method, path, body, nil)
}

func registration(pod string) string {
	b, _ := json.Marshal(models.Integration{
		Name: "job-executor-service",
		MetaData: models.MetaData{Hostname: "node-1", KubernetesMetaData: models.KubernetesMetaData{
			Namespace: "keptn", PodName: pod, DeploymentName: "job-executor-service"}},
		Subscriptions: []models.EventSubscription{{Event: "sh.keptn.event.test.triggered"}},
	})
	return string(b)
}

// TestRegistration: as shipyard-controller's Register and KeepAlive: a new integration gets
// 201 and the hash of name, namespace and node; a second replica 200 and the same id; the
// heartbeat answers the subscriptions with ids.
func TestRegistration(t *testing.T) {
	s, ts := newTestServer(t)
	const reg = "/controlPlane/v1/uniform/registration"
	status, body := call(t, ts, http.MethodPost, reg, registration("pod-a"))
	require.Equal(t, http.StatusCreated, status, string(body))
	var r models.RegisterIntegrationResponse
	require.NoError(t, json.Unmarshal(body, &r))
	want, err := models.IntegrationID{Name: "job-executor-service", Namespace: "keptn", NodeName: "node-1"}.Hash()
	require.NoError(t, err)
	assert.Equal(t, want, r.ID)

	status, body = call(t, ts, http.MethodPost, reg, registration("pod-b"))
	require.Equal(t, http.StatusOK, status, string(body))
	var r2 models.RegisterIntegrationResponse
	require.NoError(t, json.Unmarshal(body, &r2))
	assert.Equal(t, r.ID, r2.ID, "replicas share one registration")

	status, body = call(t, ts, http.MethodPut, reg+"/"+r.ID+"/ping", "")
	require.Equal(t, http.StatusOK, status, string(body))
	var in models.Integration
	require.NoError(t, json.Unmarshal(body, &in))
	require.Len(t, in.Subscriptions, 1)
	assert.Equal(t, "sh.keptn.event.test.triggered", in.Subscriptions[0].Event)
	assert.NotEmpty(t, in.Subscriptions[0].ID)
	regs := s.Registrations()
	require.Len(t, regs, 1)
	assert.Equal(t, 1, regs[0].Pings)

	status, _ = call(t, ts, http.MethodPut, reg+"/unknown/ping", "")
	assert.Equal(t, http.StatusNotFound, status)
	status, _ = call(t, ts, http.MethodPost, reg, `{"name":"x","subscriptions":[{"event":""}]}`)
	assert.Equal(t, http.StatusBadRequest, status)
	status, _ = call(t, ts, http.MethodPost, reg, `{`)
	assert.Equal(t, http.StatusBadRequest, status)
}

// TestOpenTriggered: a published .triggered event is listed to pollers of its type (and
// project filter) until its .finished arrives.
func TestOpenTriggered(t *testing.T) {
	s, ts := newTestServer(t)
	typ := "sh.keptn.event.test.triggered"
	s.Publish(models.KeptnContextExtendedCE{ID: "t1", Type: &typ, Data: map[string]any{"project": "sockshop", "stage": "dev", "service": "carts"}})
	list := func(query string) []string {
		status, body := call(t, ts, http.MethodGet, "/controlPlane/v1/event/triggered/"+typ+query, "")
		require.Equal(t, http.StatusOK, status, string(body))
		var evs models.Events
		require.NoError(t, json.Unmarshal(body, &evs))
		var ids []string
		for _, e := range evs.Events {
			ids = append(ids, e.ID)
		}
		return ids
	}
	assert.Equal(t, []string{"t1"}, list(""))
	assert.Equal(t, []string{"t1"}, list("?project=sockshop&stage=dev"))
	assert.Empty(t, list("?project=other"))

	status, body := post(t, ts, token, "application/cloudevents+json",
		`{"specversion":"1.0","id":"s1","source":"jes","type":"sh.keptn.event.test.started","triggeredid":"t1","shkeptncontext":"c","data":{}}`, nil)
	require.Equal(t, http.StatusOK, status, body)
	assert.Equal(t, []string{"t1"}, list(""), ".started leaves it open")
	status, body = post(t, ts, token, "application/cloudevents+json",
		`{"specversion":"1.0","id":"f1","source":"jes","type":"sh.keptn.event.test.finished","triggeredid":"t1","shkeptncontext":"c","data":{}}`, nil)
	require.Equal(t, http.StatusOK, status, body)
	assert.Empty(t, list(""), ".finished closes it")
}

// TestInClusterHandlers: the in-cluster Services serve at their root; a resource URI escaped
// twice (the distributor's remote proxy) or once (in-cluster) reads the same file.
func TestInClusterHandlers(t *testing.T) {
	s, _ := newTestServer(t)
	rs := httptest.NewServer(s.ResourceService())
	t.Cleanup(rs.Close)
	for _, p := range []string{"job%2Fconfig.yaml", "job%252Fconfig.yaml"} {
		req, err := http.NewRequest(http.MethodGet, rs.URL+"/v1/project/sockshop/stage/dev/service/carts/resource/"+p, nil)
		require.NoError(t, err)
		req.Header.Set("x-token", token)
		resp, err := rs.Client().Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", p, b)
		assert.Contains(t, string(b), `"resourceURI":"/job/config.yaml"`, p)
	}
	sc := httptest.NewServer(s.ShipyardController())
	t.Cleanup(sc.Close)
	req, err := http.NewRequest(http.MethodPost, sc.URL+"/v1/uniform/registration", strings.NewReader(registration("pod-a")))
	require.NoError(t, err)
	req.Header.Set("x-token", token)
	resp, err := sc.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
}
