//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The cluster's addons (e2e/cluster.sh addons, run by make e2e): CoreDNS behind the kube-dns
// Service and kube-router enforcing NetworkPolicies. These scenarios need both; cluster.sh writes
// E2E_CLUSTER_DNS and E2E_NETPOL to e2e.env once they are up.

// probeTimeout bounds each connection attempt of a check that must fail: a refused attempt
// is one that got no answer within it (policies drop packets, they do not reject them).
const probeTimeout = 5

// requireAddons fails (not skips) when the addons are not up: make e2e always runs them.
func requireAddons(t *testing.T) {
	t.Helper()
	vals, err := readEnvFile(env.Dir + "/e2e.env")
	require.NoError(t, err)
	require.NotEmpty(t, vals["E2E_CLUSTER_DNS"], "cluster DNS not up: run e2e/cluster.sh addons (make e2e does)")
	require.NotEmpty(t, vals["E2E_NETPOL"], "NetworkPolicy enforcement not up: run e2e/cluster.sh addons (make e2e does)")
}

// busyboxPod starts a pod running script (busybox sh) in ns and waits until it is Ready.
// It returns the pod's IP.
func busyboxPod(t *testing.T, ns, name string, labels map[string]string, script string) string {
	t.Helper()
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": labels},
		"spec": map[string]any{
			"terminationGracePeriodSeconds": 1,
			"containers": []any{map[string]any{
				"name": "main", "image": "busybox:1.35", "imagePullPolicy": "IfNotPresent",
				"command": []string{"sh", "-c", script},
			}},
		},
	}
	b, err := json.Marshal(pod)
	require.NoError(t, err)
	cmd := exec.Command(env.Kubectl, "apply", "-f", "-")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
	cmd.Stdin = strings.NewReader(string(b))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	out2, err := kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "pod/"+name, "--timeout=120s")
	require.NoError(t, err, out2)
	ip, err := kubectl(t, "get", "pod", "-n", ns, name, "-o", "jsonpath={.status.podIP}")
	require.NoError(t, err, ip)
	require.NotNil(t, net.ParseIP(ip), "pod %s/%s IP %q", ns, name, ip)
	return ip
}

// sleeperPod is a client pod to run checks in with podExec.
func sleeperPod(t *testing.T, ns, name string, labels map[string]string) string {
	return busyboxPod(t, ns, name, labels, "sleep 3600")
}

// httpdPod serves "probe-ok" on port 8080 from a pod that no policy selects.
func httpdPod(t *testing.T, ns, name string) string {
	return busyboxPod(t, ns, name, map[string]string{"e2e": "probe"},
		"mkdir -p /tmp/www && echo probe-ok > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www")
}

// podExec runs a shell script in a pod's (first) container.
func podExec(t *testing.T, ns, pod, script string) (string, error) {
	t.Helper()
	return kubectl(t, "exec", "-n", ns, pod, "--", "sh", "-c", script)
}

// fetch is one HTTP GET from inside a pod, bounded by probeTimeout; ok when it got the body.
func fetch(t *testing.T, ns, pod, url string) (string, bool) {
	t.Helper()
	out, err := podExec(t, ns, pod, fmt.Sprintf("wget -q -T %d -O - %s", probeTimeout, url))
	return out, err == nil
}

// fetchEventually retries fetch for up to d: a new pod's policy rules are programmed by
// kube-router shortly after the pod starts, so an allowed source may be refused at first.
func fetchEventually(t *testing.T, ns, pod, url string, d time.Duration) (string, time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for {
		out, ok := fetch(t, ns, pod, url)
		if ok || time.Since(start) > d {
			return out, time.Since(start), ok
		}
	}
}

// dropped asserts that a GET from the pod gets no answer, twice (each attempt waits
// probeTimeout, longer than any retry inside wget, which makes one try).
func dropped(t *testing.T, ns, pod, url, why string) {
	t.Helper()
	for i := 0; i < 2; i++ {
		start := time.Now()
		out, ok := fetch(t, ns, pod, url)
		assert.False(t, ok, "%s: %s/%s reached %s: %q", why, ns, pod, url, out)
		assert.GreaterOrEqual(t, time.Since(start), time.Duration(probeTimeout-1)*time.Second,
			"%s: %s failed at once (%q) instead of timing out: not a policy drop", why, url, out)
	}
}

var nslookupAddr = regexp.MustCompile(`(?m)^Address:\s*([0-9.]+)\s*$`)

// lookup resolves name with busybox nslookup in the pod and returns the answer's addresses
// (not the server's own "Address: ip:53" line).
func lookup(t *testing.T, ns, pod, name string) ([]string, string) {
	t.Helper()
	out, _ := podExec(t, ns, pod, "nslookup -type=a "+name)
	_, answer, found := strings.Cut(out, "Name:")
	if !found {
		return nil, out
	}
	var addrs []string
	for _, m := range nslookupAddr.FindAllStringSubmatch(answer, -1) {
		addrs = append(addrs, m[1])
	}
	return addrs, out
}

// TestClusterDNS: a pod resolves a Service by its full and its short name to the Service's
// ClusterIP through CoreDNS at the kube-dns Service, and an unknown Service does not resolve.
func TestClusterDNS(t *testing.T) {
	t.Parallel()
	requireAddons(t)
	ns := namespace(t)
	kubectlOK(t, "create", "service", "clusterip", "dnsprobe", "-n", ns, "--tcp=80:8080")
	ip, err := kubectl(t, "get", "service", "dnsprobe", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
	require.NoError(t, err, ip)
	require.NotNil(t, net.ParseIP(ip), "ClusterIP %q", ip)
	sleeperPod(t, ns, "client", nil)

	resolv, err := podExec(t, ns, "client", "cat /etc/resolv.conf")
	require.NoError(t, err, resolv)
	assert.Contains(t, resolv, "nameserver 10.96.0.10", "kubelet's clusterDNS")
	assert.Contains(t, resolv, "search "+ns+".svc.cluster.local svc.cluster.local cluster.local")

	for _, name := range []string{"dnsprobe." + ns + ".svc.cluster.local", "dnsprobe." + ns, "dnsprobe"} {
		addrs, out := lookup(t, ns, "client", name)
		assert.Equal(t, []string{ip}, addrs, "%s:\n%s", name, out)
	}
	addrs, out := lookup(t, ns, "client", "kubernetes.default.svc.cluster.local")
	assert.Equal(t, []string{"10.96.0.1"}, addrs, out)
	addrs, out = lookup(t, ns, "client", "nosuchservice."+ns+".svc.cluster.local")
	assert.Empty(t, addrs, "an unknown Service must not resolve:\n%s", out)
	assert.Contains(t, out, "NXDOMAIN")
}

// netpolConfig is the Job the service runs under the chart's job NetworkPolicy. Its script
// first waits (bounded) until the blocked node address stops answering — kube-router programs
// a new pod's rules shortly after it starts — then prints one line per check.
const netpolConfig = `apiVersion: v2
actions:
  - name: "Confined"
    events:
      - name: "sh.keptn.event.test.triggered"
    tasks:
      - name: "Probe"
        image: "busybox"
        cmd: ["sh"]
        args:
          - -c
          - |
            n=0
            while wget -q -T 2 -O /dev/null http://@NODE@/ && [ $n -lt 20 ]; do n=$((n+1)); done
            echo "open-before-blocked=$n"
            if wget -q -T @T@ -O /dev/null http://@NODE@/; then echo "node=reached"; else echo "node=refused"; fi
            if wget -q -T @T@ -O /dev/null http://@POD@/; then echo "pod=reached"; else echo "pod=refused"; fi
            if out=$(nslookup -type=a @NAME@); then echo "dns=ok"; else echo "dns=failed"; fi
            echo "$out" | sed -n 's/^Address: *\([0-9.]*\)$/dns-answer=\1/p'
`

// TestNetworkPolicyEnforced installs the chart with every NetworkPolicy on and checks, against
// kube-router's enforcement, what each one admits and refuses:
//   - ingress: a pod of the listed namespace reaches the receiver, a pod of another namespace
//     does not (and reaches an unconfined pod, so its network works);
//   - service egress: events still run end to end (API server, Keptn API stand-in), an address
//     not listed is refused while a listed one answers from the same pod;
//   - job egress: the blocked CIDRs (the node's IP, the pod network) are refused, DNS answers.
func TestNetworkPolicyEnforced(t *testing.T) {
	t.Parallel()
	requireAddons(t)
	helm := helmBinary(t)
	ns := namespace(t)
	allowed := namespace(t)
	other := namespace(t)
	nodeIP := nodeInternalIP(t)

	// One listener on every host address: reached as <node IP>:port or as the pod network's
	// gateway (10.244.0.1):port, so two checks differ only in the destination address.
	probe := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("host-probe-ok\n"))
	}), ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	go func() { _ = probe.Serve(ln) }()
	t.Cleanup(func() { _ = probe.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	hostByNode := fmt.Sprintf("%s:%d", nodeIP, port)
	hostByGateway := fmt.Sprintf("10.244.0.1:%d", port)

	// An unconfined server pod and a client pod in the namespace no policy lets in.
	podProbeIP := httpdPod(t, other, "probe")
	podProbe := podProbeIP + ":8080"
	sleeperPod(t, other, "client", nil)
	sleeperPod(t, allowed, "client", nil)
	kubectlOK(t, "create", "service", "clusterip", "dnsprobe", "-n", other, "--tcp=80:8080")

	cfg := strings.NewReplacer("@NODE@", hostByNode, "@POD@", podProbe, "@T@", fmt.Sprint(probeTimeout),
		"@NAME@", "dnsprobe."+other+".svc.cluster.local").Replace(netpolConfig)
	api := nodeKeptnAPI(t, nodeIP, cfg)

	repo, digest, ok := strings.Cut(env.Image, "@")
	require.True(t, ok, "JES_IMAGE %q is not repository@digest", env.Image)
	runHelm(t, helm, "install", deployRelease, "../chart", "-n", ns,
		"--set", "image.repository="+repo, "--set", "image.digest="+digest,
		"--set", "distributor.enabled=false",
		"--set", "remoteControlPlane.api.protocol=http",
		"--set", "remoteControlPlane.api.hostname="+api.Host,
		"--set", "remoteControlPlane.api.token="+apiToken,
		"--set-json", `networkPolicy.ingress.from=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"`+allowed+`"}}}]`,
		"--set", "networkPolicy.egress.enabled=true",
		"--set", "networkPolicy.egress.k8sMasterCIDR="+nodeIP+"/32",
		"--set", "networkPolicy.egress.k8sMasterPort=6443",
		"--set-json", `networkPolicy.egress.keptnApiCIDRs=["`+nodeIP+`/32"]`,
		"--set", "jobConfig.networkPolicy.enabled=true",
		"--set-json", `jobConfig.networkPolicy.blockCIDRs=["10.244.0.0/16","`+nodeIP+`/32"]`,
		"--wait", "--timeout", "120s")
	t.Cleanup(func() {
		if t.Failed() {
			dumpRelease(t, ns)
		}
	})
	out, err := kubectl(t, "get", "networkpolicies", "-n", ns, "-o", "name")
	require.NoError(t, err, out)
	for _, np := range []string{"jes-ingress-network-policy", "jes-egress-network-policy", "jes-job-network-policy"} {
		require.Contains(t, out, "networkpolicy.networking.k8s.io/"+np)
	}
	svcIP, err := kubectl(t, "get", "service", deployFullname, "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
	require.NoError(t, err, svcIP)
	receiver := fmt.Sprintf("http://%s:8080/healthz", svcIP)

	t.Run("ingress", func(t *testing.T) {
		body, took, ok := fetchEventually(t, allowed, "client", receiver, 60*time.Second)
		require.True(t, ok, "a pod of the allowed namespace must reach the receiver: %q", body)
		t.Logf("FIGURE %s allowed-source-reached-after=%s", t.Name(), took.Round(time.Millisecond))
		// The refused pod's network works: it reaches an unconfined pod ...
		body, ok = fetch(t, other, "client", "http://"+podProbe+"/")
		require.True(t, ok, "control: the other namespace's pod must reach an unconfined pod: %q", body)
		require.Contains(t, body, "probe-ok")
		// ... but not the receiver, by Service or pod IP, on either port.
		podIP, err := kubectl(t, "get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance="+deployRelease, "-o", "jsonpath={.items[0].status.podIP}")
		require.NoError(t, err, podIP)
		dropped(t, other, "client", receiver, "ingress from a namespace not listed")
		dropped(t, other, "client", "http://"+podIP+":8080/healthz", "ingress to the pod IP")
	})

	t.Run("service-egress", func(t *testing.T) {
		pod := podNames(t, ns)
		require.Len(t, pod, 1)
		// Same listener: the listed node address answers, the pod network's gateway does not.
		body, ok := fetch(t, ns, pod[0], "http://"+hostByNode+"/")
		require.True(t, ok, "control: the service pod must reach a listed CIDR: %q", body)
		assert.Contains(t, body, "host-probe-ok")
		dropped(t, ns, pod[0], "http://"+hostByGateway+"/", "service egress to an address not listed")
		dropped(t, ns, pod[0], "http://"+podProbe+"/", "service egress to another pod")
	})

	t.Run("job-egress", func(t *testing.T) {
		token := secretValue(t, ns, deployFullname+"-receiver-token", "token")
		auth := http.Header{"Authorization": {"Bearer " + token}}
		ev := triggered(t, "sh.keptn.event.test.triggered", nil)
		// The test process reaches the receiver: traffic from the node is not filtered.
		url := fmt.Sprintf("http://%s:8080/", svcIP)
		require.True(t, healthy(url, 30*time.Second), "receiver not answering the node")
		started, err := sendSDK(t, url, ev, auth)
		require.NoError(t, err)
		require.NotNil(t, started, "no .started reply")
		// .finished at the stand-in: the service reached the API server (Job, pods, logs) and
		// the Keptn API (config, events) through its egress policy.
		fin := waitEvent(t, api.Server, ev, "sh.keptn.event.test.finished", 3*time.Minute)
		require.Equal(t, "succeeded", dataString(fin, "status"), string(fin.Raw))
		msg := dataString(fin, "message")
		t.Logf("task output:\n%s", msg)
		assert.Contains(t, msg, "node=refused", "blockCIDRs: the node's IP")
		assert.Contains(t, msg, "pod=refused", "blockCIDRs: the pod network")
		assert.Contains(t, msg, "dns=ok", "DNS to kube-dns stays allowed inside a blocked CIDR")
		svc, err := kubectl(t, "get", "service", "dnsprobe", "-n", other, "-o", "jsonpath={.spec.clusterIP}")
		require.NoError(t, err, svc)
		assert.Contains(t, msg, "dns-answer="+svc)
		if m := regexp.MustCompile(`open-before-blocked=(\d+)`).FindStringSubmatch(msg); m != nil {
			t.Logf("FIGURE %s job-attempts-before-rules=%s", t.Name(), m[1])
			assert.NotEqual(t, "20", m[1], "the blocked address never stopped answering")
		}
		// Control: the same addresses answer a pod of that namespace that no policy selects.
		sleeperPod(t, ns, "unconfined", nil)
		for _, u := range []string{"http://" + hostByNode + "/", "http://" + podProbe + "/"} {
			body, ok := fetch(t, ns, "unconfined", u)
			assert.True(t, ok, "control: an unconfined pod in %s must reach %s: %q", ns, u, body)
		}
	})
}
