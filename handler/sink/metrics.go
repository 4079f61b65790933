package sink

import "github.com/prometheus/client_golang/prometheus"

// Metrics count deliveries. A nil *Metrics records nothing (tests).
type Metrics struct {
	outgoing *prometheus.CounterVec
	retries  *prometheus.CounterVec
}

// NewMetrics registers the delivery metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		outgoing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jes_outgoing_events_total", Help: "Outgoing events by type and delivery result.",
		}, []string{"type", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jes_outgoing_event_retries_total", Help: "Retried deliveries of outgoing events.",
		}, []string{"type"}),
	}
	reg.MustRegister(m.outgoing, m.retries)
	return m
}

func (m *Metrics) sent(eventType, result string) {
	if m != nil {
		m.outgoing.WithLabelValues(eventType, result).Inc()
	}
}

func (m *Metrics) retry(eventType string) {
	if m != nil {
		m.retries.WithLabelValues(eventType).Inc()
	}
}
