package jobs

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keptn-contrib/job-executor-service/config"
)

// Names and paths shared by the builder, the runner and the copy-files init container.
const (
	TaskContainer = "task"
	InitContainer = "init-files"
	// FilesDir is where tasks find their files (writable emptyDir).
	FilesDir = "/keptn"
	// FilesSrcDir is where the init container sees the read-only ConfigMap.
	FilesSrcDir = "/keptn-src"
	// MaxFilesBytes bounds a task's files: a ConfigMap holds at most 1 MiB including
	// metadata, so 900 KiB leaves room for keys, labels and annotations.
	MaxFilesBytes = 900 << 10

	DefaultMaxPollDuration = 300 * time.Second
	DefaultTTL             = int32(21600)
	// DefaultKeptnVolumeSize bounds the /keptn volume unless the installation or the task says
	// otherwise: the original's fixed size.
	DefaultKeptnVolumeSize = "20Mi"
	DefaultNamespace       = "keptn"

	volFiles    = "keptn-files"
	volFilesSrc = "keptn-files-src"
)

// Label and annotation keys.
const (
	LabelManagedBy     = "app.kubernetes.io/managed-by"
	ManagedByValue     = "job-executor-service"
	LabelKeptnContext  = "keptn.sh/context"
	LabelEventIDHash   = "keptn.sh/event-id-hash"
	LabelProject       = "keptn.sh/project"
	LabelStage         = "keptn.sh/stage"
	LabelService       = "keptn.sh/service"
	LabelActionIndex   = "job-executor-service/action-index"
	LabelTaskIndex     = "job-executor-service/task-index"
	LabelConfigHash    = "job-executor-service/config-hash"
	LabelJob           = "job-executor-service/job"
	AnnotationContext  = "job-executor-service/keptn-context"
	AnnotationEventID  = "job-executor-service/event-id"
	AnnotationSource   = "job-executor-service/event-source"
	AnnotationAction   = "job-executor-service/action"
	AnnotationTaskName = "job-executor-service/task"
)

// Built is everything Run creates for one task.
type Built struct {
	Job *batchv1.Job
	// Files is the immutable ConfigMap with the task's files, nil when it has none.
	Files           *corev1.ConfigMap
	Namespace       string
	MaxPollDuration time.Duration
}

// TaskName is the config name of the task the Job runs.
func (b *Built) TaskName() string {
	if b == nil || b.Job == nil {
		return ""
	}
	return b.Job.Annotations[AnnotationTaskName]
}

// TaskError is a task Build cannot turn into a Job; Reason is what is wrong with it.
type TaskError struct{ Task, Reason string }

func (e *TaskError) Error() string { return fmt.Sprintf("task '%s': %s", e.Task, e.Reason) }

// JobRef is where the task's Job is, or will be: its namespace and name.
func JobRef(s Settings, in TaskInput) (namespace, name string) {
	return firstNonEmpty(in.Task.Namespace, s.Namespace, DefaultNamespace), JobName(in.Event.Source, in.Event.ID, in.ActionIdx, in.TaskIdx)
}

// Build turns one task into a Job (and its files ConfigMap). It is pure: the same input
// always gives the same objects, and nothing is sent to Kubernetes.
func Build(s Settings, in TaskInput) (*Built, error) {
	t := in.Task
	fail := func(format string, args ...any) (*Built, error) {
		return nil, &TaskError{Task: t.Name, Reason: fmt.Sprintf(format, args...)}
	}
	ns, name := JobRef(s, in)
	// An installation that sets no security context gets the hardened defaults, never none.
	if s.PodSecurityContext == nil {
		s.PodSecurityContext = DefaultPodSecurityContext()
	}
	if s.SecurityContext == nil {
		s.SecurityContext = DefaultSecurityContext()
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return fail("namespace %q is invalid: %s", ns, strings.Join(errs, "; "))
	}

	maxPoll := DefaultMaxPollDuration
	if t.MaxPollDuration != nil {
		// config validation refuses these too; a Task built in code must not overflow either.
		if *t.MaxPollDuration < 1 || *t.MaxPollDuration > config.MaxPollDurationSeconds {
			return fail("maxPollDuration must be between 1 and %d seconds, got %d", config.MaxPollDurationSeconds, *t.MaxPollDuration)
		}
		maxPoll = time.Duration(*t.MaxPollDuration) * time.Second
	}

	labels, err := buildLabels(s, in, name)
	if err != nil {
		return fail("%v", err)
	}
	env, envFrom, err := buildEnv(in)
	if err != nil {
		return fail("%v", err)
	}
	res := s.DefaultResources.DeepCopy()
	if t.Resources != nil {
		if res, err = taskResources(t.Resources); err != nil {
			return fail("%v", err)
		}
	}

	container := corev1.Container{
		Name:            TaskContainer,
		Image:           t.Image,
		Command:         t.Cmd,
		Args:            t.Args,
		WorkingDir:      t.WorkingDir,
		ImagePullPolicy: corev1.PullPolicy(t.ImagePullPolicy),
		Env:             env,
		EnvFrom:         envFrom,
		Resources:       *res,
		SecurityContext: mergeSecurityContext(s.SecurityContext, t.SecurityContext),
		VolumeMounts:    []corev1.VolumeMount{{Name: volFiles, MountPath: FilesDir}},
	}

	backoffLimit := int32(0)
	if t.BackoffLimit != nil {
		// config validation refuses these too; a Task built in code must not either.
		if *t.BackoffLimit < 0 || *t.BackoffLimit > config.MaxBackoffLimit {
			return fail("backoffLimit must be between 0 and %d, got %d", config.MaxBackoffLimit, *t.BackoffLimit)
		}
		backoffLimit = *t.BackoffLimit
	}

	ttl := s.TTLSecondsAfterFinished
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if t.TTLSecondsAfterFinished != nil {
		ttl = *t.TTLSecondsAfterFinished
	}

	volumeSize, err := keptnVolumeSize(s, t)
	if err != nil {
		return fail("%v", err)
	}
	pod := corev1.PodSpec{
		RestartPolicy:      corev1.RestartPolicyNever,
		ServiceAccountName: s.ServiceAccount,
		SecurityContext:    s.PodSecurityContext.DeepCopy(),
		Containers:         []corev1.Container{container},
		Volumes: []corev1.Volume{{
			Name:         volFiles,
			VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &volumeSize}},
		}},
		ImagePullSecrets: imagePullSecrets(s.ImagePullSecrets, t.ImagePullSecrets),
		NodeSelector:     copyMap(t.NodeSelector),
		Tolerations:      tolerations(t.Tolerations),
	}
	if t.ServiceAccount != nil && *t.ServiceAccount != "" {
		// The task asked for API access: let its service account decide about the token.
		pod.ServiceAccountName = *t.ServiceAccount
	} else {
		pod.AutomountServiceAccountToken = ptr(false)
	}

	var cm *corev1.ConfigMap
	if len(in.Files) > 0 {
		if s.InitImage == "" {
			return fail("has files but no init container image is configured")
		}
		var items []corev1.KeyToPath
		if cm, items, err = filesConfigMap(in.Files, name, ns, labels); err != nil {
			return fail("%v", err)
		}
		pod.Volumes = append(pod.Volumes, corev1.Volume{
			Name: volFilesSrc,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: name},
				Items:                items,
			}},
		})
		pod.InitContainers = []corev1.Container{{
			Name:            InitContainer,
			Image:           s.InitImage,
			Args:            []string{"copy-files", FilesSrcDir, FilesDir},
			Resources:       initResources(s.DefaultResources),
			SecurityContext: s.SecurityContext.DeepCopy(),
			VolumeMounts: []corev1.VolumeMount{
				{Name: volFilesSrc, MountPath: FilesSrcDir, ReadOnly: true},
				{Name: volFiles, MountPath: FilesDir},
			},
		}}
	}

	annotations := map[string]string{}
	podAnnotations := map[string]string{}
	for k, v := range t.Annotations {
		annotations[k] = v
		podAnnotations[k] = v
	}
	annotations[AnnotationContext] = in.Event.KeptnContext
	annotations[AnnotationEventID] = in.Event.ID
	annotations[AnnotationSource] = in.Event.Source
	annotations[AnnotationAction] = in.Action
	annotations[AnnotationTaskName] = t.Name
	if len(podAnnotations) == 0 {
		podAnnotations = nil
	}

	job := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   ns,
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr(backoffLimit),
			TTLSecondsAfterFinished: ptr(ttl),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: copyMap(labels), Annotations: podAnnotations},
				Spec:       pod,
			},
		},
	}
	if s.TaskDeadlineSeconds > 0 {
		job.Spec.ActiveDeadlineSeconds = ptr(s.TaskDeadlineSeconds)
	}
	return &Built{Job: job, Files: cm, Namespace: ns, MaxPollDuration: maxPoll}, nil
}

// keptnVolumeSize is the sizeLimit of the /keptn volume: the task's, the installation's, or
// DefaultKeptnVolumeSize.
func keptnVolumeSize(s Settings, t config.Task) (resource.Quantity, error) {
	if t.KeptnVolumeSize != "" {
		q, err := resource.ParseQuantity(string(t.KeptnVolumeSize))
		if err != nil || q.Sign() <= 0 {
			return q, fmt.Errorf("keptnVolumeSize %q is not a positive quantity", t.KeptnVolumeSize)
		}
		return q, nil
	}
	if !s.KeptnVolumeSize.IsZero() {
		return s.KeptnVolumeSize.DeepCopy(), nil
	}
	return resource.MustParse(DefaultKeptnVolumeSize), nil
}

// imagePullSecrets are the installation's pull secrets, then the task's, each once.
func imagePullSecrets(installation, task []string) []corev1.LocalObjectReference {
	var out []corev1.LocalObjectReference
	seen := map[string]bool{}
	for _, name := range append(append([]string(nil), installation...), task...) {
		if name = strings.TrimSpace(name); name != "" && !seen[name] {
			seen[name] = true
			out = append(out, corev1.LocalObjectReference{Name: name})
		}
	}
	return out
}

func tolerations(ts []config.Toleration) []corev1.Toleration {
	var out []corev1.Toleration
	for _, t := range ts {
		out = append(out, corev1.Toleration{
			Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value,
			Effect: corev1.TaintEffect(t.Effect), TolerationSeconds: t.TolerationSeconds,
		})
	}
	return out
}

func buildLabels(s Settings, in TaskInput, name string) (map[string]string, error) {
	labels := map[string]string{}
	for k, v := range s.Labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("label key %q is invalid: %s", k, strings.Join(errs, "; "))
		}
		labels[k] = LabelValue(v)
	}
	// Ours are set last so installation labels cannot break watching or idempotency.
	labels[LabelManagedBy] = ManagedByValue
	labels[LabelKeptnContext] = LabelValue(in.Event.KeptnContext)
	labels[LabelEventIDHash] = hashHex(in.Event.Source+"\x00"+in.Event.ID, eventHashDigits)
	labels[LabelProject] = LabelValue(in.Event.Project)
	labels[LabelStage] = LabelValue(in.Event.Stage)
	labels[LabelService] = LabelValue(in.Event.Service)
	labels[LabelActionIndex] = strconv.Itoa(in.ActionIdx)
	labels[LabelTaskIndex] = strconv.Itoa(in.TaskIdx)
	labels[LabelConfigHash] = LabelValue(in.ConfigHash)
	labels[LabelJob] = name
	return labels, nil
}

// buildEnv makes the task's variables. Every value taken from the event (KEPTN_*,
// LABELS_*, valueFrom: event) goes through escapeEventValue so Kubernetes passes it
// literally; valueFrom: string values are the config author's and keep "$(VAR)" expansion.
func buildEnv(in TaskInput) ([]corev1.EnvVar, []corev1.EnvFromSource, error) {
	env := []corev1.EnvVar{
		{Name: "KEPTN_PROJECT", Value: escapeEventValue(in.Event.Project)},
		{Name: "KEPTN_STAGE", Value: escapeEventValue(in.Event.Stage)},
		{Name: "KEPTN_SERVICE", Value: escapeEventValue(in.Event.Service)},
	}
	keys := make([]string, 0, len(in.Event.Labels))
	for k := range in.Event.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, corev1.EnvVar{Name: LabelEnvName(k), Value: escapeEventValue(in.Event.Labels[k])})
	}
	var envFrom []corev1.EnvFromSource
	for _, e := range in.Task.Env {
		switch e.ValueFrom {
		case config.FromString:
			env = append(env, corev1.EnvVar{Name: e.Name, Value: e.Value})
		case config.FromEvent:
			v, err := EnvFromEvent(in.Event.Raw, e.Value, e.As)
			if err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env = append(env, corev1.EnvVar{Name: e.Name, Value: escapeEventValue(v)})
		case config.FromSecret:
			// Kubernetes injects every key of the secret; this service never reads it.
			envFrom = append(envFrom, corev1.EnvFromSource{
				SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: e.Name}},
			})
		default:
			return nil, nil, fmt.Errorf("env %s: unknown valueFrom %q (want event, secret or string)", e.Name, e.ValueFrom)
		}
	}
	return env, envFrom, nil
}

func taskResources(r *config.Resources) (*corev1.ResourceRequirements, error) {
	limits, err := resourceList("limits", r.Limits)
	if err != nil {
		return nil, err
	}
	requests, err := resourceList("requests", r.Requests)
	if err != nil {
		return nil, err
	}
	return &corev1.ResourceRequirements{Limits: limits, Requests: requests}, nil
}

func resourceList(what string, l config.ResourceList) (corev1.ResourceList, error) {
	out := corev1.ResourceList{}
	for _, r := range []struct {
		name corev1.ResourceName
		q    config.Quantity
	}{{corev1.ResourceCPU, l.CPU}, {corev1.ResourceMemory, l.Memory}} {
		name, q := r.name, r.q
		if q == "" {
			continue
		}
		v, err := resource.ParseQuantity(string(q))
		if err != nil {
			return nil, fmt.Errorf("resources.%s.%s %q is not a quantity", what, name, q)
		}
		out[name] = v
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// initResources are the installation defaults, or small fixed ones when there are none:
// copying a few files needs little.
func initResources(def corev1.ResourceRequirements) corev1.ResourceRequirements {
	if len(def.Limits) > 0 || len(def.Requests) > 0 {
		return *def.DeepCopy()
	}
	return corev1.ResourceRequirements{
		Limits: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		},
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("16Mi"),
		},
	}
}

// mergeSecurityContext overlays the task's fields on the installation default; fields
// the task leaves unset keep the default.
func mergeSecurityContext(def *corev1.SecurityContext, t *config.SecurityContext) *corev1.SecurityContext {
	out := def.DeepCopy()
	if t == nil {
		return out
	}
	if out == nil {
		out = &corev1.SecurityContext{}
	}
	if t.RunAsUser != nil {
		out.RunAsUser = ptr(*t.RunAsUser)
	}
	if t.RunAsGroup != nil {
		out.RunAsGroup = ptr(*t.RunAsGroup)
	}
	if t.RunAsNonRoot != nil {
		out.RunAsNonRoot = ptr(*t.RunAsNonRoot)
	}
	if t.ReadOnlyRootFilesystem != nil {
		out.ReadOnlyRootFilesystem = ptr(*t.ReadOnlyRootFilesystem)
	}
	if t.Privileged != nil {
		out.Privileged = ptr(*t.Privileged)
		// Kubernetes rejects privileged: true with allowPrivilegeEscalation: false; a
		// restrictive installation default must not make an allowed privileged task invalid.
		if *t.Privileged && t.AllowPrivilegeEscalation == nil {
			out.AllowPrivilegeEscalation = nil
		}
	}
	if t.AllowPrivilegeEscalation != nil {
		out.AllowPrivilegeEscalation = ptr(*t.AllowPrivilegeEscalation)
	}
	if c := t.Capabilities; c != nil {
		if out.Capabilities == nil {
			out.Capabilities = &corev1.Capabilities{}
		}
		// Add and drop replace the default lists one by one, so adding a capability
		// keeps a default "drop: [ALL]".
		if c.Add != nil {
			out.Capabilities.Add = toCaps(c.Add)
		}
		if c.Drop != nil {
			out.Capabilities.Drop = toCaps(c.Drop)
		}
	}
	return out
}

func toCaps(in []string) []corev1.Capability {
	out := make([]corev1.Capability, len(in))
	for i, c := range in {
		out[i] = corev1.Capability(c)
	}
	return out
}

// filesConfigMap packs files into an immutable ConfigMap. Keys cannot contain '/', so
// files are stored as f0, f1, ... (sorted by path) and the volume items map them back.
func filesConfigMap(files map[string][]byte, name, ns string, labels map[string]string) (*corev1.ConfigMap, []corev1.KeyToPath, error) {
	paths := make([]string, 0, len(files))
	size := 0
	for p, content := range files {
		paths = append(paths, p)
		size += len(p) + len(content)
	}
	if size > MaxFilesBytes {
		return nil, nil, fmt.Errorf("files are %s; the limit is %s", formatSize(size), formatSize(MaxFilesBytes))
	}
	sort.Strings(paths)
	data := make(map[string][]byte, len(paths))
	items := make([]corev1.KeyToPath, 0, len(paths))
	seen := map[string]string{}
	for i, p := range paths {
		clean, err := config.CleanFilePath(p)
		if err != nil {
			return nil, nil, err
		}
		if prev, dup := seen[clean]; dup {
			return nil, nil, fmt.Errorf("files %q and %q are the same file", prev, p)
		}
		seen[clean] = p
		key := "f" + strconv.Itoa(i)
		data[key] = files[p]
		items = append(items, corev1.KeyToPath{Key: key, Path: clean})
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: copyMap(labels)},
		Immutable:  ptr(true),
		BinaryData: data,
	}
	return cm, items, nil
}

func formatSize(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", (n+1023)>>10)
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func ptr[T any](v T) *T { return &v }
