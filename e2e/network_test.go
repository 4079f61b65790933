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

// The busybox image's wget crashes (static glibc build: "Segmentation fault", exit 139 even
// for an IP address), so HTTP from a pod is one request through nc.
func httpScript(hostPort, path string, timeout int) string {
	host, port, _ := strings.Cut(hostPort, ":")
	return fmt.Sprintf(`printf 'GET %s HTTP/1.0\r\n\r\n' | nc -w %d %s %s`, path, timeout, host, port)
}

// fetch is one HTTP GET from inside a pod, bounded by probeTimeout; ok when the answer is a 200.
func fetch(t *testing.T, ns, pod, hostPort, path string) (string, bool) {
	t.Helper()
	out, err := podExec(t, ns, pod, httpScript(hostPort, path, probeTimeout))
	first, _, _ := strings.Cut(out, "\n")
	return out, err == nil && strings.HasPrefix(first, "HTTP/1.") && strings.Contains(first, " 200 ")
}

// fetchEventually retries fetch for up to d: a new pod's policy rules are programmed by
// kube-router shortly after the pod starts, so an allowed source may be refused at first.
func fetchEventually(t *testing.T, ns, pod, hostPort, path string, d time.Duration) (string, time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for {
		out, ok := fetch(t, ns, pod, hostPort, path)
		if ok || time.Since(start) > d {
			return out, time.Since(start), ok
		}
	}
}

// blocked asserts that a GET from the pod is stopped, twice. kube-router rejects what a policy
// does not admit (the connection is refused at once); a policy that drops instead leaves nc
// waiting probeTimeout (one try). Anything else — an HTTP answer, or a failure that is neither —
// fails. Each target is shown to answer an admitted source in the same scenario, so a refusal
// here is the policy, not a closed port.
func blocked(t *testing.T, ns, pod, hostPort, path, why string) {
	t.Helper()
	for i := 0; i < 2; i++ {
		start := time.Now()
		out, ok := fetch(t, ns, pod, hostPort, path)
		took := time.Since(start)
		assert.False(t, ok, "%s: %s/%s reached %s: %q", why, ns, pod, hostPort, out)
		rejected := strings.Contains(out, "Connection refused")
		timedOut := took >= time.Duration(probeTimeout-1)*time.Second && !strings.Contains(out, "HTTP/")
		assert.True(t, rejected || timedOut, "%s: %s neither rejected nor timed out after %s: %q", why, hostPort, took, out)
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

var pingAddr = regexp.MustCompile(`^PING \S+ \(([0-9.]+)\)`)

// resolve resolves name the way programs in the pod do (getaddrinfo with resolv.conf's search
// list; busybox nslookup ignores the list), through busybox ping, which prints the address
// before it sends anything; the ping itself is not answered and does not matter.
func resolve(t *testing.T, ns, pod, name string) (string, string) {
	t.Helper()
	out, _ := podExec(t, ns, pod, "ping -c 1 -W 1 "+name+" 2>&1 | head -n 1")
	if m := pingAddr.FindStringSubmatch(strings.TrimSpace(out)); m != nil {
		return m[1], out
	}
	return "", out
}

// TestClusterDNS: a pod resolves a Service by its full and its short names to the Service's
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

	// The DNS answer itself, from the server named in resolv.conf.
	addrs, out := lookup(t, ns, "client", "dnsprobe."+ns+".svc.cluster.local")
	assert.Equal(t, []string{ip}, addrs, out)
	assert.Contains(t, out, "Server:\t\t10.96.0.10")
	addrs, out = lookup(t, ns, "client", "kubernetes.default.svc.cluster.local")
	assert.Equal(t, []string{"10.96.0.1"}, addrs, out)
	addrs, out = lookup(t, ns, "client", "nosuchservice."+ns+".svc.cluster.local")
	assert.Empty(t, addrs, "an unknown Service must not resolve:\n%s", out)
	assert.Contains(t, out, "NXDOMAIN")

	// Short names through the search list, as a program in the pod resolves them.
	for _, name := range []string{"dnsprobe", "dnsprobe." + ns, "dnsprobe." + ns + ".svc"} {
		got, out := resolve(t, ns, "client", name)
		assert.Equal(t, ip, got, "%s: %s", name, out)
	}
	got, out := resolve(t, ns, "client", "kubernetes.default")
	assert.Equal(t, "10.96.0.1", got, out)
	got, out = resolve(t, ns, "client", "nosuchservice")
	assert.Empty(t, got, "an unknown short name must not resolve: %s", out)
}

// netpolConfig is the Job the service runs under the chart's job NetworkPolicy. Its script
// first polls (once a second, at most 60 times) until the blocked node address stops
// answering: kube-router programs a new pod's rules at its next sync after the pod started,
// and a short task can run before that. Then it prints one line per check.
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
            get() { printf 'GET / HTTP/1.0\r\n\r\n' | nc -w "$1" $2 $3 | head -n 1 | grep -q ' 200 '; }
            n=0
            while get 2 @NODE@ && [ $n -lt 60 ]; do n=$((n+1)); sleep 1; done
            echo "open-before-blocked=$n"
            if get @T@ @NODE@; then echo "node=reached"; else echo "node=refused"; fi
            if get @T@ @POD@; then echo "pod=reached"; else echo "pod=refused"; fi
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
	// A pod in the release namespace that no policy selects: the controls for the egress checks.
	sleeperPod(t, ns, "unconfined", nil)
	kubectlOK(t, "create", "service", "clusterip", "dnsprobe", "-n", other, "--tcp=80:8080")

	sp := func(hostPort string) string { return strings.Replace(hostPort, ":", " ", 1) }
	cfg := strings.NewReplacer("@NODE@", sp(hostByNode), "@POD@", sp(podProbe), "@T@", fmt.Sprint(probeTimeout),
		"@NAME@", "dnsprobe."+other+".svc.cluster.local").Replace(netpolConfig)
	api := nodeKeptnAPI(t, nodeIP, cfg)

	installDirect(t, helm, ns, api.Host,
		"--set-json", `networkPolicy.ingress.from=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"`+allowed+`"}}}]`,
		"--set", "networkPolicy.egress.enabled=true",
		"--set", "networkPolicy.egress.k8sMasterCIDR="+nodeIP+"/32",
		"--set", "networkPolicy.egress.k8sMasterPort=6443",
		"--set-json", `networkPolicy.egress.keptnApiCIDRs=["`+nodeIP+`/32"]`,
		"--set", "jobConfig.networkPolicy.enabled=true",
		"--set-json", `jobConfig.networkPolicy.blockCIDRs=["10.244.0.0/16","`+nodeIP+`/32"]`)
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
	receiver := svcIP + ":8080"

	t.Run("ingress", func(t *testing.T) {
		body, took, ok := fetchEventually(t, allowed, "client", receiver, "/healthz", 60*time.Second)
		require.True(t, ok, "a pod of the allowed namespace must reach the receiver: %q", body)
		t.Logf("FIGURE %s allowed-source-reached-after=%s", t.Name(), took.Round(time.Millisecond))
		// The refused pod's network works: it reaches an unconfined pod ...
		body, ok = fetch(t, other, "client", podProbe, "/")
		require.True(t, ok, "control: the other namespace's pod must reach an unconfined pod: %q", body)
		require.Contains(t, body, "probe-ok")
		// ... but not the receiver, by Service or pod IP, on either port.
		podIP, err := kubectl(t, "get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance="+deployRelease, "-o", "jsonpath={.items[0].status.podIP}")
		require.NoError(t, err, podIP)
		for _, target := range []string{podIP + ":8080", podIP + ":9090"} {
			body, ok := fetch(t, allowed, "client", target, "/healthz")
			require.True(t, ok, "control: the allowed namespace reaches %s: %q", target, body)
		}
		blocked(t, other, "client", receiver, "/healthz", "ingress from a namespace not listed")
		blocked(t, other, "client", podIP+":8080", "/healthz", "ingress to the pod IP")
		blocked(t, other, "client", podIP+":9090", "/healthz", "ingress to the monitoring port")
	})

	t.Run("service-egress", func(t *testing.T) {
		pod := podNames(t, ns)
		require.Len(t, pod, 1)
		// Same listener: the listed node address answers, the pod network's gateway does not.
		body, ok := fetch(t, ns, pod[0], hostByNode, "/")
		require.True(t, ok, "control: the service pod must reach a listed CIDR: %q", body)
		assert.Contains(t, body, "host-probe-ok")
		for _, u := range []string{hostByGateway, podProbe} {
			body, ok := fetch(t, ns, "unconfined", u, "/")
			require.True(t, ok, "control: an unconfined pod in %s reaches %s: %q", ns, u, body)
		}
		blocked(t, ns, pod[0], hostByGateway, "/", "service egress to an address not listed")
		blocked(t, ns, pod[0], podProbe, "/", "service egress to another pod")
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
			t.Logf("FIGURE %s job-seconds-unconfined=%s", t.Name(), m[1])
			assert.NotEqual(t, "60", m[1], "the blocked address never stopped answering")
		}
		// Control: the same addresses answer a pod of that namespace that no policy selects.
		for _, u := range []string{hostByNode, podProbe} {
			body, ok := fetch(t, ns, "unconfined", u, "/")
			assert.True(t, ok, "control: an unconfined pod in %s must reach %s: %q", ns, u, body)
		}
	})
}
