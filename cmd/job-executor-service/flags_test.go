package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPalette: colour only on a terminal, never with NO_COLOR, and plain text stays plain.
func TestPalette(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	assert.False(t, paletteFor(w, getter(nil)).on, "a pipe is no terminal")
	assert.False(t, paletteFor(&strings.Builder{}, getter(nil)).on, "neither is a buffer")
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		defer tty.Close()
		assert.True(t, paletteFor(tty, getter(nil)).on, "a terminal")
		assert.False(t, paletteFor(tty, getter(map[string]string{"NO_COLOR": "1"})).on, "NO_COLOR")
	}
	on := palette{on: true}
	assert.Equal(t, "\x1b[31mbad\x1b[0m", on.red("bad"))
	assert.Equal(t, "", on.green(""))
	assert.Equal(t, "ok", palette{}.green("ok"))
}
