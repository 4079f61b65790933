package sink

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/config"
)

var fastRetry = Retry{Initial: time.Millisecond, Max: 5 * time.Millisecond, MaxElapsed: 2 * time.Second}

func testEvent() cloudevents.Event {
	e := cloudevents.NewEvent()
	e.SetID("1")
	e.SetSource("job-executor-service")
	e.SetType("sh.keptn.event.test.finished")
	_ = e.SetData(cloudevents.ApplicationJSON, map[string]string{"project": "p"})
	return e
}

// withToken stands in for the authenticated Keptn transport: every attempt must go through it.
type withToken struct{ token string }

func (w withToken) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("x-token", w.token)
	return http.DefaultTransport.RoundTrip(r)
}

func TestHTTPRetries(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int // answers in order; the last repeats
		wantErr   bool
		wantCalls int32
	}{
		{"first try", []int{200}, false, 1},
		{"server errors then success", []int{503, 500, 502, 202}, false, 4},
		{"rate limited then success", []int{429, 200}, false, 2},
		{"client error is final", []int{400}, true, 1},
		{"unauthorized is final", []int{401}, true, 1},
		{"gives up after the retry budget", []int{503}, true, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1)) - 1
				assert.Equal(t, "application/cloudevents+json", r.Header.Get("Content-Type"), "structured mode")
				assert.Equal(t, "tok", r.Header.Get("x-token"))
				w.WriteHeader(tc.statuses[min(n, len(tc.statuses)-1)])
			}))
			defer srv.Close()
			retry := fastRetry
			if tc.wantCalls < 0 {
				// Long enough for several attempts even on a loaded machine (each waits <= 5 ms).
				retry.MaxElapsed = 500 * time.Millisecond
			}
			s, err := NewHTTP(srv.URL, HTTPOptions{Transport: withToken{"tok"}, Retry: retry})
			require.NoError(t, err)
			err = s.Send(context.Background(), testEvent())
			if tc.wantErr {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}
			if tc.wantCalls > 0 {
				assert.Equal(t, tc.wantCalls, calls.Load())
			} else {
				assert.Greater(t, calls.Load(), int32(2))
			}
		})
	}
}

func TestHTTPVerifiesTLS(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(200)
	}))
	defer srv.Close()
	strict, err := NewHTTP(srv.URL, HTTPOptions{Retry: Retry{Initial: time.Millisecond, Max: time.Millisecond, MaxElapsed: 10 * time.Millisecond}})
	require.NoError(t, err)
	err = strict.Send(context.Background(), testEvent())
	require.Error(t, err, "a self-signed certificate is rejected by default")
	assert.Contains(t, err.Error(), "certificate")
	assert.Zero(t, calls.Load())

	// HTTP_SSL_VERIFY=false reaches the sender as its transport (built in main), nowhere else.
	insecure := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the test's point
	lax, err := NewHTTP(srv.URL, HTTPOptions{Transport: insecure})
	require.NoError(t, err)
	require.NoError(t, lax.Send(context.Background(), testEvent()))
	assert.Equal(t, int32(1), calls.Load())

	// The opt-in is the sender's own: the process-wide default transport still verifies.
	_, err = http.Get(srv.URL)
	require.Error(t, err)
}

func TestHTTPStopsOnContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer srv.Close()
	s, err := NewHTTP(srv.URL, HTTPOptions{Retry: Retry{Initial: time.Hour, Max: time.Hour, MaxElapsed: 10 * time.Hour}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Send(ctx, testEvent()) }()
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("Send did not return after cancel")
	}
}

// TestHTTPStalledEndpoint: a request that hangs past the timeout is retried, not waited
// on forever.
func TestHTTPStalledEndpoint(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select { // stall the first attempt until the client gives up on it
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.WriteHeader(200)
	}))
	defer srv.Close()
	defer close(release)
	s, err := NewHTTP(srv.URL, HTTPOptions{Timeout: 100 * time.Millisecond, Retry: fastRetry})
	require.NoError(t, err)
	require.NoError(t, s.Send(context.Background(), testEvent()))
	assert.Equal(t, int32(2), calls.Load())
}

// TestHTTPKeepsTokenOnKeptnHost: an event sent with the Keptn transport is not delivered,
// token and all, to another host that the Keptn API redirects to.
func TestHTTPKeepsTokenOnKeptnHost(t *testing.T) {
	var sawToken, otherCalls atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherCalls.Add(1)
		if r.Header.Get("x-token") != "" {
			sawToken.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer other.Close()
	keptn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer keptn.Close()
	tr, err := config.NewKeptnTransport(config.WithToken("tok"))
	require.NoError(t, err)
	retry := fastRetry
	retry.MaxElapsed = 30 * time.Millisecond
	s, err := NewHTTP(keptn.URL+"/v1/event", HTTPOptions{Transport: tr, Retry: retry})
	require.NoError(t, err)
	err = s.Send(context.Background(), testEvent())
	if assert.Error(t, err) {
		assert.Contains(t, err.Error(), "refusing redirect")
	}
	assert.Zero(t, sawToken.Load(), "the other host saw the Keptn token")
	assert.Zero(t, otherCalls.Load())
}

// TestMetricsLabelledByKind: a wildcard action ("sh.keptn.event.*.triggered") answers every
// task type with its own .started and .finished; the delivery metrics must not grow a series
// per type, only one per kind (started, finished, error).
func TestMetricsLabelledByKind(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1)%2 == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // every event is retried once
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	s, err := NewHTTP(srv.URL, HTTPOptions{Retry: fastRetry, Metrics: NewMetrics(reg)})
	require.NoError(t, err)
	var types []string
	for i := range 20 {
		task := fmt.Sprintf("task%d", i)
		types = append(types, "sh.keptn.event."+task+".started", "sh.keptn.event."+task+".finished")
	}
	types = append(types, "sh.keptn.log.error")
	for _, typ := range types {
		e := testEvent()
		e.SetType(typ)
		require.NoError(t, s.Send(context.Background(), e))
	}

	families, err := reg.Gather()
	require.NoError(t, err)
	kinds := map[string]map[string]float64{} // metric -> kind -> count
	for _, mf := range families {
		kinds[mf.GetName()] = map[string]float64{}
		assert.LessOrEqual(t, len(mf.GetMetric()), 3, "%s: one series per kind (all deliveries succeeded)", mf.GetName())
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			assert.NotContains(t, labels, "type", mf.GetName())
			kinds[mf.GetName()][labels["kind"]] += m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"started": 20, "finished": 20, "error": 1}
	assert.Equal(t, want, kinds["jes_outgoing_events_total"])
	assert.Equal(t, want, kinds["jes_outgoing_event_retries_total"])
}
