// Package config holds the job configuration model (job/config.yaml, apiVersion v2), its JSON
// Schema (SchemaFile, generated from the model by its tests), its strict parser and validator,
// event matching, the sources configs and files are read from (Keptn's resource-service, a
// local directory), their cache, and the one authenticated transport to the Keptn API. It must
// not run Jobs, send events or decide what an event comes to: it answers "which config, which
// actions".
package config

import "encoding/json"

//go:generate go test -run ^TestJSONSchemaUpToDate$ . -args -update-schema

// SchemaFile is the JSON Schema of job/config.yaml, generated from the types below and their
// comments (schema_test.go; go generate rewrites it, a test fails when it is out of date).
const SchemaFile = "job-config.schema.json"

// APIVersion is the only job config version this service understands.
const APIVersion = "v2"

// Config is a parsed job/config.yaml.
type Config struct {
	APIVersion string   `json:"apiVersion"`
	Actions    []Action `json:"actions"`
}

// Document is c as a job config document that Parse reads back to c (JSON, which is YAML):
// for keeping part of a config, e.g. the actions an event matched.
func (c *Config) Document() ([]byte, error) { return json.Marshal(c) }

// Action is a named list of tasks run when one of its events matches.
type Action struct {
	Name   string  `json:"name"`
	Events []Event `json:"events"`
	Tasks  []Task  `json:"tasks"`
	// Silent actions send no .started/.finished events.
	Silent bool `json:"silent,omitempty"`
	// Parallel runs the tasks at once instead of one after another; the action succeeds when
	// every task does, and .finished reports each task.
	Parallel bool `json:"parallel,omitempty"`
}

// Event selects incoming events by type glob and an optional JSON path condition.
type Event struct {
	Name     string    `json:"name"`
	JSONPath *JSONPath `json:"jsonpath,omitempty"`
}

// JSONPath matches when the value at Property (e.g. "$.data.test.teststrategy")
// equals Match.
type JSONPath struct {
	Property string `json:"property"`
	Match    string `json:"match"`
}

// Task becomes one Kubernetes Job.
type Task struct {
	Name                    string           `json:"name"`
	Files                   []string         `json:"files,omitempty"`
	Image                   string           `json:"image"`
	Cmd                     []string         `json:"cmd,omitempty"`
	Args                    []string         `json:"args,omitempty"`
	Env                     []Env            `json:"env,omitempty"`
	WorkingDir              string           `json:"workingDir,omitempty"`
	MaxPollDuration         *int             `json:"maxPollDuration,omitempty"`
	Namespace               string           `json:"namespace,omitempty"`
	TTLSecondsAfterFinished *int32           `json:"ttlSecondsAfterFinished,omitempty"`
	Resources               *Resources       `json:"resources,omitempty"`
	SecurityContext         *SecurityContext `json:"securityContext,omitempty"`
	ImagePullPolicy         string           `json:"imagePullPolicy,omitempty"`
	ServiceAccount          *string          `json:"serviceAccount,omitempty"`
	Annotations             Annotations      `json:"annotations,omitempty"`
	// ImagePullSecrets name Secrets in the Job's namespace to pull the image with, after the
	// installation's (DEFAULT_IMAGE_PULL_SECRETS); the same allow-list as valueFrom: secret
	// applies (ALLOWED_JOB_SECRETS).
	ImagePullSecrets []string `json:"imagePullSecrets,omitempty"`
	// BackoffLimit is how often a failed task is tried again (the Job's backoffLimit; default
	// 0, no retry); .finished reports the attempts.
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`
	// KeptnVolumeSize bounds the /keptn volume (emptyDir sizeLimit, e.g. 100Mi); default the
	// installation's DEFAULT_KEPTN_VOLUME_SIZE (20Mi, as the original). A task writing more is
	// evicted and fails.
	KeptnVolumeSize Quantity `json:"keptnVolumeSize,omitempty"`
	// NodeSelector places the task on nodes with these labels (the pod's nodeSelector).
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations let the task run on tainted nodes (Kubernetes' toleration shape); each key
	// must be allowed by the installation (ALLOWED_JOB_TOLERATIONS).
	Tolerations []Toleration `json:"tolerations,omitempty"`
}

// Toleration is a Kubernetes pod toleration (corev1.Toleration).
type Toleration struct {
	// Key is the taint key; empty with operator Exists tolerates every taint.
	Key string `json:"key,omitempty"`
	// Operator is Equal (default) or Exists.
	Operator string `json:"operator,omitempty"`
	Value    string `json:"value,omitempty"`
	// Effect is NoSchedule, PreferNoSchedule or NoExecute; empty matches every effect.
	Effect string `json:"effect,omitempty"`
	// TolerationSeconds bounds how long a NoExecute taint is tolerated.
	TolerationSeconds *int64 `json:"tolerationSeconds,omitempty"`
}

// Toleration operators and taint effects (Kubernetes' values).
const (
	TolerationEqual  = "Equal"
	TolerationExists = "Exists"

	EffectNoSchedule       = "NoSchedule"
	EffectPreferNoSchedule = "PreferNoSchedule"
	EffectNoExecute        = "NoExecute"
)

// Image pull policies: Kubernetes' corev1.PullPolicy values (empty: the Kubernetes default).
const (
	PullAlways       = "Always"
	PullIfNotPresent = "IfNotPresent"
	PullNever        = "Never"
)

// Env value sources.
const (
	FromEvent  = "event"
	FromSecret = "secret"
	FromString = "string"
)

// Env output formats for values taken from the event.
const (
	AsString = "string"
	AsJSON   = "json"
	AsYAML   = "yaml"
)

// Env declares one environment variable (or, for valueFrom: secret, a whole secret).
type Env struct {
	Name      string `json:"name"`
	Value     string `json:"value,omitempty"`
	ValueFrom string `json:"valueFrom"`
	As        string `json:"as,omitempty"`
}

// Resources are Kubernetes quantity strings; a present block replaces all defaults.
type Resources struct {
	Limits   ResourceList `json:"limits,omitempty"`
	Requests ResourceList `json:"requests,omitempty"`
}

// ResourceList holds cpu/memory quantities as written in the config.
type ResourceList struct {
	CPU    Quantity `json:"cpu,omitempty"`
	Memory Quantity `json:"memory,omitempty"`
}

// Quantity is a Kubernetes quantity as written in YAML; it accepts numbers (cpu: 1)
// as well as strings (cpu: 50m).
type Quantity string

// SecurityContext is the subset of the container securityContext a task may set.
// Pointers distinguish "not set" (inherit the installation default) from false/0.
type SecurityContext struct {
	RunAsUser                *int64        `json:"runAsUser,omitempty"`
	RunAsGroup               *int64        `json:"runAsGroup,omitempty"`
	RunAsNonRoot             *bool         `json:"runAsNonRoot,omitempty"`
	ReadOnlyRootFilesystem   *bool         `json:"readOnlyRootFilesystem,omitempty"`
	Privileged               *bool         `json:"privileged,omitempty"`
	AllowPrivilegeEscalation *bool         `json:"allowPrivilegeEscalation,omitempty"`
	Capabilities             *Capabilities `json:"capabilities,omitempty"`
}

// Capabilities to add to or drop from a task container.
type Capabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

// Annotations accept both the map form (key: value) and the spec's list-of-maps form
// (- key1: value1); both decode to one map.
type Annotations map[string]string
