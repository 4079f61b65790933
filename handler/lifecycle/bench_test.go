package lifecycle_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
)

// BenchmarkAccept measures the receiver's own cost per event (decode, config lookup, match,
// de-duplication, hand-off), with Jobs and Keptn faked.
func BenchmarkAccept(b *testing.B) {
	p := newProcessor(lct.Loader{YAML: lct.TwoActionsAndSilent}, &lct.Runner{}, &lct.Recorder{}, lifecycle.Options{MaxQueuedEvents: 1 << 30})
	in := lct.Event(b, "sh.keptn.event.test.triggered", map[string]any{"test": map[string]any{"teststrategy": "locust"}})
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
