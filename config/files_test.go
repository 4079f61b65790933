package config

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCollectFiles(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"sockshop/dev/carts/locust/basic.py":            "basic",
		"sockshop/dev/carts/locust/locust.conf":         "conf",
		"sockshop/dev/carts/helm/Chart.yaml":            "chart",
		"sockshop/dev/carts/helm/templates/deploy.yaml": "deploy",
		"sockshop/dev/job/config.yaml":                  "stage config",
		"sockshop/dev/stage-only.txt":                   "stage",
	})
	src := DirSource{Root: filepath.Clean(root)}
	ref := Ref{Project: "sockshop", Stage: "dev", Service: "carts", CommitID: "abc"}
	ctx := context.Background()

	tests := []struct {
		name     string
		level    Level
		paths    []string
		maxBytes int
		want     map[string]string
		err      string
	}{
		{"spec example", LevelService, []string{"locust/basic.py", "/locust/locust.conf", "/helm"}, 0, map[string]string{
			"locust/basic.py": "basic", "locust/locust.conf": "conf",
			"helm/Chart.yaml": "chart", "helm/templates/deploy.yaml": "deploy",
		}, ""},
		{"overlapping entries", LevelService, []string{"helm/templates", "helm", "helm/"}, 0, map[string]string{
			"helm/Chart.yaml": "chart", "helm/templates/deploy.yaml": "deploy",
		}, ""},
		{"no files", LevelService, nil, 0, map[string]string{}, ""},
		{"level of the config only", LevelService, []string{"stage-only.txt"}, 0, nil,
			"file or directory stage-only.txt not found in service resources at commit abc"},
		{"stage level", LevelStage, []string{"/stage-only.txt"}, 0, map[string]string{"stage-only.txt": "stage"}, ""},
		{"project level is the latest", LevelProject, []string{"nope.txt"}, 0, nil,
			"file or directory nope.txt not found in project resources (latest)"},
		{"missing", LevelService, []string{"locust/basic.py", "locust/x.py"}, 0, nil,
			"file or directory locust/x.py not found in service resources at commit abc"},
		{"exactly at limit", LevelService, []string{"locust"}, 9, map[string]string{"locust/basic.py": "basic", "locust/locust.conf": "conf"}, ""},
		{"over limit", LevelService, []string{"locust"}, 8, nil, "task files are too large: 9 bytes after adding locust/locust.conf (4 bytes), the limit is 8 bytes"},
		{"traversal", LevelService, []string{"../job/config.yaml"}, 0, nil, "leaves the resource directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CollectFiles(ctx, src, ref, tt.level, tt.paths, tt.maxBytes)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			want := map[string][]byte{}
			for k, v := range tt.want {
				want[k] = []byte(v)
			}
			assert.Equal(t, want, got)
		})
	}

	_, err := CollectFiles(ctx, src, Ref{Project: "sockshop", Stage: "dev", Service: "carts"}, LevelService, []string{"nope"}, 0)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.ErrorContains(t, err, "(latest)")
}
