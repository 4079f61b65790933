//go:build e2e

// Package e2e holds the real-cluster scenarios: the service runs as a real process against the
// cluster that e2e/cluster.sh brings up, with the Keptn API stand-in (e2e/keptnapi) in this test
// process. Nothing is brought up here: `make e2e` does that and writes $JES_E2E_DIR/e2e.env.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/require"

	"github.com/keptn-contrib/job-executor-service/e2e/keptnapi"
)

// harness is what cluster.sh wrote to e2e.env.
type harness struct {
	Kubeconfig string // KUBECONFIG
	Kubectl    string // E2E_KUBECTL
	Registry   string // E2E_REGISTRY
	Image      string // JES_IMAGE: the ko-built service image (INIT_CONTAINER_IMAGE)
	// DistributorImage and NATSImage (E2E_DISTRIBUTOR_IMAGE, E2E_NATS_IMAGE): Keptn's
	// distributor built from its source and the NATS server, for distributor_test.go.
	DistributorImage string
	NATSImage        string
	Dir              string
}

var (
	env harness
	// serviceBin is the service built once per test run.
	serviceBin string
)

const apiToken = "e2e-token"

// recordSigningKey is the RECORD_SIGNING_KEY of every service process startService runs.
const recordSigningKey = "e2e-record-signing-key-0123456789abcdef"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir := os.Getenv("JES_E2E_DIR")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "jes-e2e")
	}
	vals, err := readEnvFile(filepath.Join(dir, "e2e.env"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n  bring the cluster up first: make e2e-cluster e2e-images (or make e2e)\n", err)
		return 1
	}
	env = harness{Kubeconfig: vals["KUBECONFIG"], Kubectl: vals["E2E_KUBECTL"], Registry: vals["E2E_REGISTRY"],
		Image: vals["JES_IMAGE"], DistributorImage: vals["E2E_DISTRIBUTOR_IMAGE"], NATSImage: vals["E2E_NATS_IMAGE"], Dir: dir}
	for k, v := range map[string]string{"KUBECONFIG": env.Kubeconfig, "E2E_KUBECTL": env.Kubectl, "JES_IMAGE": env.Image} {
		if v == "" {
			fmt.Fprintf(os.Stderr, "e2e: %s missing in %s/e2e.env (run make e2e-images)\n", k, dir)
			return 1
		}
	}
	tmp, err := os.MkdirTemp("", "jes-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	serviceBin = filepath.Join(tmp, "job-executor-service")
	build := exec.Command("go", "build", "-o", serviceBin, "./cmd/job-executor-service")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the service:", err)
		return 1
	}
	return m.Run()
}

func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vals[k] = v
		}
	}
	return vals, sc.Err()
}

// kubectl runs the harness's kubectl and returns its combined output.
func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(env.Kubectl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var nsSeq = struct {
	sync.Mutex
	n int
}{}

// namespace creates a fresh namespace for one scenario; it is deleted afterwards unless the
// test failed (kept for inspection) or E2E_KEEP_NS=1.
func namespace(t *testing.T) string {
	t.Helper()
	nsSeq.Lock()
	nsSeq.n++
	n := nsSeq.n
	nsSeq.Unlock()
	name := strings.Trim(regexp.MustCompile(`[^a-z0-9-]+`).ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	name = fmt.Sprintf("e2e-%d-%s", n, name)
	if len(name) > 50 {
		name = name[:50]
	}
	// A random suffix: namespaces of failed runs are kept, and a re-run must not collide.
	name = fmt.Sprintf("%s-%04x", strings.TrimRight(name, "-"), rand.IntN(1<<16))
	createNamespace(t, name)
	return name
}

// createNamespace creates namespace name, deleted after the test unless it failed or E2E_KEEP_NS=1.
func createNamespace(t *testing.T, name string) {
	t.Helper()
	out, err := kubectl(t, "create", "namespace", name)
	require.NoError(t, err, out)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("E2E_KEEP_NS") == "1" {
			t.Logf("namespace %s kept for inspection", name)
			return
		}
		_, _ = kubectl(t, "delete", "namespace", name, "--wait=false")
	})
}

// freePort asks the kernel for an unused TCP port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// keptnAPI starts a stand-in with the given job/config.yaml at service level (latest) for
// sockshop/dev/carts; more resources can be added with Put.
func keptnAPI(t *testing.T, jobConfig string) *keptnapi.Server {
	t.Helper()
	api := keptnapi.New(keptnapi.Options{Token: apiToken})
	api.AddScope(keptnapi.Latest, keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"})
	if jobConfig != "" {
		api.Put(keptnapi.Latest, keptnapi.Scope{Project: "sockshop", Stage: "dev", Service: "carts"}, "job/config.yaml", []byte(jobConfig))
	}
	_, err := api.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = api.Close() })
	return api
}

// service is a running job-executor-service process.
type service struct {
	URL  string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startService runs the service against api and the cluster, jobs in namespace ns. extra
// overrides or adds environment variables. Its log is printed when the test fails.
func startService(t *testing.T, api *keptnapi.Server, ns string, extra map[string]string) *service {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		vars := map[string]string{
			"KUBECONFIG":           env.Kubeconfig,
			"RCV_PORT":             fmt.Sprint(port),
			"KEPTN_API_ENDPOINT":   api.URL(),
			"KEPTN_API_TOKEN":      apiToken,
			"JOB_NAMESPACE":        ns,
			"INIT_CONTAINER_IMAGE": env.Image,
			"LOG_LEVEL":            "debug",
			// Every process of a scenario shares the key, as the pods of one installation do, so
			// that a restarted or second instance resumes the records the first one signed.
			"RECORD_SIGNING_KEY": recordSigningKey,
		}
		for k, v := range extra {
			vars[k] = v
		}
		s, err := launch(t, vars, port)
		if err == nil {
			return s
		}
		// freePort's port is free only until it is closed: an outgoing connection of any
		// process can take it (same ephemeral range) before the service binds it.
		if errors.Is(err, errPortTaken) && attempt < 5 {
			t.Logf("port %d was taken before the service bound it; starting it on another", port)
			continue
		}
		t.Fatal(err)
	}
}

var errPortTaken = errors.New("receiver port already in use")

// launch starts the service process with vars and waits until /healthz on port answers.
func launch(t *testing.T, vars map[string]string, port int) (*service, error) {
	t.Helper()
	cmd := exec.Command(serviceBin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	s := &service{URL: fmt.Sprintf("http://127.0.0.1:%d/", port), cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() || testing.Verbose() && os.Getenv("E2E_SERVICE_LOGS") == "1" {
			t.Logf("service log:\n%s", s.logs.String())
		}
	})
	// Ready when /healthz answers (or the process died, which fails here with its log).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.done:
			if strings.Contains(s.logs.String(), "address already in use") {
				return nil, errPortTaken
			}
			return nil, fmt.Errorf("service exited at start: %v\n%s", cmd.ProcessState, s.logs.String())
		case <-ctx.Done():
			return nil, fmt.Errorf("service not healthy after 30s\n%s", s.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// triggered builds a Keptn .triggered CloudEvent for sockshop/dev/carts with extra data merged in.
func triggered(t *testing.T, eventType string, data map[string]any) cloudevents.Event {
	t.Helper()
	ev := cloudevents.NewEvent()
	ev.SetID(fmt.Sprintf("e2e-%d", time.Now().UnixNano()))
	ev.SetSource("e2e")
	ev.SetType(eventType)
	ev.SetTime(time.Now())
	ev.SetExtension("shkeptncontext", fmt.Sprintf("ctx-%d", time.Now().UnixNano()))
	ev.SetExtension("shkeptnspecversion", "0.2.4")
	d := map[string]any{"project": "sockshop", "stage": "dev", "service": "carts"}
	for k, v := range data {
		d[k] = v
	}
	require.NoError(t, ev.SetData(cloudevents.ApplicationJSON, d))
	return ev
}

// reply is the service's HTTP answer to an event.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// sendBinary posts ev like `curl -H ce-type: ...` (binary content mode).
func sendBinary(t *testing.T, url string, ev cloudevents.Event) reply {
	t.Helper()
	return sendBinaryWith(t, url, ev, nil)
}

// sendBinaryWith is sendBinary with extra headers (e.g. the receiver token).
func sendBinaryWith(t *testing.T, url string, ev cloudevents.Event, extra http.Header) reply {
	t.Helper()
	return do(t, binaryRequest(t, url, ev, extra))
}

// binaryRequest is the request sendBinaryWith posts.
func binaryRequest(t *testing.T, url string, ev cloudevents.Event, extra http.Header) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(ev.Data()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", ev.ID())
	req.Header.Set("ce-source", ev.Source())
	req.Header.Set("ce-type", ev.Type())
	req.Header.Set("ce-time", ev.Time().UTC().Format(time.RFC3339Nano))
	for k, v := range ev.Extensions() {
		req.Header.Set("ce-"+k, fmt.Sprint(v))
	}
	for k := range extra {
		req.Header.Set(k, extra.Get(k))
	}
	return req
}

// sendStructured posts ev as one JSON document (structured content mode).
func sendStructured(t *testing.T, url string, ev cloudevents.Event) reply {
	t.Helper()
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/cloudevents+json")
	return do(t, req)
}

func do(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// sendSDK sends ev with the CloudEvents SDK client and returns the reply event (the .started).
func sendSDK(t *testing.T, url string, ev cloudevents.Event, extra ...http.Header) (*cloudevents.Event, error) {
	t.Helper()
	var opts []cehttp.Option
	for _, h := range extra {
		for k := range h {
			opts = append(opts, cehttp.WithHeader(k, h.Get(k)))
		}
	}
	c, err := cloudevents.NewClientHTTP(opts...)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, res := c.Request(cloudevents.ContextWithTarget(ctx, url), ev)
	if !cloudevents.IsACK(res) {
		return resp, res
	}
	return resp, nil
}

// startedFrom decodes a binary-mode .started reply.
func startedFrom(t *testing.T, r reply) (eventType, keptnContext, triggeredID string) {
	t.Helper()
	return r.Header.Get("ce-type"), r.Header.Get("ce-shkeptncontext"), r.Header.Get("ce-triggeredid")
}

// waitEvent waits (up to d) for an event of eventType in the Keptn context of ev at the stand-in.
func waitEvent(t *testing.T, api *keptnapi.Server, ev cloudevents.Event, eventType string, d time.Duration) keptnapi.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	kctx := fmt.Sprint(ev.Extensions()["shkeptncontext"])
	got, err := api.WaitFor(ctx, func(e keptnapi.Event) bool {
		return e.TypeName() == eventType && e.Shkeptncontext == kctx
	})
	if err != nil {
		var seen []string
		for _, e := range api.Events() {
			seen = append(seen, e.TypeName()+" "+string(e.Raw))
		}
		t.Fatalf("no %s for context %s: %v\nevents seen:\n%s", eventType, kctx, err, strings.Join(seen, "\n"))
	}
	return got
}

// dataString reads a string field from an event's data.
func dataString(e keptnapi.Event, key string) string {
	s, _ := e.DataMap()[key].(string)
	return s
}
