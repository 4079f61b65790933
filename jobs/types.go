// Package jobs turns a job config task into the Kubernetes objects that run it (Build:
// the Job and its files ConfigMap) and owns every deterministic name and label of those
// objects (JobName, RecordName, LeaseName, LabelValue, ConfigHash) and the bounding of task
// logs. Everything here is pure and deterministic: the same input always gives the same
// output, which the golden files in testdata pin.
//
// It must not talk to Kubernetes or any network, read files, log or keep state: creating
// and watching the objects is jobs/run, event records and leases are jobs/records.
// pure_test.go fails when the package starts to depend on client-go or a logger.
package jobs

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/keptn-contrib/job-executor-service/config"
)

// Settings are installation-wide defaults, read from the environment by cmd/.
type Settings struct {
	// Namespace is JOB_NAMESPACE, used when a task sets none.
	Namespace string
	// DefaultResources apply when a task has no resources block
	// (DEFAULT_RESOURCE_{LIMITS,REQUESTS}_{CPU,MEMORY}).
	DefaultResources corev1.ResourceRequirements
	// ServiceAccount is DEFAULT_JOB_SERVICE_ACCOUNT.
	ServiceAccount string
	// PodSecurityContext / SecurityContext are the defaults a task's securityContext overrides
	// (nil: DefaultPodSecurityContext / DefaultSecurityContext).
	PodSecurityContext *corev1.PodSecurityContext
	SecurityContext    *corev1.SecurityContext
	// PodSecurityLevel is the Pod Security Standards level every Job's pod must meet
	// (JOB_POD_SECURITY_LEVEL; ALLOW_PRIVILEGED_JOBS=true means PodSecurityPrivileged; empty
	// means DefaultPodSecurityLevel).
	PodSecurityLevel string
	// TaskDeadlineSeconds (TASK_DEADLINE_SECONDS) becomes activeDeadlineSeconds when > 0.
	TaskDeadlineSeconds int64
	// TTLSecondsAfterFinished is the default TTL (21600).
	TTLSecondsAfterFinished int32
	// Labels are added to every Job (the chart's jobConfig.labels).
	Labels map[string]string
	// InitImage copies task files into /keptn (INIT_CONTAINER_IMAGE).
	InitImage string
	// AllowedImages are globs (ALLOWED_IMAGE_LIST); empty allows every image.
	AllowedImages []string
	// KeptnVolumeSize bounds the /keptn volume of a task that sets no keptnVolumeSize
	// (DEFAULT_KEPTN_VOLUME_SIZE; zero: DefaultKeptnVolumeSize).
	KeptnVolumeSize resource.Quantity
	// ImagePullSecrets are given to every Job (DEFAULT_IMAGE_PULL_SECRETS), before a task's own.
	ImagePullSecrets []string

	// Identities a job config may choose (see identities.go). The lists are globs ('*' matches
	// any run of characters) matched against the whole name; empty means the default given.

	// OwnServiceAccount is SERVICE_ACCOUNT_NAME, the service's own account: it can create
	// Jobs, so a task naming it is always refused, whatever AllowedServiceAccounts says.
	OwnServiceAccount string
	// ProtectedSecrets (PROTECTED_SECRETS) are the Secrets the installation itself uses (Keptn
	// API token, OAuth client secret, record signing key): a task's valueFrom: secret naming
	// one is always refused, whatever AllowedSecrets says.
	ProtectedSecrets []string
	// AllowedServiceAccounts (ALLOWED_JOB_SERVICE_ACCOUNTS) bound a task's serviceAccount.
	// Empty: only ServiceAccount (DEFAULT_JOB_SERVICE_ACCOUNT). A task without serviceAccount
	// gets the default account, which is always allowed.
	AllowedServiceAccounts []string
	// AllowedSecrets (ALLOWED_JOB_SECRETS) bound valueFrom: secret names. Empty:
	// DefaultAllowedSecrets, every Secret except the ProtectedSecrets.
	AllowedSecrets []string
	// AllowedTolerations (ALLOWED_JOB_TOLERATIONS) bound the taint keys a task may tolerate:
	// a toleration lets its pod onto nodes the cluster keeps for others. Empty: none. A
	// toleration without key (every taint) needs the entry "*".
	AllowedTolerations []string
	// AllowedNamespaces (ALLOWED_JOB_NAMESPACES) bound a task's namespace. Empty: only the job
	// namespace (Namespace, JOB_NAMESPACE), which is always allowed.
	AllowedNamespaces []string
}

// EventInfo is what a Job needs to know about the triggering event.
type EventInfo struct {
	// ID and Source identify the CloudEvent; with Action and Task they name the Job.
	ID, Source string
	Type       string
	// KeptnContext is the shkeptncontext extension.
	KeptnContext string
	Project      string
	Stage        string
	Service      string
	Labels       map[string]string
	// Raw is the whole event as JSON (the root for env jsonpaths like "$.data.x").
	Raw []byte
}

// TaskInput is everything Build needs for one task.
type TaskInput struct {
	Event      EventInfo
	Action     string
	ActionIdx  int
	Task       config.Task
	TaskIdx    int
	ConfigHash string
	// Files maps a path relative to /keptn (e.g. "locust/basic.py") to its content.
	Files map[string][]byte
}

// Result is the outcome of one task's Job.
type Result struct {
	Succeeded bool
	// Reason is short (e.g. "BackoffLimitExceeded", "DeadlineExceeded", "MaxPollDurationExceeded").
	Reason string
	// Message explains a failure for humans.
	Message string
	// Logs of the task container, already bounded.
	Logs string
	// Results are what the task handed back in its termination message (ParseResults), nil
	// for none; ResultsError says why what it wrote cannot be used.
	Results      map[string]any
	ResultsError string
	// Attempts is how many pods the Job ran (more than one when backoffLimit allowed retries).
	Attempts int32
	// Job names the task's Job once it exists (created, or adopted after a redelivery); empty
	// when the task ended before one was created.
	Job string
	// Start and End bound the Job: its creation, and its completion or failure (or when the
	// runner gave up on it); when no Job was created, the attempt.
	Start, End time.Time
	// RanFrom and RanTo bound the task container's run over the Job's pods: its first start
	// and its last finish, as the kubelet recorded them (to the second). RanFrom is zero when
	// it never started, RanTo when it had not finished when the runner stopped watching.
	RanFrom, RanTo time.Time
}

// Phases of a TaskState: what the cluster shows of one task's Job.
const (
	// PhaseWaiting: no Job yet; the event is unfinished, so the task may still run.
	PhaseWaiting = "Waiting"
	// PhasePending: the Job exists but its task container is not running yet.
	PhasePending = "Pending"
	// PhaseRunning: the task container runs.
	PhaseRunning   = "Running"
	PhaseSucceeded = "Succeeded"
	PhaseFailed    = "Failed"
	// PhaseSkipped: an earlier task of the action failed, so this one never runs (tasks of a
	// parallel action all start at once and are never skipped).
	PhaseSkipped = "Skipped"
	// PhaseGone: no Job and the event is finished: the task was never run (its action was
	// refused) or its Job was removed (ttlSecondsAfterFinished, or deleted when it overran
	// maxPollDuration).
	PhaseGone = "Gone"
	// PhaseUnknown: the Job's namespace cannot be read (its informers did not sync: RBAC).
	PhaseUnknown = "Unknown"
)

// TaskState is what the cluster shows of one task's Job (GET /v1/status).
type TaskState struct {
	Phase string
	// Start is the Job's start, End its completion or failure (zero while unknown).
	Start, End time.Time
	// Reason and Message explain a Failed or a stuck Pending Job (e.g. BackoffLimitExceeded,
	// DeadlineExceeded, ImagePullBackOff).
	Reason, Message string
}
