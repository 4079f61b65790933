package lifecycle

import (
	"fmt"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Finished events are remembered with their replies (which echo the event's labels) so that
// redeliveries get the same answer; what they keep is bounded by MaxQueuedBytes like the
// queue, not only by count, or a sender of large events could grow memory for an hour.
func TestRememberedRepliesBoundedInBytes(t *testing.T) {
	const bound = 1 << 20
	a := newAdmission(Options{MaxQueuedEvents: 10, MaxQueuedBytes: bound, DedupRetention: 1 << 40, MaxConcurrentActions: 1})
	big := strings.Repeat("x", 100<<10)
	for i := range 100 { // 100 × 100 KiB of replies against a 1 MiB bound
		tk, first, err := a.admit(fmt.Sprint("event-", i), 1000)
		require.NoError(t, err)
		require.Nil(t, first)
		reply := cloudevents.NewEvent()
		reply.SetID(fmt.Sprint("reply-", i))
		require.NoError(t, reply.SetData(cloudevents.ApplicationJSON, map[string]string{"labels": big}))
		tk.settle(&reply, nil)
		a.done(tk)
		assert.LessOrEqual(t, a.rememberedBytes, bound+len(reply.Data())+100, "after %d events", i+1)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	assert.Less(t, len(a.events), 100, "older finished events were dropped from memory")
	total := 0
	for _, tk := range a.events {
		total += tk.kept
	}
	assert.Equal(t, total, a.rememberedBytes, "the count matches what is kept")
}
