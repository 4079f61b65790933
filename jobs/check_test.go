package jobs

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keptn-contrib/job-executor-service/config"
)

func TestImageAllowed(t *testing.T) {
	cases := []struct {
		patterns []string
		image    string
		want     bool
	}{
		{nil, "anything/at:all", true},
		{[]string{"docker.io/my-user/*"}, "docker.io/my-user/app:1", true},
		{[]string{"docker.io/my-user/*"}, "my-user/app:1", true},
		{[]string{"docker.io/my-user/*"}, "index.docker.io/my-user/app", true},
		{[]string{"docker.io/my-user/*"}, "docker.io/other/app", false},
		{[]string{"docker.io/my-user/*"}, "evil.io/docker.io/my-user/app", false},
		{[]string{"docker.io/my-user/*"}, "my-user.evil.io/app", false},
		{[]string{"docker.io/library/alpine*"}, "alpine", true},
		{[]string{"docker.io/library/alpine*"}, "alpine:3.19", true},
		{[]string{"docker.io/library/alpine:*"}, "alpine", true},
		{[]string{"docker.io/library/alpine:latest"}, "alpine", true},
		{[]string{"docker.io/library/alpine:latest"}, "alpine:3.19", false},
		{[]string{"docker.io/library/alpine*"}, "docker.io/alpine", true},
		{[]string{"docker.io/library/alpine*"}, "alpinex/evil", false},
		{[]string{"alpine"}, "alpine", true},
		{[]string{"alpine"}, "alpine:3", false},
		{[]string{"docker.io/*"}, "localhost/app", false},
		{[]string{"localhost:5000/*"}, "localhost:5000/app@sha256:abc", true},
		{[]string{"custom.registry.io/*"}, "custom.registry.io/team/app/sub:v1", true},
		{[]string{"custom.registry.io/*"}, "custom.registry.io", false},
		{[]string{" ", "custom.registry.io/*", "docker.io/*"}, "busybox", true},
		{[]string{"*"}, "x", true},
		{[]string{"a*b*c"}, "aXXbYYc", true},
		{[]string{"a*b*c"}, "aXXbYY", false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, ImageAllowed(tc.patterns, tc.image), "%v %q", tc.patterns, tc.image)
	}
}

// hardened is an installation with the default security contexts (what the chart renders).
func hardened(level string) Settings {
	return Settings{
		AllowedImages: []string{"docker.io/my-user/*"}, PodSecurityLevel: level, InitImage: "job-executor-service:test",
		PodSecurityContext: DefaultPodSecurityContext(), SecurityContext: DefaultSecurityContext(),
	}
}

// TestCheckTasks: the whole built pod is held to the Pod Security Standards level of the
// installation; each refusal names the failed check in Kubernetes' words.
func TestCheckTasks(t *testing.T) {
	task := func(name string, sc *config.SecurityContext) config.Task {
		return config.Task{Name: name, Image: "docker.io/my-user/app", SecurityContext: sc}
	}
	ok := task("ok", nil)
	priv := task("priv", &config.SecurityContext{Privileged: ptr(true)})
	capTask := func(c string) config.Task {
		return task("cap", &config.SecurityContext{Capabilities: &config.Capabilities{Add: []string{c}}})
	}
	restricted, baseline, privileged := hardened(""), hardened(PodSecurityBaseline), hardened(PodSecurityPrivileged)
	cases := []struct {
		name  string
		s     Settings
		tasks []config.Task
		want  string
	}{
		{"ok", restricted, []config.Task{ok, ok}, ""},
		{"ok with files (init container)", restricted, []config.Task{{Name: "f", Image: "my-user/x", Files: []string{"a.sh"}}}, ""},
		{"image refused even in second task", restricted, []config.Task{ok, {Name: "b", Image: "alpine"}},
			`task 'b': image "alpine" is not in the allowed image list`},
		{"empty image", restricted, []config.Task{{Name: "e"}}, "task 'e': image is empty"},
		{"privileged", restricted, []config.Task{ok, priv}, `task 'priv': the pod would violate PodSecurity "restricted:latest": privileged`},
		{"privileged under baseline", baseline, []config.Task{priv}, `PodSecurity "baseline:latest": privileged`},
		{"privileged allowed", privileged, []config.Task{priv}, ""},
		// What a field-by-field check missed:
		{"root", restricted, []config.Task{task("root", &config.SecurityContext{RunAsUser: ptr(int64(0))})}, "runAsUser=0"},
		{"runAsNonRoot false", restricted, []config.Task{task("nr", &config.SecurityContext{RunAsNonRoot: ptr(false)})}, "runAsNonRoot != true"},
		{"privilege escalation", restricted, []config.Task{task("pe", &config.SecurityContext{Privileged: ptr(false), AllowPrivilegeEscalation: ptr(true)})},
			"allowPrivilegeEscalation != false"},
		{"drop nothing (NET_RAW back)", restricted, []config.Task{task("d", &config.SecurityContext{Capabilities: &config.Capabilities{Drop: []string{}}})},
			`must set securityContext.capabilities.drop=["ALL"]`},
		{"SYS_ADMIN", restricted, []config.Task{capTask("SYS_ADMIN")}, "unrestricted capabilities"},
		{"SYS_RESOURCE", restricted, []config.Task{capTask("SYS_RESOURCE")}, "SYS_RESOURCE"},
		{"IPC_LOCK under baseline", baseline, []config.Task{capTask("IPC_LOCK")}, "non-default capabilities"},
		{"harmless cap", restricted, []config.Task{capTask("NET_BIND_SERVICE")}, ""},
		{"caps allowed when privileged allowed", privileged, []config.Task{capTask("SYS_ADMIN")}, ""},
		{"root is baseline", baseline, []config.Task{task("root", &config.SecurityContext{RunAsUser: ptr(int64(0)), RunAsNonRoot: ptr(false)})}, ""},
		{"unconfined AppArmor annotation", baseline, []config.Task{{Name: "aa", Image: "my-user/x",
			Annotations: config.Annotations{"container.apparmor.security.beta.kubernetes.io/task": "unconfined"}}}, "forbidden AppArmor profile"},
		{"unknown level", hardened("lax"), []config.Task{ok}, `pod security level "lax"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTasks(tc.s, tc.tasks)
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			if assert.Error(t, err) {
				assert.Contains(t, err.Error(), tc.want)
			}
		})
	}
}
