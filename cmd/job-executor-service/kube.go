package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/metrics"

	"github.com/keptn-contrib/job-executor-service/handler/keptn"
)

// Defaults of KUBE_API_QPS and KUBE_API_BURST. client-go's own (5 and 10) made every task
// wait behind the limiter — the original's weakness. An event costs about five requests
// (BENCHMARKS.md); at 100/200 a burst of 300 events waited for the limiter (accepted at 0.1 x
// the API server's own write rate), so these let one replica take hundreds of events at once.
// The API server's priority and fairness still protects it from any one client.
const (
	DefaultKubeQPS   = 500
	DefaultKubeBurst = 1000
)

// throttleLogEvery is how often at most a throttled request is logged.
const throttleLogEvery = time.Minute

// kubeClients use KUBECONFIG (or ~/.kube/config) when present, the in-cluster config
// otherwise: the typed client, and the metadata client that lists event records without their
// data. Both are limited to KUBE_API_QPS/KUBE_API_BURST; time spent waiting for the limiter is
// in jes_kube_client_throttled_seconds, and every request they send is counted in
// jes_kube_api_requests_total.
func kubeClients(e *env, m *serviceMetrics) (kubernetes.Interface, metadata.Interface, error) {
	cfg, err := restConfig(e)
	if err != nil {
		return nil, nil, err
	}
	registerClientMetrics(m.throttle, m.latency)
	cfg.Wrap(m.requests.wrap)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	return kube, meta, nil
}

func restConfig(e *env) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes config (in-cluster or KUBECONFIG): %w", err)
	}
	cfg.UserAgent = keptn.Source
	cfg.QPS, cfg.Burst = float32(e.KubeQPS), e.KubeBurst
	return cfg, nil
}

// registerClientMetrics hands the observers to client-go, which accepts one registration per
// process.
func registerClientMetrics(o *throttleObserver, l *requestLatency) {
	metrics.Register(metrics.RegisterOpts{RateLimiterLatency: o, RequestLatency: l})
}

// requestLatency is how long requests took, by verb: with the request counts,
// what tells a slow API server from a slow service (make bench reports it next to its baseline).
type requestLatency struct{ seconds *prometheus.HistogramVec }

func newRequestLatency(reg prometheus.Registerer) *requestLatency {
	l := &requestLatency{seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "jes_kube_api_request_duration_seconds",
		Help:    "Time the service's Kubernetes API requests took, by HTTP method (including any wait for the client's rate limiter, which jes_kube_client_throttled_seconds shows apart).",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30},
	}, []string{"verb"})}
	reg.MustRegister(l.seconds)
	return l
}

// Observe implements metrics.LatencyMetric.
func (l *requestLatency) Observe(_ context.Context, verb string, _ url.URL, latency time.Duration) {
	l.seconds.WithLabelValues(verb).Observe(latency.Seconds())
}

// throttleObserver receives client-go's rate limiter waits: a histogram of them, and a
// warning (at most once a minute) when a request waited, so that a limit set too low shows.
type throttleObserver struct {
	log  *zap.Logger
	wait *prometheus.HistogramVec

	mu        sync.Mutex
	lastLog   time.Time
	sinceLast int
}

func newThrottleObserver(log *zap.Logger, reg prometheus.Registerer) *throttleObserver {
	o := &throttleObserver{log: log, wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "jes_kube_client_throttled_seconds",
		Help:    "Time Kubernetes API requests waited for the client's rate limiter (KUBE_API_QPS, KUBE_API_BURST), by verb.",
		Buckets: []float64{0.001, 0.01, 0.1, 0.5, 1, 5, 30},
	}, []string{"verb"})}
	reg.MustRegister(o.wait)
	return o
}

// Observe implements metrics.LatencyMetric.
func (o *throttleObserver) Observe(_ context.Context, verb string, u url.URL, latency time.Duration) {
	o.wait.WithLabelValues(verb).Observe(latency.Seconds())
	// client-go measures every request; a few milliseconds are the limiter's own cost.
	if latency < 10*time.Millisecond {
		return
	}
	o.mu.Lock()
	o.sinceLast++
	if time.Since(o.lastLog) < throttleLogEvery {
		o.mu.Unlock()
		return
	}
	n := o.sinceLast
	o.lastLog, o.sinceLast = time.Now(), 0
	o.mu.Unlock()
	o.log.Warn("Kubernetes API requests waited for the client rate limiter; raise KUBE_API_QPS/KUBE_API_BURST if this persists",
		zap.Duration("wait", latency), zap.String("verb", verb), zap.String("path", u.Path), zap.Int("throttledSinceLastWarning", n))
}

// requestCounter counts the requests the clients send by verb and resource, the figure that
// tells what a task costs the API server (make bench reads it).
type requestCounter struct{ total *prometheus.CounterVec }

func newRequestCounter(reg prometheus.Registerer) *requestCounter {
	c := &requestCounter{total: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jes_kube_api_requests_total",
		Help: "Requests sent to the Kubernetes API server, by verb (get, list, watch, create, update, patch, delete) and resource (with subresource, e.g. pods/log).",
	}, []string{"verb", "resource"})}
	reg.MustRegister(c.total)
	return c
}

func (c *requestCounter) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		c.total.WithLabelValues(requestKind(req)).Inc()
		return next.RoundTrip(req)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// requestKind names a request to the API server the way its audit log does: verb and
// resource[/subresource], from the REST path (/api/v1/namespaces/ns/pods/name/log,
// /apis/batch/v1/namespaces/ns/jobs?watch=true). Paths outside the resource API (discovery,
// /version) are "other".
func requestKind(req *http.Request) (verb, resource string) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return strings.ToLower(req.Method), "other"
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:] // a namespaced resource; "namespaces/x" alone is the namespace itself
	}
	resource = parts[0]
	named := len(parts) >= 2
	if len(parts) >= 3 {
		resource += "/" + parts[2]
	}
	switch req.Method {
	case http.MethodGet:
		switch {
		case req.URL.Query().Get("watch") == "true" || req.URL.Query().Get("watch") == "1":
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
		if !named {
			verb = "deletecollection"
		}
	default:
		verb = strings.ToLower(req.Method)
	}
	return verb, resource
}
