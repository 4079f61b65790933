package sink

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count deliveries. A nil *Metrics records nothing (tests).
type Metrics struct {
	outgoing *prometheus.CounterVec
	retries  *prometheus.CounterVec
}

// NewMetrics registers the delivery metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		outgoing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jes_outgoing_events_total", Help: "Outgoing events by kind (started, finished, error) and delivery result.",
		}, []string{"kind", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jes_outgoing_event_retries_total", Help: "Retried deliveries of outgoing events by kind (started, finished, error).",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.outgoing, m.retries)
	return m
}

func (m *Metrics) sent(eventType, result string) {
	if m != nil {
		m.outgoing.WithLabelValues(kind(eventType), result).Inc()
	}
}

func (m *Metrics) retry(eventType string) {
	if m != nil {
		m.retries.WithLabelValues(kind(eventType)).Inc()
	}
}

// kind is the metric label of an outgoing event type. Labelling by the type itself would
// grow a series per task type that a wildcard action answers; the kinds are a fixed set.
// sh.keptn.log.error is the only event this service sends that is neither .started nor
// .finished.
func kind(eventType string) string {
	switch {
	case strings.HasSuffix(eventType, ".started"):
		return "started"
	case strings.HasSuffix(eventType, ".finished"):
		return "finished"
	}
	return "error"
}
