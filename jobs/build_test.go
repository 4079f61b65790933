package jobs

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/keptn-contrib/job-executor-service/config"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/golden")

const testEvent = `{
  "type": "sh.keptn.event.test.triggered",
  "specversion": "1.0",
  "source": "shipyard-controller",
  "id": "4fe1eed1-49e2-49a9-91af-a42c8b0f7811",
  "shkeptncontext": "138f7bf1-f027-42c4-b705-9033b5f5871e",
  "data": {
    "project": "sockshop", "stage": "dev", "service": "carts",
    "deployment": {"deploymentURIsLocal": ["https://keptn.sh"], "replicas": 3, "canary": false,
      "meta": {"a": 1, "b": [true, null]}},
    "labels": {"build-id": "17", "owner name": "JohnDoe"}
  }
}`

func testSettings() Settings {
	return Settings{
		Namespace: "keptn",
		DefaultResources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("1"),
				corev1.ResourceMemory: resource.MustParse("512Mi"),
			},
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("50m"),
				corev1.ResourceMemory: resource.MustParse("128Mi"),
			},
		},
		ServiceAccount:     "job-executor-service-job",
		PodSecurityContext: &corev1.PodSecurityContext{FSGroup: ptr(int64(65532))},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(int64(65532)),
			RunAsNonRoot:             ptr(true),
			ReadOnlyRootFilesystem:   ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			Privileged:               ptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		TTLSecondsAfterFinished: 21600,
		Labels:                  map[string]string{"team": "platform", LabelManagedBy: "someone-else"},
		InitImage:               "ghcr.io/keptn-contrib/job-executor-service:dev",
	}
}

func testInput(task config.Task) TaskInput {
	return TaskInput{
		Event: EventInfo{
			ID:           "4fe1eed1-49e2-49a9-91af-a42c8b0f7811",
			Source:       "shipyard-controller",
			Type:         "sh.keptn.event.test.triggered",
			KeptnContext: "138f7bf1-f027-42c4-b705-9033b5f5871e",
			Project:      "sockshop", Stage: "dev", Service: "carts",
			Labels: map[string]string{"build-id": "17", "owner name": "JohnDoe"},
			Raw:    []byte(testEvent),
		},
		Action:     "Run tests",
		ActionIdx:  0,
		Task:       task,
		TaskIdx:    1,
		ConfigHash: "0123456789abcdef",
	}
}

func TestBuildGolden(t *testing.T) {
	hello := config.Task{Name: "Hello world", Image: "alpine", Cmd: []string{"echo"}, Args: []string{"hello"}}
	with := func(f func(*config.Task)) config.Task {
		task := hello
		f(&task)
		return task
	}
	cases := []struct {
		name string
		s    func(*Settings)
		in   func(*TaskInput)
	}{
		{name: "hello-world"},
		{name: "env-all-kinds", in: func(in *TaskInput) {
			in.Task = with(func(t *config.Task) {
				t.Env = []config.Env{
					{Name: "HOST", Value: "$.data.deployment.deploymentURIsLocal[0]", ValueFrom: config.FromEvent},
					{Name: "REPLICAS", Value: "$.data.deployment.replicas", ValueFrom: config.FromEvent},
					{Name: "CANARY", Value: "$.data.deployment.canary", ValueFrom: config.FromEvent},
					{Name: "META", Value: "$.data.deployment.meta", ValueFrom: config.FromEvent},
					{Name: "META_YAML", Value: "$.data.deployment.meta", ValueFrom: config.FromEvent, As: config.AsYAML},
					{Name: "EVENT", Value: "$", ValueFrom: config.FromEvent, As: config.AsJSON},
					{Name: "DATA_DIR", Value: "/tmp/data", ValueFrom: config.FromString},
					{Name: "locust-secret", ValueFrom: config.FromSecret},
				}
			})
		}},
		{name: "files", in: func(in *TaskInput) {
			in.Task = with(func(t *config.Task) { t.Files = []string{"locust", "/helm"} })
			in.Files = map[string][]byte{
				"locust/basic.py":        []byte("print('hi')\n"),
				"locust/locust.conf":     []byte("users = 1\n"),
				"helm/chart/Chart.yaml":  []byte("name: x\n"),
				"/helm/chart/values.yml": []byte("a: 1\n"),
			}
		}},
		{name: "resources-default-empty", s: func(s *Settings) { s.DefaultResources = corev1.ResourceRequirements{} },
			in: func(in *TaskInput) { in.Files = map[string][]byte{"a.txt": []byte("a")} }},
		{name: "resources-override", in: func(in *TaskInput) {
			in.Task = with(func(t *config.Task) {
				t.Resources = &config.Resources{Limits: config.ResourceList{CPU: "1"}, Requests: config.ResourceList{CPU: "50m"}}
			})
		}},
		{name: "resources-empty-block", in: func(in *TaskInput) {
			in.Task = with(func(t *config.Task) { t.Resources = &config.Resources{} })
		}},
		{name: "security-context-override", in: func(in *TaskInput) {
			in.Task = with(func(t *config.Task) {
				t.SecurityContext = &config.SecurityContext{
					RunAsUser: ptr(int64(7000)), RunAsGroup: ptr(int64(9000)),
					ReadOnlyRootFilesystem: ptr(false),
					Capabilities:           &config.Capabilities{Add: []string{"NET_BIND_SERVICE"}},
				}
			})
		}},
		{name: "namespace-ttl-pullpolicy", in: func(in *TaskInput) {
			in.Task = with(func(t *config.Task) {
				t.Namespace = "carts"
				t.TTLSecondsAfterFinished = ptr(int32(600))
				t.ImagePullPolicy = "Always"
				t.WorkingDir = "/bin"
				t.MaxPollDuration = ptr(1200)
			})
		}},
		{name: "annotations", in: func(in *TaskInput) {
			in.Task = with(func(t *config.Task) {
				t.Annotations = config.Annotations{"key1": "value1", "vault.hashicorp.com/agent-inject": "true",
					AnnotationTaskName: "cannot override ours"}
			})
		}},
		{name: "service-account", in: func(in *TaskInput) {
			in.Task = with(func(t *config.Task) { t.ServiceAccount = ptr("kubectl-runner") })
		}},
		{name: "deadline", s: func(s *Settings) { s.TaskDeadlineSeconds = 3600 }},
		{name: "placement-retries-volume", s: func(s *Settings) {
			s.ImagePullSecrets = []string{"installation-pull", "shared-pull"}
			s.KeptnVolumeSize = resource.MustParse("50Mi")
		}, in: func(in *TaskInput) {
			in.Task = with(func(t *config.Task) {
				t.ImagePullSecrets = []string{"shared-pull", "team-pull"}
				t.BackoffLimit = ptr(int32(2))
				t.KeptnVolumeSize = "1Gi"
				t.NodeSelector = map[string]string{"disk": "ssd"}
				t.Tolerations = []config.Toleration{
					{Key: "dedicated", Operator: config.TolerationEqual, Value: "load-test", Effect: config.EffectNoSchedule},
					{Key: "node.kubernetes.io/unreachable", Operator: config.TolerationExists, Effect: config.EffectNoExecute, TolerationSeconds: ptr(int64(60))},
				}
			})
		}},
		{name: "keptn-volume-size-installation", s: func(s *Settings) { s.KeptnVolumeSize = resource.MustParse("50Mi") }},
		{name: "labels-sanitized", in: func(in *TaskInput) {
			in.Event.Project = "Sock Shop!"
			in.Event.Stage = "-dev-"
			in.Event.Service = strings.Repeat("carts-service.", 10)
			in.Event.KeptnContext = "ctx/with spaces/äöü"
			in.ConfigHash = ""
		}},
		{name: "long-ids", in: func(in *TaskInput) {
			in.Event.ID = strings.Repeat("very-long-event-id-", 20)
			in.Event.Source = strings.Repeat("source/", 30)
			in.ActionIdx, in.TaskIdx = 123, 4567
		}},
		{name: "short-ids", in: func(in *TaskInput) {
			in.Event.ID, in.Event.Source, in.Event.KeptnContext = "1", "", ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings()
			if tc.s != nil {
				tc.s(&s)
			}
			in := testInput(hello)
			if tc.in != nil {
				tc.in(&in)
			}
			b, err := Build(s, in)
			require.NoError(t, err)
			assertValidObjects(t, b)

			got := marshalBuilt(t, b)
			path := filepath.Join("testdata", "golden", tc.name+".yaml")
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./jobs -run TestBuildGolden -update")
			assert.Equal(t, string(want), string(got))

			again, err := Build(s, in)
			require.NoError(t, err)
			assert.Equal(t, string(got), string(marshalBuilt(t, again)), "Build must be deterministic")
		})
	}
}

func marshalBuilt(t *testing.T, b *Built) []byte {
	t.Helper()
	out, err := yaml.Marshal(map[string]any{"namespace": b.Namespace, "maxPollDuration": b.MaxPollDuration.String()})
	require.NoError(t, err)
	for _, obj := range []any{b.Job, b.Files} {
		if obj == b.Files && b.Files == nil {
			continue
		}
		y, err := yaml.Marshal(obj)
		require.NoError(t, err)
		out = append(append(out, "---\n"...), y...)
	}
	return out
}

// assertValidObjects checks what the API server would reject and what we promise.
func assertValidObjects(t *testing.T, b *Built) {
	t.Helper()
	assert.Empty(t, validation.IsDNS1123Label(b.Job.Name))
	for _, m := range []map[string]string{b.Job.Labels, b.Job.Spec.Template.Labels} {
		assert.Equal(t, ManagedByValue, m[LabelManagedBy])
		for k, v := range m {
			assert.Empty(t, validation.IsQualifiedName(k), k)
			assert.Empty(t, validation.IsValidLabelValue(v), "label %s=%q", k, v)
		}
	}
	pod := b.Job.Spec.Template.Spec
	assert.Equal(t, corev1.RestartPolicyNever, pod.RestartPolicy)
	assert.LessOrEqual(t, *b.Job.Spec.BackoffLimit, int32(config.MaxBackoffLimit))
	require.Len(t, pod.Volumes, len(pod.InitContainers)+1)
	assert.NotNil(t, pod.Volumes[0].EmptyDir.SizeLimit, "the /keptn volume is always bounded")
	for _, c := range append(pod.InitContainers, pod.Containers...) {
		for _, e := range c.Env {
			assert.Empty(t, validation.IsEnvVarName(e.Name), e.Name)
			assert.NotContains(t, strings.ToUpper(e.Name), "TOKEN")
		}
	}
	assert.Contains(t, pod.Containers[0].VolumeMounts, corev1.VolumeMount{Name: volFiles, MountPath: FilesDir})
	if b.Files != nil {
		assert.Equal(t, b.Job.Name, b.Files.Name)
		assert.True(t, *b.Files.Immutable)
		for k := range b.Files.BinaryData {
			assert.Empty(t, validation.IsConfigMapKey(k), k)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	base := config.Task{Name: "x", Image: "alpine"}
	cases := []struct {
		name string
		in   func(*TaskInput)
		s    func(*Settings)
		want string
	}{
		{"missing jsonpath", func(in *TaskInput) {
			in.Task.Env = []config.Env{{Name: "HOST", Value: "$.data.y", ValueFrom: config.FromEvent}}
		}, nil, "task 'x': env HOST: jsonpath $.data.y not found in event"},
		{"bad jsonpath", func(in *TaskInput) {
			in.Task.Env = []config.Env{{Name: "HOST", Value: "$.data[x]", ValueFrom: config.FromEvent}}
		}, nil, `task 'x': env HOST: json path "$.data[x]": index "x"`},
		{"unknown valueFrom", func(in *TaskInput) {
			in.Task.Env = []config.Env{{Name: "A", ValueFrom: "file"}}
		}, nil, `task 'x': env A: unknown valueFrom "file"`},
		{"unknown as", func(in *TaskInput) {
			in.Task.Env = []config.Env{{Name: "A", Value: "$", ValueFrom: config.FromEvent, As: "toml"}}
		}, nil, `task 'x': env A: unknown format as: "toml"`},
		{"invalid event", func(in *TaskInput) {
			in.Event.Raw = []byte("{not json")
			in.Task.Env = []config.Env{{Name: "A", Value: "$", ValueFrom: config.FromEvent}}
		}, nil, "task 'x': env A: event is not valid JSON"},
		{"bad quantity", func(in *TaskInput) {
			in.Task.Resources = &config.Resources{Limits: config.ResourceList{Memory: "lots"}}
		}, nil, `task 'x': resources.limits.memory "lots" is not a quantity`},
		{"files too big", func(in *TaskInput) {
			in.Files = map[string][]byte{"big.bin": make([]byte, 1300<<10)}
		}, nil, "task 'x': files are 1.3 MiB; the limit is 900 KiB"},
		{"file path escapes", func(in *TaskInput) {
			in.Files = map[string][]byte{"a/..data/x": []byte("x")}
		}, nil, `task 'x': file path "a/..data/x": elements may not start with ".."`},
		{"duplicate file", func(in *TaskInput) {
			in.Files = map[string][]byte{"a": []byte("x"), "/a": []byte("y")}
		}, nil, `task 'x': files "/a" and "a" are the same file`},
		{"no init image", func(in *TaskInput) {
			in.Files = map[string][]byte{"a": []byte("x")}
		}, func(s *Settings) { s.InitImage = "" }, "task 'x': has files but no init container image"},
		{"bad namespace", func(in *TaskInput) { in.Task.Namespace = "Not_Valid" }, nil, `task 'x': namespace "Not_Valid" is invalid`},
		{"bad maxPollDuration", func(in *TaskInput) { in.Task.MaxPollDuration = ptr(0) }, nil, "task 'x': maxPollDuration must be between 1 and 2592000 seconds, got 0"},
		{"overflowing maxPollDuration", func(in *TaskInput) { in.Task.MaxPollDuration = ptr(10000000000) }, nil, "task 'x': maxPollDuration must be between 1 and 2592000 seconds, got 10000000000"},
		{"bad keptnVolumeSize", func(in *TaskInput) { in.Task.KeptnVolumeSize = "-1Mi" }, nil, `task 'x': keptnVolumeSize "-1Mi" is not a positive quantity`},
		{"bad backoffLimit", func(in *TaskInput) { in.Task.BackoffLimit = ptr(int32(11)) }, nil, "task 'x': backoffLimit must be between 0 and 10, got 11"},
		{"bad settings label", nil, func(s *Settings) { s.Labels = map[string]string{"bad key!": "v"} }, `task 'x': label key "bad key!" is invalid`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings()
			if tc.s != nil {
				tc.s(&s)
			}
			in := testInput(base)
			if tc.in != nil {
				tc.in(&in)
			}
			b, err := Build(s, in)
			require.Error(t, err)
			assert.Nil(t, b)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestBuildDetails(t *testing.T) {
	s := testSettings()
	in := testInput(config.Task{Name: "x", Image: "alpine", MaxPollDuration: ptr(1200)})
	b, err := Build(s, in)
	require.NoError(t, err)
	assert.Equal(t, 1200*time.Second, b.MaxPollDuration)
	pod := b.Job.Spec.Template.Spec
	assert.Equal(t, ptr(false), pod.AutomountServiceAccountToken)
	assert.Equal(t, "job-executor-service-job", pod.ServiceAccountName)
	assert.Nil(t, b.Files)
	assert.Empty(t, pod.InitContainers)
	assert.Equal(t, "x", b.TaskName())

	// The task's own service account decides about the token.
	in.Task.ServiceAccount = ptr("admin")
	b, err = Build(s, in)
	require.NoError(t, err)
	assert.Nil(t, b.Job.Spec.Template.Spec.AutomountServiceAccountToken)
	assert.Equal(t, "admin", b.Job.Spec.Template.Spec.ServiceAccountName)

	// A privileged task drops the default allowPrivilegeEscalation: false, which
	// Kubernetes would reject together with privileged: true; an explicit value stays.
	in.Task.SecurityContext = &config.SecurityContext{Privileged: ptr(true)}
	b, err = Build(s, in)
	require.NoError(t, err)
	sc := b.Job.Spec.Template.Spec.Containers[0].SecurityContext
	assert.Equal(t, ptr(true), sc.Privileged)
	assert.Nil(t, sc.AllowPrivilegeEscalation)
	in.Task.SecurityContext.AllowPrivilegeEscalation = ptr(true)
	b, err = Build(s, in)
	require.NoError(t, err)
	assert.Equal(t, ptr(true), b.Job.Spec.Template.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation)
	in.Task.SecurityContext = nil

	// Settings are not mutated through the built objects.
	b.Job.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Drop[0] = "NONE"
	b.Job.Spec.Template.Spec.SecurityContext.FSGroup = ptr(int64(1))
	assert.Equal(t, corev1.Capability("ALL"), s.SecurityContext.Capabilities.Drop[0])
	assert.Equal(t, int64(65532), *s.PodSecurityContext.FSGroup)
}

func BenchmarkBuild(b *testing.B) {
	s := testSettings()
	task := config.Task{Name: "bench", Image: "locustio/locust", Cmd: []string{"locust"}, Files: []string{"locust"}}
	for i := 0; i < 20; i++ {
		e := config.Env{Name: "E" + string(rune('A'+i)), Value: "$.data.deployment.deploymentURIsLocal[0]", ValueFrom: config.FromEvent}
		switch i % 4 {
		case 1:
			e = config.Env{Name: e.Name, Value: "literal", ValueFrom: config.FromString}
		case 2:
			e.Value, e.As = "$.data.deployment.meta", config.AsYAML
		case 3:
			e.Value = "$"
		}
		task.Env = append(task.Env, e)
	}
	in := testInput(task)
	in.Files = map[string][]byte{}
	for i := 0; i < 10; i++ {
		in.Files["locust/file"+string(rune('a'+i))+".py"] = make([]byte, 4<<10)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(s, in); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPullPolicyNames: the values config accepts are exactly Kubernetes' pull policies.
func TestPullPolicyNames(t *testing.T) {
	assert.Equal(t, []corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever},
		[]corev1.PullPolicy{config.PullAlways, config.PullIfNotPresent, config.PullNever})
}

// TestFilesFitKeptnResponseBound: config.KeptnSource reads a resource only up to a bound
// derived from config.MaxConfigBytes, which must cover the largest task files too.
func TestFilesFitKeptnResponseBound(t *testing.T) {
	assert.LessOrEqual(t, MaxFilesBytes, config.MaxConfigBytes)
}
