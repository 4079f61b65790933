package knative

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The Knative types are modelled here (not imported) so the module does not depend on
// knative.dev; the fields listed are all that the manifests may use, and strict decoding
// rejects anything else, which catches misspelt keys.

type kref struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Namespace  string `json:"namespace,omitempty"`
}

type trigger struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Broker string `json:"broker"`
		Filter struct {
			Attributes map[string]string `json:"attributes"`
		} `json:"filter"`
		Subscriber struct {
			Ref kref `json:"ref"`
		} `json:"subscriber"`
		Delivery *struct {
			Retry         *int32 `json:"retry"`
			BackoffPolicy string `json:"backoffPolicy"`
			BackoffDelay  string `json:"backoffDelay"`
		} `json:"delivery"`
	} `json:"spec"`
}

type sinkBinding struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Subject kref `json:"subject"`
		Sink    struct {
			Ref kref `json:"ref"`
		} `json:"sink"`
	} `json:"spec"`
}

const ns = "keptn"

// allowed maps each permitted kind to its apiVersion.
var allowed = map[string]string{
	"Service":        "serving.knative.dev/v1",
	"Trigger":        "eventing.knative.dev/v1",
	"SinkBinding":    "sources.knative.dev/v1",
	"ServiceAccount": "v1",
	"Role":           "rbac.authorization.k8s.io/v1",
	"RoleBinding":    "rbac.authorization.k8s.io/v1",
	"NetworkPolicy":  "networking.k8s.io/v1",
}

type objects struct {
	services     []Service
	triggers     []trigger
	bindings     []sinkBinding
	roles        []rbacv1.Role
	roleBindings []rbacv1.RoleBinding
	accounts     []corev1.ServiceAccount
	policies     []networkingv1.NetworkPolicy
}

// load parses every manifest in the directory, strictly, as kubectl apply -f knative/ would read them.
func load(t *testing.T) objects {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var o objects
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
			var tm metav1.TypeMeta
			require.NoError(t, yaml.Unmarshal(doc, &tm), "%s document %d", f, i)
			if tm.Kind == "" {
				require.Empty(t, strings.TrimSpace(stripComments(string(doc))), "%s document %d has no kind", f, i)
				continue
			}
			where := f + ": " + tm.Kind
			require.Contains(t, allowed, tm.Kind, where)
			require.Equal(t, allowed[tm.Kind], tm.APIVersion, where)
			strict := func(into any) { require.NoError(t, yaml.UnmarshalStrict(doc, into), where) }
			var meta metav1.ObjectMeta
			switch tm.Kind {
			case "Service":
				var v Service
				strict(&v)
				o.services, meta = append(o.services, v), v.Metadata
			case "Trigger":
				var v trigger
				strict(&v)
				o.triggers, meta = append(o.triggers, v), v.Metadata
			case "SinkBinding":
				var v sinkBinding
				strict(&v)
				o.bindings, meta = append(o.bindings, v), v.Metadata
			case "Role":
				var v rbacv1.Role
				strict(&v)
				o.roles, meta = append(o.roles, v), v.ObjectMeta
			case "RoleBinding":
				var v rbacv1.RoleBinding
				strict(&v)
				o.roleBindings, meta = append(o.roleBindings, v), v.ObjectMeta
			case "ServiceAccount":
				var v corev1.ServiceAccount
				strict(&v)
				o.accounts, meta = append(o.accounts, v), v.ObjectMeta
			case "NetworkPolicy":
				var v networkingv1.NetworkPolicy
				strict(&v)
				o.policies, meta = append(o.policies, v), v.ObjectMeta
			}
			assert.NotEmpty(t, meta.Name, where)
			assert.Equal(t, ns, meta.Namespace, where)
		}
	}
	return o
}

func stripComments(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && t != "---" && !strings.HasPrefix(t, "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestService(t *testing.T) {
	o := load(t)
	require.Len(t, o.services, 1)
	svc := o.services[0]
	assert.Equal(t, "1", svc.Spec.Template.Metadata.Annotations["autoscaling.knative.dev/min-scale"],
		"scale to zero would kill in-flight actions")
	spec := svc.Spec.Template.Spec
	require.Len(t, spec.Containers, 1)
	c := spec.Containers[0]
	assert.NotEmpty(t, c.Image)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	sc := c.SecurityContext
	require.NotNil(t, sc)
	assert.True(t, *sc.RunAsNonRoot)
	assert.True(t, *sc.ReadOnlyRootFilesystem)
	assert.False(t, *sc.AllowPrivilegeEscalation)
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)

	env := map[string]string{}
	for _, e := range c.Env {
		if e.Name == "RECORD_SIGNING_KEY" {
			// secretKeyRef needs no feature flag; the kubelet resolves it (no RBAC on Secrets).
			require.NotNil(t, e.ValueFrom, "the record signing key comes from a Secret")
			require.NotNil(t, e.ValueFrom.SecretKeyRef, "the record signing key comes from a Secret")
			assert.Empty(t, e.Value)
			env[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			continue
		}
		require.Nil(t, e.ValueFrom, "%s: keep env literal (fieldRef needs a Knative feature flag)", e.Name)
		env[e.Name] = e.Value
	}
	assert.Equal(t, "secret:job-executor-service-record-key/key", env["RECORD_SIGNING_KEY"])
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	assert.Contains(t, string(readme), "kubectl create secret generic -n keptn job-executor-service-record-key --from-literal=key=",
		"README.md tells how to create the record signing key")
	for _, k := range []string{"RCV_PORT", "CONFIGURATION_SERVICE", "JOB_NAMESPACE", "INIT_CONTAINER_IMAGE", "DEFAULT_JOB_SERVICE_ACCOUNT"} {
		assert.NotEmpty(t, env[k], k)
	}
	assert.NotContains(t, env, "K_SINK", "K_SINK comes from the SinkBinding")
	assert.NotContains(t, env, "KEPTN_API_ENDPOINT", "events go to K_SINK, config to CONFIGURATION_SERVICE")
	assert.NotContains(t, env, "EVENTBROKER")
	assert.Equal(t, c.Image, env["INIT_CONTAINER_IMAGE"], "the init container is the service image")

	var accounts []string
	for _, a := range o.accounts {
		accounts = append(accounts, a.Name)
	}
	assert.Contains(t, accounts, spec.ServiceAccountName)
	assert.Equal(t, spec.ServiceAccountName, env["SERVICE_ACCOUNT_NAME"], "the service's own account is never a job's")
	protected := strings.Split(env["PROTECTED_SECRETS"], ",")
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			assert.Contains(t, protected, e.ValueFrom.SecretKeyRef.Name, "%s comes from a Secret the jobs must not read", e.Name)
		}
	}
	for _, k := range []string{"ALLOWED_JOB_SERVICE_ACCOUNTS", "ALLOWED_JOB_SECRETS", "ALLOWED_JOB_NAMESPACES"} {
		assert.Contains(t, env, k)
	}
	assert.Contains(t, accounts, env["DEFAULT_JOB_SERVICE_ACCOUNT"])
}

// topics reads the chart's default subscription, which the Triggers must mirror.
func topics(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "chart", "values.yaml"))
	require.NoError(t, err)
	var v struct {
		RemoteControlPlane struct {
			TopicSubscription string `json:"topicSubscription"`
		} `json:"remoteControlPlane"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &v))
	list := strings.Split(v.RemoteControlPlane.TopicSubscription, ",")
	require.NotEmpty(t, list)
	return list
}

func TestTriggersCoverTopics(t *testing.T) {
	o := load(t)
	svc := o.services[0].Metadata.Name
	var types []string
	for _, tr := range o.triggers {
		assert.Equal(t, kref{APIVersion: "serving.knative.dev/v1", Kind: "Service", Name: svc}, tr.Spec.Subscriber.Ref, tr.Metadata.Name)
		assert.Equal(t, "default", tr.Spec.Broker, tr.Metadata.Name)
		typ := tr.Spec.Filter.Attributes["type"]
		require.NotEmpty(t, typ, "%s must filter on type, or the service gets every event", tr.Metadata.Name)
		types = append(types, typ)
	}
	assert.ElementsMatch(t, topics(t), types)
	for _, typ := range []string{"test", "deployment", "evaluation", "release", "approval"} {
		assert.Contains(t, types, "sh.keptn.event."+typ+".triggered")
	}
}

// TestTriggerDelivery: every Trigger redelivers what the service refuses for a moment (429 queue
// full, 503 draining), long enough for a pod to be replaced; e2e TestKnativeBroker shows it.
func TestTriggerDelivery(t *testing.T) {
	o := load(t)
	for _, tr := range o.triggers {
		d := tr.Spec.Delivery
		require.NotNil(t, d, "%s has no delivery spec: a refused event would be lost", tr.Metadata.Name)
		require.NotNil(t, d.Retry, tr.Metadata.Name)
		assert.GreaterOrEqual(t, *d.Retry, int32(5), tr.Metadata.Name)
		assert.Equal(t, "exponential", d.BackoffPolicy, tr.Metadata.Name)
		assert.Equal(t, "PT1S", d.BackoffDelay, tr.Metadata.Name)
	}
}

func TestSinkBinding(t *testing.T) {
	o := load(t)
	require.Len(t, o.bindings, 1)
	b := o.bindings[0]
	assert.Equal(t, kref{APIVersion: "serving.knative.dev/v1", Kind: "Service", Name: o.services[0].Metadata.Name}, b.Spec.Subject)
	assert.Equal(t, "Broker", b.Spec.Sink.Ref.Kind)
	assert.Equal(t, "eventing.knative.dev/v1", b.Spec.Sink.Ref.APIVersion)
	for _, tr := range o.triggers {
		assert.Equal(t, b.Spec.Sink.Ref.Name, tr.Spec.Broker, "events must go back to the broker the triggers listen on")
	}
	assert.Equal(t, "true", o.services[0].Metadata.Labels["bindings.knative.dev/include"])
}

func TestRBAC(t *testing.T) {
	o := load(t)
	require.Len(t, o.roles, 1)
	for _, r := range o.roles[0].Rules {
		assert.NotContains(t, r.Resources, "secrets")
		assert.NotContains(t, r.Verbs, "*")
	}
	require.Len(t, o.roleBindings, 1)
	rb := o.roleBindings[0]
	assert.Equal(t, o.roles[0].Name, rb.RoleRef.Name)
	svcAccount := o.services[0].Spec.Template.Spec.ServiceAccountName
	require.Len(t, rb.Subjects, 1)
	assert.Equal(t, svcAccount, rb.Subjects[0].Name)

	jobs := slices.IndexFunc(o.accounts, func(a corev1.ServiceAccount) bool { return a.Name == "default-job-account" })
	require.GreaterOrEqual(t, jobs, 0)
	require.NotNil(t, o.accounts[jobs].AutomountServiceAccountToken)
	assert.False(t, *o.accounts[jobs].AutomountServiceAccountToken)
}

// TestIngressPolicy: the service's pods take connections only from Knative's own components,
// not from every pod in the cluster (Triggers cannot send a token).
func TestIngressPolicy(t *testing.T) {
	o := load(t)
	require.Len(t, o.policies, 1)
	p := o.policies[0].Spec
	podLabels := o.services[0].Spec.Template.Metadata.Labels
	require.NotEmpty(t, p.PodSelector.MatchLabels)
	for k, v := range p.PodSelector.MatchLabels {
		assert.Equal(t, v, podLabels[k], "the policy selects the revision's pods by %s", k)
	}
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, p.PolicyTypes)
	require.Len(t, p.Ingress, 1)
	var from []string
	for _, peer := range p.Ingress[0].From {
		require.NotNil(t, peer.NamespaceSelector, "namespaces only")
		assert.Nil(t, peer.PodSelector)
		assert.Nil(t, peer.IPBlock)
		from = append(from, peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
	}
	// knative-eventing: the Broker's filter, when the pod spec runs as a Deployment (e2e).
	assert.ElementsMatch(t, []string{"knative-serving", "kourier-system", "knative-eventing"}, from)
}

// TestReadmeMentionsEveryManifest keeps the apply steps in README.md complete.
func TestReadmeMentionsEveryManifest(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	for _, f := range files {
		assert.Contains(t, string(readme), f)
	}
}
