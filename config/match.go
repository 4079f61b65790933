package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// MatchedAction is an action whose events matched, with its index in the config.
type MatchedAction struct {
	Index  int
	Action Action
}

// NeedsEvent reports whether matching eventType looks into the event: an action it would
// match has a jsonpath condition. Otherwise Match needs no event (nil will do), and an event
// no action matches need not be encoded.
func (c *Config) NeedsEvent(eventType string) bool {
	for _, a := range c.Actions {
		for _, e := range a.Events {
			if e.JSONPath != nil && GlobMatch(e.Name, eventType) {
				return true
			}
		}
	}
	return false
}

// Match returns every action (in config order) with at least one event whose
// name glob matches eventType and whose optional jsonpath condition holds for
// event, the whole CloudEvent as JSON (so "$.data.x" addresses its data).
func (c *Config) Match(eventType string, event []byte) ([]MatchedAction, error) {
	var out []MatchedAction
	validJSON := -1 // checked lazily: most events have no jsonpath condition
	for i, a := range c.Actions {
		for _, e := range a.Events {
			if !GlobMatch(e.Name, eventType) {
				continue
			}
			if e.JSONPath != nil {
				if validJSON < 0 {
					validJSON = 0
					if gjson.ValidBytes(event) {
						validJSON = 1
					}
				}
				if validJSON == 0 {
					return nil, errors.New("event is not valid JSON, cannot evaluate jsonpath conditions")
				}
				ok, err := jsonPathEquals(event, e.JSONPath)
				if err != nil {
					return nil, fmt.Errorf("action %d %q: %w", i, a.Name, err)
				}
				if !ok {
					continue
				}
			}
			out = append(out, MatchedAction{Index: i, Action: a})
			break
		}
	}
	return out, nil
}

func jsonPathEquals(event []byte, jp *JSONPath) (bool, error) {
	p, err := JSONPathToGJSON(jp.Property)
	if err != nil {
		return false, fmt.Errorf("jsonpath property: %w", err)
	}
	v := gjson.GetBytes(event, p)
	return v.Exists() && v.String() == jp.Match, nil
}

// GlobMatch reports whether s matches pattern, where "*" matches any run of
// characters (dots included) and every other character matches itself. The
// match is anchored at both ends.
func GlobMatch(pattern, s string) bool {
	// Classic linear-backtracking wildcard match: on a mismatch, retry from the
	// last star consuming one more character.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// JSONPathToGJSON translates the JSONPath subset used in job configs into a gjson
// path: "$" (the whole document), "$.data.x", "$.data.arr[1]", "$['key.with.dots']"
// and combinations. A path not starting with "$" is taken as a gjson path as is.
func JSONPathToGJSON(p string) (string, error) {
	p = strings.TrimSpace(p)
	if p == "" {
		return "", errors.New("json path is empty")
	}
	if p[0] != '$' {
		return p, nil
	}
	var parts []string
	rest := p[1:]
	for rest != "" {
		pos := len(p) - len(rest)
		switch rest[0] {
		case '.':
			rest = rest[1:]
			if rest == "" || rest[0] == '.' {
				return "", fmt.Errorf("json path %q: empty or recursive (..) segment at offset %d is not supported", p, pos)
			}
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			name := rest[:end]
			if name == "" {
				return "", fmt.Errorf("json path %q: empty name at offset %d", p, pos+1)
			}
			if name == "*" {
				return "", fmt.Errorf("json path %q: wildcards are not supported", p)
			}
			if strings.ContainsAny(name, "]'\"") {
				return "", fmt.Errorf("json path %q: unexpected character in name %q", p, name)
			}
			parts = append(parts, gjson.Escape(name))
			rest = rest[end:]
		case '[':
			if len(rest) > 1 && (rest[1] == '\'' || rest[1] == '"') {
				// Quoted key: it may contain '.', '[' and ']'.
				q := rest[1]
				closing := strings.IndexByte(rest[2:], q)
				if closing < 0 || 2+closing+1 >= len(rest) || rest[2+closing+1] != ']' {
					return "", fmt.Errorf("json path %q: unterminated quoted key at offset %d", p, pos)
				}
				key := rest[2 : 2+closing]
				if key == "" {
					return "", fmt.Errorf("json path %q: empty key at offset %d", p, pos)
				}
				parts = append(parts, gjson.Escape(key))
				rest = rest[2+closing+2:]
				continue
			}
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return "", fmt.Errorf("json path %q: unclosed '[' at offset %d", p, pos)
			}
			inner := strings.TrimSpace(rest[1:end])
			switch {
			case inner == "":
				return "", fmt.Errorf("json path %q: empty index at offset %d", p, pos)
			default:
				n, err := strconv.Atoi(inner)
				if err != nil || n < 0 || inner[0] == '+' {
					return "", fmt.Errorf("json path %q: index %q at offset %d must be a non-negative integer or a quoted key", p, inner, pos)
				}
				parts = append(parts, strconv.Itoa(n))
			}
			rest = rest[end+1:]
		default:
			return "", fmt.Errorf("json path %q: expected '.' or '[' at offset %d", p, pos)
		}
	}
	if len(parts) == 0 {
		return "@this", nil
	}
	return strings.Join(parts, "."), nil
}
