package jobs

import (
	"fmt"
	"strings"

	"github.com/keptn-contrib/job-executor-service/config"
)

// hazardousCapabilities may only be added when privileged jobs are allowed: each of
// them lets a container escape or take over its node or network.
var hazardousCapabilities = map[string]bool{
	"ALL": true, "SYS_ADMIN": true, "NET_ADMIN": true, "SYS_PTRACE": true, "SYS_MODULE": true,
	"SYS_RAWIO": true, "SYS_BOOT": true, "DAC_READ_SEARCH": true, "BPF": true, "PERFMON": true,
	"SYS_TIME": true, "MAC_ADMIN": true, "MAC_OVERRIDE": true, "NET_RAW": true,
}

// CheckTasks refuses tasks that the installation does not allow: images outside
// Settings.AllowedImages, and (unless Settings.AllowPrivileged) privileged containers
// or hazardous added capabilities. Callers check all tasks of an action before creating
// any Job, so an action either runs completely or not at all.
func CheckTasks(s Settings, tasks []config.Task) error {
	for _, t := range tasks {
		if err := checkTask(s, t); err != nil {
			return err
		}
	}
	return nil
}

func checkTask(s Settings, t config.Task) error {
	if strings.TrimSpace(t.Image) == "" {
		return fmt.Errorf("task '%s': image is empty", t.Name)
	}
	ok, err := ImageAllowed(s.AllowedImages, t.Image)
	if err != nil {
		return fmt.Errorf("task '%s': %w", t.Name, err)
	}
	if !ok {
		return fmt.Errorf("task '%s': image %q is not in the allowed image list", t.Name, t.Image)
	}
	sc := t.SecurityContext
	if s.AllowPrivileged || sc == nil {
		return nil
	}
	if sc.Privileged != nil && *sc.Privileged {
		return fmt.Errorf("task '%s': privileged containers are not allowed in this installation", t.Name)
	}
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Add {
			name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(c)), "CAP_")
			if hazardousCapabilities[name] {
				return fmt.Errorf("task '%s': adding capability %s is not allowed in this installation", t.Name, c)
			}
		}
	}
	return nil
}
