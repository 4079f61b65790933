package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLint(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	good := write("good.yaml", "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.test.triggered}]\n    tasks: [{name: t, image: alpine}]\n")
	typo := write("typo.yaml", "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.test.triggered}]\n    tasks:\n      - name: t\n        image: alpine\n        workdir: /bin\n")
	invalid := write("invalid.yaml", "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.test.triggered}]\n    tasks:\n      - name: t\n        image: ''\n        env: [{name: 1BAD, valueFrom: string, value: x}]\n")
	tests := []struct {
		name  string
		files []string
		rc    int
		want  []string
	}{
		{"valid", []string{good}, 0, []string{good + ": ok"}},
		{"unknown field with its line", []string{good, typo}, 1, []string{good + ": ok", typo + ": line 8: unknown field \"workdir\""}},
		{"every validation problem", []string{invalid}, 1, []string{invalid + ": ", "image", "1BAD"}},
		{"missing file", []string{filepath.Join(dir, "nope.yaml")}, 1, []string{"nope.yaml: open"}},
		{"no file", nil, 2, []string{"usage"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			assert.Equal(t, tc.rc, lint(tc.files, &out))
			for _, w := range tc.want {
				assert.Contains(t, out.String(), w)
			}
		})
	}
}
