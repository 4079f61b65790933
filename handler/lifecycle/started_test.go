package lifecycle_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
	"github.com/keptn-contrib/job-executor-service/handler/sink"
	"github.com/keptn-contrib/job-executor-service/jobs"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
)

// recordPatches are the annotations each patch of the event record set, in order.
func (f *flowEnv) recordPatches(name string) []string {
	var patches []string
	for _, a := range f.client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && a.GetResource().Resource == "configmaps" && p.GetName() == name {
			patches = append(patches, string(p.GetPatch()))
		}
	}
	return patches
}

func (f *flowEnv) startedMark(t *testing.T, name string) string {
	t.Helper()
	cm, err := f.client.CoreV1().ConfigMaps("keptn").Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return cm.Annotations[records.AnnotationStarted]
}

// TestFlowStartedRecordedOnlyWhereNoJobTells: a delivered .started costs no write to the event
// record when a Job of a reporting action is created right after it (that Job tells recovery);
// it is written before a step that may take long without such a Job.
func TestFlowStartedRecordedOnlyWhereNoJobTells(t *testing.T) {
	tests := []struct {
		name, config string
		wantMark     string
		wantPatches  int
	}{
		{name: "a Job follows .started", config: lct.HelloConfig, wantMark: "", wantPatches: 1},
		{name: "files are read first", config: flowConfig, wantMark: "true", wantPatches: 2},
		{name: "no Job at all", config: `apiVersion: v2
actions:
  - name: "Refused"
    events: [{name: "sh.keptn.event.deployment.triggered"}]
    tasks: [{name: "refused", image: "evil/miner"}]
`, wantMark: "true", wantPatches: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlow(t, nil, lifecycle.Options{Settings: jobs.Settings{AllowedImages: []string{"alpine"}}})
			svc := keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}
			f.keptn.Put("c1", svc, "job/config.yaml", []byte(tc.config))
			f.keptn.Put("c1", svc, "scripts/run.sh", []byte("echo hi\n"))
			in := lct.Event(t, "sh.keptn.event.deployment.triggered", nil)
			in.SetExtension("gitcommitid", "c1")
			f.send(t, in)
			assert.Equal(t, []string{"sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, f.types())
			name := recordName(t, in)
			assert.Equal(t, tc.wantMark, f.startedMark(t, name))
			patches := f.recordPatches(name)
			assert.Len(t, patches, tc.wantPatches, "record writes after its creation: %v", patches)
			if len(patches) > 0 {
				assert.Contains(t, patches[len(patches)-1], records.LabelFinished, "the last write marks it finished")
			}
		})
	}
}

// TestFlowRecoverStartedFromJobs: a record that says nothing of .started is resumed with
// .started sent again only when no Job of a reporting action exists; a record that says its
// delivery failed gets it sent again whatever exists.
func TestFlowRecoverStartedFromJobs(t *testing.T) {
	const started, finished = "sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"
	tests := []struct {
		name      string
		mark      *bool // nil: unrecorded
		jobs      [][2]int
		wantTypes []string
	}{
		{name: "a reporting action's Job exists", jobs: [][2]int{{0, 1}}, wantTypes: []string{finished}},
		{name: "another reporting action's Job exists", jobs: [][2]int{{1, 0}}, wantTypes: []string{finished}},
		{name: "only the silent action's Job exists", jobs: [][2]int{{2, 0}}, wantTypes: []string{started, finished}},
		{name: "no Job exists", wantTypes: []string{started, finished}},
		{name: "delivery failed although Jobs exist", mark: ptr(false), jobs: [][2]int{{0, 0}, {1, 0}}, wantTypes: []string{started, finished}},
		{name: "delivery recorded, no Job", mark: ptr(true), wantTypes: []string{finished}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlow(t, nil, lifecycle.Options{})
			in := f.deployment(t)
			name := f.record(t, "test-instance", in)
			store := f.store("test-instance", flowKey)
			if tc.mark != nil {
				require.NoError(t, store.MarkStarted(context.Background(), name, *tc.mark))
			}
			for _, j := range tc.jobs {
				f.createJob(t, in, j[0], j[1])
			}
			n, err := f.proc.Recover(context.Background())
			require.NoError(t, err)
			require.Equal(t, 1, n)
			f.proc.Wait()
			assert.Equal(t, tc.wantTypes, f.types())
			assert.Equal(t, 5, f.jobCount(t), "every task ran once")
		})
	}
}

// TestFlowStartedUndeliveredIsRecorded: when .started cannot be delivered, the record says
// so, and the recovery that delivers it says so too, so that a second crash does not send
// it again.
func TestFlowStartedUndeliveredIsRecorded(t *testing.T) {
	f := newFlow(t, nil, lifecycle.Options{})
	real := f.deps.Sender
	f.deps.Sender = refuseStarted{real}
	f.restart(t)
	in := f.deployment(t)
	f.send(t, in)
	name := recordName(t, in)
	assert.Equal(t, []string{"sh.keptn.event.deployment.finished"}, f.types(), ".started was refused")
	assert.Equal(t, "false", f.startedMark(t, name))

	// The Keptn API lost the .finished too, say: the record is resumed as unfinished.
	_, err := f.client.CoreV1().ConfigMaps("keptn").Patch(context.Background(), name, "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"`+records.LabelFinished+`":"false"}}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	f.deps.Sender = real
	f.restart(t)
	n, err := f.proc.Recover(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	f.proc.Wait()
	assert.Equal(t, []string{"sh.keptn.event.deployment.finished", "sh.keptn.event.deployment.started", "sh.keptn.event.deployment.finished"}, f.types())
	assert.Equal(t, "true", f.startedMark(t, name), "the late delivery is recorded")
}

// refuseStarted is a sink that cannot deliver .started events.
type refuseStarted struct{ sink.Sender }

func (r refuseStarted) Send(ctx context.Context, e cloudevents.Event) error {
	if strings.HasSuffix(e.Type(), ".started") {
		return errors.New("refused")
	}
	return r.Sender.Send(ctx, e)
}

// createJob creates, as a crashed instance would have, the Job of task taskIdx of action
// actionIdx of flowConfig for in.
func (f *flowEnv) createJob(t *testing.T, in cloudevents.Event, actionIdx, taskIdx int) {
	t.Helper()
	decoded, err := keptn.Decode(in)
	require.NoError(t, err)
	loaded, err := config.NewLoaded([]byte(flowConfig), config.LevelService)
	require.NoError(t, err)
	a := loaded.Config.Actions[actionIdx]
	input := jobs.TaskInput{
		Event:  jobs.EventInfo{ID: in.ID(), Source: in.Source(), Type: in.Type(), Project: "sockshop", Stage: "dev", Service: "carts", Raw: decoded.Raw()},
		Action: a.Name, ActionIdx: actionIdx, Task: a.Tasks[taskIdx], TaskIdx: taskIdx, ConfigHash: jobs.ConfigHash(loaded.Raw),
	}
	if len(input.Task.Files) > 0 {
		input.Files = map[string][]byte{"scripts/run.sh": []byte("echo hi\n")}
	}
	built, err := jobs.Build(f.opts.Settings, input)
	require.NoError(t, err)
	_, err = f.client.BatchV1().Jobs("keptn").Create(context.Background(), built.Job, metav1.CreateOptions{})
	require.NoError(t, err)
}

func recordName(t *testing.T, e cloudevents.Event) string {
	t.Helper()
	in, err := keptn.Decode(e)
	require.NoError(t, err)
	return in.RecordName()
}

func ptr[T any](v T) *T { return &v }
