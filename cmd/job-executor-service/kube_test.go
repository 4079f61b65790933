package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeAPIServer answers every request with an empty ConfigMap and points KUBECONFIG at itself.
func fakeAPIServer(t *testing.T) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"ns"}}`))
	}))
	t.Cleanup(srv.Close)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+srv.URL+`"}}]
users: [{name: u, user: {}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600))
	t.Setenv("KUBECONFIG", kubeconfig)
}

func TestKubeClientRateLimits(t *testing.T) {
	fakeAPIServer(t)
	e, err := readEnv(getter(nil))
	require.NoError(t, err)
	cfg, err := restConfig(e)
	require.NoError(t, err)
	assert.Equal(t, float32(DefaultKubeQPS), cfg.QPS, "not client-go's 5")
	assert.Equal(t, DefaultKubeBurst, cfg.Burst, "not client-go's 10")

	_, err = readEnv(getter(map[string]string{"KUBE_API_QPS": "0"}))
	assert.ErrorContains(t, err, "KUBE_API_QPS=0")
}

// A limit set too low shows: requests that waited for the limiter are in the histogram and
// logged (once, not per request). client-go takes one registration per process, so this is the
// only test that builds clients through kubeClients.
func TestKubeClientThrottlingShows(t *testing.T) {
	fakeAPIServer(t)
	e, err := readEnv(getter(map[string]string{"KUBE_API_QPS": "5", "KUBE_API_BURST": "1"}))
	require.NoError(t, err)
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	kube, _, err := kubeClients(e, newServiceMetrics(reg, zap.New(core)))
	require.NoError(t, err)

	for range 4 { // burst 1 at 5/s: three of them wait about 200 ms each
		_, err := kube.CoreV1().ConfigMaps("ns").Get(context.Background(), "x", metav1.GetOptions{})
		require.NoError(t, err)
	}
	assert.Equal(t, 1, testutil.CollectAndCount(reg, "jes_kube_client_throttled_seconds"), "one verb")
	throttled := logs.FilterMessageSnippet("client rate limiter").All()
	require.Len(t, throttled, 1, "logged once a minute at most")
	assert.Equal(t, "/api/v1/namespaces/{namespace}/configmaps/{name}", throttled[0].ContextMap()["path"], "the request kind, not object names")
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP jes_kube_api_requests_total Requests sent to the Kubernetes API server, by verb (get, list, watch, create, update, patch, delete) and resource (with subresource, e.g. pods/log).
# TYPE jes_kube_api_requests_total counter
jes_kube_api_requests_total{resource="configmaps",verb="get"} 4
`), "jes_kube_api_requests_total"), "every request counted once")
	assert.Equal(t, 1, testutil.CollectAndCount(reg, "jes_kube_api_request_duration_seconds"), "the API server's time, one verb")
}

func TestRequestKind(t *testing.T) {
	for _, c := range []struct{ method, url, verb, resource string }{
		{"POST", "/api/v1/namespaces/ns/configmaps", "create", "configmaps"},
		{"PATCH", "/api/v1/namespaces/ns/configmaps/jes-rec-1", "patch", "configmaps"},
		{"GET", "/api/v1/namespaces/ns/pods/p-1/log?container=job", "get", "pods/log"},
		{"GET", "/api/v1/namespaces/ns/pods?labelSelector=a%3Db", "list", "pods"},
		{"GET", "/apis/batch/v1/namespaces/ns/jobs?watch=true&resourceVersion=5", "watch", "jobs"},
		{"POST", "/apis/batch/v1/namespaces/ns/jobs", "create", "jobs"},
		{"PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/jes-a", "update", "leases"},
		{"GET", "/api/v1/namespaces/ns", "get", "namespaces"},
		{"DELETE", "/apis/batch/v1/namespaces/ns/jobs/j", "delete", "jobs"},
		{"DELETE", "/api/v1/namespaces/ns/configmaps", "deletecollection", "configmaps"},
		{"GET", "/version", "get", "other"},
		{"GET", "/apis", "get", "other"},
	} {
		req := httptest.NewRequest(c.method, c.url, nil)
		verb, resource := requestKind(req)
		assert.Equal(t, c.verb+" "+c.resource, verb+" "+resource, c.method+" "+c.url)
	}
}
