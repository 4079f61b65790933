// Package handler is the HTTP face of the service: the CloudEvents receiver, its token check,
// draining on shutdown, health, readiness and metrics, and the mapping of errors to HTTP
// answers (4xx/5xx with a JSON body). It hands every event to an Acceptor and must not know
// what happens to it next: that is handler/lifecycle.
package handler

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// Acceptor takes one decoded CloudEvent and returns the reply for the HTTP response (the
// .started event, or nil). Its errors say how to answer: keptn.ErrBadEvent (400),
// lifecycle.ErrTooLarge (413), lifecycle.ErrBusy (429), lifecycle.ErrUnavailable and
// lifecycle.ErrClusterUnavailable (503);
// anything else is a 500.
type Acceptor interface {
	Accept(ctx context.Context, e cloudevents.Event) (*cloudevents.Event, error)
}

// StatusReader answers the status of a Keptn context's events (lifecycle.Processor). Its errors:
// lifecycle.ErrNoStatus (404), lifecycle.ErrStatusUnavailable (503), anything else 500.
type StatusReader interface {
	Status(ctx context.Context, keptnContext, eventID string) (*lifecycle.Status, error)
}

// Defaults of the ServerOptions (and of RCV_PATH and MAX_REQUEST_BYTES). The largest body
// taken in is the largest event an event record can hold: a larger one could never be stored.
const (
	DefaultPath         = "/"
	DefaultMaxBodyBytes = records.MaxEventBytes
)

// ServerOptions configure the HTTP receiver.
type ServerOptions struct {
	// Path receives CloudEvents (RCV_PATH).
	Path string
	// MaxBodyBytes bounds a request body; larger bodies get 413.
	MaxBodyBytes int64
	// Gatherer serves /metrics when set.
	Gatherer prometheus.Gatherer
	// Ready reports whether dependencies (Kubernetes API) are usable, for /readyz.
	Ready func(ctx context.Context) error
	// Token, when set, must come with every event as "x-token: <token>" or
	// "Authorization: Bearer <token>" (RCV_TOKEN): for receivers reachable from outside a
	// pod or cluster. Health and metrics stay open.
	Token string
	// Status, when set, serves GET /v1/status/{shkeptncontext} on the receiver (never on the
	// monitoring listener: it shows task data), behind Token. cmd sets it only when Token is set
	// and event records are signed.
	Status StatusReader
	// Profiling serves Go's pprof profiles under /debug/pprof next to the metrics
	// (PPROF_ENABLED); off by default, as they show the service's internals to whoever can
	// reach the monitoring port.
	Profiling bool
}

// Server is the CloudEvents HTTP endpoint.
type Server struct {
	acceptor Acceptor
	log      *zap.Logger
	opts     ServerOptions
	draining atomic.Bool
}

// NewServer builds the receiver around a.
func NewServer(a Acceptor, log *zap.Logger, opts ServerOptions) *Server {
	if opts.Path == "" {
		opts.Path = DefaultPath
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return &Server{acceptor: a, log: log, opts: opts}
}

// Drain makes the receiver refuse new events (503) while in-flight work finishes.
func (s *Server) Drain() { s.draining.Store(true) }

// Router returns every route: the receiver and the monitoring routes.
func (s *Server) Router() http.Handler {
	r := s.monitoring()
	r.With(s.authorize).Post(s.opts.Path, s.receive)
	if s.opts.Status != nil {
		r.With(s.authorize).Get(StatusRoute, s.status)
	}
	return r
}

// MonitoringRouter returns /healthz, /readyz and /metrics only, for a listener that must
// never take events (MONITORING_PORT: probes and scraping when the receiver is on loopback).
func (s *Server) MonitoringRouter() http.Handler { return s.monitoring() }

func (s *Server) monitoring() chi.Router {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", s.readyz)
	if s.opts.Gatherer != nil {
		r.Handle("/metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	}
	if s.opts.Profiling {
		r.Mount("/debug", middleware.Profiler())
	}
	return r
}

func (s *Server) authorize(next http.Handler) http.Handler {
	if s.opts.Token == "" {
		return next
	}
	want := []byte(s.opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("x-token")
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			got = bearer
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong token (x-token or Authorization: Bearer)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeError(w, http.StatusServiceUnavailable, "draining", "the service is shutting down")
		return
	}
	if s.opts.Ready != nil {
		if err := s.opts.Ready(r.Context()); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// receive accepts binary- and structured-mode CloudEvents and answers with the .started event.
func (s *Server) receive(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "draining", "the service is shutting down; deliver again")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	e, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", "request body exceeds "+humanBytes(s.opts.MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "malformed_event", "not a CloudEvent: "+err.Error())
		return
	}
	reply, err := s.acceptor.Accept(r.Context(), *e)
	switch {
	case errors.Is(err, keptn.ErrBadEvent):
		writeError(w, http.StatusBadRequest, "invalid_event", err.Error())
		return
	case errors.Is(err, lifecycle.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
		return
	case errors.Is(err, lifecycle.ErrBusy):
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusTooManyRequests, "busy", err.Error())
		return
	case errors.Is(err, lifecycle.ErrUnavailable):
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "config_unavailable", err.Error())
		return
	case errors.Is(err, lifecycle.ErrClusterUnavailable):
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "cluster_unavailable", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	if reply == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if err := cehttp.WriteResponseWriter(r.Context(), binding.ToMessage(reply), http.StatusOK, w); err != nil {
		s.log.Warn("writing reply failed", zap.Error(err))
	}
}

// errorBody is the JSON body of every 4xx/5xx answer.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}
