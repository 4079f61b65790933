//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/keptn-contrib/job-executor-service/jobs"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// TestRecordPlantedNotResumed: ConfigMaps planted in the job namespace with the labels of an
// unfinished event record (no signature, and one signed with another key), owned by an
// instance that is gone, are never resumed by a service with RECORD_SIGNING_KEY: no Job
// appears through start-up recovery and several orphan scans, nothing is sent, the log names
// each record, /metrics counts them, and the ConfigMaps are left as they were.
func TestRecordPlantedNotResumed(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, relConfig("echo should-not-run"))
	cfg, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	require.NoError(t, err)
	client, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	ctx := context.Background()

	// What anyone allowed to create ConfigMaps in the namespace can write.
	ev := triggered(t, relTriggered, nil)
	raw, err := json.Marshal(ev)
	require.NoError(t, err)
	planted := jobs.RecordName(ev.Source(), ev.ID())
	_, err = client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: planted,
			Labels: map[string]string{jobs.LabelManagedBy: jobs.ManagedByValue, records.LabelComponent: records.ComponentEventRecord,
				records.LabelFinished: "false"},
			Annotations: map[string]string{records.AnnotationOwner: "gone-instance"}},
		BinaryData: map[string][]byte{"event.json": raw, "config.yaml": []byte(relConfig("echo planted-ran"))},
		Data:       map[string]string{"level": "service"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	// A well-formed record signed with some other key.
	ev2 := triggered(t, relTriggered, nil)
	raw2, err := json.Marshal(ev2)
	require.NoError(t, err)
	forged := jobs.RecordName(ev2.Source(), ev2.ID())
	// A store that only creates needs no metadata client.
	_, err = records.New(client, nil, ns, "gone-instance", []byte("not-the-services-key-0123456789abcdef")).
		Create(ctx, records.Record{Name: forged, Event: raw2, Config: []byte(relConfig("echo forged-ran")), Level: "service"})
	require.NoError(t, err)
	before := map[string]corev1.ConfigMap{}
	for _, name := range []string{planted, forged} {
		cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		before[name] = *cm
	}

	// Lease 2 s: the service scans for orphans every second.
	svc := startService(t, api, ns, map[string]string{"INSTANCE_LEASE_SECONDS": "2"})
	time.Sleep(6 * time.Second) // start-up recovery plus several orphan scans

	list, err := client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, list.Items, "a planted record ran a Job")
	assert.Empty(t, api.Events(), "a planted record was reported to Keptn")
	logs := svc.logs.String()
	assert.NotContains(t, logs, "resuming event")
	for _, name := range []string{planted, forged} {
		assert.Regexp(t, `"level":"warn".*"msg":"refusing to resume an event record that does not verify.*"record":"`+name+`"`, logs)
		assert.Equal(t, 1, strings.Count(logs, `"record":"`+name+`"`), "logged once, not at every scan")
		cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err, "the record is not deleted")
		assert.Equal(t, before[name].ResourceVersion, cm.ResourceVersion, "%s is left alone (not claimed, not marked finished)", name)
		assert.Equal(t, "false", cm.Labels[records.LabelFinished])
	}
	resp, err := http.Get(svc.URL + "metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	metrics, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Contains(t, string(metrics), "jes_event_records_rejected_total 2")
	relFigure(t, "rejected_records", 2)
}

// TestRecordKeyChartLookup: the chart keeps the record signing key of an installed release
// (Helm's lookup, which needs the cluster: helm template --dry-run=server renders as upgrade
// does), so that records signed before `helm upgrade` still verify after it.
func TestRecordKeyChartLookup(t *testing.T) {
	t.Parallel()
	helm := helmBinary(t)
	ns := namespace(t)
	const key = "kept-across-upgrades-0123456789abcdef0123456789"
	out, err := kubectl(t, "create", "secret", "generic", "-n", ns, deployFullname+"-record-key", "--from-literal=key="+key)
	require.NoError(t, err, out)
	// The record-key Secret as `helm upgrade` of release would apply it.
	render := func(release string) corev1.Secret {
		cmd := exec.Command(helm, "template", release, "../chart", "-n", ns, "--dry-run=server", "--show-only", "templates/recordkey.yaml")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, string(b))
		var sec corev1.Secret
		require.NoError(t, yaml.UnmarshalStrict(b, &sec), string(b))
		return sec
	}
	assert.Equal(t, key, string(render(deployRelease).Data["key"]), "the existing key is kept")
	// Another release in the same namespace has no Secret yet: it gets a fresh random key.
	fresh := render("other")
	assert.Regexp(t, `^[A-Za-z0-9]{48}$`, string(fresh.Data["key"]))
}
