package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// metricsCatalog is every metric the service exports, one "name type label,label" a line,
// read by chart/monitoring's test: the dashboard and the alerts may name nothing else.
const metricsCatalog = "../../chart/monitoring/testdata/metrics.txt"

// recordingRegisterer remembers the collectors registered through it.
type recordingRegisterer struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registerer.Register(c)
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// A Desc shows its name and labels only in its String().
var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

// metric is one exported metric: its type and label names.
type metric struct {
	typ    string
	labels []string
}

// exportedMetrics registers the service's metrics as serve does and names them with their
// types: from what the registry gathers (the runtime and process collectors), and from the
// descriptions of the vectors that gather nothing until a label value is used.
func exportedMetrics(t *testing.T) map[string]metric {
	reg := prometheus.NewRegistry()
	rec := &recordingRegisterer{Registerer: reg}
	newServiceMetrics(rec, zap.NewNop())
	out := map[string]metric{}
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range families {
		m := metric{typ: strings.ToLower(mf.GetType().String())}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if !slices.Contains(m.labels, l.GetName()) {
					m.labels = append(m.labels, l.GetName())
				}
			}
		}
		slices.Sort(m.labels)
		out[mf.GetName()] = m
	}
	for _, c := range rec.collectors {
		typ := "untyped"
		switch c.(type) {
		case *prometheus.CounterVec, prometheus.Counter:
			typ = strings.ToLower(dto.MetricType_COUNTER.String())
		case *prometheus.GaugeVec, prometheus.Gauge:
			typ = strings.ToLower(dto.MetricType_GAUGE.String())
		case *prometheus.HistogramVec, prometheus.Histogram:
			typ = strings.ToLower(dto.MetricType_HISTOGRAM.String())
		case *prometheus.SummaryVec, prometheus.Summary:
			typ = strings.ToLower(dto.MetricType_SUMMARY.String())
		}
		descs := make(chan *prometheus.Desc, 256)
		go func() { c.Describe(descs); close(descs) }()
		for d := range descs {
			name := descName.FindStringSubmatch(d.String())
			require.NotNil(t, name, "description without a name: %s", d)
			if _, gathered := out[name[1]]; gathered {
				continue
			}
			require.NotEqual(t, "untyped", typ, "%s: a collector of an unknown kind; add it to exportedMetrics", name[1])
			m := metric{typ: typ}
			if l := descLabels.FindStringSubmatch(d.String()); l != nil && l[1] != "" {
				m.labels = strings.Split(l[1], ",")
				slices.Sort(m.labels)
			}
			out[name[1]] = m
		}
	}
	return out
}

// TestMetricsCatalog: chart/monitoring/testdata/metrics.txt is what the service registers
// (go test ./cmd/job-executor-service -run TestMetricsCatalog -update rewrites it).
func TestMetricsCatalog(t *testing.T) {
	metrics := exportedMetrics(t)
	for _, name := range []string{"jes_events_received_total", "jes_task_duration_seconds", "jes_outgoing_event_retries_total", "jes_kube_api_requests_total", "process_resident_memory_bytes"} {
		assert.Contains(t, metrics, name)
	}
	assert.Equal(t, metric{"histogram", []string{"result"}}, metrics["jes_task_duration_seconds"])
	assert.Equal(t, metric{"counter", []string{"kind", "result"}}, metrics["jes_outgoing_events_total"])
	var lines []string
	for name, m := range metrics {
		lines = append(lines, strings.TrimSpace(name+" "+m.typ+" "+strings.Join(m.labels, ",")))
	}
	slices.Sort(lines)
	want := strings.Join(lines, "\n") + "\n"
	if *update {
		require.NoError(t, os.WriteFile(metricsCatalog, []byte(want), 0o644))
	}
	got, err := os.ReadFile(metricsCatalog)
	require.NoError(t, err)
	assert.Equal(t, want, string(got), "the service's metrics changed: go test ./cmd/job-executor-service -run TestMetricsCatalog -update")
}
