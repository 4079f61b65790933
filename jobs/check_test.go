package jobs

import (
	"strings"
	"testing"

	"github.com/distribution/reference"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/config"
)

const alpineDigest = "sha256:4bcff63911fcb4448bd4fdacec207030997caf25e9bea4045fa6c8c44de311d1"

func TestImageAllowed(t *testing.T) {
	cases := []struct {
		name     string
		patterns []string
		image    string
		want     bool
	}{
		{"no list allows all", nil, "anything/at:all", true},
		{"user namespace", []string{"docker.io/my-user/*"}, "docker.io/my-user/app:1", true},
		{"user namespace, short form", []string{"docker.io/my-user/*"}, "my-user/app:1", true},
		{"index.docker.io is docker.io", []string{"docker.io/my-user/*"}, "index.docker.io/my-user/app", true},
		{"other user", []string{"docker.io/my-user/*"}, "docker.io/other/app", false},
		{"registry in path", []string{"docker.io/my-user/*"}, "evil.io/docker.io/my-user/app", false},
		{"user as registry", []string{"docker.io/my-user/*"}, "my-user.evil.io/app", false},
		{"* does not cross /", []string{"docker.io/my-user/*"}, "docker.io/my-user/app/sub", false},
		{"library glob", []string{"docker.io/library/alpine*"}, "alpine", true},
		{"library glob, tag", []string{"docker.io/library/alpine*"}, "alpine:3.19", true},
		{"library glob, short pattern", []string{"alpine*"}, "docker.io/library/alpine:3.20", true},
		{"tag glob", []string{"docker.io/library/alpine:*"}, "alpine", true},
		{"implicit latest", []string{"docker.io/library/alpine:latest"}, "alpine", true},
		{"other tag", []string{"docker.io/library/alpine:latest"}, "alpine:3.19", false},
		{"tag pattern needs a tag", []string{"alpine:3.19"}, "alpine@" + alpineDigest, false},
		{"docker.io/alpine is library", []string{"docker.io/library/alpine*"}, "docker.io/alpine", true},
		{"library glob vs user image", []string{"docker.io/library/alpine*"}, "alpinex/evil", false},
		{"bypass: docker.io/alpine* vs user alpinehacker", []string{"docker.io/alpine*"}, "alpinehacker/evil", false},
		{"docker.io/alpine* is library", []string{"docker.io/alpine*"}, "alpine:3.20", true},
		{"bypass: upper-case first part is a registry host", []string{"docker.io/*"}, "Evil/x", false},
		{"bypass: upper-case first part, nested", []string{"docker.io/*/*"}, "Evil/x/y", false},
		{"library star", []string{"docker.io/library/*"}, "alpine", true},
		{"library star, tag", []string{"docker.io/library/*"}, "alpine:3.20", true},
		{"library star, not nested", []string{"docker.io/library/*"}, "docker.io/library/x/y", false},
		{"library star vs user image", []string{"docker.io/library/*"}, "my-user/app", false},
		{"exact name any tag", []string{"alpine"}, "alpine", true},
		{"exact name any tag, tagged", []string{"alpine"}, "alpine:3", true},
		{"exact name any digest", []string{"alpine"}, "alpine@" + alpineDigest, true},
		{"exact name, not user image", []string{"alpine"}, "someone/alpine", false},
		{"digest pinned", []string{"alpine@" + alpineDigest}, "docker.io/library/alpine@" + alpineDigest, true},
		{"digest pinned, other digest", []string{"alpine@" + alpineDigest}, "alpine@sha256:" + strings.Repeat("0", 64), false},
		{"digest pinned, tag only", []string{"alpine@" + alpineDigest}, "alpine:3.20", false},
		{"tag and digest", []string{"alpine:3.20"}, "alpine:3.20@" + alpineDigest, true},
		{"localhost registry", []string{"localhost:5000/team/*"}, "localhost:5000/team/app:1", true},
		{"localhost registry, other team", []string{"localhost:5000/team/*"}, "localhost:5000/other/app:1", false},
		{"localhost is no docker.io", []string{"docker.io/*/*"}, "localhost/app", false},
		{"localhost digest", []string{"localhost:5000/*"}, "localhost:5000/app@" + alpineDigest, true},
		{"** crosses /", []string{"custom.registry.io/**"}, "custom.registry.io/team/app/sub:v1", true},
		{"** needs a path", []string{"custom.registry.io/**"}, "custom.registry.io", false},
		{"** on docker.io", []string{"docker.io/**"}, "busybox", true},
		{"docker.io/** is docker.io/library/**", []string{"docker.io/**"}, "my-user/app", false},
		{"all of Docker Hub", []string{"docker.io/*/*"}, "my-user/app", true},
		{"all of Docker Hub, library", []string{"docker.io/*/*"}, "alpine:3.20", true},
		{"all of Docker Hub, not elsewhere", []string{"docker.io/*/*"}, "ghcr.io/my-user/app", false},
		{"docker.io/* is library only", []string{"docker.io/*"}, "my-user/app", false},
		{"blank patterns ignored", []string{" ", "custom.registry.io/*", "docker.io/library/*"}, "busybox", true},
		{"multiple stars", []string{"docker.io/a*b*c"}, "aXXbYYc", false}, // upper case is invalid
		{"multiple stars lower", []string{"docker.io/a*b*c"}, "axxbyyc", true},
		{"multiple stars no match", []string{"docker.io/a*b*c"}, "axxbyy", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := ImageAllowed(tc.patterns, tc.image)
			assert.Equal(t, tc.want, got, "%v %q", tc.patterns, tc.image)
		})
	}
}

func TestImageAllowedRefusesInvalidReferences(t *testing.T) {
	for _, image := range []string{"evil/X", "docker.io/library/Alpine", "alpine:", "alpine@sha256:abc", "-x/y", "a b", "Evil"} {
		t.Run(image, func(t *testing.T) {
			for _, patterns := range [][]string{nil, {"docker.io/**"}} {
				ok, err := ImageAllowed(patterns, image)
				assert.False(t, ok)
				if assert.Error(t, err) {
					assert.Contains(t, err.Error(), "is not a valid image reference")
				}
			}
		})
	}
	err := CheckTasks(Settings{AllowedImages: []string{"docker.io/**"}}, []config.Task{{Name: "up", Image: "evil/X"}})
	if assert.Error(t, err) {
		assert.Contains(t, err.Error(), `task 'up': image "evil/X" is not a valid image reference`)
		assert.Contains(t, err.Error(), "lowercase")
	}
}

func TestParseImagePatterns(t *testing.T) {
	_, err := ParseImagePatterns([]string{"docker.io/library/*", "custom.registry.io/**", "alpine@" + alpineDigest, "*.gcr.io/*/app:v*"})
	require.NoError(t, err)
	for _, bad := range []string{"docker.io/Library/*", "alpine@sha256:*", "a//b", "localhost:*/x"} {
		_, err := ParseImagePatterns([]string{bad})
		if assert.Error(t, err, bad) {
			assert.Contains(t, err.Error(), "not a valid image pattern")
		}
	}
}

// FuzzImageAllowed: no pattern or image makes the check panic, an allowed image is always a
// valid reference, and a valid image is allowed by a list naming exactly it.
func FuzzImageAllowed(f *testing.F) {
	f.Add("docker.io/library/*", "alpine:3.20")
	f.Add("docker.io/alpine*", "alpinehacker/evil")
	f.Add("docker.io/*", "Evil/x")
	f.Add("alpine@"+alpineDigest, "alpine@"+alpineDigest)
	f.Add("localhost:5000/**", "localhost:5000/team/app:1")
	f.Add("**", "a/b/c")
	f.Fuzz(func(t *testing.T, pattern, image string) {
		ok, err := ImageAllowed([]string{pattern}, image)
		if ok && err != nil {
			t.Fatalf("allowed with error %v", err)
		}
		if _, perr := reference.ParseNormalizedNamed(image); perr != nil {
			if ok {
				t.Fatalf("invalid image %q allowed by %q", image, pattern)
			}
			return
		}
		if !strings.Contains(image, "*") && strings.TrimSpace(image) == image {
			if self, err := ImageAllowed([]string{image}, image); !self {
				t.Fatalf("%q not allowed by itself: %v", image, err)
			}
		}
	})
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
		t.Run(tc.name, func(t *testing.T) { assertCheck(t, tc.s, tc.tasks, tc.want) })
	}
}

// TestCheckIdentities: a config chooses service accounts, Secrets and namespaces only within
// the installation's allow-lists, never the service's own account or Secrets.
func TestCheckIdentities(t *testing.T) {
	base := func(mod func(*Settings)) Settings {
		s := hardened("")
		s.Namespace = "keptn-jobs"
		s.ServiceAccount = "job-account"
		s.OwnServiceAccount = "job-executor-service"
		s.ProtectedSecrets = []string{"job-service-keptn-secrets", "job-executor-service-record-key"}
		if mod != nil {
			mod(&s)
		}
		return s
	}
	task := func(mod func(*config.Task)) []config.Task {
		tk := config.Task{Name: "t", Image: "docker.io/my-user/app"}
		mod(&tk)
		return []config.Task{{Name: "first", Image: "docker.io/my-user/app"}, tk}
	}
	sa := func(name string) []config.Task { return task(func(t *config.Task) { t.ServiceAccount = ptr(name) }) }
	secret := func(name string) []config.Task {
		return task(func(t *config.Task) {
			t.Env = []config.Env{{Name: "X", Value: "y", ValueFrom: config.FromString}, {Name: name, ValueFrom: config.FromSecret}}
		})
	}
	ns := func(name string) []config.Task { return task(func(t *config.Task) { t.Namespace = name }) }
	pull := func(names ...string) []config.Task { return task(func(t *config.Task) { t.ImagePullSecrets = names }) }
	tolerate := func(keys ...string) []config.Task {
		return task(func(t *config.Task) {
			for _, k := range keys {
				op := config.TolerationEqual
				if k == "" {
					op = config.TolerationExists
				}
				t.Tolerations = append(t.Tolerations, config.Toleration{Key: k, Operator: op})
			}
		})
	}
	cases := []struct {
		name  string
		s     Settings
		tasks []config.Task
		want  string
	}{
		// Defaults: the default account, any non-protected secret, the job namespace.
		{"no serviceAccount", base(nil), task(func(*config.Task) {}), ""},
		{"empty serviceAccount is the default", base(nil), sa(""), ""},
		{"default account by name", base(nil), sa("job-account"), ""},
		{"other account refused by default", base(nil), sa("deployer"),
			`task 't': serviceAccount "deployer" is not in the allowed service account list`},
		{"own account refused", base(nil), sa("job-executor-service"),
			`task 't': serviceAccount "job-executor-service" is the service's own account`},
		{"own account refused even if listed", base(func(s *Settings) { s.AllowedServiceAccounts = []string{"job-executor-service"} }),
			sa("job-executor-service"), `serviceAccount "job-executor-service" is the service's own account`},
		{"own account refused even by *", base(func(s *Settings) { s.AllowedServiceAccounts = []string{"*"} }),
			sa("job-executor-service"), `serviceAccount "job-executor-service" is the service's own account`},
		{"own account refused even as the default", base(func(s *Settings) { s.ServiceAccount = "job-executor-service" }),
			sa("job-executor-service"), `is the service's own account`},
		{"account glob", base(func(s *Settings) { s.AllowedServiceAccounts = []string{"deploy-*"} }), sa("deploy-prod"), ""},
		{"account glob is whole-string", base(func(s *Settings) { s.AllowedServiceAccounts = []string{"deploy-*"} }), sa("x-deploy-prod"),
			`serviceAccount "x-deploy-prod" is not in the allowed`},
		{"account list keeps the default", base(func(s *Settings) { s.AllowedServiceAccounts = []string{"deploy-*"} }), sa("job-account"), ""},

		{"own secret", base(nil), secret("my-creds"), ""},
		{"protected secret refused", base(nil), secret("job-service-keptn-secrets"),
			`task 't': env[1].valueFrom: secret "job-service-keptn-secrets" is a secret of the installation itself`},
		{"protected secret refused even with *", base(func(s *Settings) { s.AllowedSecrets = []string{"*"} }), secret("job-executor-service-record-key"),
			`env[1].valueFrom: secret "job-executor-service-record-key" is a secret of the installation itself`},
		{"protected secret refused even if listed", base(func(s *Settings) { s.AllowedSecrets = []string{"job-service-keptn-secrets"} }),
			secret("job-service-keptn-secrets"), `is a secret of the installation itself`},
		{"secret glob", base(func(s *Settings) { s.AllowedSecrets = []string{"team-*"} }), secret("team-a"), ""},
		{"secret glob refuses others", base(func(s *Settings) { s.AllowedSecrets = []string{"team-*"} }), secret("other-team-a"),
			`env[1].valueFrom: secret "other-team-a" is not in the allowed secret list`},
		{"secret in the second task of two", base(nil), append(secret("my-creds"), secret("job-service-keptn-secrets")...),
			`task 't': env[1].valueFrom: secret "job-service-keptn-secrets"`},

		{"own pull secret", base(nil), pull("registry-creds"), ""},
		{"protected secret as pull secret refused", base(nil), pull("registry-creds", "job-service-keptn-secrets"),
			`task 't': imagePullSecrets[1]: secret "job-service-keptn-secrets" is a secret of the installation itself`},
		{"pull secret glob refuses others", base(func(s *Settings) { s.AllowedSecrets = []string{"team-*"} }), pull("registry-creds"),
			`imagePullSecrets[0]: secret "registry-creds" is not in the allowed secret list (ALLOWED_JOB_SECRETS)`},
		{"installation pull secrets are not the task's", base(func(s *Settings) { s.ImagePullSecrets = []string{"job-service-keptn-secrets"} }), task(func(*config.Task) {}), ""},

		{"no toleration allowed by default", base(nil), tolerate("dedicated"),
			`task 't': tolerations[0]: taint key "dedicated" is not in the allowed toleration list (ALLOWED_JOB_TOLERATIONS)`},
		{"toleration glob", base(func(s *Settings) { s.AllowedTolerations = []string{"dedicated", "example.com/*"} }), tolerate("dedicated", "example.com/gpu"), ""},
		{"control-plane taint not listed", base(func(s *Settings) { s.AllowedTolerations = []string{"example.com/*"} }), tolerate("example.com/gpu", "node-role.kubernetes.io/control-plane"),
			`tolerations[1]: taint key "node-role.kubernetes.io/control-plane" is not in the allowed toleration list`},
		{"every taint needs *", base(func(s *Settings) { s.AllowedTolerations = []string{"example.com/*"} }), tolerate(""),
			`tolerations[0]: every taint (no key; only "*" allows it) is not in the allowed toleration list`},
		{"every taint with *", base(func(s *Settings) { s.AllowedTolerations = []string{"*"} }), tolerate(""), ""},

		{"job namespace by name", base(nil), ns("keptn-jobs"), ""},
		{"other namespace refused by default", base(nil), ns("kube-system"),
			`task 't': namespace "kube-system" is not in the allowed namespace list`},
		{"namespace glob", base(func(s *Settings) { s.AllowedNamespaces = []string{"team-*"} }), ns("team-a"), ""},
		{"namespace glob refuses others", base(func(s *Settings) { s.AllowedNamespaces = []string{"team-*"} }), ns("keptn"),
			`namespace "keptn" is not in the allowed namespace list`},
		{"namespace list keeps the job namespace", base(func(s *Settings) { s.AllowedNamespaces = []string{"team-*"} }), ns("keptn-jobs"), ""},
		{"unset job namespace is keptn", base(func(s *Settings) { s.Namespace = "" }), ns("keptn"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { assertCheck(t, tc.s, tc.tasks, tc.want) })
	}
}

// TestCheckTaskIsTheReason: CheckTask gives the reason alone, and CheckTasks (the service's
// refusal) says that same reason after the task's name, so lint and .finished agree.
func TestCheckTaskIsTheReason(t *testing.T) {
	s := hardened("")
	s.AllowedImages = []string{"docker.io/my-user/*"}
	ok := config.Task{Name: "ok", Image: "docker.io/my-user/app"}
	bad := config.Task{Name: "bad", Image: "alpine"}
	require.NoError(t, CheckTask(s, ok))
	reason := CheckTask(s, bad)
	require.EqualError(t, reason, `image "alpine" is not in the allowed image list`)
	assert.EqualError(t, CheckTasks(s, []config.Task{ok, bad}), "task 'bad': "+reason.Error())
}

// A task the builder refuses (here a quantity validation would have caught) is named once.
func TestCheckTasksNamesTheTaskOnce(t *testing.T) {
	bad := config.Task{Name: "bad", Image: "docker.io/my-user/app", Resources: &config.Resources{Limits: config.ResourceList{CPU: "lots"}}}
	err := CheckTasks(hardened(""), []config.Task{bad})
	require.Error(t, err)
	assert.Equal(t, 1, strings.Count(err.Error(), "task 'bad'"), err.Error())
}

func TestCheckNamePatterns(t *testing.T) {
	assert.NoError(t, CheckNamePatterns([]string{"*", "team-*", "a.b", "x*y*z"}, false))
	assert.NoError(t, CheckNamePatterns([]string{"*", "team-*"}, true))
	assert.Error(t, CheckNamePatterns([]string{"a.b"}, true), "a dot is no namespace")
	assert.Error(t, CheckNamePatterns([]string{"Team"}, false))
	assert.Error(t, CheckNamePatterns([]string{"a b"}, false))
}

// assertCheck runs CheckTasks: no error when want is empty, else an error containing want.
func assertCheck(t *testing.T, s Settings, tasks []config.Task, want string) {
	t.Helper()
	err := CheckTasks(s, tasks)
	if want == "" {
		assert.NoError(t, err)
		return
	}
	if assert.Error(t, err) {
		assert.Contains(t, err.Error(), want)
	}
}
