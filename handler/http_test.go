package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
)

const sampleStructured = `{
  "type": "sh.keptn.event.test.triggered",
  "specversion": "1.0",
  "source": "test-events",
  "id": "f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b",
  "time": "2019-06-07T07:02:15.64489Z",
  "datacontenttype": "application/json",
  "shkeptncontext": "08735340-6f9e-4b32-97ff-3b6c292bc50i",
  "data": {"project": "sockshop", "stage": "dev", "service": "carts", "test": {"teststrategy": "locust"}}
}`

// newProcessor is the real lifecycle behind the receiver, with config, Jobs and Keptn faked.
func newProcessor(m *lifecycle.Metrics) *lifecycle.Processor {
	return lifecycle.New(context.Background(), lifecycle.Deps{
		Loader: lct.Loader{YAML: lct.HelloConfig}, Runner: &lct.Runner{}, Sender: &lct.Recorder{}, Metrics: m,
	}, lifecycle.Options{})
}

func newTestServer(t *testing.T, opts ServerOptions) *httptest.Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	p := newProcessor(lifecycle.NewMetrics(reg))
	opts.Gatherer = reg
	srv := httptest.NewServer(NewServer(p, zap.NewNop(), opts).Router())
	t.Cleanup(func() { srv.Close(); p.Wait() })
	return srv
}

func TestReceive(t *testing.T) {
	binaryHeaders := map[string]string{
		"Content-Type": "application/json", "Ce-Specversion": "1.0", "Ce-Type": "sh.keptn.event.test.triggered",
		"Ce-Source": "curl", "Ce-Id": "bin-1", "Ce-Shkeptncontext": "ctx-1",
	}
	tests := []struct {
		name      string
		headers   map[string]string
		body      string
		status    int
		errorCode string
		wantType  string
	}{
		{name: "structured mode", headers: map[string]string{"Content-Type": "application/cloudevents+json"}, body: sampleStructured,
			status: 200, wantType: "sh.keptn.event.test.started"},
		{name: "binary mode", headers: binaryHeaders, body: `{"project":"sockshop","stage":"dev","service":"carts"}`,
			status: 200, wantType: "sh.keptn.event.test.started"},
		{name: "event nobody handles", headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			body: strings.NewReplacer("test.triggered", "test.finished", "f2b878d3", "other-id").Replace(sampleStructured), status: 202},
		{name: "truncated JSON", headers: map[string]string{"Content-Type": "application/cloudevents+json"}, body: sampleStructured[:40],
			status: 400, errorCode: "malformed_event"},
		{name: "not a CloudEvent", headers: map[string]string{"Content-Type": "text/plain"}, body: "hello", status: 400, errorCode: "malformed_event"},
		{name: "missing required attribute", headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			body: strings.Replace(sampleStructured, `"id": "f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b",`, "", 1), status: 400},
		{name: "missing service", headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			body: strings.Replace(sampleStructured, `"service": "carts"`, `"service": ""`, 1), status: 400, errorCode: "invalid_event"},
		{name: "too large", headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			body: `{"specversion":"1.0","data":"` + strings.Repeat("a", 2048) + `"}`, status: 413, errorCode: "too_large"},
	}
	srv := newTestServer(t, ServerOptions{MaxBodyBytes: 1024})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader(tc.body))
			require.NoError(t, err)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			require.Equal(t, tc.status, res.StatusCode)
			if tc.status >= 400 {
				assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
				var body errorBody
				require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
				assert.NotEmpty(t, body.Message)
				if tc.errorCode != "" {
					assert.Equal(t, tc.errorCode, body.Error)
				}
			}
			if tc.wantType != "" {
				// The reply is the .started event in binary mode.
				assert.Equal(t, tc.wantType, res.Header.Get("Ce-Type"))
				assert.Equal(t, keptn.Source, res.Header.Get("Ce-Source"))
				var data map[string]any
				require.NoError(t, json.NewDecoder(res.Body).Decode(&data))
				assert.Equal(t, "succeeded", data["status"])
			}
		})
	}
}

func TestHealthAndMetrics(t *testing.T) {
	notReady := errors.New("kubernetes API unreachable")
	ready := error(nil)
	srv := newTestServer(t, ServerOptions{Ready: func(context.Context) error { return ready }})
	get := func(path string) (int, string) {
		res, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b)
	}
	code, _ := get("/healthz")
	assert.Equal(t, 200, code)
	code, _ = get("/readyz")
	assert.Equal(t, 200, code)
	ready = notReady
	code, body := get("/readyz")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "kubernetes API unreachable")
	code, body = get("/metrics")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, "jes_events_in_flight")
}

// The monitoring listener answers probes and scrapes but never takes an event, so binding the
// receiver to loopback (RCV_HOST) leaves no way in from the network.
func TestMonitoringRouterTakesNoEvents(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := newProcessor(lifecycle.NewMetrics(reg))
	srv := httptest.NewServer(NewServer(p, zap.NewNop(), ServerOptions{Gatherer: reg}).MonitoringRouter())
	t.Cleanup(func() { srv.Close(); p.Wait() })
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		res, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, 200, res.StatusCode, path)
	}
	res, err := http.Post(srv.URL+"/", "application/cloudevents+json", strings.NewReader(sampleStructured))
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, http.StatusNotFound, res.StatusCode, "an event on the monitoring port")
	assert.Empty(t, res.Header.Get("Ce-Type"), "no .started: nothing was accepted")
}

// Profiles only when asked for: they show the service's internals.
func TestMonitoringProfiling(t *testing.T) {
	for _, on := range []bool{false, true} {
		p := newProcessor(nil)
		srv := httptest.NewServer(NewServer(p, zap.NewNop(), ServerOptions{Profiling: on}).MonitoringRouter())
		res, err := http.Get(srv.URL + "/debug/pprof/heap?debug=1")
		require.NoError(t, err)
		res.Body.Close()
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		assert.Equal(t, want, res.StatusCode, "profiling %v", on)
		srv.Close()
		p.Wait()
	}
}

func TestReceiverToken(t *testing.T) {
	srv := newTestServer(t, ServerOptions{Token: "s3cret"})
	tests := []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"no token", nil, 401},
		{"wrong token", map[string]string{"x-token": "nope"}, 401},
		{"x-token", map[string]string{"x-token": "s3cret"}, 200},
		{"bearer", map[string]string{"Authorization": "Bearer s3cret"}, 200},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Replace(sampleStructured, "f2b878d3", fmt.Sprint("tok-", i), 1)
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader(body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/cloudevents+json")
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			assert.Equal(t, tc.status, res.StatusCode)
		})
	}
	res, err := http.Get(srv.URL + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 200, res.StatusCode, "health stays open")
}

// acceptorFunc lets a test script the lifecycle's answer.
type acceptorFunc func(context.Context, cloudevents.Event) (*cloudevents.Event, error)

func (f acceptorFunc) Accept(ctx context.Context, e cloudevents.Event) (*cloudevents.Event, error) {
	return f(ctx, e)
}

// TestErrorMapping: each error of the Acceptor contract becomes its HTTP answer with a JSON
// body, and the retryable ones say when to come back.
func TestErrorMapping(t *testing.T) {
	tests := []struct {
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{fmt.Errorf("%w: data.stage missing", keptn.ErrBadEvent), 400, "invalid_event", false},
		{fmt.Errorf("%w: a ConfigMap holds at most 1048576 bytes", lifecycle.ErrTooLarge), 413, "too_large", false},
		{lifecycle.ErrBusy, 429, "busy", true},
		{fmt.Errorf("%w: HTTP 502", lifecycle.ErrUnavailable), 503, "config_unavailable", true},
		{fmt.Errorf("%w: storing event record: connection refused", lifecycle.ErrClusterUnavailable), 503, "cluster_unavailable", true},
		{errors.New("unexpected"), 500, "internal", false},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			a := acceptorFunc(func(context.Context, cloudevents.Event) (*cloudevents.Event, error) { return nil, tc.err })
			srv := httptest.NewServer(NewServer(a, zap.NewNop(), ServerOptions{}).Router())
			defer srv.Close()
			res, err := http.Post(srv.URL, "application/cloudevents+json", strings.NewReader(sampleStructured))
			require.NoError(t, err)
			defer res.Body.Close()
			assert.Equal(t, tc.status, res.StatusCode)
			var body errorBody
			require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
			assert.Equal(t, tc.code, body.Error)
			assert.Contains(t, body.Message, tc.err.Error())
			assert.Equal(t, tc.retryAfter, res.Header.Get("Retry-After") != "")
		})
	}
}
