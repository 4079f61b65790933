package jobs

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/keptn-contrib/job-executor-service/config"
)

// Pod Security Standards levels a Job's pod may be held to (JOB_POD_SECURITY_LEVEL).
const (
	PodSecurityRestricted = string(psaapi.LevelRestricted)
	PodSecurityBaseline   = string(psaapi.LevelBaseline)
	PodSecurityPrivileged = string(psaapi.LevelPrivileged)
	// DefaultPodSecurityLevel holds every Job to the hardened standard; ALLOW_PRIVILEGED_JOBS
	// means PodSecurityPrivileged.
	DefaultPodSecurityLevel = PodSecurityRestricted
)

// DefaultPodSecurityContext is the pod security context of Jobs when the installation sets
// none (DEFAULT_POD_SECURITY_CONTEXT; the chart's jobConfig.podSecurityContext, the original's
// values): non-root 1000:2000, RuntimeDefault seccomp. It meets the restricted standard.
func DefaultPodSecurityContext() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(2000)), RunAsNonRoot: ptr(true), FSGroup: ptr(int64(2000)),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// DefaultSecurityContext is the container security context tasks override field by field
// (DEFAULT_SECURITY_CONTEXT; the chart's jobConfig.jobSecurityContext): not privileged, no
// privilege escalation, read-only root filesystem, non-root, every capability dropped.
func DefaultSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		Privileged: ptr(false), AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
		RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(2000)),
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// ParsePodSecurityLevel checks a level name ("restricted", "baseline", "privileged").
func ParsePodSecurityLevel(s string) (string, error) {
	l, err := psaapi.ParseLevel(s)
	if err != nil {
		return "", fmt.Errorf("pod security level %q: want restricted, baseline or privileged", s)
	}
	return string(l), nil
}

// podSecurity evaluates pods with the checks the API server's PodSecurity admission uses.
var podSecurity = func() policy.Evaluator {
	e, err := policy.NewEvaluator(policy.DefaultChecks())
	if err != nil {
		panic(err) // the library's own check list; fails only if the library is broken
	}
	return e
}()

// checkPodSecurity builds the task's pod as Build would and holds the whole of it (both
// containers, volumes, pod and container security contexts, annotations) to the installation's
// Pod Security Standards level, at the latest version of the standard. Event data plays no
// part in what the standards check, so the task's env is left out and the files are stood
// in for.
func checkPodSecurity(s Settings, t config.Task) error {
	level, err := ParsePodSecurityLevel(firstNonEmpty(s.PodSecurityLevel, DefaultPodSecurityLevel))
	if err != nil {
		return err
	}
	if level == PodSecurityPrivileged {
		return nil
	}
	t.Env = nil
	in := TaskInput{Event: EventInfo{ID: "policy-check", Source: "policy-check", Raw: []byte("{}")}, Task: t}
	if len(t.Files) > 0 {
		in.Files = map[string][]byte{"file": nil} // the init container and file volumes are part of the pod
	}
	b, err := Build(s, in)
	if te := (*TaskError)(nil); errors.As(err, &te) {
		return errors.New(te.Reason) // CheckTasks names the task
	} else if err != nil {
		return err
	}
	pod := &b.Job.Spec.Template
	res := policy.AggregateCheckResults(podSecurity.EvaluatePod(
		psaapi.LevelVersion{Level: psaapi.Level(level), Version: psaapi.LatestVersion()}, &pod.ObjectMeta, &pod.Spec))
	if res.Allowed {
		return nil
	}
	// Kubernetes' own wording, as the API server would refuse the pod.
	return fmt.Errorf("the pod would violate PodSecurity %q: %s", level+":latest", res.ForbiddenDetail())
}
