package jobs

import (
	"fmt"
	"strings"

	"github.com/keptn-contrib/job-executor-service/config"
)

// CheckTasks refuses tasks that the installation does not allow: images outside
// Settings.AllowedImages, and pods that do not meet Settings.PodSecurityLevel (privileged
// containers, root, added capabilities, privilege escalation, unconfined profiles, ...).
// Callers check all tasks of an action before creating any Job, so an action either runs
// completely or not at all.
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
	if !ImageAllowed(s.AllowedImages, t.Image) {
		return fmt.Errorf("task '%s': image %q is not in the allowed image list", t.Name, t.Image)
	}
	if err := checkPodSecurity(s, t); err != nil {
		return fmt.Errorf("task '%s': %w", t.Name, err)
	}
	return nil
}

// ImageAllowed reports whether image matches one of the glob patterns; no patterns
// allow everything. In a pattern '*' matches any characters including '/'; all other
// characters are literal.
//
// The image is tried as written and in its normalised Docker Hub form, so that users
// can list either: an image whose first path part is not a registry (has no '.' or ':'
// and is not "localhost") lives on docker.io, single-part names are under "library/",
// "index.docker.io" is docker.io, and an image without tag or digest is also tried with
// ":latest". So "alpine" matches "alpine", "docker.io/library/alpine*",
// "docker.io/library/alpine:*" and "docker.io/library/alpine:latest", and
// "my-user/app:1" matches "docker.io/my-user/*".
func ImageAllowed(patterns []string, image string) bool {
	if len(patterns) == 0 {
		return true
	}
	candidates := imageCandidates(image)
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		for _, c := range candidates {
			if config.GlobMatch(p, c) {
				return true
			}
		}
	}
	return false
}

func imageCandidates(image string) []string {
	image = strings.TrimSpace(image)
	out := []string{image}
	name := image
	first, rest, hasSlash := strings.Cut(image, "/")
	switch {
	case !hasSlash:
		name = "docker.io/library/" + image
	case first == "index.docker.io":
		name = "docker.io/" + rest
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		name = "docker.io/" + image
	}
	if first == "docker.io" && !strings.Contains(rest, "/") {
		name = "docker.io/library/" + rest
	}
	if name != image {
		out = append(out, name)
	}
	// A tag is a ':' after the last '/'; a digest contains '@'.
	last := name[strings.LastIndex(name, "/")+1:]
	if !strings.Contains(last, ":") && !strings.Contains(name, "@") {
		out = append(out, name+":latest")
	}
	return out
}
