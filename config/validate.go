package config

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ValidationError lists every problem found in a config.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid job config: " + e.Problems[0]
	}
	return fmt.Sprintf("invalid job config (%d problems):\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

var (
	envNameRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	eventNameRe = regexp.MustCompile(`^[A-Za-z0-9._*-]+$`)
)

// totalAnnotationSize is Kubernetes' limit on all annotations of one object.
const totalAnnotationSize = 256 * 1024

// Validate reports all problems of c, each naming the action/task index and name.
func (c *Config) Validate() error { return c.validate(nil) }

// validator collects problems; lines (from Parse, may be nil) prefix them with a line.
type validator struct {
	lines    Lines
	problems []string
}

func (v *validator) addf(path, label, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if label != "" {
		msg = label + ": " + msg
	}
	if l := v.lines.Line(path); l > 0 {
		msg = fmt.Sprintf("line %d: %s", l, msg)
	}
	v.problems = append(v.problems, msg)
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func (c *Config) validate(lines Lines) error {
	v := &validator{lines: lines}
	if c.APIVersion != APIVersion {
		v.addf("apiVersion", "", "apiVersion must be %q, got %q", APIVersion, c.APIVersion)
	}
	if len(c.Actions) == 0 {
		v.addf("actions", "", "config has no actions")
	}
	tasks := 0
	for ai, a := range c.Actions {
		ap := fmt.Sprintf("actions[%d]", ai)
		al := fmt.Sprintf("action %d %q", ai, a.Name)
		if strings.TrimSpace(a.Name) == "" {
			v.addf(ap, al, "name must not be empty")
		}
		if len(a.Events) == 0 {
			v.addf(ap, al, "needs at least one event")
		}
		if len(a.Tasks) == 0 {
			v.addf(ap, al, "needs at least one task")
		}
		for ei, e := range a.Events {
			ep := fmt.Sprintf("%s.events[%d]", ap, ei)
			el := fmt.Sprintf("%s event %d", al, ei)
			if !eventNameRe.MatchString(e.Name) {
				v.addf(ep, el, "event name %q must be non-empty and contain only letters, digits, '.', '_', '-' and '*'", e.Name)
			}
			if e.JSONPath != nil {
				if _, err := JSONPathToGJSON(e.JSONPath.Property); err != nil {
					v.addf(ep+".jsonpath", el, "jsonpath property: %v", err)
				}
			}
		}
		tasks += len(a.Tasks)
		for ti := range a.Tasks {
			v.task(&a.Tasks[ti], TaskPath(ai, ti), fmt.Sprintf("%s task %d %q", al, ti, a.Tasks[ti].Name))
		}
	}
	if tasks > MaxTasks {
		v.addf("actions", "", "config has %d tasks, more than the limit of %d", tasks, MaxTasks)
	}
	if len(v.problems) > 0 {
		return &ValidationError{Problems: v.problems}
	}
	return nil
}

func (v *validator) task(t *Task, tp, tl string) {
	if strings.TrimSpace(t.Name) == "" {
		v.addf(tp, tl, "name must not be empty")
	}
	if strings.TrimSpace(t.Image) == "" {
		v.addf(tp, tl, "image must not be empty")
	} else if _, err := reference.ParseNormalizedNamed(t.Image); err != nil {
		// The parser containerd uses; jobs.CheckTasks matches ALLOWED_IMAGE_LIST on its result.
		v.addf(tp+".image", tl, "image %q is not a valid image reference: %v", t.Image, err)
	}
	for i, f := range t.Files {
		if _, err := CleanFilePath(f); err != nil {
			v.addf(fmt.Sprintf("%s.files[%d]", tp, i), tl, "files[%d]: %v", i, err)
		}
	}
	for i, e := range t.Env {
		v.env(e, fmt.Sprintf("%s.env[%d]", tp, i), fmt.Sprintf("%s env[%d]", tl, i))
	}
	switch t.ImagePullPolicy {
	case "", PullAlways, PullIfNotPresent, PullNever:
	default:
		v.addf(tp+".imagePullPolicy", tl, "imagePullPolicy must be one of %q, %q, %q, got %q", PullAlways, PullIfNotPresent, PullNever, t.ImagePullPolicy)
	}
	if t.MaxPollDuration != nil {
		v.intRange(tp, tl, "maxPollDuration", int64(*t.MaxPollDuration))
	}
	if t.TTLSecondsAfterFinished != nil {
		v.intRange(tp, tl, "ttlSecondsAfterFinished", int64(*t.TTLSecondsAfterFinished))
	}
	if sc := t.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			v.intRange(tp+".securityContext", tl, "runAsUser", *sc.RunAsUser)
		}
		if sc.RunAsGroup != nil {
			v.intRange(tp+".securityContext", tl, "runAsGroup", *sc.RunAsGroup)
		}
	}
	if t.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(t.Namespace) {
			v.addf(tp+".namespace", tl, "namespace %q: %s", t.Namespace, msg)
		}
	}
	if t.ServiceAccount != nil && *t.ServiceAccount != "" {
		for _, msg := range validation.IsDNS1123Subdomain(*t.ServiceAccount) {
			v.addf(tp+".serviceAccount", tl, "serviceAccount %q: %s", *t.ServiceAccount, msg)
		}
	}
	seenPullSecrets := map[string]bool{}
	for i, name := range t.ImagePullSecrets {
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			v.addf(fmt.Sprintf("%s.imagePullSecrets[%d]", tp, i), tl, "imagePullSecrets[%d] %q: %s", i, name, msg)
		}
		if seenPullSecrets[name] {
			v.addf(fmt.Sprintf("%s.imagePullSecrets[%d]", tp, i), tl, "imagePullSecrets[%d] %q is listed twice", i, name)
		}
		seenPullSecrets[name] = true
	}
	if t.BackoffLimit != nil {
		v.intRange(tp, tl, "backoffLimit", int64(*t.BackoffLimit))
	}
	if t.KeptnVolumeSize != "" {
		if q, err := resource.ParseQuantity(string(t.KeptnVolumeSize)); err != nil || q.Sign() <= 0 {
			v.addf(tp+".keptnVolumeSize", tl, "keptnVolumeSize %q is not a positive quantity (e.g. 20Mi, 1Gi)", t.KeptnVolumeSize)
		}
	}
	for k, val := range t.NodeSelector {
		for _, msg := range validation.IsQualifiedName(k) {
			v.addf(tp+".nodeSelector", tl, "nodeSelector key %q: %s", k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(val) {
			v.addf(tp+".nodeSelector", tl, "nodeSelector value %q of %q: %s", val, k, msg)
		}
	}
	for i, tol := range t.Tolerations {
		v.toleration(tol, fmt.Sprintf("%s.tolerations[%d]", tp, i), fmt.Sprintf("%s tolerations[%d]", tl, i))
	}
	if r := t.Resources; r != nil {
		for _, q := range []struct {
			name string
			val  Quantity
		}{
			{"limits.cpu", r.Limits.CPU}, {"limits.memory", r.Limits.Memory},
			{"requests.cpu", r.Requests.CPU}, {"requests.memory", r.Requests.Memory},
		} {
			if q.val == "" {
				continue
			}
			if _, err := resource.ParseQuantity(string(q.val)); err != nil {
				v.addf(tp+".resources."+q.name, tl, "resources.%s %q is not a valid quantity (e.g. 500m, 1, 512Mi)", q.name, q.val)
			}
		}
	}
	size := 0
	for k, val := range t.Annotations {
		size += len(k) + len(val)
		for _, msg := range validation.IsQualifiedName(strings.ToLower(k)) {
			v.addf(tp+".annotations", tl, "annotation key %q: %s", k, msg)
		}
	}
	if size > totalAnnotationSize {
		v.addf(tp+".annotations", tl, "annotations are %d bytes, more than the Kubernetes limit of %d", size, totalAnnotationSize)
	}
}

// MaxPollDurationSeconds is the largest maxPollDuration: 30 days, far below where
// seconds overflow a time.Duration.
const MaxPollDurationSeconds = 30 * 24 * 60 * 60

// intBound is the allowed range of one integer field of the model; unit follows the
// numbers in the error.
type intBound struct {
	min, max int64
	unit     string
}

// intBounds holds every integer field of the model by its YAML name (a test checks that
// none is missing). The decoder reports values that do not even fit the Go type with the
// same message as the validator.
var intBounds = map[string]intBound{
	"maxPollDuration":         {1, MaxPollDurationSeconds, " seconds (30 days)"},
	"ttlSecondsAfterFinished": {0, math.MaxInt32, " seconds"}, // the Job field is an int32
	// Kubernetes' valid user and group IDs (validation.IsValidUserID, IsValidGroupID).
	"runAsUser":  {0, math.MaxInt32, ""},
	"runAsGroup": {0, math.MaxInt32, ""},
	// Each retry of a failing task is a new pod, after a growing back-off (10 s, 20 s, ...
	// 6 min): 10 bounds what a config can make a broken task cost.
	"backoffLimit": {0, MaxBackoffLimit, ""},
	// Kubernetes takes any int64 (a negative one means evict at once); a year is plenty.
	"tolerationSeconds": {0, 365 * 24 * 60 * 60, " seconds"},
}

// MaxBackoffLimit is the largest backoffLimit a task may ask for.
const MaxBackoffLimit = 10

func (b intBound) problem(field, got string) string {
	return fmt.Sprintf("%s must be between %d and %d%s, got %s", field, b.min, b.max, b.unit, got)
}

func (v *validator) intRange(parent, label, field string, val int64) {
	b := intBounds[field]
	if val < b.min || val > b.max {
		v.addf(parent+"."+field, label, "%s", b.problem(field, strconv.FormatInt(val, 10)))
	}
}

// toleration checks what Kubernetes' validation checks of a toleration, so that a config
// that passes lint does not fail at Job creation.
func (v *validator) toleration(t Toleration, p, l string) {
	if t.Key != "" {
		for _, msg := range validation.IsQualifiedName(t.Key) {
			v.addf(p+".key", l, "key %q: %s", t.Key, msg)
		}
	}
	switch t.Operator {
	case "", TolerationEqual:
		if t.Key == "" {
			v.addf(p, l, "a toleration without key must have operator %q", TolerationExists)
		}
		for _, msg := range validation.IsValidLabelValue(t.Value) {
			v.addf(p+".value", l, "value %q: %s", t.Value, msg)
		}
	case TolerationExists:
		if t.Value != "" {
			v.addf(p+".value", l, "operator %q takes no value, got %q", TolerationExists, t.Value)
		}
	default:
		v.addf(p+".operator", l, "operator must be %q or %q, got %q", TolerationEqual, TolerationExists, t.Operator)
	}
	switch t.Effect {
	case "", EffectNoSchedule, EffectPreferNoSchedule, EffectNoExecute:
	default:
		v.addf(p+".effect", l, "effect must be empty, %q, %q or %q, got %q", EffectNoSchedule, EffectPreferNoSchedule, EffectNoExecute, t.Effect)
	}
	if t.TolerationSeconds != nil {
		if t.Effect != EffectNoExecute {
			v.addf(p+".tolerationSeconds", l, "tolerationSeconds needs effect %q", EffectNoExecute)
		}
		v.intRange(p, l, "tolerationSeconds", *t.TolerationSeconds)
	}
}

func (v *validator) env(e Env, ep, el string) {
	switch e.ValueFrom {
	case FromEvent, FromString:
		if !envNameRe.MatchString(e.Name) {
			v.addf(ep, el, "name %q must be a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)", e.Name)
		}
	case FromSecret:
		for _, msg := range validation.IsDNS1123Subdomain(e.Name) {
			v.addf(ep, el, "secret name %q: %s", e.Name, msg)
		}
	default:
		v.addf(ep+".valueFrom", el, "valueFrom must be one of %q, %q, %q, got %q", FromEvent, FromSecret, FromString, e.ValueFrom)
	}
	if e.ValueFrom == FromEvent {
		if _, err := JSONPathToGJSON(e.Value); err != nil {
			v.addf(ep, el, "value: %v", err)
		}
	}
	switch e.As {
	case "", AsString, AsJSON, AsYAML:
		if e.As != "" && e.ValueFrom != FromEvent {
			v.addf(ep+".as", el, "as: %q is only allowed with valueFrom: event", e.As)
		}
	default:
		v.addf(ep+".as", el, "as must be one of %q, %q, %q, got %q", AsString, AsJSON, AsYAML, e.As)
	}
}

// CleanFilePath turns a task files entry into a clean path relative to the
// resource root: a leading (and trailing) "/" is dropped; "..", "." and empty
// paths are rejected so no entry can leave the resource tree.
func CleanFilePath(p string) (string, error) {
	s := strings.Trim(p, "/")
	if s == "" || s == "." {
		return "", fmt.Errorf("file path %q is empty", p)
	}
	if strings.ContainsRune(s, 0) || strings.Contains(s, "\\") {
		return "", fmt.Errorf("file path %q contains an invalid character", p)
	}
	if path.Clean(s) != s {
		return "", fmt.Errorf("file path %q is not clean (no \"..\", \".\" or \"//\" segments)", p)
	}
	if s == ".." || strings.HasPrefix(s, "../") {
		return "", fmt.Errorf("file path %q leaves the resource directory", p)
	}
	// Task files are projected from a ConfigMap volume, whose own entries start with "..".
	for _, part := range strings.Split(s, "/") {
		if strings.HasPrefix(part, "..") {
			return "", fmt.Errorf("file path %q: elements may not start with \"..\"", p)
		}
	}
	return s, nil
}
