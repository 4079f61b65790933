package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// MaxResultBytes is what a task can hand back: Kubernetes keeps at most 4096 bytes of a
// container's termination message.
const MaxResultBytes = 4096

// ParseResults reads what a task wrote to its termination message (/dev/termination-log): a
// JSON object, or key=value lines (blank lines and lines starting with # are skipped). Nothing
// written is no results (nil, nil). Anything else is an error naming what is wrong, never a
// panic: the text is the task's, and the task is the config author's.
func ParseResults(msg string) (map[string]any, error) {
	text := strings.TrimSpace(msg)
	if text == "" {
		return nil, nil
	}
	if len(msg) > MaxResultBytes {
		return nil, fmt.Errorf("results are %d bytes, more than the %d a termination message holds", len(msg), MaxResultBytes)
	}
	if strings.HasPrefix(text, "{") {
		dec := json.NewDecoder(strings.NewReader(text))
		dec.UseNumber()
		var out map[string]any
		if err := dec.Decode(&out); err != nil {
			return nil, fmt.Errorf("results are not a valid JSON object: %v", err)
		}
		if strings.TrimSpace(text[dec.InputOffset():]) != "" {
			return nil, errors.New("results are not a valid JSON object: text after the object")
		}
		return out, nil
	}
	out := map[string]any{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if k = strings.TrimSpace(k); !ok || k == "" {
			return nil, fmt.Errorf("results line %d is neither key=value nor a JSON object: %q", i+1, truncate(line, 80))
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("results line %d: key %q given twice", i+1, k)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
