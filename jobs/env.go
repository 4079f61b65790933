package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
	"sigs.k8s.io/yaml"

	"github.com/keptn-contrib/job-executor-service/config"
)

// EnvFromEvent returns the value at jsonPath in the event formatted as as
// (config.AsString, AsJSON, AsYAML or "" for the default: string for scalars, JSON for
// objects and arrays).
func EnvFromEvent(raw []byte, jsonPath, as string) (string, error) {
	gp, err := config.JSONPathToGJSON(jsonPath)
	if err != nil {
		return "", err
	}
	if !gjson.ValidBytes(raw) {
		return "", fmt.Errorf("event is not valid JSON")
	}
	var res gjson.Result
	if gp == "" || gp == "@this" {
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

// escapeEventValue makes a value taken from the event literal in a container's
// env[].value: Kubernetes expands "$(NAME)" there with the container's other variables
// (secrets from envFrom included), and would then expand it again wherever "$(VAR)" is
// used in cmd/args. Doubling every "$" gives "$$", which Kubernetes turns back into a
// single "$" and expands nothing, so the container sees exactly the event's value.
// Values written in the job config are not escaped: they may use "$(VAR)" on purpose.
func escapeEventValue(v string) string {
	return strings.ReplaceAll(v, "$", "$$")
}
