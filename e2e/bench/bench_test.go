package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPercentileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	assert.Equal(t, 50*time.Millisecond, pct(d, 50))
	assert.Equal(t, 99*time.Millisecond, pct(d, 99))
	assert.Equal(t, 100*time.Millisecond, pct(d, 100))
	assert.Equal(t, 1*time.Millisecond, pct(d, 0.1))
	assert.Equal(t, 7*time.Millisecond, pct([]time.Duration{7 * time.Millisecond}, 99))
	assert.Zero(t, pct(nil, 50))
	assert.Equal(t, 100*time.Millisecond, d[0], "the caller's order is kept")
}

// Watches, the lists informers start them with, and the maintenance (lease, record scan) are
// not per task: they are listed but not counted. Another list without its watch is counted.
func TestRequestsPerTask(t *testing.T) {
	before := map[string]float64{"create jobs": 5, "watch pods": 1}
	after := map[string]float64{"create jobs": 15, "get pods/log": 10, "watch pods": 2, "list pods": 1, "list jobs": 2,
		"update leases": 6, "create configmaps": 10, "list configmaps": 1}
	perTask, leases, lines := requestsPerTask(before, after, 10)
	assert.InDelta(t, 3.2, perTask, 1e-9, "the jobs lists had no watch: counted")
	assert.InDelta(t, 7.0, leases, 1e-9, "lease renewals and the record scan")
	assert.Equal(t, []string{
		"| `create configmaps` | 10 | 1.00 |", "| `create jobs` | 10 | 1.00 |", "| `get pods/log` | 10 | 1.00 |", "| `list configmaps` | 1 | 0.10 |",
		"| `list jobs` | 2 | 0.20 |", "| `list pods` | 1 | 0.10 |", "| `update leases` | 6 | 0.60 |", "| `watch pods` | 1 | 0.10 |",
	}, lines)
}
