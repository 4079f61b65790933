package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// sample is a set of latencies with the wall time they took together.
type sample struct {
	lat  []time.Duration
	wall time.Duration
	// failed counts answers outside want's class (2xx) and transport errors; codes says which.
	failed int
	codes  map[int]int
}

func (s sample) rate() float64 { return float64(len(s.lat)) / s.wall.Seconds() }

// pct is the p-th percentile (0 < p <= 100) by the nearest-rank method.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(float64(len(s))*p/100+0.999999) - 1
	if k < 0 {
		k = 0
	}
	if k >= len(s) {
		k = len(s) - 1
	}
	return s[k]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// closedLoop runs n operations on conc workers (each starts the next as soon as its last one
// ended), or as many as fit in dur when n is 0, and times each.
func closedLoop(n, conc int, dur time.Duration, op func(i int) (int, error), want int) sample {
	var next atomic.Int64
	var mu sync.Mutex
	s := sample{codes: map[int]int{}}
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			var lat []time.Duration
			codes := map[int]int{}
			failed := 0
			for {
				i := int(next.Add(1)) - 1
				if n > 0 && i >= n || n == 0 && time.Now().After(deadline) {
					break
				}
				t := time.Now()
				code, err := op(i)
				lat = append(lat, time.Since(t))
				if err != nil || code/100 != want/100 {
					failed++
					codes[code]++
				}
			}
			mu.Lock()
			s.lat = append(s.lat, lat...)
			s.failed += failed
			for c, k := range codes {
				s.codes[c] += k
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	s.wall = time.Since(start)
	return s
}

// sender posts CloudEvents in binary mode over kept-alive connections, as a Knative broker or
// the distributor does.
type sender struct {
	client *http.Client
	url    string
}

func newSender(url string, conc int) *sender {
	tr := &http.Transport{MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2, IdleConnTimeout: time.Minute}
	return &sender{client: &http.Client{Transport: tr, Timeout: 60 * time.Second}, url: url}
}

// post sends one event and returns the status code.
func (s *sender) post(id, typ, keptnContext string, data []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Id", id)
	h.Set("Ce-Source", "bench")
	h.Set("Ce-Type", typ)
	h.Set("Ce-Shkeptncontext", keptnContext)
	h.Set("Ce-Shkeptnspecversion", "0.2.4")
	res, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

var eventData = []byte(`{"project":"sockshop","stage":"dev","service":"carts","labels":{"bench":"true"}}`)
