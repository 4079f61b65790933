package lifecycle_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
	"github.com/keptn-contrib/job-executor-service/jobs"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// rejectedTotal reads jes_event_records_rejected_total from reg.
func rejectedTotal(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range families {
		if mf.GetName() == "jes_event_records_rejected_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("jes_event_records_rejected_total not registered")
	return 0
}

// plant creates what anyone with "create configmaps" in the job namespace can: a ConfigMap
// with the labels of an unfinished event record, an event and a config of their choosing.
func plant(t *testing.T, f *flowEnv, id string, annotations map[string]string) string {
	t.Helper()
	in := lct.Event(t, "sh.keptn.event.deployment.triggered", nil)
	in.SetID(id)
	d, err := keptn.Decode(in)
	require.NoError(t, err)
	_, err = f.client.CoreV1().ConfigMaps("keptn").Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: d.RecordName(), Annotations: annotations, Labels: map[string]string{
			jobs.LabelManagedBy: jobs.ManagedByValue, records.LabelComponent: records.ComponentEventRecord, records.LabelFinished: "false",
		}},
		BinaryData: map[string][]byte{"event.json": d.Raw(), "config.yaml": []byte(flowConfig)},
		Data:       map[string]string{"level": "service"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return d.RecordName()
}

// TestFlowPlantedRecord: ConfigMaps that look like unfinished event records but were not
// signed with the service's key are neither claimed nor run nor reported; they are logged,
// counted and left as they are. A signed record next to them is resumed.
func TestFlowPlantedRecord(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	core, logs := observer.New(zapcore.WarnLevel)
	reg := prometheus.NewRegistry()
	f.deps.Log, f.deps.Metrics = zap.New(core), lifecycle.NewMetrics(reg)
	f.restart(t)
	ctx := context.Background()

	unsigned := plant(t, f, "planted-unsigned", nil)
	forged := plant(t, f, "planted-forged", map[string]string{
		records.AnnotationSignature: "0000000000000000000000000000000000000000000000000000000000000000",
		records.AnnotationOwner:     "dead-pod",
	})
	// Signed with another installation's key.
	in := f.deployment(t)
	in.SetID("other-key")
	other, err := keptn.Decode(in)
	require.NoError(t, err)
	_, err = f.store("dead-pod", []byte("another-installations-key-0123456789")).
		Create(ctx, records.Record{Name: other.RecordName(), Event: other.Raw(), Config: []byte(flowConfig), Level: "service"})
	require.NoError(t, err)
	before, err := f.client.CoreV1().ConfigMaps("keptn").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)

	n, err := f.proc.Recover(ctx)
	require.NoError(t, err)
	f.proc.Wait()
	assert.Zero(t, n, "nothing resumed")
	assert.Zero(t, f.jobCount(t), "no Job created")
	assert.Empty(t, f.types(), "nothing sent")
	assert.Equal(t, 3.0, rejectedTotal(t, reg))
	var named []string
	for _, e := range logs.FilterMessageSnippet("does not verify").All() {
		assert.Equal(t, zapcore.WarnLevel, e.Level)
		named = append(named, e.ContextMap()["record"].(string))
	}
	assert.ElementsMatch(t, []string{unsigned, forged, other.RecordName()}, named)

	// Left alone: not claimed, not marked finished, not deleted.
	after, err := f.client.CoreV1().ConfigMaps("keptn").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, after.Items, len(before.Items))
	for i := range after.Items {
		assert.Equal(t, before.Items[i].ResourceVersion, after.Items[i].ResourceVersion, after.Items[i].Name)
		assert.Equal(t, "false", after.Items[i].Labels[records.LabelFinished])
		assert.Equal(t, before.Items[i].Annotations, after.Items[i].Annotations)
	}

	// Maintain's later scans do not read, log or count them again.
	f.client.ClearActions()
	n, err = f.proc.ResumeOrphans(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Empty(t, f.recordReads(), "refused records, unchanged, are not read again")
	assert.Equal(t, 3.0, rejectedTotal(t, reg), "counted once per record")
	assert.Len(t, logs.FilterMessageSnippet("does not verify").All(), 3)

	// A record this installation signed is resumed as before.
	in.SetID("ours")
	ours, err := keptn.Decode(in)
	require.NoError(t, err)
	_, err = f.store("dead-pod", flowKey).
		Create(ctx, records.Record{Name: ours.RecordName(), Event: ours.Raw(), Config: []byte(flowConfig), Level: "service"})
	require.NoError(t, err)
	n, err = f.proc.ResumeOrphans(ctx)
	require.NoError(t, err)
	f.proc.Wait()
	assert.Equal(t, 1, n)
	assert.Equal(t, 5, f.jobCount(t))
	assert.Equal(t, []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, f.types())
}

// TestFlowUnsignedStore: without RECORD_SIGNING_KEY the service signs nothing and recovery
// trusts every record in the namespace, as before signing existed (README "Security").
func TestFlowUnsignedStore(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	f.deps.Records = f.store("test-instance", nil)
	f.restart(t)
	f.deployment(t)
	plant(t, f, "unsigned-mode", nil)
	n, err := f.proc.Recover(context.Background())
	require.NoError(t, err)
	f.proc.Wait()
	assert.Equal(t, 1, n)
}
