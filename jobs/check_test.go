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

func TestCheckTasks(t *testing.T) {
	ok := config.Task{Name: "ok", Image: "docker.io/my-user/app"}
	priv := config.Task{Name: "priv", Image: "docker.io/my-user/app", SecurityContext: &config.SecurityContext{Privileged: ptr(true)}}
	capTask := func(c string) config.Task {
		return config.Task{Name: "cap", Image: "docker.io/my-user/app",
			SecurityContext: &config.SecurityContext{Capabilities: &config.Capabilities{Add: []string{c}}}}
	}
	restricted := Settings{AllowedImages: []string{"docker.io/my-user/*"}}
	open := Settings{AllowedImages: []string{"docker.io/my-user/*"}, AllowPrivileged: true}
	cases := []struct {
		name  string
		s     Settings
		tasks []config.Task
		want  string
	}{
		{"ok", restricted, []config.Task{ok, ok}, ""},
		{"image refused even in second task", restricted, []config.Task{ok, {Name: "b", Image: "alpine"}},
			`task 'b': image "alpine" is not in the allowed image list`},
		{"empty image", restricted, []config.Task{{Name: "e"}}, "task 'e': image is empty"},
		{"privileged", restricted, []config.Task{ok, priv}, "task 'priv': privileged containers are not allowed"},
		{"privileged allowed", open, []config.Task{priv}, ""},
		{"not privileged", restricted, []config.Task{{Name: "np", Image: "my-user/x",
			SecurityContext: &config.SecurityContext{Privileged: ptr(false), AllowPrivilegeEscalation: ptr(true)}}}, ""},
		{"SYS_ADMIN", restricted, []config.Task{capTask("SYS_ADMIN")}, "task 'cap': adding capability SYS_ADMIN is not allowed"},
		{"cap_net_admin", restricted, []config.Task{capTask("cap_net_admin")}, "adding capability cap_net_admin is not allowed"},
		{"ALL", restricted, []config.Task{capTask("ALL")}, "adding capability ALL"},
		{"harmless cap", restricted, []config.Task{capTask("NET_BIND_SERVICE")}, ""},
		{"caps allowed when privileged allowed", open, []config.Task{capTask("SYS_ADMIN")}, ""},
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
