package jobs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/keptn-contrib/job-executor-service/config"
)

// CheckTasks refuses tasks that the installation does not allow: images outside
// Settings.AllowedImages, service accounts, Secrets and namespaces outside the allow-lists
// (and always the service's own account and the installation's Secrets), and pods that do not meet Settings.PodSecurityLevel (privileged
// containers, root, added capabilities, privilege escalation, unconfined profiles, ...).
// Callers check all tasks of an action before creating any Job, so an action either runs
// completely or not at all.
func CheckTasks(s Settings, tasks []config.Task) error {
	for _, t := range tasks {
		if err := CheckTask(s, t); err != nil {
			return fmt.Errorf("task '%s': %w", t.Name, err)
		}
	}
	return nil
}

// CheckTask is CheckTasks for one task; the error is the reason alone, without the task's
// name, so that lint can report each refused task with the service's own words.
func CheckTask(s Settings, t config.Task) error {
	if strings.TrimSpace(t.Image) == "" {
		return errors.New("image is empty")
	}
	ok, err := ImageAllowed(s.AllowedImages, t.Image)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("image %q is not in the allowed image list", t.Image)
	}
	if err := checkIdentities(s, t); err != nil {
		return err
	}
	return checkPodSecurity(s, t)
}
