package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"sigs.k8s.io/yaml"

	"github.com/keptn-contrib/job-executor-service/config"
)

// toGJSON translates a JSON path ("$", "$.data.arr[1]", "$['a.b']") to a gjson path;
// "" means the whole document.
// TODO: switch to config.JSONPathToGJSON once the config package provides it.
var toGJSON = jsonPathToGJSON

// jsonPathToGJSON is a small stand-in for config.JSONPathToGJSON.
func jsonPathToGJSON(p string) (string, error) {
	p = strings.TrimSpace(p)
	if p == "$" {
		return "", nil
	}
	rest, ok := strings.CutPrefix(p, "$")
	if !ok {
		return "", fmt.Errorf("jsonpath %q must start with $", p)
	}
	var parts []string
	for rest != "" {
		switch rest[0] {
		case '.':
			rest = rest[1:]
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			if end == 0 {
				return "", fmt.Errorf("jsonpath %q has an empty key", p)
			}
			parts = append(parts, escapeGJSON(rest[:end]))
			rest = rest[end:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return "", fmt.Errorf("jsonpath %q has an unclosed [", p)
			}
			inner := rest[1:end]
			if len(inner) >= 2 && (inner[0] == '\'' || inner[0] == '"') && inner[len(inner)-1] == inner[0] {
				// A quoted key may contain ']' only if we searched past it; keep it simple and
				// require the key to contain no ']'.
				parts = append(parts, escapeGJSON(inner[1:len(inner)-1]))
			} else if n, err := strconv.ParseUint(inner, 10, 31); err == nil {
				parts = append(parts, strconv.FormatUint(n, 10))
			} else {
				return "", fmt.Errorf("jsonpath %q: [%s] is not an index or quoted key", p, inner)
			}
			rest = rest[end+1:]
		default:
			return "", fmt.Errorf("jsonpath %q: unexpected %q", p, rest[0])
		}
	}
	return strings.Join(parts, "."), nil
}

// escapeGJSON escapes the characters gjson gives a meaning in a path component.
func escapeGJSON(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		switch k[i] {
		case '.', '*', '?', '|', '#', '@', '\\', '!', '=', '<', '>', '%':
			b.WriteByte('\\')
		}
		b.WriteByte(k[i])
	}
	return b.String()
}

// EnvFromEvent returns the value at jsonPath in the event formatted as as
// (config.AsString, AsJSON, AsYAML or "" for the default: string for scalars, JSON for
// objects and arrays).
func EnvFromEvent(raw []byte, jsonPath, as string) (string, error) {
	gp, err := toGJSON(jsonPath)
	if err != nil {
		return "", err
	}
	if !gjson.ValidBytes(raw) {
		return "", fmt.Errorf("event is not valid JSON")
	}
	var res gjson.Result
	if gp == "" {
		res = gjson.ParseBytes(raw)
	} else {
		res = gjson.GetBytes(raw, gp)
	}
	if !res.Exists() {
		return "", fmt.Errorf("jsonpath %s not found in event", jsonPath)
	}
	if as == "" {
		as = config.AsString
		if res.IsObject() || res.IsArray() {
			as = config.AsJSON
		}
	}
	switch as {
	case config.AsString:
		if res.Type == gjson.String {
			return res.String(), nil
		}
		if res.Type == gjson.Null {
			return "", nil
		}
		return compactJSON(res.Raw)
	case config.AsJSON:
		return compactJSON(res.Raw)
	case config.AsYAML:
		y, err := yaml.JSONToYAML([]byte(res.Raw))
		if err != nil {
			return "", fmt.Errorf("jsonpath %s: converting to YAML: %w", jsonPath, err)
		}
		return string(y), nil
	default:
		return "", fmt.Errorf("unknown format as: %q (want string, json or yaml)", as)
	}
}

func compactJSON(raw string) (string, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(raw)); err != nil {
		return "", err
	}
	return buf.String(), nil
}
