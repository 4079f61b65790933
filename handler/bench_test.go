package handler

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/zap"
)

// BenchmarkAccept measures the receiver's own cost per event (decode, config lookup, match,
// de-duplication, hand-off), with Jobs and Keptn faked.
func BenchmarkAccept(b *testing.B) {
	p := NewProcessor(context.Background(), fakeLoader{yaml: twoActionsAndSilent}, nil, &fakeRunner{}, &recorder{}, zap.NewNop(), nil,
		Options{MaxQueuedEvents: 1 << 30})
	in := keptnEvent(b, "sh.keptn.event.test.triggered", map[string]any{"test": map[string]any{"teststrategy": "locust"}})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e := in.Clone()
		e.SetID(fmt.Sprint("bench-", i))
		if _, err := p.Accept(context.Background(), e); err != nil {
			b.Fatal(err)
		}
	}
	p.Wait()
}
