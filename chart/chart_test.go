// Package chart holds the Helm chart of the job-executor-service; this file only tests it.
// The tests drive the real helm binary (make tools installs it) and fail when it is missing,
// so a green run always means the chart was rendered.
package chart

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.yaml golden files from the current chart")

const (
	release   = "job-executor-service"
	namespace = "keptn"
)

// helmPath returns the helm binary: $HELM, else the Makefile's tool cache. No PATH fallback,
// so every developer and CI renders with the same pinned version.
func helmPath(t testing.TB) string {
	t.Helper()
	p := os.Getenv("HELM")
	if p == "" {
		home, err := os.UserHomeDir()
		require.NoError(t, err)
		p = filepath.Join(home, ".cache", "jes", "tools", "bin", "helm")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("helm binary not found at %s (run `make tools` or set HELM): %v", p, err)
	}
	return p
}

// helm runs helm in the chart directory and returns stdout, stderr and the error.
func helm(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helmPath(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Keep helm away from the developer's repositories/config.
	dir := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+dir, "HELM_CONFIG_HOME="+dir, "HELM_DATA_HOME="+dir)
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// writeValues stores an override file for one case.
func writeValues(t testing.TB, values string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	require.NoError(t, os.WriteFile(p, []byte(values), 0o600))
	return p
}

func render(t testing.TB, values string) (string, error) {
	t.Helper()
	out, stderr, err := helm(t, "template", release, ".", "--namespace", namespace, "-f", writeValues(t, values))
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, stderr)
	}
	return out, nil
}

// validCases are the value combinations that have golden files.
var validCases = []struct{ name, values string }{
	{"defaults", ``},
	{"direct-api", `
image:
  repository: 127.0.0.1:5001/job-executor-service
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
distributor:
  enabled: false
remoteControlPlane:
  api:
    protocol: https
    hostname: keptn.example.com
    token: secret-token
networkPolicy:
  ingress:
    from:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
`},
	{"oauth", `
remoteControlPlane:
  enabled: true
  api:
    protocol: https
    hostname: keptn.example.com
    authMode: oauth
    apiValidateTls: false
    oauth:
      clientId: jes
      clientSecret: s3cret
      clientDiscovery: https://sso.example.com/.well-known/openid-configuration
      scopes: "openid keptn:api"
`},
	{"network-policies", `
remoteControlPlane:
  enabled: true
  api:
    authMode: oauth
    oauth:
      clientId: jes
      clientSecret: s3cret
      clientDiscovery: https://sso.example.com/.well-known/openid-configuration
networkPolicy:
  ingress:
    enabled: true
  egress:
    enabled: true
    k8sMasterCIDR: 172.18.0.2/32
    k8sMasterPort: 6443
    keptnApiCIDRs: [203.0.113.10/32]
    oauthCIDRs: [198.51.100.0/24]
jobConfig:
  networkPolicy:
    enabled: true
    allowAccessToKeptn: true
    blockCIDRs: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16]
`},
	{"existing-record-key", `
recordSigningKey:
  existingSecret: jes-record-key
`},
	{"extra-namespaces", `
jobConfig:
  extraNamespaces: [team-a, team-b]
  allowedNamespaces: "sandbox-*, team-b"
  networkPolicy:
    enabled: true
    blockCIDRs: [10.0.0.0/8]
`},
	{"jobs-config", `
image:
  repository: ghcr.io/example/jes
  tag: v1.2.3
jobConfig:
  namespace: keptn-jobs
  allowedImageList: "docker.io/my-user/*,custom.registry.io/*"
  allowedServiceAccounts: "deploy-*"
  allowedSecrets: "team-*,shared-creds"
  allowedNamespaces: "keptn-jobs-*"
  allowedTolerations: "dedicated,example.com/*"
  imagePullSecrets: [registry-creds, mirror-creds]
  keptnVolumeSize: 100Mi
  labels:
    team: platform
    cost-center: "42"
  allowPrivilegedJobs: true
  taskDeadlineSeconds: 600
  alwaysSendFinishedEvent: true
  maxConcurrentActions: 4
  # Capitalised keys as in the original chart's defaults must keep working.
  podSecurityContext:
    RunAsUser: 4242
    RunAsNonRoot: true
  serviceAccount:
    name: jobs
    annotations:
      eks.amazonaws.com/role-arn: arn:aws:iam::123:role/jobs
  defaultResources:
    limits: {cpu: 2, memory: 1Gi}
    requests: {cpu: 100m, memory: 256Mi}
distributor:
  projectFilter: sockshop
  config:
    queueGroup:
      enabled: false
podAnnotations:
  prometheus.io/scrape: "true"
imagePullSecrets:
  - name: regcred
nodeSelector:
  kubernetes.io/os: linux
extraEnv:
  - name: DEFAULT_TTL_SECONDS_AFTER_FINISHED
    value: "600"
`},
	{"monitoring", `
monitoring:
  prometheusRule:
    enabled: true
    labels: {release: kube-prometheus-stack}
  dashboard:
    enabled: true
`},
}

func TestGolden(t *testing.T) {
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := render(t, tc.values)
			require.NoError(t, err)
			got = maskRandomSecrets(got)
			golden := filepath.Join("testdata", tc.name+".yaml")
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "missing golden file; run go test ./chart -update")
			if d := firstDiff(string(want), got); d != "" {
				t.Errorf("rendered chart differs from %s (review, then run `make chart-golden-update`):\n%s", golden, d)
			}
		})
	}
}

// randomSecretLine is the random value of the record-key or receiver-token Secret in rendered
// output.
var randomSecretLine = regexp.MustCompile(`(?m)^(# Source: job-executor-service/templates/(?:recordkey|receivertoken)\.yaml\n(?:.*\n)*?  (?:key|token): )"[^"]*"$`)

// maskRandomSecrets replaces the chart-made Secrets' random values (fresh ones per `helm
// template`) so that golden files stay stable; TestRecordKey and TestReceiverToken check the
// values themselves.
func maskRandomSecrets(rendered string) string {
	return randomSecretLine.ReplaceAllString(rendered, `$1"<random>"`)
}

// envFrom is the Secret reference of a container's env var, nil when it has none.
func envFrom(c corev1.Container, name string) *corev1.SecretKeySelector {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

// TestReceiverToken: in direct API mode the chart creates the receiver-token Secret with a
// random 48-character token unless the user names theirs or turns the token off.
func TestReceiverToken(t *testing.T) {
	const direct = "distributor:\n  enabled: false\n"
	tokens := map[string]bool{}
	for range 2 {
		out, err := render(t, direct)
		require.NoError(t, err)
		var sec corev1.Secret
		decode(t, manifests(t, out)["Secret/"+release+"-receiver-token"], &sec)
		assert.Regexp(t, `^[A-Za-z0-9]{48}$`, string(sec.Data["token"]))
		tokens[string(sec.Data["token"])] = true
	}
	assert.Len(t, tokens, 2, "a fresh token per render")

	for _, tc := range []struct{ name, values, wantSecret string }{
		{"existing secret", direct + "receiverToken:\n  existingSecret: my-token\n", "my-token"},
		{"token off", direct + "receiverToken:\n  enabled: false\n", ""},
	} {
		out, err := render(t, tc.values)
		require.NoError(t, err, tc.name)
		docs := manifests(t, out)
		assert.NotContains(t, docs, "Secret/"+release+"-receiver-token", tc.name)
		var d appsv1.Deployment
		decode(t, docs["Deployment/"+release], &d)
		ref := envFrom(d.Spec.Template.Spec.Containers[0], "RCV_TOKEN")
		if tc.wantSecret == "" {
			assert.Nil(t, ref, tc.name)
			continue
		}
		require.NotNil(t, ref, tc.name)
		assert.Equal(t, tc.wantSecret, ref.Name)
	}
}

// TestRecordKey: without existingSecret the chart creates the record-key Secret with a random
// 48-character key (a new one for every `helm template`: no cluster to look the old one up
// in) and the service gets it by secretKeyRef; with existingSecret it creates none.
func TestRecordKey(t *testing.T) {
	keys := map[string]bool{}
	for range 2 {
		out, err := render(t, "")
		require.NoError(t, err)
		var sec corev1.Secret
		decode(t, manifests(t, out)["Secret/"+release+"-record-key"], &sec)
		key := string(sec.Data["key"])
		assert.Regexp(t, `^[A-Za-z0-9]{48}$`, key)
		keys[key] = true
		assert.NotEqual(t, out, maskRandomSecrets(out), "the mask finds the key")
	}
	assert.Len(t, keys, 2, "a fresh key per render")

	for name, docs := range renderAll(t) {
		var d appsv1.Deployment
		decode(t, docs["Deployment/"+release], &d)
		var ref *corev1.SecretKeySelector
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "RECORD_SIGNING_KEY" {
				ref = e.ValueFrom.SecretKeyRef
			}
		}
		require.NotNil(t, ref, "%s: RECORD_SIGNING_KEY from a Secret", name)
		assert.Equal(t, "key", ref.Key, name)
		want := release + "-record-key"
		if name == "existing-record-key" {
			want = "jes-record-key"
			assert.NotContains(t, docs, "Secret/"+release+"-record-key", "the user's Secret is used, none created")
		} else {
			assert.Contains(t, docs, "Secret/"+want, name)
		}
		assert.Equal(t, want, ref.Name, name)
		for _, c := range d.Spec.Template.Spec.Containers[1:] {
			for _, e := range c.Env {
				assert.NotEqual(t, "RECORD_SIGNING_KEY", e.Name, "only the service gets the key")
			}
		}
	}
}

// firstDiff describes the first differing line with some context; "" when equal. Full
// string dumps of whole manifests would bury the change.
func firstDiff(want, got string) string {
	if want == got {
		return ""
	}
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	line := func(l []string, i int) string {
		if i < len(l) {
			return l[i]
		}
		return "<end of output>"
	}
	var b strings.Builder
	for j := max(0, i-3); j < i; j++ {
		fmt.Fprintf(&b, "  %4d  %s\n", j+1, w[j])
	}
	fmt.Fprintf(&b, "- %4d  %s\n+ %4d  %s\n", i+1, line(w, i), i+1, line(g, i))
	fmt.Fprintf(&b, "(want %d lines, got %d)", len(w), len(g))
	return b.String()
}

func TestLint(t *testing.T) {
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := helm(t, "lint", ".", "--strict", "--namespace", namespace, "-f", writeValues(t, tc.values))
			require.NoError(t, err, "%s\n%s", out, stderr)
		})
	}
}

// TestInvalidValues checks that the schema and render-time checks reject bad input with a
// message that points at the offending key.
func TestInvalidValues(t *testing.T) {
	cases := []struct{ name, values, want string }{
		{"typo at top level", "replicaCont: 2", "replicaCont"},
		{"typo in jobConfig", "jobConfig:\n  allowedImagesList: docker.io/*", "allowedImagesList"},
		{"typo in nested networkPolicy", "networkPolicy:\n  egress:\n    enable: true", "enable"},
		{"typo in security context", "securityContext:\n  readOnlyRootFileSystem: true", "readOnlyRootFileSystem"},
		{"typo in job security context", "jobConfig:\n  jobSecurityContext:\n    runAsUsr: 1", "runAsUsr"},
		{"typo in distributor", "distributor:\n  enable: false", "enable"},
		{"wrong type bool", "distributor:\n  enabled: \"yes\"", "enabled"},
		{"wrong type int", "jobConfig:\n  taskDeadlineSeconds: soon", "taskDeadlineSeconds"},
		{"negative deadline", "jobConfig:\n  taskDeadlineSeconds: -1", "taskDeadlineSeconds"},
		{"labels not strings", "jobConfig:\n  labels:\n    a: {b: c}", "labels"},
		{"bad auth mode", "remoteControlPlane:\n  api:\n    authMode: basic", "authMode"},
		{"bad protocol", "remoteControlPlane:\n  api:\n    protocol: ftp", "protocol"},
		{"bad hostname", "remoteControlPlane:\n  api:\n    hostname: 'http://keptn'", "hostname"},
		{"bad cidr", "jobConfig:\n  networkPolicy:\n    blockCIDRs: [10.0.0.0]", "blockCIDRs"},
		{"bad digest", "image:\n  digest: latest", "digest"},
		{"bad pull policy", "image:\n  pullPolicy: Sometimes", "pullPolicy"},
		{"bad pod security level", "jobConfig:\n  podSecurityLevel: lax", "podSecurityLevel"},
		{"bad log level", "logLevel: verbose", "logLevel"},
		{"extra env without name", "extraEnv:\n  - value: x", "name"},
		{"egress without api server", "networkPolicy:\n  egress:\n    enabled: true", "k8sMasterCIDR"},
		{"oauth without client", "remoteControlPlane:\n  api:\n    authMode: oauth", "clientId"},
		{"typo in recordSigningKey", "recordSigningKey:\n  existingSecrets: mine", "existingSecrets"},
		{"job account is the service account", "jobConfig:\n  serviceAccount:\n    name: job-executor-service", "serviceAccount"},
		{"job account is the named service account", "serviceAccount:\n  name: jes\njobConfig:\n  serviceAccount:\n    name: jes", "serviceAccount"},
		{"bad allowed namespace", "jobConfig:\n  allowedNamespaces: 'team.a'", "allowedNamespaces"},
		{"bad allowed secret", "jobConfig:\n  allowedSecrets: 'Team-*'", "allowedSecrets"},
		{"bad allowed service account", "jobConfig:\n  allowedServiceAccounts: 'a b'", "allowedServiceAccounts"},
		{"auto detect", "remoteControlPlane:\n  autoDetect:\n    enabled: true", "autoDetect"},
		{"extra namespace not a name", "jobConfig:\n  extraNamespaces: [Team_A]", "extraNamespaces"},
		{"extra namespace glob", "jobConfig:\n  extraNamespaces: ['team-*']", "extraNamespaces"},
		{"extra namespace empty", "jobConfig:\n  extraNamespaces: ['']", "extraNamespaces"},
		{"extra namespace too long", "jobConfig:\n  extraNamespaces: [" + strings.Repeat("a", 64) + "]", "extraNamespaces"},
		{"extra namespace twice", "jobConfig:\n  extraNamespaces: [team-a, team-a]", "extraNamespaces"},
		{"extra namespaces not a list", "jobConfig:\n  extraNamespaces: team-a", "extraNamespaces"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.values)
			require.Error(t, err, "values must be rejected:\n%s", tc.values)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// extraNamespaces are the jobConfig.extraNamespaces of the test cases: the chart repeats objects
// of the job namespace there under the same names.
var extraNamespaces = []string{"team-a", "team-b"}

// manifests splits rendered output into documents keyed by "Kind/name", or "Kind/name@namespace"
// for objects in one of extraNamespaces.
func manifests(t *testing.T, rendered string) map[string][]byte {
	t.Helper()
	docs := map[string][]byte{}
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		require.NoError(t, yaml.Unmarshal([]byte(doc), &meta))
		if meta.Kind == "" {
			continue
		}
		key := meta.Kind + "/" + meta.Metadata.Name
		if slices.Contains(extraNamespaces, meta.Metadata.Namespace) {
			key += "@" + meta.Metadata.Namespace
		}
		require.NotContains(t, docs, key, "duplicate object")
		docs[key] = []byte(doc)
	}
	return docs
}

// decode parses a document strictly, so a misspelt field in a template fails the test.
func decode(t *testing.T, doc []byte, into any) {
	t.Helper()
	require.NotNil(t, doc, "object not rendered")
	require.NoError(t, yaml.UnmarshalStrict(doc, into))
}

func renderAll(t *testing.T) map[string]map[string][]byte {
	t.Helper()
	all := map[string]map[string][]byte{}
	for _, tc := range validCases {
		out, err := render(t, tc.values)
		require.NoError(t, err, tc.name)
		all[tc.name] = manifests(t, out)
	}
	return all
}

func TestRenderedObjects(t *testing.T) {
	all := renderAll(t)
	for name, docs := range all {
		t.Run(name, func(t *testing.T) {
			for key, doc := range docs {
				kind := strings.SplitN(key, "/", 2)[0]
				var obj any
				switch kind {
				case "Deployment":
					obj = &appsv1.Deployment{}
				case "Role":
					obj = &rbacv1.Role{}
				case "RoleBinding":
					obj = &rbacv1.RoleBinding{}
				case "ServiceAccount":
					obj = &corev1.ServiceAccount{}
				case "ConfigMap":
					obj = &corev1.ConfigMap{}
				case "Secret":
					obj = &corev1.Secret{}
				case "Service":
					obj = &corev1.Service{}
				case "NetworkPolicy":
					obj = &networkingv1.NetworkPolicy{}
				case "PrometheusRule":
					obj = &prometheusRule{}
				default:
					t.Fatalf("unexpected kind %s", key)
				}
				decode(t, doc, obj)
			}
		})
	}
}

// prometheusRule is the Prometheus Operator's PrometheusRule (monitoring.coreos.com/v1), the
// fields chart/monitoring/rules.yaml may use: strict decoding refuses any other.
type prometheusRule struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Rules    []struct {
				Alert       string            `json:"alert,omitempty"`
				Record      string            `json:"record,omitempty"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels,omitempty"`
				Annotations map[string]string `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// TestMonitoring: the PrometheusRule and the dashboard ConfigMap exist only on request, carry
// chart/monitoring's files unchanged (their Prometheus and Grafana templates untouched by Helm)
// and the labels the user's Prometheus and Grafana select. chart/monitoring's own test checks
// the expressions against the service's metrics.
func TestMonitoring(t *testing.T) {
	all := renderAll(t)
	for name, docs := range all {
		if name == "monitoring" {
			continue
		}
		for key := range docs {
			assert.False(t, strings.HasPrefix(key, "PrometheusRule/") || strings.HasSuffix(key, "-dashboard"), "%s renders %s by default", name, key)
		}
	}
	docs := all["monitoring"]
	var rule prometheusRule
	decode(t, docs["PrometheusRule/"+release], &rule)
	assert.Equal(t, "monitoring.coreos.com/v1", rule.APIVersion)
	assert.Equal(t, "kube-prometheus-stack", rule.Metadata.Labels["release"])
	rules, err := os.ReadFile("monitoring/rules.yaml")
	require.NoError(t, err)
	var fromFile, rendered any
	require.NoError(t, yaml.Unmarshal(rules, &fromFile))
	require.NoError(t, yaml.Unmarshal(docs["PrometheusRule/"+release], &rendered))
	assert.Equal(t, fromFile, rendered.(map[string]any)["spec"])
	require.NotEmpty(t, rule.Spec.Groups)
	assert.Contains(t, rule.Spec.Groups[0].Rules[1].Annotations["description"], "{{ $labels.namespace }}")

	var dash corev1.ConfigMap
	decode(t, docs["ConfigMap/"+release+"-dashboard"], &dash)
	assert.Equal(t, "1", dash.Labels["grafana_dashboard"])
	file, err := os.ReadFile("monitoring/dashboard.json")
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(string(file)), dash.Data["job-executor-service.json"])
}

// TestRBACLeastPrivilege guards the security promises of the README.
func TestRBACLeastPrivilege(t *testing.T) {
	for name, docs := range renderAll(t) {
		t.Run(name, func(t *testing.T) {
			var rules []rbacv1.PolicyRule
			for key, doc := range docs {
				if strings.HasPrefix(key, "Role/") { // every namespace's
					var role rbacv1.Role
					decode(t, doc, &role)
					rules = append(rules, role.Rules...)
				}
			}
			require.NotEmpty(t, rules)
			for _, r := range rules {
				assert.NotContains(t, r.Resources, "secrets", "the service must not read secrets")
				assert.NotContains(t, r.Verbs, "*")
				assert.NotContains(t, r.Resources, "*")
				if slices.Contains(r.Resources, "pods") || slices.Contains(r.Resources, "pods/log") {
					assert.NotContains(t, r.Verbs, "create")
					assert.NotContains(t, r.Verbs, "delete")
				}
			}
			for key, doc := range docs {
				if !strings.HasPrefix(key, "ClusterRole") {
					continue
				}
				t.Errorf("cluster-wide RBAC rendered: %s\n%s", key, doc)
			}

			var sa corev1.ServiceAccount
			jobSA := "default-job-account"
			if name == "jobs-config" {
				jobSA = "jobs"
			}
			decode(t, docs["ServiceAccount/"+jobSA], &sa)
			require.NotNil(t, sa.AutomountServiceAccountToken)
			assert.False(t, *sa.AutomountServiceAccountToken)
			for key, doc := range docs {
				if strings.HasPrefix(key, "RoleBinding/") {
					var rb rbacv1.RoleBinding
					decode(t, doc, &rb)
					for _, s := range rb.Subjects {
						assert.NotEqual(t, jobSA, s.Name, "the job service account must have no permissions")
					}
				}
			}
		})
	}
}

// TestRBACMatchesKnative keeps the two deployments' service permissions identical: both run the
// same service, so a rule needed (or dropped) in one is needed (or dropped) in the other.
func TestRBACMatchesKnative(t *testing.T) {
	var chartRole rbacv1.Role
	decode(t, renderAll(t)["defaults"]["Role/"+release], &chartRole)
	b, err := os.ReadFile(filepath.Join("..", "knative", "rbac.yaml"))
	require.NoError(t, err)
	var knRole rbacv1.Role
	decode(t, manifests(t, string(b))["Role/job-executor-service"], &knRole)
	assert.Equal(t, chartRole.Rules, knRole.Rules)
}

// envContract is the fixed set of variables the service understands (plus the distributor's).
var envContract = []string{
	"RCV_PORT", "RCV_PATH", "KEPTN_API_ENDPOINT", "KEPTN_API_TOKEN", "HTTP_SSL_VERIFY", "CONFIGURATION_SERVICE",
	"EVENTBROKER", "K_SINK", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OAUTH_DISCOVERY",
	"JOB_NAMESPACE", "INIT_CONTAINER_IMAGE", "DEFAULT_RESOURCE_LIMITS_CPU", "DEFAULT_RESOURCE_LIMITS_MEMORY",
	"DEFAULT_RESOURCE_REQUESTS_CPU", "DEFAULT_RESOURCE_REQUESTS_MEMORY", "DEFAULT_JOB_SERVICE_ACCOUNT",
	"DEFAULT_POD_SECURITY_CONTEXT", "DEFAULT_SECURITY_CONTEXT", "JOB_LABELS", "ALLOWED_IMAGE_LIST",
	"ALLOW_PRIVILEGED_JOBS", "JOB_POD_SECURITY_LEVEL", "TASK_DEADLINE_SECONDS", "ALWAYS_SEND_FINISHED_EVENT", "MAX_CONCURRENT_ACTIONS",
	"LOG_LEVEL", "RECORD_SIGNING_KEY", "RCV_HOST", "RCV_TOKEN", "MONITORING_PORT", "KUBE_API_QPS", "KUBE_API_BURST",
	"SERVICE_ACCOUNT_NAME", "PROTECTED_SECRETS", "ALLOWED_JOB_SERVICE_ACCOUNTS", "ALLOWED_JOB_SECRETS", "ALLOWED_JOB_NAMESPACES",
	"ALLOWED_JOB_TOLERATIONS", "DEFAULT_IMAGE_PULL_SECRETS", "DEFAULT_KEPTN_VOLUME_SIZE",
	"DEFAULT_TTL_SECONDS_AFTER_FINISHED", // from extraEnv in the jobs-config case
}

// resolveEnv returns the container's env with ConfigMap references resolved.
func resolveEnv(t *testing.T, c corev1.Container, cm corev1.ConfigMap) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			require.Equal(t, cm.Name, ref.Name)
			v, ok := cm.Data[ref.Key]
			require.True(t, ok, "%s refers to missing ConfigMap key %s", e.Name, ref.Key)
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = "field:" + e.ValueFrom.FieldRef.FieldPath
		}
	}
	return env
}

func TestDeployment(t *testing.T) {
	all := renderAll(t)
	for name, docs := range all {
		t.Run(name, func(t *testing.T) {
			var d appsv1.Deployment
			decode(t, docs["Deployment/"+release], &d)
			var cm corev1.ConfigMap
			decode(t, docs["ConfigMap/job-service-config"], &cm)
			spec := d.Spec.Template.Spec

			require.NotEmpty(t, spec.Containers)
			svc := spec.Containers[0]
			assert.Equal(t, "job-executor-service", svc.Name)
			sc := svc.SecurityContext
			require.NotNil(t, sc)
			assert.True(t, *sc.ReadOnlyRootFilesystem)
			assert.True(t, *sc.RunAsNonRoot)
			assert.False(t, *sc.AllowPrivilegeEscalation)
			assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
			assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type)
			assert.Equal(t, "/healthz", svc.LivenessProbe.HTTPGet.Path)
			assert.Equal(t, "/readyz", svc.ReadinessProbe.HTTPGet.Path)

			env := resolveEnv(t, svc, cm)
			for k := range env {
				assert.Contains(t, envContract, k, "env var outside the service contract")
			}
			for _, k := range []string{"DEFAULT_POD_SECURITY_CONTEXT", "DEFAULT_SECURITY_CONTEXT"} {
				var psc corev1.PodSecurityContext // both decode strictly into their types
				var csc corev1.SecurityContext
				target := any(&csc)
				if k == "DEFAULT_POD_SECURITY_CONTEXT" {
					target = &psc
				}
				dec := json.NewDecoder(strings.NewReader(env[k]))
				dec.DisallowUnknownFields()
				assert.NoError(t, dec.Decode(target), "%s=%s", k, env[k])
			}
			var labels map[string]string
			assert.NoError(t, json.Unmarshal([]byte(env["JOB_LABELS"]), &labels))

			// Identities: the service's own account and every Secret the installation uses are
			// protected, as literal values (not from the ConfigMap, which the service may write).
			for _, e := range svc.Env {
				if e.Name == "SERVICE_ACCOUNT_NAME" || e.Name == "PROTECTED_SECRETS" {
					assert.Nil(t, e.ValueFrom, e.Name)
				}
			}
			assert.Equal(t, spec.ServiceAccountName, env["SERVICE_ACCOUNT_NAME"])
			protected := strings.Split(env["PROTECTED_SECRETS"], ",")
			for _, c := range spec.Containers {
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						assert.Contains(t, protected, e.ValueFrom.SecretKeyRef.Name, "%s of %s", e.Name, c.Name)
					}
				}
			}
			for _, ps := range spec.ImagePullSecrets {
				assert.Contains(t, protected, ps.Name)
			}
			wantRecordKey := release + "-record-key"
			if name == "existing-record-key" {
				wantRecordKey = "jes-record-key"
			}
			assert.Equal(t, "job-service-keptn-secrets,"+wantRecordKey, strings.Join(protected[:2], ","))

			// Who may post events: in distributor mode only the sidecar (loopback, no
			// Service); otherwise holders of the receiver token. Probes use the monitoring port.
			assert.Equal(t, intstr.FromString("monitoring"), svc.LivenessProbe.HTTPGet.Port)
			assert.Equal(t, intstr.FromString("monitoring"), svc.ReadinessProbe.HTTPGet.Port)
			assert.Equal(t, "9090", env["MONITORING_PORT"])
			tokenRef := envFrom(svc, "RCV_TOKEN")
			if name == "direct-api" {
				assert.Empty(t, env["RCV_HOST"], "every interface, behind the Service")
				require.NotNil(t, tokenRef, "RCV_TOKEN from a Secret")
				assert.Equal(t, release+"-receiver-token", tokenRef.Name)
				assert.Equal(t, "token", tokenRef.Key)
				assert.Contains(t, protected, release+"-receiver-token")
				var service corev1.Service
				decode(t, docs["Service/"+release], &service)
				require.Len(t, service.Spec.Ports, 2)
				assert.Equal(t, "http", service.Spec.Ports[0].Name, "the receiver first: e2e takes ports[0]")
				assert.Equal(t, "monitoring", service.Spec.Ports[1].Name)
			} else {
				assert.Equal(t, "127.0.0.1", env["RCV_HOST"])
				assert.Nil(t, tokenRef, "the distributor sends no token")
				assert.NotContains(t, docs, "Service/"+release)
				assert.NotContains(t, docs, "Secret/"+release+"-receiver-token")
			}
			switch name {
			case "jobs-config":
				assert.Equal(t, "deploy-*", env["ALLOWED_JOB_SERVICE_ACCOUNTS"])
				assert.Equal(t, "team-*,shared-creds", env["ALLOWED_JOB_SECRETS"])
				assert.Equal(t, "keptn-jobs-*", env["ALLOWED_JOB_NAMESPACES"])
				assert.Contains(t, protected, "regcred", "image pull secrets are the installation's")
			case "extra-namespaces":
				// Listing a namespace once is enough: the chart allows what it prepares.
				assert.ElementsMatch(t, []string{"sandbox-*", "team-a", "team-b"}, strings.Split(env["ALLOWED_JOB_NAMESPACES"], ","))
			default:
				for _, k := range []string{"ALLOWED_JOB_SERVICE_ACCOUNTS", "ALLOWED_JOB_SECRETS", "ALLOWED_JOB_NAMESPACES"} {
					v, ok := env[k]
					assert.True(t, ok, k)
					assert.Empty(t, v, "%s: empty means the service's default", k)
				}
			}

			distributor := name != "direct-api"
			if distributor {
				require.Len(t, spec.Containers, 2)
				assert.Equal(t, "http://127.0.0.1:8081/resource-service", env["CONFIGURATION_SERVICE"])
				assert.Equal(t, "http://127.0.0.1:8081/event", env["EVENTBROKER"])
				assert.NotContains(t, env, "KEPTN_API_ENDPOINT")
				dist := resolveEnv(t, spec.Containers[1], cm)
				assert.Equal(t, "127.0.0.1", dist["PUBSUB_RECIPIENT"])
				assert.NotEmpty(t, dist["PUBSUB_TOPIC"])
				if remote := name == "oauth" || name == "network-policies"; remote {
					// remoteControlPlane.enabled: the distributor polls the Keptn API.
					assert.NotEmpty(t, dist["KEPTN_API_ENDPOINT"])
					assert.Equal(t, "secret:oauth_client_secret", dist["OAUTH_CLIENT_SECRET"])
					assert.NotContains(t, dist, "KEPTN_API_TOKEN")
				} else {
					// Inside the Keptn cluster: no endpoint means NATS and Keptn's Services.
					assert.NotContains(t, dist, "KEPTN_API_ENDPOINT")
					assert.NotContains(t, dist, "KEPTN_API_TOKEN")
					assert.NotContains(t, dist, "OAUTH_CLIENT_SECRET")
				}
				assert.True(t, *spec.Containers[1].SecurityContext.ReadOnlyRootFilesystem)
			} else {
				require.Len(t, spec.Containers, 1)
				assert.Equal(t, "https://keptn.example.com/api", env["KEPTN_API_ENDPOINT"])
				assert.Equal(t, "https://keptn.example.com/api/resource-service", env["CONFIGURATION_SERVICE"])
				assert.Equal(t, "secret:token", env["KEPTN_API_TOKEN"])
				assert.NotContains(t, env, "EVENTBROKER")
			}
			wantNS := namespace
			wantImage := "docker.io/keptncontrib/job-executor-service:0.1.0"
			if name == "direct-api" {
				wantImage = "127.0.0.1:5001/job-executor-service@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
			}
			if name == "jobs-config" {
				wantNS = "keptn-jobs"
				wantImage = "ghcr.io/example/jes:v1.2.3"
				assert.Equal(t, `{"fsGroup":2000,"runAsGroup":2000,"runAsNonRoot":true,"runAsUser":4242,"seccompProfile":{"type":"RuntimeDefault"}}`, env["DEFAULT_POD_SECURITY_CONTEXT"])
				assert.Equal(t, map[string]string{"team": "platform", "cost-center": "42"}, labels)
				assert.Equal(t, "2", env["DEFAULT_RESOURCE_LIMITS_CPU"])
				assert.Equal(t, "true", env["ALLOW_PRIVILEGED_JOBS"])
				assert.Equal(t, "600", env["TASK_DEADLINE_SECONDS"])
				assert.Equal(t, "600", env["DEFAULT_TTL_SECONDS_AFTER_FINISHED"])
				assert.Equal(t, "dedicated,example.com/*", env["ALLOWED_JOB_TOLERATIONS"])
				assert.Equal(t, "registry-creds,mirror-creds", env["DEFAULT_IMAGE_PULL_SECRETS"])
				assert.Equal(t, "100Mi", env["DEFAULT_KEPTN_VOLUME_SIZE"])
			}
			if name == "defaults" {
				assert.Equal(t, "restricted", env["JOB_POD_SECURITY_LEVEL"])
				assert.Equal(t, "", env["ALLOWED_JOB_TOLERATIONS"], "no toleration is allowed unless the installation says so")
				assert.Equal(t, "20Mi", env["DEFAULT_KEPTN_VOLUME_SIZE"])
			}
			assert.Equal(t, wantNS, env["JOB_NAMESPACE"])
			assert.Equal(t, wantImage, svc.Image)
			assert.Equal(t, wantImage, env["INIT_CONTAINER_IMAGE"], "init container defaults to the service image")
		})
	}
}

func TestNetworkPolicies(t *testing.T) {
	all := renderAll(t)
	docs := all["network-policies"]
	var ing, egr, job networkingv1.NetworkPolicy
	decode(t, docs["NetworkPolicy/jes-ingress-network-policy"], &ing)
	decode(t, docs["NetworkPolicy/jes-egress-network-policy"], &egr)
	decode(t, docs["NetworkPolicy/jes-job-network-policy"], &job)

	assert.Empty(t, ing.Spec.Ingress, "no incoming connections")
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, ing.Spec.PolicyTypes)

	var cidrs []string
	dns := false
	for _, r := range egr.Spec.Egress {
		for _, p := range r.To {
			if p.IPBlock != nil {
				cidrs = append(cidrs, p.IPBlock.CIDR)
			}
			if p.PodSelector != nil && p.PodSelector.MatchLabels["k8s-app"] == "kube-dns" {
				dns = len(r.Ports) == 2
			}
		}
	}
	sort.Strings(cidrs)
	assert.Equal(t, []string{"172.18.0.2/32", "198.51.100.0/24", "203.0.113.10/32"}, cidrs)
	assert.True(t, dns, "DNS over UDP and TCP must be allowed")

	assert.Equal(t, "job-executor-service", job.Spec.PodSelector.MatchLabels["app.kubernetes.io/managed-by"])
	assert.Empty(t, job.Spec.Ingress)
	require.NotEmpty(t, job.Spec.Egress)
	block := job.Spec.Egress[0].To[0].IPBlock
	assert.Equal(t, "0.0.0.0/0", block.CIDR)
	assert.Equal(t, []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}, block.Except)

	// The ingress policy is on by default; the others are opt-in.
	for name, docs := range all {
		if name == "network-policies" || name == "extra-namespaces" {
			continue
		}
		var got []string
		for key := range docs {
			if strings.HasPrefix(key, "NetworkPolicy/") {
				got = append(got, key)
			}
		}
		assert.Equal(t, []string{"NetworkPolicy/jes-ingress-network-policy"}, got, name)
	}
	// Listed peers reach the monitoring port, and the receiver only in direct API mode (in
	// distributor mode it listens on loopback).
	var direct networkingv1.NetworkPolicy
	decode(t, all["direct-api"]["NetworkPolicy/jes-ingress-network-policy"], &direct)
	require.Len(t, direct.Spec.Ingress, 1)
	var ports []string
	for _, p := range direct.Spec.Ingress[0].Ports {
		ports = append(ports, p.Port.String())
	}
	assert.Equal(t, []string{"monitoring", "http"}, ports)
	assert.Equal(t, "monitoring", direct.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
}

// TestExtraNamespaces: for each of jobConfig.extraNamespaces the chart installs what a Job in
// the job namespace relies on — the service's Role and RoleBinding with the same rules and
// subject, the default job account and (when enabled) the job network policy — and nothing else.
func TestExtraNamespaces(t *testing.T) {
	docs := renderAll(t)["extra-namespaces"]
	var role rbacv1.Role
	var binding rbacv1.RoleBinding
	var jobSA corev1.ServiceAccount
	var policy networkingv1.NetworkPolicy
	decode(t, docs["Role/"+release], &role)
	decode(t, docs["RoleBinding/"+release], &binding)
	decode(t, docs["ServiceAccount/default-job-account"], &jobSA)
	decode(t, docs["NetworkPolicy/jes-job-network-policy"], &policy)
	require.Equal(t, namespace, role.Namespace, "the job namespace stays the release namespace")

	for _, ns := range extraNamespaces {
		t.Run(ns, func(t *testing.T) {
			var r rbacv1.Role
			decode(t, docs["Role/"+release+"@"+ns], &r)
			assert.Equal(t, ns, r.Namespace)
			assert.Equal(t, role.Rules, r.Rules)

			var b rbacv1.RoleBinding
			decode(t, docs["RoleBinding/"+release+"@"+ns], &b)
			assert.Equal(t, ns, b.Namespace)
			assert.Equal(t, binding.RoleRef, b.RoleRef)
			assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: release, Namespace: namespace}}, b.Subjects,
				"the service's account, from the release namespace")

			var sa corev1.ServiceAccount
			decode(t, docs["ServiceAccount/default-job-account@"+ns], &sa)
			assert.Equal(t, ns, sa.Namespace)
			require.NotNil(t, sa.AutomountServiceAccountToken)
			assert.False(t, *sa.AutomountServiceAccountToken)

			var p networkingv1.NetworkPolicy
			decode(t, docs["NetworkPolicy/jes-job-network-policy@"+ns], &p)
			assert.Equal(t, ns, p.Namespace)
			assert.Equal(t, policy.Spec, p.Spec)
		})
	}
	var inExtra []string
	for key := range docs {
		if strings.Contains(key, "@") {
			inExtra = append(inExtra, key)
		}
	}
	assert.Len(t, inExtra, 4*len(extraNamespaces), "only Role, RoleBinding, job account and job policy: %v", inExtra)

	// The job namespace listed again, and the release namespace as an extra one beside another
	// job namespace: each namespace gets its objects once (manifests fails on duplicates).
	out, err := render(t, "jobConfig:\n  namespace: team-a\n  extraNamespaces: [team-a, keptn]\n")
	require.NoError(t, err)
	got := manifests(t, out)
	for _, key := range []string{"Role/" + release + "@team-a", "Role/" + release, "ServiceAccount/default-job-account@team-a", "ServiceAccount/default-job-account"} {
		assert.Contains(t, got, key)
	}
	var r rbacv1.Role
	decode(t, got["Role/"+release], &r)
	assert.Equal(t, namespace, r.Namespace)

	// Without the job account the chart creates none in the extra namespaces either.
	out, err = render(t, "jobConfig:\n  extraNamespaces: [team-a]\n  serviceAccount:\n    create: false\n")
	require.NoError(t, err)
	got = manifests(t, out)
	assert.Contains(t, got, "Role/"+release+"@team-a")
	assert.NotContains(t, got, "ServiceAccount/default-job-account@team-a")
}

// TestSchemaSecurityContextFields keeps the schema's (closed) security context objects in step
// with the Kubernetes API types the service decodes them into.
func TestSchemaSecurityContextFields(t *testing.T) {
	raw, err := os.ReadFile("values.schema.json")
	require.NoError(t, err)
	var schema struct {
		Definitions map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"definitions"`
	}
	require.NoError(t, json.Unmarshal(raw, &schema))
	for def, typ := range map[string]reflect.Type{
		"securityContext":    reflect.TypeFor[corev1.SecurityContext](),
		"podSecurityContext": reflect.TypeFor[corev1.PodSecurityContext](),
		"seccompProfile":     reflect.TypeFor[corev1.SeccompProfile](),
		"resources":          reflect.TypeFor[corev1.ResourceRequirements](),
	} {
		var want []string
		for i := range typ.NumField() {
			want = append(want, strings.Split(typ.Field(i).Tag.Get("json"), ",")[0])
		}
		var got []string
		for k := range schema.Definitions[def].Properties {
			got = append(got, k)
		}
		assert.ElementsMatch(t, want, got, def)
	}
}

// TestReadmeDocumentsEveryValue fails when a key in values.yaml is missing from README.md.
func TestReadmeDocumentsEveryValue(t *testing.T) {
	raw, err := os.ReadFile("values.yaml")
	require.NoError(t, err)
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	var values map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &values))
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		m, ok := v.(map[string]any)
		// Free-form Kubernetes objects are documented as a whole.
		if !ok || len(m) == 0 || strings.HasSuffix(prefix, "ecurityContext") || strings.HasSuffix(prefix, "resources") || strings.HasSuffix(prefix, "Resources") {
			assert.Contains(t, string(readme), "`"+prefix+"`", "README.md does not document %s", prefix)
			return
		}
		for k, child := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, child)
		}
	}
	walk("", values)
}

// BenchmarkTemplate measures a full `helm template` of the chart with default values (the cost
// every test case and CI lint pays).
func BenchmarkTemplate(b *testing.B) {
	for b.Loop() {
		if _, err := render(b, ""); err != nil {
			b.Fatal(err)
		}
	}
}
