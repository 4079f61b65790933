package jobs

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keptn-contrib/job-executor-service/config"
)

// DefaultAllowedSecrets is the default of ALLOWED_JOB_SECRETS: every Secret a config names,
// except the installation's own (Settings.ProtectedSecrets, always refused), so existing
// configs with their own secrets keep working.
var DefaultAllowedSecrets = []string{"*"}

// The defaults of ALLOWED_JOB_SERVICE_ACCOUNTS and ALLOWED_JOB_NAMESPACES are the default
// job service account (DEFAULT_JOB_SERVICE_ACCOUNT) and the job namespace (JOB_NAMESPACE)
// alone; both are always allowed, so an empty list allows nothing more.

// checkIdentities refuses the service accounts, Secrets and namespaces a task may not use:
// the service's own account and the installation's Secrets always, anything else unless it
// matches the allow-lists of the installation.
func checkIdentities(s Settings, t config.Task) error {
	if t.ServiceAccount != nil && *t.ServiceAccount != "" {
		sa := *t.ServiceAccount
		switch {
		case s.OwnServiceAccount != "" && sa == s.OwnServiceAccount:
			return fmt.Errorf("serviceAccount %q is the service's own account and is never allowed for a job", sa)
		case sa != s.ServiceAccount && !matchesAny(s.AllowedServiceAccounts, sa):
			return fmt.Errorf("serviceAccount %q is not in the allowed service account list (ALLOWED_JOB_SERVICE_ACCOUNTS)", sa)
		}
	}
	allowedSecrets := s.AllowedSecrets
	if len(allowedSecrets) == 0 {
		allowedSecrets = DefaultAllowedSecrets
	}
	for i, e := range t.Env {
		if e.ValueFrom != config.FromSecret {
			continue
		}
		switch {
		case slices.Contains(s.ProtectedSecrets, e.Name):
			return fmt.Errorf("env[%d].valueFrom: secret %q is a secret of the installation itself and is never allowed for a job", i, e.Name)
		case !matchesAny(allowedSecrets, e.Name):
			return fmt.Errorf("env[%d].valueFrom: secret %q is not in the allowed secret list (ALLOWED_JOB_SECRETS)", i, e.Name)
		}
	}
	for i, name := range t.ImagePullSecrets {
		switch {
		case slices.Contains(s.ProtectedSecrets, name):
			return fmt.Errorf("imagePullSecrets[%d]: secret %q is a secret of the installation itself and is never allowed for a job", i, name)
		case !matchesAny(allowedSecrets, name):
			return fmt.Errorf("imagePullSecrets[%d]: secret %q is not in the allowed secret list (ALLOWED_JOB_SECRETS)", i, name)
		}
	}
	for i, tol := range t.Tolerations {
		if !matchesAny(s.AllowedTolerations, tol.Key) {
			what := fmt.Sprintf("taint key %q", tol.Key)
			if tol.Key == "" {
				what = `every taint (no key; only "*" allows it)`
			}
			return fmt.Errorf("tolerations[%d]: %s is not in the allowed toleration list (ALLOWED_JOB_TOLERATIONS)", i, what)
		}
	}
	if t.Namespace != "" {
		jobNS := firstNonEmpty(s.Namespace, DefaultNamespace)
		if t.Namespace != jobNS && !matchesAny(s.AllowedNamespaces, t.Namespace) {
			return fmt.Errorf("namespace %q is not in the allowed namespace list (ALLOWED_JOB_NAMESPACES)", t.Namespace)
		}
	}
	return nil
}

// matchesAny reports whether name matches one of the globs as a whole.
func matchesAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if p = strings.TrimSpace(p); p != "" && config.GlobMatch(p, name) {
			return true
		}
	}
	return false
}

// CheckNamePatterns refuses allow-list entries that can match no Kubernetes name: each entry,
// with every '*' read as a letter, must be a DNS-1123 subdomain (service accounts, Secrets)
// or, when label is set, a DNS-1123 label (namespaces).
func CheckNamePatterns(patterns []string, label bool) error {
	var errs []error
	for _, p := range patterns {
		check := validation.IsDNS1123Subdomain
		if label {
			check = validation.IsDNS1123Label
		}
		if msgs := check(strings.ReplaceAll(p, "*", "a")); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%q: %s", p, strings.Join(msgs, "; ")))
		}
	}
	return errors.Join(errs...)
}
