package lifecycle_test

import (
	"context"
	"fmt"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/keptn-contrib/job-executor-service/config"

	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
)

// BenchmarkAccept measures the receiver's own cost per event (decode, config lookup, match,
// de-duplication, hand-off), with Jobs and Keptn faked.
func BenchmarkAccept(b *testing.B) {
	benchAccept(b, lct.Loader{YAML: lct.TwoActionsAndSilent},
		lct.Event(b, "sh.keptn.event.test.triggered", map[string]any{"test": map[string]any{"teststrategy": "locust"}}))
}

// BenchmarkAcceptUnmatched is the receiver's cost for an event no action matches (the config
// cached, as the service's loader keeps it): what a Broker or distributor subscribed to more
// than we run sends us most.
func BenchmarkAcceptUnmatched(b *testing.B) {
	loaded, err := config.NewLoaded([]byte(lct.HelloConfig), config.LevelService)
	if err != nil {
		b.Fatal(err)
	}
	benchAccept(b, cachedLoader{loaded}, lct.Event(b, "sh.keptn.event.deployment.finished",
		map[string]any{"deployment": map[string]any{"deploymentURIsLocal": []string{"http://carts.sockshop-dev:80"}}}))
}

// benchAccept accepts copies of in, each with its own id.
func benchAccept(b *testing.B, loader lifecycle.ConfigLoader, in cloudevents.Event) {
	p := newProcessor(loader, &lct.Runner{}, &lct.Recorder{}, lifecycle.Options{MaxQueuedEvents: 1 << 30})
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

// cachedLoader serves one parsed config, as config.Loader does from its cache.
type cachedLoader struct{ loaded *config.Loaded }

func (l cachedLoader) Load(context.Context, config.Ref) (*config.Loaded, error) { return l.loaded, nil }
