package lifecycle_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

// builtRunner keeps every object the lifecycle hands to the runner; each task succeeds.
type builtRunner struct {
	mu    sync.Mutex
	built map[string]*jobs.Built
}

func (r *builtRunner) Run(_ context.Context, b *jobs.Built) jobs.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.built[b.Job.Name] = b
	return jobs.Result{Succeeded: true}
}

func (r *builtRunner) JobExists(context.Context, string, string) (bool, error) { return false, nil }

// TestRenderIsWhatAcceptCreates: for the same event, config, files and settings, Render gives
// exactly the objects the service hands to its runner, silent actions included.
func TestRenderIsWhatAcceptCreates(t *testing.T) {
	const cfg = lct.TwoActionsAndSilent + `  - name: "With files"
    events: [{name: "sh.keptn.event.test.triggered"}]
    tasks:
      - {name: "f1", image: "alpine", files: [locust]}
      - {name: "f2", image: "alpine", env: [{name: HOST, value: "$.data.deployment.host", valueFrom: event}]}
`
	files := func(_ context.Context, _ config.Ref, _ config.Level, paths []string) (map[string][]byte, error) {
		return map[string][]byte{"locust/basic.py": []byte("print()")}, nil
	}
	settings := jobs.Settings{Namespace: "jobs", InitImage: "init:1", Labels: map[string]string{"team": "a"}}
	ev := lct.Event(t, "sh.keptn.event.test.triggered", map[string]any{
		"test": map[string]any{"teststrategy": "locust"}, "deployment": map[string]any{"host": "https://x"},
	})

	runner := &builtRunner{built: map[string]*jobs.Built{}}
	p := lifecycle.New(context.Background(), lifecycle.Deps{
		Loader: lct.Loader{YAML: cfg}, Files: files, Runner: runner, Sender: &lct.Recorder{},
	}, lifecycle.Options{Settings: settings})
	_, err := p.Accept(context.Background(), ev)
	require.NoError(t, err)
	p.Wait()

	loaded, err := config.NewLoaded([]byte(cfg), config.LevelService)
	require.NoError(t, err)
	out, err := lifecycle.Render(context.Background(), settings, ev, loaded, files)
	require.NoError(t, err)
	assert.Empty(t, out.Problem)
	assert.Empty(t, out.Failures())
	rendered := map[string]*jobs.Built{}
	var names []string
	for _, a := range out.Actions {
		names = append(names, a.Name)
		for _, task := range a.Tasks {
			require.NotNil(t, task.Built, task.Name)
			rendered[task.Built.Job.Name] = task.Built
		}
	}
	assert.Equal(t, []string{"A", "B", "Quiet", "With files"}, names)
	assert.True(t, out.Actions[2].Silent)
	assert.False(t, out.Actions[0].Silent)
	require.Len(t, rendered, 5)
	assert.Equal(t, runner.built, rendered)
	assert.NotNil(t, rendered[jobs.JobName(ev.Source(), ev.ID(), 3, 0)].Files, "f1's files ConfigMap")
}

// TestRenderFailures: what the service would refuse or fail is reported in the words of its
// .finished, and nothing after the failure is built.
func TestRenderFailures(t *testing.T) {
	ev := lct.Event(t, "sh.keptn.event.deployment.triggered", nil)
	render := func(t *testing.T, cfg string, s jobs.Settings, files lifecycle.FileCollector) *lifecycle.Rendering {
		t.Helper()
		loaded, err := config.NewLoaded([]byte(cfg), config.LevelService)
		require.NoError(t, err)
		out, err := lifecycle.Render(context.Background(), s, ev, loaded, files)
		require.NoError(t, err)
		return out
	}

	t.Run("refused action", func(t *testing.T) {
		out := render(t, lct.ForbiddenImage, jobs.Settings{AllowedImages: []string{"alpine"}}, nil)
		require.Len(t, out.Actions, 1)
		assert.Empty(t, out.Actions[0].Tasks, "no task of a refused action is built")
		assert.Equal(t, `Action 'Pipeline' was not run: task 'evil': image "evil.example.com/miner" is not in the allowed image list`, out.Failures())
	})
	t.Run("files unavailable", func(t *testing.T) {
		cfg := "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.deployment.triggered}]\n    tasks:\n" +
			"      - {name: one, image: alpine}\n      - {name: two, image: alpine, files: [nope]}\n      - {name: three, image: alpine}\n"
		out := render(t, cfg, jobs.Settings{InitImage: "i"}, func(context.Context, config.Ref, config.Level, []string) (map[string][]byte, error) {
			return nil, errors.New("file or directory nope not found")
		})
		require.Len(t, out.Actions[0].Tasks, 2)
		assert.NotNil(t, out.Actions[0].Tasks[0].Built)
		assert.Nil(t, out.Actions[0].Tasks[1].Built)
		assert.Equal(t, "Task 'two' failed: FilesUnavailable: file or directory nope not found", out.Failures())
	})
	t.Run("no match", func(t *testing.T) {
		out := render(t, lct.TwoActionsAndSilent, jobs.Settings{}, nil)
		assert.Len(t, out.Actions, 1, "only the silent wildcard action matches deployment.triggered")
		assert.True(t, out.Actions[0].Silent)
		out = render(t, lct.ThreeTasks, jobs.Settings{}, nil)
		assert.Len(t, out.Actions, 1)
		assert.Len(t, out.Actions[0].Tasks, 3)
	})
	t.Run("bad event", func(t *testing.T) {
		bad := lct.Event(t, "sh.keptn.event.deployment.triggered", map[string]any{"project": ""})
		loaded, err := config.NewLoaded([]byte(lct.ThreeTasks), config.LevelService)
		require.NoError(t, err)
		_, err = lifecycle.Render(context.Background(), jobs.Settings{}, bad, loaded, nil)
		assert.ErrorIs(t, err, keptn.ErrBadEvent)
	})
}
