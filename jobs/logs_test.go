package jobs

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestBoundLogs(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"", 0, ""},
		{"0123456789", 10, "0123456789"},
		{"0123456789abc", 10, "[... 3 bytes truncated ...]\n3456789abc"},
		{"xäy", 2, "[... 3 bytes truncated ...]\ny"}, // never half a character
		{"abc", 0, "[... 3 bytes truncated ...]\n"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, BoundLogs(tc.in, tc.max), "%q %d", tc.in, tc.max)
	}
}

func TestBoundLogsDropped(t *testing.T) {
	assert.Equal(t, "abc", BoundLogsDropped("abc", 10, 0))
	assert.Equal(t, "[... 5 bytes truncated ...]\nabc", BoundLogsDropped("abc", 10, 5))
	assert.Equal(t, "[... 7 bytes truncated ...]\nc", BoundLogsDropped("abc", 1, 5))
}
