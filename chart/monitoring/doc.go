// Package monitoring holds no code: its test checks the Grafana dashboard (dashboard.json) and
// the Prometheus alert rules (rules.yaml) next to it against the metrics the service exports
// (testdata/metrics.txt, which cmd/job-executor-service's TestMetricsCatalog writes from the
// service's own registration code). It is a module of its own so that Prometheus's PromQL
// parser and rule loader, and what they require, stay out of the service's go.mod.
package monitoring
