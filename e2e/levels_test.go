//go:build e2e

package e2e

// Project-level configs on Keptn's branches: the resource-service keeps project resources on
// the project's default branch and makes each stage's branch from it, so the commit an event
// carries (a stage commit) lacks project files added or edited after the stage was made. The
// spec reads the project level at its latest version; these scenarios hold the service to it.

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
)

var projectScope = keptnapi.Scope{Project: "sockshop"}

// sendAtCommit sends a test.triggered for sockshop/dev/carts carrying gitcommitid and
// returns the message of its succeeded .finished. A sh.keptn.log.error (no config found)
// ends the wait at once with its message.
func sendAtCommit(t *testing.T, api *keptnapi.Server, svc *service, commit string) string {
	t.Helper()
	ev := triggered(t, "sh.keptn.event.test.triggered", nil)
	ev.SetExtension("gitcommitid", commit)
	r := sendStructured(t, svc.URL, ev)
	require.Less(t, r.Status, 300, string(r.Body))
	ctx, cancel := context.WithTimeout(context.Background(), finishTimeout)
	defer cancel()
	got, err := api.WaitFor(ctx, func(e keptnapi.Event) bool {
		return e.Shkeptncontext == kctxOf(ev) &&
			(e.TypeName() == "sh.keptn.event.test.finished" || e.TypeName() == "sh.keptn.log.error")
	})
	require.NoError(t, err)
	require.Equal(t, "sh.keptn.event.test.finished", got.TypeName(), dataString(got, "message"))
	return assertSucceeded(t, got, ev)
}

// assertLevelsRead checks every resource request: service and stage levels at commit, the
// project level without a commit (its latest version).
func assertLevelsRead(t *testing.T, api *keptnapi.Server, commit string) {
	t.Helper()
	const project = "/resource-service/v1/project/sockshop/"
	seen := map[string]int{}
	for _, rq := range api.Requests() {
		if !strings.HasPrefix(rq.Path, project) {
			continue
		}
		level := "project"
		switch {
		case strings.Contains(rq.Path, "/service/"):
			level = "service"
		case strings.Contains(rq.Path, "/stage/"):
			level = "stage"
		}
		seen[level]++
		want := commit
		if level == "project" {
			want = ""
		}
		assert.Equal(t, want, rq.Query.Get("gitCommitID"), "%s level request %s", level, rq.Path)
	}
	for _, level := range []string{"service", "stage", "project"} {
		assert.NotZero(t, seen[level], "no %s level request", level)
	}
}

// TestFeatureProjectConfigAddedLater: a project-level config (and its task file) added after
// the stage commit an event carries is found and runs.
func TestFeatureProjectConfigAddedLater(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, "") // dev's branch is made now, without project files
	api.AddScope("c1", cartsScope)
	api.Put(keptnapi.Latest, projectScope, "job/config.yaml", levelConfig("project"))
	api.Put(keptnapi.Latest, projectScope, "level.txt", []byte("file from project level, added after c1"))
	svc := startService(t, api, ns, nil)

	msg := sendAtCommit(t, api, svc, "c1")
	assert.Contains(t, msg, "config from project level\n")
	assert.Contains(t, msg, "added after c1")
	assertLevelsRead(t, api, "c1")
}

// TestFeatureProjectConfigLatestWins: after the project-level config and its task file are
// edited, the next event at the same stage commit runs the new version.
func TestFeatureProjectConfigLatestWins(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	api := keptnAPI(t, "")
	api.AddScope("c1", cartsScope)
	put := func(version string) {
		api.Put(keptnapi.Latest, projectScope, "job/config.yaml", levelConfig("project "+version))
		api.Put(keptnapi.Latest, projectScope, "level.txt", []byte("file from project level "+version))
	}
	put("v1")
	// No caching of configs read without a commit, so the edit is seen at once.
	svc := startService(t, api, ns, map[string]string{"CONFIG_CACHE_TTL_SECONDS": "0"})

	msg := sendAtCommit(t, api, svc, "c1")
	assert.Contains(t, msg, "config from project v1 level\n")
	assert.Contains(t, msg, "file from project level v1")

	put("v2")
	msg = sendAtCommit(t, api, svc, "c1")
	assert.Contains(t, msg, "config from project v2 level\n")
	assert.Contains(t, msg, "file from project level v2")
	assertLevelsRead(t, api, "c1")
}
