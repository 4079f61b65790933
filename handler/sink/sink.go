// Package sink owns delivering the events this service sends (.started, .finished,
// sh.keptn.log.error): to the Keptn API, the distributor, a Knative sink, or the log. It
// retries what can succeed later and gives up on what cannot. It must not build events (that
// is handler/keptn) nor authenticate on its own: the transport it is given does that.
package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.uber.org/zap"
)

// Sender delivers an outgoing event (.started, .finished, log.error) to Keptn.
type Sender interface {
	Send(ctx context.Context, e cloudevents.Event) error
}

// Retry bounds how long an outgoing event is retried (Keptn API or sink down, 5xx, 429).
type Retry struct {
	Initial, Max time.Duration // backoff between attempts, doubled each time, with jitter
	MaxElapsed   time.Duration // give up after this long
}

// DefaultRetry survives a 10-minute Keptn API outage.
var DefaultRetry = Retry{Initial: 500 * time.Millisecond, Max: 30 * time.Second, MaxElapsed: 10 * time.Minute}

// DefaultTimeout bounds one delivery attempt; a stalled endpoint is retried after it.
const DefaultTimeout = 15 * time.Second

// HTTPOptions configure an HTTP sender; zero values get the defaults.
type HTTPOptions struct {
	// Transport carries the requests: the one authenticated Keptn transport (x-token or
	// OAuth, TLS settings) built in main, or a plain one for a broker. Nil means a clone of
	// Go's default transport, TLS verification on.
	Transport http.RoundTripper
	Timeout   time.Duration // default DefaultTimeout
	Retry     Retry         // default DefaultRetry
	Log       *zap.Logger
	Metrics   *Metrics
}

// HTTP POSTs events in structured mode (application/cloudevents+json), which the Keptn API
// (/v1/event), the distributor's /event proxy and Knative brokers all accept.
type HTTP struct {
	target string
	client cloudevents.Client
	opts   HTTPOptions
}

// NewHTTP sends to target. Its transport is never http.DefaultTransport itself, so TLS
// settings never leak process-wide.
func NewHTTP(target string, opts HTTPOptions) (*HTTP, error) {
	tr := opts.Transport
	if tr == nil {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Retry == (Retry{}) {
		opts.Retry = DefaultRetry
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	p, err := cehttp.New(cehttp.WithTarget(target), cehttp.WithClient(http.Client{Transport: tr, Timeout: opts.Timeout}))
	if err != nil {
		return nil, fmt.Errorf("event sink %s: %w", target, err)
	}
	c, err := cloudevents.NewClient(p)
	if err != nil {
		return nil, fmt.Errorf("event sink %s: %w", target, err)
	}
	return &HTTP{target: target, client: c, opts: opts}, nil
}

// Send delivers e, retrying with exponential backoff and jitter until acknowledged, the retry
// budget is spent, or ctx ends. A 4xx other than 408/429 is final: retrying cannot fix it.
func (s *HTTP) Send(ctx context.Context, e cloudevents.Event) error {
	deadline := time.Now().Add(s.opts.Retry.MaxElapsed)
	wait := s.opts.Retry.Initial
	for attempt := 1; ; attempt++ {
		res := s.client.Send(cloudevents.WithEncodingStructured(ctx), e)
		if cloudevents.IsACK(res) {
			s.opts.Metrics.sent(e.Type(), "ok")
			return nil
		}
		final := false
		var httpRes *cehttp.Result
		if cloudevents.ResultAs(res, &httpRes) {
			final = httpRes.StatusCode >= 400 && httpRes.StatusCode < 500 && httpRes.StatusCode != 408 && httpRes.StatusCode != 429
		}
		log := s.opts.Log.With(zap.String("target", s.target), zap.String("type", e.Type()), zap.String("id", e.ID()), zap.Int("attempt", attempt), zap.Error(res))
		if final || time.Now().Add(wait).After(deadline) {
			s.opts.Metrics.sent(e.Type(), "failed")
			log.Error("giving up sending event")
			return fmt.Errorf("sending %s to %s failed after %d attempts: %w", e.Type(), s.target, attempt, res)
		}
		s.opts.Metrics.retry(e.Type())
		log.Warn("sending event failed, will retry", zap.Duration("in", wait))
		select {
		case <-ctx.Done():
			return fmt.Errorf("sending %s to %s: %w", e.Type(), s.target, ctx.Err())
		case <-time.After(jitter(wait)):
		}
		wait = min(wait*2, s.opts.Retry.Max)
	}
}

// jitter spreads retries of many senders over [d/2, d).
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// LogSender writes each event as one JSON line: the default with no Keptn configured, so that
// someone curl-posting events sees the .started/.finished the service would send.
type LogSender struct{ Log *zap.Logger }

// Send logs e.
func (s LogSender) Send(_ context.Context, e cloudevents.Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	s.Log.Info("outgoing event", zap.String("type", e.Type()), zap.Any("event", json.RawMessage(b)))
	return nil
}
