package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/handler"
	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
	lct "github.com/keptn-contrib/job-executor-service/handler/lifecycle/lifecycletest"
)

// receiver is the service's real router and lifecycle (config, Jobs and outgoing events are
// fakes) behind a test server; it keeps the content type of each request it got.
type receiver struct {
	URL  string
	mu   sync.Mutex
	seen []string
}

func (r *receiver) contentTypes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func newReceiver(t *testing.T, token string) *receiver {
	t.Helper()
	p := lifecycle.New(context.Background(), lifecycle.Deps{
		Loader: lct.Loader{YAML: lct.HelloConfig}, Runner: &lct.Runner{}, Sender: &lct.Recorder{},
	}, lifecycle.Options{})
	t.Cleanup(p.Wait)
	router := handler.NewServer(p, zap.NewNop(), handler.ServerOptions{Token: token}).Router()
	r := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.Header.Get("Content-Type"))
		r.mu.Unlock()
		router.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL + "/"
	return r
}

func runSend(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	rc := send(args, getter(env), &stdout, &stderr)
	return rc, stdout.String(), stderr.String()
}

const sendData = `{"project":"sockshop","stage":"dev","service":"carts"}`

// TestSendModes: an event from flags or from a file reaches the real receiver in binary or
// structured mode, and the .started reply is printed as a CloudEvent answering it.
func TestSendModes(t *testing.T) {
	rcv := newReceiver(t, "")
	tests := []struct {
		name        string
		args        []string
		contentType string
		context     string
	}{
		{"binary from flags", []string{"--type", "sh.keptn.event.test.triggered", "--data", sendData, "--context", "ctx-1", "--id", "id-1"},
			"application/json", "ctx-1"},
		{"structured from flags", []string{"--structured", "--type", "sh.keptn.event.test.triggered", "--data", sendData, "--context", "ctx-2"},
			"application/cloudevents+json", "ctx-2"},
		// The spec's event has no datacontenttype, so its binary request has no Content-Type.
		{"binary from the spec's event file", []string{"--file", "testdata/render/event.json"},
			"", "08735340-6f9e-4b32-97ff-3b6c292bc50i"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, stdout, stderr := runSend(t, nil, append([]string{"--to", rcv.URL}, tc.args...)...)
			require.Equal(t, 0, rc, stderr)
			assert.Equal(t, tc.contentType, rcv.contentTypes()[i])
			status, body, _ := strings.Cut(stdout, "\n")
			assert.Equal(t, "HTTP/1.1 200 OK", status)
			var reply map[string]any
			require.NoError(t, json.Unmarshal([]byte(body), &reply), body)
			assert.Equal(t, "sh.keptn.event.test.started", reply["type"])
			assert.Equal(t, tc.context, reply["shkeptncontext"])
			assert.NotContains(t, stdout, "\x1b[", "no colour when stdout is no terminal")
		})
	}
	rc, stdout, _ := runSend(t, nil, "--to", rcv.URL, "--type", "sh.keptn.event.test.triggered", "--data", sendData, "--id", "id-1")
	assert.Equal(t, 0, rc)
	assert.Contains(t, stdout, "sh.keptn.event.test.started", "a redelivery gets the first answer")
}

// TestSendToken: the token goes where the receiver looks for it, from the flag or RCV_TOKEN.
func TestSendToken(t *testing.T) {
	rcv := newReceiver(t, "s3cret")
	args := []string{"--to", rcv.URL, "--type", "sh.keptn.event.test.triggered", "--data", sendData}
	rc, stdout, stderr := runSend(t, nil, args...)
	assert.Equal(t, 1, rc)
	assert.Contains(t, stdout, "HTTP/1.1 401 Unauthorized\n")
	assert.Contains(t, stdout, `"error":"unauthorized"`)
	assert.Contains(t, stderr, "--rcv-token or RCV_TOKEN")
	rc, stdout, _ = runSend(t, nil, append(args, "--rcv-token", "s3cret")...)
	assert.Equal(t, 0, rc, stdout)
	rc, _, _ = runSend(t, map[string]string{"RCV_TOKEN": "s3cret"}, args...)
	assert.Equal(t, 0, rc)
	rc, _, _ = runSend(t, map[string]string{"RCV_TOKEN": "wrong"}, append(args, "--rcv-token", "s3cret")...)
	assert.Equal(t, 0, rc, "the flag before the variable")
}

// TestSendChecksFirst: an event the receiver would refuse, or Keptn would never send, is not
// sent; usage errors exit 2.
func TestSendChecksFirst(t *testing.T) {
	rcv := newReceiver(t, "")
	noContext := filepath.Join(t.TempDir(), "no-context.json")
	require.NoError(t, os.WriteFile(noContext, []byte(`{"specversion":"1.0","id":"1","source":"s","type":"sh.keptn.event.test.triggered","data":`+sendData+`}`), 0o600))
	tests := []struct {
		name string
		args []string
		rc   int
		want string
	}{
		{"missing data fields", []string{"--type", "sh.keptn.event.test.triggered", "--data", `{"project":"p"}`}, 1, "data.stage, data.service missing or empty"},
		{"not a Keptn type", []string{"--type", "test.triggered", "--data", sendData}, 1, `type "test.triggered" is not a Keptn event type`},
		{"triggered without context", []string{"--file", noContext}, 1, "needs the shkeptncontext extension"},
		{"data not JSON", []string{"--type", "sh.keptn.event.test.triggered", "--data", "project=p"}, 1, "--data is not JSON"},
		{"bad extension", []string{"--type", "sh.keptn.event.test.triggered", "--data", sendData, "--ext", "Bad_Name=x"}, 1, "--ext Bad_Name=x"},
		{"file and flags", []string{"--file", noContext, "--type", "sh.keptn.event.test.triggered", "--data", sendData}, 2, "usage: job-executor-service send"},
		{"neither", nil, 2, "usage: job-executor-service send"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, stdout, stderr := runSend(t, nil, append([]string{"--to", rcv.URL}, tc.args...)...)
			assert.Equal(t, tc.rc, rc)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, tc.want)
		})
	}
	assert.Empty(t, rcv.contentTypes(), "nothing was sent")

	rc, _, stderr := runSend(t, nil, "--to", "http://127.0.0.1:1/", "--type", "sh.keptn.event.test.triggered", "--data", sendData)
	assert.Equal(t, 1, rc)
	assert.Contains(t, stderr, "is the service listening at http://127.0.0.1:1/?")
}
