package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	"github.com/keptn-contrib/job-executor-service/config"
	"github.com/keptn-contrib/job-executor-service/jobs"
)

func getter(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestReadEnvDefaults(t *testing.T) {
	e, err := readEnv(getter(nil))
	require.NoError(t, err)
	assert.Equal(t, 8080, e.Port)
	assert.Equal(t, "/", e.Path)
	assert.Equal(t, "keptn", e.Settings.Namespace)
	assert.True(t, e.SSLVerify)
	assert.Equal(t, int32(21600), e.Settings.TTLSecondsAfterFinished)
	assert.Equal(t, "1", e.Settings.DefaultResources.Limits.Cpu().String())
	assert.Equal(t, "512Mi", e.Settings.DefaultResources.Limits.Memory().String())
	assert.Equal(t, "50m", e.Settings.DefaultResources.Requests.Cpu().String())
	assert.Equal(t, "128Mi", e.Settings.DefaultResources.Requests.Memory().String())
	sc := e.Settings.SecurityContext
	assert.True(t, *sc.ReadOnlyRootFilesystem)
	assert.True(t, *sc.RunAsNonRoot)
	assert.False(t, *sc.AllowPrivilegeEscalation)
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, e.Settings.PodSecurityContext.SeccompProfile.Type)
	assert.Zero(t, e.ShutdownDelay, "outside a pod")
	assert.Empty(t, e.ConfigurationService)
	assert.Nil(t, e.RecordSigningKey, "unsigned records unless a key is given")
	assert.Equal(t, 1000, e.MaxFinishedRecords)
	assert.Equal(t, 10*time.Minute, e.ConfigPendingTimeout)
	assert.Equal(t, 64<<20, e.MaxQueuedBytes)
	assert.Equal(t, int64(983040), e.MaxBodyBytes)
	assert.Equal(t, 120<<10, e.MaxEventBytes, "fits the distributor's 128 KiB proxy")
}

func TestReadEnv(t *testing.T) {
	e, err := readEnv(getter(map[string]string{
		"KEPTN_API_ENDPOINT":             "https://keptn.example.com/api/",
		"HTTP_SSL_VERIFY":                "false",
		"ALLOWED_IMAGE_LIST":             "docker.io/my-user/*, custom.registry.io/* ,",
		"OAUTH_SCOPES":                   "openid keptn,extra",
		"JOB_LABELS":                     `{"team":"qa"}`,
		"DEFAULT_SECURITY_CONTEXT":       "runAsUser: 7\nreadOnlyRootFilesystem: false\n",
		"DEFAULT_RESOURCE_LIMITS_CPU":    "2",
		"TASK_DEADLINE_SECONDS":          "600",
		"KUBERNETES_SERVICE_HOST":        "10.96.0.1",
		"FAIL_FAST_SECONDS":              "7",
		"RECORD_SIGNING_KEY":             " 0123456789abcdef0123456789abcdef\n",
		"MAX_FINISHED_RECORDS":           "50",
		"CONFIG_PENDING_TIMEOUT_SECONDS": "90",
		"MAX_QUEUED_BYTES":               "2000000",
		"MAX_OUTGOING_EVENT_BYTES":       "60000",
	}))
	require.NoError(t, err)
	assert.Equal(t, 60000, e.MaxEventBytes)
	assert.Equal(t, "https://keptn.example.com/api", e.KeptnAPIEndpoint)
	assert.Equal(t, "https://keptn.example.com/api/resource-service", e.ConfigurationService)
	assert.False(t, e.SSLVerify)
	assert.Equal(t, []string{"docker.io/my-user/*", "custom.registry.io/*"}, e.Settings.AllowedImages)
	assert.Equal(t, []string{"openid", "keptn", "extra"}, e.OAuthScopes)
	assert.Equal(t, map[string]string{"team": "qa"}, e.Settings.Labels)
	assert.Equal(t, int64(7), *e.Settings.SecurityContext.RunAsUser)
	assert.False(t, *e.Settings.SecurityContext.ReadOnlyRootFilesystem)
	assert.Equal(t, "2", e.Settings.DefaultResources.Limits.Cpu().String())
	assert.Equal(t, int64(600), e.Settings.TaskDeadlineSeconds)
	assert.Equal(t, 5*time.Second, e.ShutdownDelay, "in a pod")
	assert.Equal(t, 7*time.Second, e.FailFastAfter)
	assert.Equal(t, []byte("0123456789abcdef0123456789abcdef"), e.RecordSigningKey, "trimmed (a Secret from a file may end in a newline)")
	assert.Equal(t, 50, e.MaxFinishedRecords)
	assert.Equal(t, 90*time.Second, e.ConfigPendingTimeout)
	assert.Equal(t, 2000000, e.MaxQueuedBytes)
}

func TestReadEnvReportsEveryProblem(t *testing.T) {
	_, err := readEnv(getter(map[string]string{
		"RCV_PORT":                       "eighty",
		"ALWAYS_SEND_FINISHED_EVENT":     "yes please",
		"DEFAULT_RESOURCE_REQUESTS_CPU":  "lots",
		"DEFAULT_POD_SECURITY_CONTEXT":   `{"runAsUsr": 1}`,
		"MAX_CONCURRENT_ACTIONS":         "-1",
		"DEFAULT_RESOURCE_LIMITS_MEMORY": "512Mi",
		"ALLOWED_IMAGE_LIST":             "docker.io/library/*, docker.io/My-User/*",
		"RECORD_SIGNING_KEY":             "short-secret-value",
		"MAX_REQUEST_BYTES":              "4194304",
		"MAX_QUEUED_BYTES":               "1000",
		"MAX_OUTGOING_EVENT_BYTES":       "1000",
	}))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "short-secret-value", "the key is never printed")
	for _, want := range []string{"RECORD_SIGNING_KEY", `ALLOWED_IMAGE_LIST: "docker.io/My-User/*" is not a valid image pattern`, "RCV_PORT", "ALWAYS_SEND_FINISHED_EVENT", "DEFAULT_RESOURCE_REQUESTS_CPU", "DEFAULT_POD_SECURITY_CONTEXT", "runAsUsr", "MAX_CONCURRENT_ACTIONS",
		"MAX_REQUEST_BYTES=4194304: more than an event record can hold (983040 bytes",
		"MAX_QUEUED_BYTES=1000: less than MAX_REQUEST_BYTES (4194304)", "MAX_OUTGOING_EVENT_BYTES=1000: want at least 4096"} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "DEFAULT_RESOURCE_LIMITS_MEMORY")
}

func TestWiringModes(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		wantSource  string
		wantSender  string
		wantStarted bool // .started also through the sender
	}{
		{"local directory, no Keptn", map[string]string{"JOB_CONFIG_DIR": "/configs"}, "config.DirSource", "sink.LogSender", true},
		{"direct Keptn API", map[string]string{"KEPTN_API_ENDPOINT": "http://keptn/api", "KEPTN_API_TOKEN": "t"}, "*config.KeptnSource", "*sink.HTTP", true},
		{"distributor sidecar", map[string]string{"CONFIGURATION_SERVICE": "http://127.0.0.1:8081/resource-service", "EVENTBROKER": "http://127.0.0.1:8081/event"}, "*config.KeptnSource", "*sink.HTTP", true},
		{"knative", map[string]string{"CONFIGURATION_SERVICE": "http://resource-service:8080", "K_SINK": "http://broker"}, "*config.KeptnSource", "*sink.HTTP", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := readEnv(getter(tc.env))
			require.NoError(t, err)
			keptn, err := keptnTransport(e)
			require.NoError(t, err)
			src, err := configSource(e, keptn)
			require.NoError(t, err)
			assert.Equal(t, tc.wantSource, fmt.Sprintf("%T", src))
			sender, started, err := eventSender(e, keptn, zap.NewNop(), nil)
			require.NoError(t, err)
			assert.Equal(t, tc.wantSender, fmt.Sprintf("%T", sender))
			assert.Equal(t, tc.wantStarted, started)
		})
	}
	_, err := configSource(&env{}, nil)
	assert.ErrorContains(t, err, "JOB_CONFIG_DIR")
}

// The Keptn token goes to the Keptn API only, never to a Knative sink or the distributor.
func TestSenderCredentials(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{} // path -> x-token
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got[r.URL.Path] = r.Header.Get("x-token")
	}))
	defer srv.Close()
	keptn := map[string]string{"KEPTN_API_ENDPOINT": srv.URL, "KEPTN_API_TOKEN": "secret"}
	tests := []struct {
		name, key, path, wantToken string
	}{
		{"Keptn API", "", "/v1/event", "secret"},
		{"knative", "K_SINK", "/sink", ""},
		{"distributor", "EVENTBROKER", "/event", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vars := maps.Clone(keptn)
			if tc.key != "" {
				vars[tc.key] = srv.URL + tc.path
			}
			e, err := readEnv(getter(vars))
			require.NoError(t, err)
			tr, err := keptnTransport(e)
			require.NoError(t, err)
			require.NotNil(t, tr, "the Keptn transport exists in every case")
			sender, _, err := eventSender(e, tr, zap.NewNop(), nil)
			require.NoError(t, err)
			ev := cloudevents.NewEvent()
			ev.SetID("1")
			ev.SetSource("test")
			ev.SetType("sh.keptn.event.test.finished")
			require.NoError(t, sender.Send(context.Background(), ev))
			mu.Lock()
			defer mu.Unlock()
			token, ok := got[tc.path]
			require.True(t, ok, "event sent to %s", tc.path)
			assert.Equal(t, tc.wantToken, token)
		})
	}
}

// TestReadEnvIdentities: the identities a config may choose come from the environment, and
// what the service itself uses (its account, its Secrets) stays refused whatever the lists say.
func TestReadEnvIdentities(t *testing.T) {
	check := func(e *env, mod func(*config.Task)) error {
		tk := config.Task{Name: "t", Image: "alpine"}
		mod(&tk)
		return jobs.CheckTasks(e.Settings, []config.Task{tk})
	}
	sa := func(n string) func(*config.Task) { return func(t *config.Task) { t.ServiceAccount = &n } }
	secret := func(n string) func(*config.Task) {
		return func(t *config.Task) { t.Env = []config.Env{{Name: n, ValueFrom: config.FromSecret}} }
	}
	ns := func(n string) func(*config.Task) { return func(t *config.Task) { t.Namespace = n } }

	t.Run("defaults", func(t *testing.T) {
		e, err := readEnv(getter(map[string]string{
			"JOB_NAMESPACE": "keptn-jobs", "DEFAULT_JOB_SERVICE_ACCOUNT": "job-account",
			"SERVICE_ACCOUNT_NAME": "jes", "PROTECTED_SECRETS": "keptn-token, jes-record-key,",
		}))
		require.NoError(t, err)
		assert.Equal(t, "jes", e.Settings.OwnServiceAccount)
		assert.Equal(t, []string{"keptn-token", "jes-record-key"}, e.Settings.ProtectedSecrets)
		assert.Nil(t, e.Settings.AllowedServiceAccounts)
		assert.Nil(t, e.Settings.AllowedSecrets)
		assert.Nil(t, e.Settings.AllowedNamespaces)
		assert.NoError(t, check(e, func(*config.Task) {}))
		assert.NoError(t, check(e, sa("job-account")))
		assert.NoError(t, check(e, secret("my-creds")))
		assert.NoError(t, check(e, ns("keptn-jobs")))
		assert.ErrorContains(t, check(e, sa("jes")), `serviceAccount "jes" is the service's own account`)
		assert.ErrorContains(t, check(e, sa("other")), `serviceAccount "other" is not in the allowed`)
		assert.ErrorContains(t, check(e, secret("keptn-token")), `env[0].valueFrom: secret "keptn-token" is a secret of the installation`)
		assert.ErrorContains(t, check(e, secret("jes-record-key")), `secret "jes-record-key"`)
		assert.ErrorContains(t, check(e, ns("kube-system")), `namespace "kube-system" is not in the allowed`)
	})
	t.Run("lists", func(t *testing.T) {
		e, err := readEnv(getter(map[string]string{
			"SERVICE_ACCOUNT_NAME": "jes", "PROTECTED_SECRETS": "keptn-token",
			"ALLOWED_JOB_SERVICE_ACCOUNTS": "deploy-*, jes", "ALLOWED_JOB_SECRETS": "*", "ALLOWED_JOB_NAMESPACES": "team-*",
		}))
		require.NoError(t, err)
		assert.Equal(t, []string{"deploy-*", "jes"}, e.Settings.AllowedServiceAccounts)
		assert.Equal(t, []string{"team-*"}, e.Settings.AllowedNamespaces)
		assert.NoError(t, check(e, sa("deploy-prod")))
		assert.NoError(t, check(e, ns("team-a")))
		assert.NoError(t, check(e, ns("keptn")), "the job namespace stays allowed")
		assert.ErrorContains(t, check(e, sa("jes")), "own account", "refused even though listed")
		assert.ErrorContains(t, check(e, secret("keptn-token")), "installation itself", "refused even with *")
	})
	t.Run("invalid patterns", func(t *testing.T) {
		_, err := readEnv(getter(map[string]string{
			"ALLOWED_JOB_SERVICE_ACCOUNTS": "Deploy-*", "ALLOWED_JOB_SECRETS": "a b", "ALLOWED_JOB_NAMESPACES": "a.b",
		}))
		require.Error(t, err)
		for _, want := range []string{`ALLOWED_JOB_SERVICE_ACCOUNTS: "Deploy-*"`, `ALLOWED_JOB_SECRETS: "a b"`, `ALLOWED_JOB_NAMESPACES: "a.b"`} {
			assert.Contains(t, err.Error(), want)
		}
	})
}
