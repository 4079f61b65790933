package keptn

import (
	"encoding/json"
	"fmt"
	"sort"
	"unicode/utf8"

	cloudevents "github.com/cloudevents/sdk-go/v2"
)

// DefaultMaxEventBytes bounds every event this service sends as it is encoded on the wire.
// The chart's distributor sidecar forwards bodies of at most API_PROXY_MAX_PAYLOAD_BYTES_KB
// (128 KiB; keptn/keptn distributor/pkg/forwarder/forwarder.go wraps /event and the API proxy
// in http.MaxBytesReader and answers 500 beyond it); 8 KiB stay free for what the distributor
// adds when it re-encodes the event for the Keptn API.
const DefaultMaxEventBytes = 120 << 10

// step is the size of the character at s[i] and what it takes in a JSON string as
// encoding/json writes it (the CloudEvents SDK marshals data with it): short escapes for
// quote, backslash, \b \f \n \r \t; \u00XX for other control characters and, HTML-safe, for
// < > &; \ufffd for each invalid UTF-8 byte; \u2028 and \u2029 escaped.
func step(s string, i int) (size, cost int) {
	if b := s[i]; b < utf8.RuneSelf {
		switch {
		case b == '"' || b == '\\' || b == '\b' || b == '\f' || b == '\n' || b == '\r' || b == '\t':
			return 1, 2
		case b < 0x20 || b == '<' || b == '>' || b == '&':
			return 1, 6
		}
		return 1, 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && n == 1 || r == '\u2028' || r == '\u2029' {
		return n, 6
	}
	return n, n
}

// encodedLen is the length of s as a JSON string, without its quotes. ANSI colour codes and
// other control characters take 6 bytes each: a log of escapes grows up to 6 times.
func encodedLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		size, cost := step(s, i)
		i += size
		n += cost
	}
	return n
}

// budget bounds a message twice: in bytes as read (MAX_FINISHED_MESSAGE_BYTES) and in bytes as
// a JSON string in the event (what the event bus carries). A negative bound is none.
type budget struct{ raw, encoded int }

var unbounded = budget{-1, -1}

func (b budget) fits(s string) bool {
	return (b.raw < 0 || len(s) <= b.raw) && (b.encoded < 0 || encodedLen(s) <= b.encoded)
}

// tail keeps the longest end of s within b, after a notice of how many bytes were cut (like
// jobs.BoundLogs, the notice is not counted).
func tail(s string, b budget) string {
	if b.fits(s) {
		return s
	}
	cut, enc := 0, encodedLen(s)
	for cut < len(s) && (b.raw >= 0 && len(s)-cut > b.raw || b.encoded >= 0 && enc > b.encoded) {
		size, cost := step(s, cut)
		cut += size
		enc -= cost
	}
	return fmt.Sprintf("[... %d bytes truncated ...]\n%s", cut, s[cut:])
}

// boundTotal is tail with the notice counted in b; "" when not even the notice fits.
func boundTotal(s string, b budget) string {
	t := b
	for range 4 {
		out := tail(s, t)
		if b.fits(out) {
			return out
		}
		if b.raw >= 0 {
			t.raw -= max(0, len(out)-b.raw)
		}
		if b.encoded >= 0 {
			t.encoded -= max(0, encodedLen(out)-b.encoded)
		}
		if t.raw < -1 || t.encoded < -1 || t.raw == -1 && b.raw >= 0 || t.encoded == -1 && b.encoded >= 0 {
			break
		}
	}
	return ""
}

// labelsOverhead is `,"labels":{}` around the entries.
const labelsOverhead = 12

// labelCost is what one label takes in the event: "key":"value" and a comma.
func labelCost(k, v string) int { return encodedLen(k) + encodedLen(v) + 6 }

// fitLabels keeps the labels that fit in room bytes as encoded, in key order, skipping those
// that do not fit: a small label after a huge one is still echoed. Nil when none fit.
func fitLabels(labels map[string]string, room int) map[string]string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var kept map[string]string
	used := labelsOverhead
	for _, k := range keys {
		if c := labelCost(k, labels[k]); used+c <= room {
			if kept == nil {
				kept = map[string]string{}
			}
			kept[k] = labels[k]
			used += c
		}
	}
	return kept
}

func labelsLen(labels map[string]string) int {
	n := labelsOverhead
	for k, v := range labels {
		n += labelCost(k, v)
	}
	return n
}

// encodedSize is the event's size as sent: structured mode is json.Marshal of the event.
func encodedSize(e cloudevents.Event) int {
	b, err := json.Marshal(e)
	if err != nil {
		return 0
	}
	return len(b)
}

// fitted is the event build makes of the event's labels and its message, made to fit in
// maxBytes as encoded on the wire (<= 0: no bound). Labels are echoed whole while they fit in
// what the event's own fields leave (for an event with a message: what the message does not
// need, at least half), in key order; the message, through fit (nil: the event has none), gets
// the rest and says how many labels were left out. Should the event's own fields (context,
// ids, project, stage, service) alone exceed maxBytes, it goes without labels and message,
// still too large.
func fitted(maxBytes int, labels map[string]string, message string, fit func(encoded int) string,
	build func(labels map[string]string, message string) cloudevents.Event) cloudevents.Event {
	e := build(labels, message)
	if maxBytes <= 0 || encodedSize(e) <= maxBytes {
		return e
	}
	room := maxBytes - encodedSize(build(nil, ""))
	labelRoom := room
	if fit != nil {
		// At least half for the message; more for the labels when the message needs less.
		labelRoom = max(room/2, room-encodedLen(message)-len(`,"message":""`))
	}
	kept := labels
	if labelsLen(labels) > labelRoom {
		kept = fitLabels(labels, labelRoom)
	}
	if fit == nil {
		if e = build(kept, ""); encodedSize(e) <= maxBytes {
			return e
		}
		return build(nil, "")
	}
	note := ""
	if left := len(labels) - len(kept); left > 0 {
		note = fmt.Sprintf("[%d of %d event labels not echoed: this event must fit in %d bytes]\n\n", left, len(labels), maxBytes)
	}
	// The message gets what the labels leave; should the estimate miss, it shrinks by the excess.
	msgRoom := maxBytes - encodedSize(build(kept, "x")) + 1 - encodedLen(note)
	for range 4 {
		msg := ""
		if msgRoom > 0 {
			msg = fit(msgRoom)
		}
		e = build(kept, note+msg)
		over := encodedSize(e) - maxBytes
		if over <= 0 {
			return e
		}
		msgRoom -= over
	}
	return build(nil, "")
}
