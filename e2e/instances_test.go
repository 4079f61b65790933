//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keptn-contrib/job-executor-service/jobs"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// TestReliabilityInstances runs two service instances on one job namespace: a live instance's
// events are never taken over, and a dead instance's unfinished event is resumed by the other
// once its lease expires, with exactly one .finished.
func TestReliabilityInstances(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, relConfig("sleep 8; echo slow-task-out"))
	lease := map[string]string{"INSTANCE_LEASE_SECONDS": "4"} // B looks for orphans every 2 s
	a := startService(t, api, ns, merge(lease, map[string]string{"INSTANCE_ID": "instance-a"}))
	b := startService(t, api, ns, merge(lease, map[string]string{"INSTANCE_ID": "instance-b"}))

	// A's event runs longer than two of B's orphan scans: B must leave it alone.
	first := triggered(t, relTriggered, nil)
	r := sendStructured(t, a.URL, first)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	fin := waitEvent(t, api, first, relFinished, 2*time.Minute)
	assert.Equal(t, "succeeded", dataString(fin, "status"))
	time.Sleep(relQuiet)
	relAssertOnce(t, api, first)
	assert.NotContains(t, b.logs.String(), "resuming event", "B took over a live instance's event")

	// A dies mid-task: B takes the event over after A's lease expires.
	second := triggered(t, relTriggered, nil)
	r = sendBinary(t, a.URL, second)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	waitEvent(t, api, second, relStarted, 30*time.Second)
	relWaitRunning(t, ns, jobs.JobName(second.Source(), second.ID(), 0, 0), 2*time.Minute)
	relStop(t, a, syscall.SIGKILL, 15*time.Second)
	killed := time.Now()
	fin = waitEvent(t, api, second, relFinished, 2*time.Minute)
	relFigure(t, "kill_to_finished_by_other_instance", time.Since(killed).Round(time.Millisecond))
	assert.Equal(t, "succeeded", dataString(fin, "status"))
	assert.Contains(t, dataString(fin, "message"), "slow-task-out")
	assert.Contains(t, b.logs.String(), "resuming event")
	time.Sleep(relQuiet)
	relAssertOnce(t, api, second)
	assert.Len(t, relJobs(t, ns, second), 1, "the Job was adopted, not recreated")
	assert.Equal(t, "true", relRecordFinished(t, ns, second))
}

// TestRecordClaimRace: on a real API server a claim based on an outdated read of a record
// loses (the fake clientset in unit tests cannot show this).
func TestRecordClaimRace(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	require.NoError(t, err)
	client, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	meta, err := metadata.NewForConfig(cfg)
	require.NoError(t, err)
	ctx := context.Background()
	dead := records.New(client, meta, ns, "dead-instance", nil) // never renews a lease
	_, err = dead.Create(ctx, records.Record{Name: jobs.RecordName("race", "1"), Event: []byte("{}"), Level: "service"})
	require.NoError(t, err)

	b, c := records.New(client, meta, ns, "instance-b", nil), records.New(client, meta, ns, "instance-c", nil)
	recsB, recsC := unfinished(t, b), unfinished(t, c)
	require.Len(t, recsB, 1)
	require.Len(t, recsC, 1)

	wonB, err := b.Claim(ctx, recsB[0])
	require.NoError(t, err)
	wonC, err := c.Claim(ctx, recsC[0]) // same (now outdated) version as B's read
	require.NoError(t, err)
	assert.True(t, wonB)
	assert.False(t, wonC, "only one instance may win a record")
	now := unfinished(t, c)
	assert.Equal(t, "instance-b", now[0].Owner)
	assert.True(t, strings.HasPrefix(now[0].Name, "jes-"))
}

// unfinished collects what s.Unfinished lists.
func unfinished(t *testing.T, s *records.Store) []records.Record {
	t.Helper()
	var out []records.Record
	require.NoError(t, s.Unfinished(context.Background(), func(r records.Record) error { out = append(out, r); return nil }))
	return out
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
