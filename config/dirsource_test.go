package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeTree creates files (slash paths relative to root) with their content.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), 0o644))
	}
}

func TestDirSource(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "resources")
	writeTree(t, root, map[string]string{
		"sockshop/dev/carts/job/config.yaml":             "service",
		"sockshop/dev/carts/helm/Chart.yaml":             "chart",
		"sockshop/dev/carts/helm/templates/deploy.yaml":  "deploy",
		"sockshop/dev/job/config.yaml":                   "stage",
		"sockshop/job/config.yaml":                       "project",
		"sockshop/dev/carts/locust/basic.py":             "print()",
		"sockshop/dev/carts/shared/inside.txt":           "inside",
		"sockshop/dev/carts/helm/templates/.hidden.yaml": "hidden",
	})
	writeTree(t, base, map[string]string{"secret.txt": "outside"})
	svc := filepath.Join(root, "sockshop/dev/carts")
	require.NoError(t, os.Symlink("../../../../secret.txt", filepath.Join(svc, "escape.txt")))
	require.NoError(t, os.Symlink(filepath.Join(base, "secret.txt"), filepath.Join(svc, "abs.txt")))
	require.NoError(t, os.Symlink("../shared/inside.txt", filepath.Join(svc, "helm/link.txt")))

	src := DirSource{Root: root}
	ctx := context.Background()
	ref := Ref{Project: "sockshop", Stage: "dev", Service: "carts", CommitID: "ignored"}

	for level, want := range map[Level]string{LevelService: "service", LevelStage: "stage", LevelProject: "project"} {
		b, err := src.Get(ctx, ref, level, "job/config.yaml")
		require.NoError(t, err, level)
		assert.Equal(t, want, string(b))
	}
	b, err := src.Get(ctx, ref, LevelService, "/locust/basic.py")
	require.NoError(t, err)
	assert.Equal(t, "print()", string(b))

	tests := []struct {
		name     string
		ref      Ref
		path     string
		notFound bool
	}{
		{"missing", ref, "nope.txt", true},
		{"directory", ref, "helm", true},
		{"dotdot", ref, "../job/config.yaml", false},
		{"symlink escape", ref, "escape.txt", false},
		{"absolute symlink", ref, "abs.txt", false},
		{"project traversal", Ref{Project: "..", Stage: "x", Service: "y"}, "secret.txt", false},
		{"service with slash", Ref{Project: "sockshop", Stage: "dev", Service: "../dev"}, "job/config.yaml", false},
		{"empty stage", Ref{Project: "sockshop", Service: "carts"}, "job/config.yaml", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := src.Get(ctx, tt.ref, LevelService, tt.path)
			require.Error(t, err)
			assert.Nil(t, b)
			assert.Equal(t, tt.notFound, isNotFound(err), err.Error())
		})
	}

	// Symlinks inside Root are followed.
	b, err = src.Get(ctx, ref, LevelService, "helm/link.txt")
	require.NoError(t, err)
	assert.Equal(t, "inside", string(b))

	names, err := src.List(ctx, ref, LevelService, "/helm")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"helm/Chart.yaml", "helm/templates/deploy.yaml", "helm/templates/.hidden.yaml", "helm/link.txt"}, names)

	// Escaping symlinks are not listed.
	names, err = src.List(ctx, ref, LevelService, "")
	require.NoError(t, err)
	assert.NotContains(t, names, "escape.txt")
	assert.NotContains(t, names, "abs.txt")
	assert.Contains(t, names, "job/config.yaml")

	_, err = src.List(ctx, ref, LevelService, "nope")
	assert.True(t, isNotFound(err))
	_, err = src.List(ctx, ref, LevelService, "../..")
	assert.Error(t, err)
}

func isNotFound(err error) bool { return err != nil && errors.Is(err, ErrNotFound) }

// TestDirSourceFlat: a flat source reads one level's directory for every ref and level, and
// stays inside it.
func TestDirSourceFlat(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "carts")
	writeTree(t, root, map[string]string{"locust/basic.py": "print()", "locust/locust.conf": "users = 1"})
	writeTree(t, base, map[string]string{"secret.txt": "outside"})
	src := DirSource{Root: root, Flat: true}
	ctx := context.Background()
	for _, level := range []Level{LevelService, LevelStage, LevelProject} {
		b, err := src.Get(ctx, Ref{Project: "p", Stage: "s", Service: "svc"}, level, "/locust/basic.py")
		require.NoError(t, err, level)
		assert.Equal(t, "print()", string(b))
	}
	names, err := src.List(ctx, Ref{}, LevelService, "locust")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"locust/basic.py", "locust/locust.conf"}, names)
	_, err = src.Get(ctx, Ref{}, LevelService, "../secret.txt")
	require.Error(t, err)
	assert.False(t, isNotFound(err))
}
