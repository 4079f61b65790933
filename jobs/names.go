package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// namePrefix is short so that the name stays far below the 63 characters Kubernetes
// allows for label values (the Job name is used as one on its pods).
const namePrefix = "jes-"

// JobName is the deterministic name of the Job (and its files ConfigMap) for one task of
// one event. The same event redelivered gets the same name, which is what makes Run
// idempotent. The result is a DNS-1123 label of at most 62 characters for any input.
func JobName(eventSource, eventID string, actionIdx, taskIdx int) string {
	return namePrefix + hashHex(eventSource+"\x00"+eventID, eventHashDigits) + "-" + idx(actionIdx) + "-" + idx(taskIdx)
}

// idx formats an index; negative values (never produced by callers) become "n<abs>" so
// that the name keeps no doubled or trailing hyphens.
func idx(i int) string {
	if i < 0 {
		return "n" + strings.TrimPrefix(strconv.Itoa(i), "-")
	}
	return strconv.Itoa(i)
}

// eventHashDigits is the length of the hash of an event's source and ID (64 bits) in
// Job and record names. Two events with the same hash would share Jobs and event records,
// so it is long enough to make that practically impossible. The hashed key is
// source+"\x00"+id: NUL keeps ("ab","c") and ("a","bc") apart.
const eventHashDigits = 16

// hashHex is the first digits hex digits of sha256(s), the one hash behind every
// deterministic name and hashed value of this package.
func hashHex(s string, digits int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:digits]
}

// ConfigHash identifies a raw job config (TaskInput.ConfigHash, the LabelConfigHash
// label): the first 16 hex digits of its sha256.
func ConfigHash(raw []byte) string { return hashHex(string(raw), 16) }

// RecordName is the name of the event record for an event: the Jobs' prefix plus "ev".
func RecordName(eventSource, eventID string) string {
	return namePrefix + hashHex(eventSource+"\x00"+eventID, eventHashDigits) + "-ev"
}

// LeaseName is the Lease of a service instance; instance names (pod names) can be long,
// so the name holds a hash.
func LeaseName(instance string) string { return namePrefix + hashHex(instance, 10) + "-owner" }

// maxLabelValue is Kubernetes' limit for label values.
const maxLabelValue = 63

// LabelValue turns any string into a valid label value: characters outside
// [A-Za-z0-9-_.] become '_', leading and trailing non-alphanumerics are dropped, and
// values longer than 63 characters keep a prefix plus a hash of the whole input so that
// different long inputs stay different.
func LabelValue(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case isAlnum(r), r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	v := trimNonAlnum(b.String())
	if len(v) <= maxLabelValue {
		return v
	}
	h := hashHex(s, 10)
	prefix := strings.TrimLeftFunc(v[:maxLabelValue-len(h)-1], func(r rune) bool { return !isAlnum(r) })
	if prefix == "" {
		return h
	}
	return prefix + "-" + h
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

func trimNonAlnum(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return !isAlnum(r) })
}

// LabelEnvName is the environment variable for an event label: LABELS_ plus the key in
// upper case with every character outside [A-Z0-9_] (hyphens, spaces, dots, ...)
// replaced by '_', so "build-id" becomes LABELS_BUILD_ID.
func LabelEnvName(key string) string {
	var b strings.Builder
	b.WriteString("LABELS_")
	for _, r := range strings.ToUpper(key) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
