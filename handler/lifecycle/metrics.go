package lifecycle

import "github.com/prometheus/client_golang/prometheus"

// Metrics count events, actions and tasks. A nil *Metrics records nothing (tests).
type Metrics struct {
	received  *prometheus.CounterVec
	actions   *prometheus.CounterVec
	inFlight  prometheus.Gauge
	taskTimes *prometheus.HistogramVec
	rejected  prometheus.Counter
}

// NewMetrics registers the lifecycle metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jes_events_received_total", Help: "Incoming CloudEvents by outcome (matched, ignored, duplicate, rejected, busy, too_large, config_error, config_pending).",
		}, []string{"outcome"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jes_actions_total", Help: "Finished actions by result.",
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jes_events_in_flight", Help: "Accepted events whose actions have not finished.",
		}),
		taskTimes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jes_task_duration_seconds", Help: "Task (Job) run time.", Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}, []string{"result"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jes_event_records_rejected_total",
			Help: "Unfinished event records recovery refused to resume because their signature does not verify (each record version once per process).",
		}),
	}
	reg.MustRegister(m.received, m.actions, m.inFlight, m.taskTimes, m.rejected)
	return m
}

func (m *Metrics) event(outcome string) {
	if m != nil {
		m.received.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) action(ok bool) {
	if m != nil {
		m.actions.WithLabelValues(resultLabel(ok)).Inc()
	}
}

func (m *Metrics) task(ok bool, seconds float64) {
	if m != nil {
		m.taskTimes.WithLabelValues(resultLabel(ok)).Observe(seconds)
	}
}

func (m *Metrics) recordRejected() {
	if m != nil {
		m.rejected.Inc()
	}
}

func (m *Metrics) inflight(delta float64) {
	if m != nil {
		m.inFlight.Add(delta)
	}
}

func resultLabel(ok bool) string {
	if ok {
		return "pass"
	}
	return "fail"
}
