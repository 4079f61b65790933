package jobs

import (
	"fmt"
	"unicode/utf8"
)

// BoundLogs keeps the last max bytes of s (never splitting a UTF-8 character) and says
// how much was cut: "[... N bytes truncated ...]\n" + tail.
func BoundLogs(s string, max int) string { return BoundLogsDropped(s, max, 0) }

// BoundLogsDropped is BoundLogs for the tail of longer logs whose first dropped bytes
// were already discarded (by a reader that keeps only the tail in memory): the notice
// counts those bytes too.
func BoundLogsDropped(s string, max, dropped int) string {
	if max < 0 {
		max = 0
	}
	if len(s) > max {
		cut := len(s) - max
		for cut < len(s) && !utf8.RuneStart(s[cut]) {
			cut++
		}
		dropped += cut
		s = s[cut:]
	}
	if dropped == 0 {
		return s
	}
	return fmt.Sprintf("[... %d bytes truncated ...]\n%s", dropped, s)
}
