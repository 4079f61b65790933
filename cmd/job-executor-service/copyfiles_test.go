package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// configMapVolume lays out files the way the kubelet does for a ConfigMap volume:
// real files under "..<timestamp>", "..data" pointing at it, and top-level symlinks.
func configMapVolume(t *testing.T, files map[string]string) string {
	t.Helper()
	src := t.TempDir()
	ts := filepath.Join(src, "..2024_01_01_00_00_00.123")
	tops := map[string]bool{}
	for p, content := range files {
		full := filepath.Join(ts, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), 0o600))
		top := p
		for filepath.Dir(top) != "." {
			top = filepath.Dir(top)
		}
		tops[top] = true
	}
	require.NoError(t, os.Symlink(filepath.Base(ts), filepath.Join(src, "..data")))
	for top := range tops {
		require.NoError(t, os.Symlink(filepath.Join("..data", top), filepath.Join(src, top)))
	}
	return src
}

func TestCopyTree(t *testing.T) {
	files := map[string]string{
		"locust/basic.py":       "print('hi')\n",
		"locust/locust.conf":    "users = 1\n",
		"helm/chart/Chart.yaml": "name: x\n",
		"top.txt":               "top\n",
	}
	src := configMapVolume(t, files)
	dst := filepath.Join(t.TempDir(), "keptn")
	require.NoError(t, copyTree(src, dst))

	got := map[string]string{}
	require.NoError(t, filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		info, err := os.Lstat(p)
		require.NoError(t, err)
		rel, _ := filepath.Rel(dst, p)
		if d.IsDir() {
			assert.Equal(t, fs.FileMode(0o755), info.Mode().Perm(), rel)
			return nil
		}
		assert.True(t, info.Mode().IsRegular(), "%s is a regular file, not a link", rel)
		assert.Equal(t, fs.FileMode(0o644), info.Mode().Perm(), rel)
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		got[filepath.ToSlash(rel)] = string(b)
		return nil
	}))
	assert.Equal(t, files, got, "all files copied, ..data and ..<ts> not copied as such")

	// Copying again (init container restarted) overwrites cleanly.
	require.NoError(t, copyTree(src, dst))
}

func TestCopyTreeRefusesLinksOutside(t *testing.T) {
	src := configMapVolume(t, map[string]string{"a.txt": "a"})
	outside := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(outside, []byte("secret"), 0o600))
	require.NoError(t, os.Symlink(outside, filepath.Join(src, "evil")))
	err := copyTree(src, filepath.Join(t.TempDir(), "dst"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "points outside")
}

func TestCopyTreeLoopAndMissing(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(src, "d"), 0o755))
	require.NoError(t, os.Symlink("..", filepath.Join(src, "d", "up")))
	err := copyTree(src, filepath.Join(t.TempDir(), "dst"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "symlink loop")

	err = copyTree(filepath.Join(src, "nope"), t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "copy-files")
}

// The destination is usually the emptyDir mount point: it exists, is world-writable and not
// ours, so copyTree must leave its mode alone (chmod fails there for a non-root user).
func TestCopyTreeKeepsExistingDestinationMode(t *testing.T) {
	src := configMapVolume(t, map[string]string{"a/b.txt": "b\n"})
	dst := filepath.Join(t.TempDir(), "keptn")
	require.NoError(t, os.Mkdir(dst, 0o777))
	require.NoError(t, os.Chmod(dst, 0o777)) // past the umask
	require.NoError(t, copyTree(src, dst))
	info, err := os.Stat(dst)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o777), info.Mode().Perm(), "existing destination keeps its mode")
	info, err = os.Stat(filepath.Join(dst, "a"))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o755), info.Mode().Perm(), "created directories get 0755")
}
