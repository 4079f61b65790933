package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/handler"
	"github.com/keptn-contrib/job-executor-service/handler/keptn"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	"github.com/keptn-contrib/job-executor-service/jobs"
	"github.com/keptn-contrib/job-executor-service/jobs/records"
	"github.com/keptn-contrib/job-executor-service/jobs/run"
)

// env is the service configuration, read once from the environment (see README "Configuration").
type env struct {
	// Host is the address the receiver binds (RCV_HOST; empty = every interface). The chart
	// sets 127.0.0.1 in distributor mode: only the sidecar in the same pod can post events.
	Host string
	Port int
	// MonitoringPort (MONITORING_PORT; 0 = none) serves /healthz, /readyz and /metrics on
	// every interface and never events: probes and scraping when the receiver is on loopback.
	MonitoringPort int
	Path           string
	MaxBodyBytes   int64
	LogLevel       string
	Token          string // RCV_TOKEN

	ConfigDir            string // JOB_CONFIG_DIR: local job configs instead of Keptn
	ConfigurationService string // resource-service base URL
	KeptnAPIEndpoint     string
	KeptnAPIToken        string
	SSLVerify            bool
	OAuthClientID        string
	OAuthClientSecret    string
	OAuthScopes          []string
	OAuthDiscovery       string
	Sink                 string // K_SINK
	EventBroker          string // EVENTBROKER: distributor's /event

	AlwaysSendFinished   bool
	MaxConcurrentActions int
	MaxQueuedEvents      int
	MaxQueuedBytes       int
	MaxMessageBytes      int
	MaxEventBytes        int // MAX_OUTGOING_EVENT_BYTES
	MaxTaskLogBytes      int
	MaxFileBytes         int
	FailFastAfter        time.Duration
	ConfigCacheTTL       time.Duration
	ShutdownGrace        time.Duration
	ShutdownDelay        time.Duration
	DedupRetention       time.Duration
	MaxFinishedRecords   int
	ConfigPendingTimeout time.Duration
	Instance             string // INSTANCE_ID: who owns the events this process runs
	KubeQPS              int    // KUBE_API_QPS: the Kubernetes client's request rate
	KubeBurst            int    // KUBE_API_BURST: requests it may send at once above that rate
	Profiling            bool   // PPROF_ENABLED: /debug/pprof on the monitoring router
	InstanceLease        time.Duration
	// RecordSigningKey (RECORD_SIGNING_KEY) signs event records; recovery resumes only
	// records signed with it. Empty: records are unsigned and recovery trusts the namespace.
	RecordSigningKey []byte

	Settings jobs.Settings
}

// readEnv collects every setting and reports all malformed values at once.
func readEnv(get func(string) string) (*env, error) {
	r := &reader{get: get}
	e := &env{
		Host:                 r.str("RCV_HOST", ""),
		Port:                 r.int("RCV_PORT", DefaultPort),
		MonitoringPort:       r.int("MONITORING_PORT", 0),
		Path:                 r.str("RCV_PATH", handler.DefaultPath),
		MaxBodyBytes:         int64(r.int("MAX_REQUEST_BYTES", handler.DefaultMaxBodyBytes)),
		LogLevel:             r.str("LOG_LEVEL", "info"),
		Token:                r.str("RCV_TOKEN", ""),
		ConfigDir:            r.str("JOB_CONFIG_DIR", ""),
		ConfigurationService: r.str("CONFIGURATION_SERVICE", ""),
		KeptnAPIEndpoint:     strings.TrimRight(r.str("KEPTN_API_ENDPOINT", ""), "/"),
		KeptnAPIToken:        r.str("KEPTN_API_TOKEN", ""),
		SSLVerify:            r.bool("HTTP_SSL_VERIFY", true),
		OAuthClientID:        r.str("OAUTH_CLIENT_ID", ""),
		OAuthClientSecret:    r.str("OAUTH_CLIENT_SECRET", ""),
		OAuthScopes:          r.list("OAUTH_SCOPES", " ,"),
		OAuthDiscovery:       r.str("OAUTH_DISCOVERY", ""),
		Sink:                 r.str("K_SINK", ""),
		EventBroker:          r.str("EVENTBROKER", ""),
		AlwaysSendFinished:   r.bool("ALWAYS_SEND_FINISHED_EVENT", false),
		MaxConcurrentActions: r.int("MAX_CONCURRENT_ACTIONS", lifecycle.DefaultMaxConcurrentActions),
		MaxQueuedEvents:      r.int("MAX_QUEUED_EVENTS", lifecycle.DefaultMaxQueuedEvents),
		MaxQueuedBytes:       r.int("MAX_QUEUED_BYTES", lifecycle.DefaultMaxQueuedBytes),
		MaxMessageBytes:      r.int("MAX_FINISHED_MESSAGE_BYTES", keptn.DefaultMaxMessageBytes),
		MaxEventBytes:        r.int("MAX_OUTGOING_EVENT_BYTES", keptn.DefaultMaxEventBytes),
		MaxTaskLogBytes:      r.int("MAX_TASK_LOG_BYTES", run.DefaultMaxLogBytes),
		MaxFileBytes:         r.int("MAX_TASK_FILES_BYTES", jobs.MaxFilesBytes),
		FailFastAfter:        r.seconds("FAIL_FAST_SECONDS", run.DefaultFailFastAfter),
		ConfigCacheTTL:       r.seconds("CONFIG_CACHE_TTL_SECONDS", config.DefaultCommitlessTTL),
		ShutdownGrace:        r.seconds("SHUTDOWN_GRACE_SECONDS", 20*time.Second),
		ShutdownDelay:        r.seconds("SHUTDOWN_DELAY_SECONDS", inPodDelay(get)),
		DedupRetention:       r.seconds("DEDUP_RETENTION_SECONDS", lifecycle.DefaultDedupRetention),
		MaxFinishedRecords:   r.int("MAX_FINISHED_RECORDS", lifecycle.DefaultMaxFinishedRecords),
		ConfigPendingTimeout: r.seconds("CONFIG_PENDING_TIMEOUT_SECONDS", lifecycle.DefaultConfigPendingTimeout),
		InstanceLease:        r.seconds("INSTANCE_LEASE_SECONDS", records.DefaultLeaseDuration),
		KubeQPS:              r.int("KUBE_API_QPS", DefaultKubeQPS),
		KubeBurst:            r.int("KUBE_API_BURST", DefaultKubeBurst),
		Profiling:            r.bool("PPROF_ENABLED", false),
	}
	// In a pod HOSTNAME is the pod name: a container restarted in the same pod is the same
	// instance and resumes its events at once.
	e.Instance = r.str("INSTANCE_ID", hostname())
	if key := r.str("RECORD_SIGNING_KEY", ""); key != "" {
		if len(key) < minSigningKeyBytes {
			// The value itself is never printed.
			r.errs = append(r.errs, fmt.Sprintf("RECORD_SIGNING_KEY: %d bytes; want at least %d (e.g. head -c 32 /dev/urandom | base64)", len(key), minSigningKeyBytes))
		} else {
			e.RecordSigningKey = []byte(key)
		}
	}
	if e.KubeQPS < 1 || e.KubeBurst < 1 {
		r.errs = append(r.errs, fmt.Sprintf("KUBE_API_QPS=%d, KUBE_API_BURST=%d: both must be at least 1", e.KubeQPS, e.KubeBurst))
	}
	if e.MaxEventBytes < minEventBytes {
		// Below this even a .finished without logs and labels may not fit.
		r.errs = append(r.errs, fmt.Sprintf("%s=%d: want at least %d", r.source("MAX_OUTGOING_EVENT_BYTES"), e.MaxEventBytes, minEventBytes))
	}
	if e.MonitoringPort != 0 && e.MonitoringPort == e.Port {
		r.errs = append(r.errs, fmt.Sprintf("MONITORING_PORT=%d: the receiver's port (RCV_PORT); pick another one or 0", e.MonitoringPort))
	}
	if e.MaxBodyBytes > records.MaxEventBytes {
		r.errs = append(r.errs, fmt.Sprintf("MAX_REQUEST_BYTES=%d: more than an event record can hold (%d bytes: a ConfigMap's %d less %d for the job config)",
			e.MaxBodyBytes, records.MaxEventBytes, records.MaxDataBytes, records.ConfigReserve))
	}
	if e.MaxQueuedBytes > 0 && int64(e.MaxQueuedBytes) < e.MaxBodyBytes {
		r.errs = append(r.errs, fmt.Sprintf("MAX_QUEUED_BYTES=%d: less than MAX_REQUEST_BYTES (%d); every event taken in must fit in the queue",
			e.MaxQueuedBytes, e.MaxBodyBytes))
	}
	if e.ConfigurationService == "" && e.KeptnAPIEndpoint != "" {
		e.ConfigurationService = e.KeptnAPIEndpoint + "/resource-service"
	}
	e.Settings = r.settings()
	if len(r.errs) > 0 {
		return nil, fmt.Errorf("invalid environment:\n  %s", strings.Join(r.errs, "\n  "))
	}
	return e, nil
}

// settings reads jobs.Settings: how Jobs are built and what a job config may ask for. lint
// reads them here too, with its flags in front of the environment.
func (r *reader) settings() jobs.Settings {
	var s jobs.Settings
	s.Namespace = r.str("JOB_NAMESPACE", jobs.DefaultNamespace)
	s.InitImage = r.str("INIT_CONTAINER_IMAGE", "")
	s.ServiceAccount = r.str("DEFAULT_JOB_SERVICE_ACCOUNT", "")
	s.PodSecurityLevel = r.podSecurityLevel("JOB_POD_SECURITY_LEVEL", jobs.DefaultPodSecurityLevel)
	if r.bool("ALLOW_PRIVILEGED_JOBS", false) {
		s.PodSecurityLevel = jobs.PodSecurityPrivileged // the original's switch, kept
	}
	s.TaskDeadlineSeconds = int64(r.int("TASK_DEADLINE_SECONDS", 0))
	s.TTLSecondsAfterFinished = int32(r.int("DEFAULT_TTL_SECONDS_AFTER_FINISHED", int(jobs.DefaultTTL)))
	s.AllowedImages = r.list("ALLOWED_IMAGE_LIST", ",")
	if _, err := jobs.ParseImagePatterns(s.AllowedImages); err != nil {
		r.errs = append(r.errs, fmt.Sprintf("%s: %v", r.source("ALLOWED_IMAGE_LIST"), err))
	}
	// Identities a config may choose; empty lists mean the defaults of jobs.Settings.
	s.OwnServiceAccount = r.str("SERVICE_ACCOUNT_NAME", "")
	s.ProtectedSecrets = r.list("PROTECTED_SECRETS", ",")
	s.AllowedServiceAccounts = r.namePatterns("ALLOWED_JOB_SERVICE_ACCOUNTS", false)
	s.AllowedSecrets = r.namePatterns("ALLOWED_JOB_SECRETS", false)
	s.AllowedNamespaces = r.namePatterns("ALLOWED_JOB_NAMESPACES", true)
	s.AllowedTolerations = r.list("ALLOWED_JOB_TOLERATIONS", ",")
	s.ImagePullSecrets = r.namePatterns("DEFAULT_IMAGE_PULL_SECRETS", false)
	s.KeptnVolumeSize = r.positiveQuantity("DEFAULT_KEPTN_VOLUME_SIZE", jobs.DefaultKeptnVolumeSize)
	s.DefaultResources = corev1.ResourceRequirements{
		Limits:   r.resources("DEFAULT_RESOURCE_LIMITS_CPU", "1", "DEFAULT_RESOURCE_LIMITS_MEMORY", "512Mi"),
		Requests: r.resources("DEFAULT_RESOURCE_REQUESTS_CPU", "50m", "DEFAULT_RESOURCE_REQUESTS_MEMORY", "128Mi"),
	}
	s.PodSecurityContext = jobs.DefaultPodSecurityContext()
	replaceObject(r, "DEFAULT_POD_SECURITY_CONTEXT", &s.PodSecurityContext)
	s.SecurityContext = jobs.DefaultSecurityContext()
	replaceObject(r, "DEFAULT_SECURITY_CONTEXT", &s.SecurityContext)
	replaceObject(r, "JOB_LABELS", &s.Labels)
	return s
}

// DefaultPort is RCV_PORT's default, the port Keptn's distributor forwards events to.
const DefaultPort = 8080

// minSigningKeyBytes is the shortest RECORD_SIGNING_KEY accepted: a guessable key would let
// anyone who can create ConfigMaps forge event records.
const minSigningKeyBytes = 32

// minEventBytes is the smallest MAX_OUTGOING_EVENT_BYTES: an event's own fields take about 1 KiB.
const minEventBytes = 4096

// inPodDelay is the default SHUTDOWN_DELAY_SECONDS: 5 in a Kubernetes pod (time for endpoint
// updates to reach every node), 0 elsewhere.
func inPodDelay(get func(string) string) time.Duration {
	if get("KUBERNETES_SERVICE_HOST") != "" {
		return 5 * time.Second
	}
	return 0
}

type reader struct {
	get func(string) string
	// from names where a setting's value came from in messages (lint: its flag when given);
	// nil: the variable.
	from func(string) string
	errs []string
}

func (r *reader) source(name string) string {
	if r.from == nil {
		return name
	}
	return r.from(name)
}

func (r *reader) str(name, def string) string {
	if v := strings.TrimSpace(r.get(name)); v != "" {
		return v
	}
	return def
}

func (r *reader) int(name string, def int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		r.errs = append(r.errs, fmt.Sprintf("%s=%q: want a whole number >= 0", r.source(name), v))
		return def
	}
	return n
}

// seconds reads a whole number of seconds; def is the default as a duration.
func (r *reader) seconds(name string, def time.Duration) time.Duration {
	return time.Duration(r.int(name, int(def/time.Second))) * time.Second
}

func (r *reader) bool(name string, def bool) bool {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Sprintf("%s=%q: want true or false", r.source(name), v))
		return def
	}
	return b
}

func (r *reader) list(name, seps string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(r.get(name), func(c rune) bool { return strings.ContainsRune(seps, c) }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// namePatterns reads a comma separated allow-list of name globs (see jobs.CheckNamePatterns).
func (r *reader) namePatterns(name string, label bool) []string {
	l := r.list(name, ",")
	if err := jobs.CheckNamePatterns(l, label); err != nil {
		r.errs = append(r.errs, fmt.Sprintf("%s: %v", r.source(name), err))
	}
	return l
}

func (r *reader) resources(cpuName, cpuDef, memName, memDef string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, q := range []struct {
		name, def string
		res       corev1.ResourceName
	}{{cpuName, cpuDef, corev1.ResourceCPU}, {memName, memDef, corev1.ResourceMemory}} {
		v := r.str(q.name, q.def)
		qty, err := resource.ParseQuantity(v)
		if err != nil {
			r.errs = append(r.errs, fmt.Sprintf("%s=%q: not a Kubernetes quantity: %v", r.source(q.name), v, err))
			continue
		}
		out[q.res] = qty
	}
	return out
}

func (r *reader) positiveQuantity(name, def string) resource.Quantity {
	v := r.str(name, def)
	q, err := resource.ParseQuantity(v)
	if err != nil || q.Sign() <= 0 {
		r.errs = append(r.errs, fmt.Sprintf("%s=%q: want a positive Kubernetes quantity (e.g. 20Mi)", r.source(name), v))
		return resource.MustParse(def)
	}
	return q
}

func (r *reader) podSecurityLevel(name, def string) string {
	l, err := jobs.ParsePodSecurityLevel(r.str(name, def))
	if err != nil {
		r.errs = append(r.errs, fmt.Sprintf("%s: %v", r.source(name), err))
		return def
	}
	return l
}

// replaceObject decodes a JSON or YAML value (e.g. a security context), when the variable is
// set, strictly into a fresh value that replaces *out (no merging with the default).
func replaceObject[T any](r *reader, name string, out *T) {
	v := r.str(name, "")
	if v == "" {
		return
	}
	var fresh T
	if err := yaml.UnmarshalStrict([]byte(v), &fresh); err != nil {
		r.errs = append(r.errs, fmt.Sprintf("%s: %v", r.source(name), err))
		return
	}
	*out = fresh
}

func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "job-executor-service"
}

// osGet is the real environment; tests pass a map.
func osGet(name string) string { return os.Getenv(name) }
