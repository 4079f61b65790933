package keptnapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keptn/go-utils/pkg/api/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const token = "s3cret"

func newTestServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	s := New(Options{Token: token, LatestCommitID: "head1"})
	require.NoError(t, s.LoadDir("testdata/api"))
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

func get(t *testing.T, ts *httptest.Server, path string, hdr map[string]string) (int, []byte) {
	t.Helper()
	return send(t, ts, http.MethodGet, path, "", hdr)
}

// send makes a request with the stand-in's token (and hdr) and returns status and body.
func send(t *testing.T, ts *httptest.Server, method, path, body string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("x-token", token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

const base = "/resource-service/v1/project/sockshop"

func TestGetResource(t *testing.T) {
	_, ts := newTestServer(t)
	esc := url.QueryEscape("job/config.yaml") // how go-utils builds the URL
	tests := []struct {
		name, path, wantContent, wantVersion string
		wantStatus                           int
		wantErr                              string
	}{
		{"service level escaped", base + "/stage/dev/service/carts/resource/" + esc, "apiVersion: v2 # service carts\n", "head1", 200, ""},
		{"service level raw slashes", base + "/stage/dev/service/carts/resource/job/config.yaml", "apiVersion: v2 # service carts\n", "head1", 200, ""},
		{"leading slash escaped", base + "/stage/dev/service/carts/resource/" + url.QueryEscape("/job/config.yaml"), "apiVersion: v2 # service carts\n", "head1", 200, ""},
		{"stage level", base + "/stage/dev/resource/" + esc, "apiVersion: v2 # stage dev\n", "head1", 200, ""},
		{"project level", base + "/resource/" + esc, "apiVersion: v2 # project\n", "head1", 200, ""},
		{"commit version", base + "/stage/dev/service/carts/resource/" + esc + "?gitCommitID=abc123", "apiVersion: v2 # carts at abc123\n", "abc123", 200, ""},
		{"nested file", base + "/stage/dev/service/carts/resource/locust%2Fbasic.py", "print(\"basic\")\n", "head1", 200, ""},
		{"missing in empty service", base + "/stage/prod/service/empty/resource/" + esc, "", "", 404, `resource "job/config.yaml" not found`},
		{"unknown service", base + "/stage/dev/service/nope/resource/" + esc, "", "", 404, `service "nope" not found`},
		{"unknown stage", base + "/stage/qa/resource/" + esc, "", "", 404, `stage "qa" not found`},
		{"unknown project", "/resource-service/v1/project/other/resource/" + esc, "", "", 404, `project "other" not found`},
		{"stages are made before project files load", base + "/stage/prod/resource/" + esc, "", "", 404, `resource "job/config.yaml" not found`},
		{"project level at a stage commit", base + "/resource/" + esc + "?gitCommitID=abc123", "", "", 404, `resource "job/config.yaml" not found`},
		{"unknown commit", base + "/resource/" + esc + "?gitCommitID=zzz", "", "", 500, `commit "zzz" not found`},
		{"file only in other commit", base + "/stage/dev/service/carts/resource/locust%2Fbasic.py?gitCommitID=abc123", "", "", 404, "not found"},
		{"unknown endpoint", "/v1/project/sockshop", "", "", 404, "no such endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := get(t, ts, tt.path, nil)
			require.Equal(t, tt.wantStatus, status, string(body))
			if tt.wantStatus != 200 {
				var e models.Error
				require.NoError(t, json.Unmarshal(body, &e))
				assert.Contains(t, e.GetMessage(), tt.wantErr)
				assert.EqualValues(t, tt.wantStatus, e.Code)
				return
			}
			var r models.Resource
			require.NoError(t, json.Unmarshal(body, &r))
			content, err := base64.StdEncoding.DecodeString(r.ResourceContent)
			require.NoError(t, err)
			assert.Equal(t, tt.wantContent, string(content))
			require.NotNil(t, r.Metadata)
			assert.Equal(t, tt.wantVersion, r.Metadata.Version)
			require.NotNil(t, r.ResourceURI)
			assert.True(t, strings.HasPrefix(*r.ResourceURI, "/"), *r.ResourceURI)
		})
	}
}

// resource GETs a resource (or a listing, for path "") and returns its content (URIs joined
// by "," for a listing), metadata and status.
func resource(t *testing.T, ts *httptest.Server, scope, path, commit string) (string, *models.Version, int) {
	t.Helper()
	u := scope + "/resource"
	if path != "" {
		u += "/" + url.QueryEscape(path)
	}
	if commit != "" {
		u += "?gitCommitID=" + commit
	}
	status, body := get(t, ts, u, nil)
	if status != 200 {
		return string(body), nil, status
	}
	if path == "" {
		var rs models.Resources
		require.NoError(t, json.Unmarshal(body, &rs))
		var uris []string
		for _, r := range rs.Resources {
			uris = append(uris, *r.ResourceURI)
		}
		return strings.Join(uris, ","), nil, status
	}
	var r models.Resource
	require.NoError(t, json.Unmarshal(body, &r))
	content, err := base64.StdEncoding.DecodeString(r.ResourceContent)
	require.NoError(t, err)
	return string(content), r.Metadata, status
}

// TestBranchModel: the resource-service keeps project resources on the default branch and
// makes each stage's branch from it, so a stage branch holds the project files of the moment
// it was made, and nothing added or edited on the default branch later.
func TestBranchModel(t *testing.T) {
	s := New(Options{Token: token, LatestCommitID: "head1"})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	const (
		proj  = "/resource-service/v1/project/p"
		dev   = proj + "/stage/dev"
		carts = dev + "/service/carts"
		prod  = proj + "/stage/prod"
	)
	p := Scope{Project: "p"}
	s.Put(Latest, p, "job/config.yaml", []byte("project v1"))
	s.AddScope(Latest, Scope{"p", "dev", "carts"}) // dev's branch is made now
	s.AddScope("c1", Scope{"p", "dev", "carts"})   // a commit on dev
	s.Put(Latest, p, "job/config.yaml", []byte("project v2"))
	s.Put(Latest, p, "later.txt", []byte("added after dev"))
	s.AddScope(Latest, Scope{"p", "prod", ""}) // prod's branch is made from v2

	tests := []struct {
		name, scope, path, commit string
		want                      string
		wantStatus                int
		wantBranch, wantVersion   string
	}{
		{"project level is the default branch's head", proj, "job/config.yaml", "", "project v2", 200, DefaultBranch, "head1"},
		{"stage branch keeps the project file it was made with, as a stage resource", dev, "job/config.yaml", "", "project v1", 200, "dev", "head1"},
		{"a project file added later is not on the stage branch", dev, "later.txt", "", "", 404, "", ""},
		{"a stage made later starts from the default branch of then", prod, "job/config.yaml", "", "project v2", 200, "prod", "head1"},
		{"project level at a stage commit reads that commit's tree", proj, "job/config.yaml", "c1", "project v1", 200, DefaultBranch, "c1"},
		{"project level at a stage commit: files added later are missing", proj, "later.txt", "c1", "", 404, "", ""},
		{"stage level at the commit", dev, "job/config.yaml", "c1", "project v1", 200, "dev", "c1"},
		{"service at the commit has no files", carts, "job/config.yaml", "c1", "", 404, "", ""},
		{"unknown commit: git cannot resolve it", dev, "job/config.yaml", "nope", "", 500, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, meta, status := resource(t, ts, tt.scope, tt.path, tt.commit)
			require.Equal(t, tt.wantStatus, status, got)
			if status != 200 {
				return
			}
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.wantBranch, meta.Branch)
			assert.Equal(t, tt.wantVersion, meta.Version)
		})
	}

	t.Run("named commits are snapshots of their own", func(t *testing.T) {
		s.Put("c1", Scope{"p", "dev", "carts"}, "at-c1.txt", []byte("c1"))
		s.Put(Latest, Scope{"p", "dev", "carts"}, "at-head.txt", []byte("head"))
		got, _, status := resource(t, ts, carts, "at-c1.txt", "c1")
		assert.Equal(t, 200, status)
		assert.Equal(t, "c1", got)
		_, _, status = resource(t, ts, carts, "at-c1.txt", "")
		assert.Equal(t, 404, status, "not on the head")
		_, _, status = resource(t, ts, carts, "at-head.txt", "c1")
		assert.Equal(t, 404, status, "not at c1")
	})

	t.Run("a listing is of the branch head, whatever the commit", func(t *testing.T) {
		got, _, status := resource(t, ts, carts, "", "c1")
		require.Equal(t, 200, status)
		assert.Equal(t, "/at-head.txt", got)
	})

	t.Run("the service must exist on the branch head", func(t *testing.T) {
		s.AddScope("c2", Scope{"p", "dev", ""})
		got, _, status := resource(t, ts, dev+"/service/other", "x", "c2")
		assert.Equal(t, 404, status)
		assert.Contains(t, got, `service \"other\" not found`)
	})

	t.Run("Delete", func(t *testing.T) {
		s.Delete(Latest, p, "job/config.yaml")
		_, _, status := resource(t, ts, proj, "job/config.yaml", "")
		assert.Equal(t, 404, status)
		got, _, _ := resource(t, ts, dev, "job/config.yaml", "")
		assert.Equal(t, "project v1", got, "the stage branch's copy stays")
		s.Delete("c1", Scope{"p", "dev", ""}, "job/config.yaml")
		_, _, status = resource(t, ts, dev, "job/config.yaml", "c1")
		assert.Equal(t, 404, status)
		s.Delete("nope", p, "x")                   // unknown commit: nothing to do
		s.Delete(Latest, Scope{Project: "q"}, "x") // unknown project
	})
}

func TestListResourcesPaging(t *testing.T) {
	s, ts := newTestServer(t)
	for _, p := range []string{"a", "b", "c", "d", "e"} {
		s.Put(Latest, Scope{"sockshop", "dev", "paged"}, "files/"+p, []byte(p))
	}
	var got []string
	next, pages := "", 0
	for {
		q := "?pageSize=2"
		if next != "" {
			q += "&nextPageKey=" + next
		}
		status, body := get(t, ts, base+"/stage/dev/service/paged/resource"+q, nil)
		require.Equal(t, 200, status, string(body))
		var rs models.Resources
		require.NoError(t, json.Unmarshal(body, &rs))
		assert.EqualValues(t, 5, rs.TotalCount)
		for _, r := range rs.Resources {
			got = append(got, *r.ResourceURI)
			assert.Empty(t, r.ResourceContent, "lists carry no content")
		}
		pages++
		if next = rs.NextPageKey; next == "" {
			break
		}
		require.Less(t, pages, 10, "paging does not end")
	}
	assert.Equal(t, 3, pages)
	assert.Equal(t, []string{"/files/a", "/files/b", "/files/c", "/files/d", "/files/e"}, got)

	status, body := get(t, ts, base+"/stage/dev/service/carts/resource", nil)
	require.Equal(t, 200, status)
	var rs models.Resources
	require.NoError(t, json.Unmarshal(body, &rs))
	require.Len(t, rs.Resources, 3)
	assert.Equal(t, "/locust/import.py", *rs.Resources[2].ResourceURI)

	for _, bad := range []string{"?pageSize=0", "?pageSize=x", "?nextPageKey=-1"} {
		status, _ := get(t, ts, base+"/resource"+bad, nil)
		assert.Equal(t, 400, status, bad)
	}
	status, _ = get(t, ts, base+"/stage/prod/service/empty/resource", nil)
	assert.Equal(t, 200, status, "an existing service without resources lists nothing")
}

func TestTokenRequired(t *testing.T) {
	_, ts := newTestServer(t)
	for _, tok := range []string{"", "wrong"} {
		status, _ := get(t, ts, base+"/resource/job%2Fconfig.yaml", map[string]string{"x-token": tok})
		assert.Equal(t, 401, status, "token %q", tok)
		status, _ = post(t, ts, tok, "application/json", `{"type":"x","source":"y"}`, nil)
		assert.Equal(t, 401, status, "token %q", tok)
	}
}

func post(t *testing.T, ts *httptest.Server, tok, ctype, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/v1/event", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("x-token", tok)
	req.Header.Set("Content-Type", ctype)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	msg, _ := out["message"].(string)
	if kc, ok := out["keptnContext"].(string); ok {
		msg = kc
	}
	return resp.StatusCode, msg
}

func TestPostEvent(t *testing.T) {
	s, ts := newTestServer(t)
	finished := `{"specversion":"1.0","type":"sh.keptn.event.test.finished","source":"job-executor-service",
		"id":"1","shkeptncontext":"ctx-1","triggeredid":"t-1","data":{"project":"sockshop","status":"succeeded","result":"pass","message":"hello"}}`
	tests := []struct {
		name, ctype, body string
		hdr               map[string]string
		wantStatus        int
		wantMsg           string
	}{
		{"structured json", "application/json", finished, nil, 200, "ctx-1"},
		{"cloudevents+json", "application/cloudevents+json; charset=utf-8", finished, nil, 200, "ctx-1"},
		{"log.error like any other", "application/json", `{"type":"sh.keptn.log.error","source":"jes","data":{"message":"boom"}}`, nil, 200, ""},
		{"binary mode refused", "application/json", `{"project":"sockshop"}`, map[string]string{"ce-type": "sh.keptn.event.test.finished"}, 400, "binary-mode"},
		{"not json", "application/json", `nope`, nil, 400, "not a JSON CloudEvent"},
		{"no type", "application/json", `{"source":"x"}`, nil, 400, "no type"},
		{"no source", "application/json", `{"type":"x"}`, nil, 400, "no source"},
		{"wrong specversion", "application/json", `{"type":"x","source":"y","specversion":"0.3"}`, nil, 400, "specversion"},
		{"wrong content type", "text/plain", finished, nil, 415, "content type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, msg := post(t, ts, token, tt.ctype, tt.body, tt.hdr)
			assert.Equal(t, tt.wantStatus, status, msg)
			assert.Contains(t, msg, tt.wantMsg)
		})
	}
	evs := s.Events()
	require.Len(t, evs, 3)
	assert.Equal(t, "sh.keptn.event.test.finished", evs[0].TypeName())
	assert.Equal(t, "hello", evs[0].DataMap()["message"])
	assert.Equal(t, "t-1", evs[0].Triggeredid)
	assert.Equal(t, "sh.keptn.log.error", evs[2].TypeName())
	assert.Len(t, evs[2].Shkeptncontext, 36, "a context is made up when missing")
	assert.JSONEq(t, finished, string(evs[0].Raw))
}

// MaxEventBytes refuses what the distributor's API proxy would: a body one byte over.
func TestPostEventMaxBytes(t *testing.T) {
	s := New(Options{Token: token, MaxEventBytes: 200})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	body := func(n int) string {
		ev := `{"type":"x","source":"y","data":{"message":"%s"}}`
		return fmt.Sprintf(ev, strings.Repeat("m", n-len(ev)+2))
	}
	require.Len(t, body(200), 200)
	status, msg := post(t, ts, token, "application/json", body(200), nil)
	assert.Equal(t, 200, status, msg)
	status, msg = post(t, ts, token, "application/json", body(201), nil)
	assert.Equal(t, 413, status)
	assert.Contains(t, msg, "larger than 200 bytes")
	assert.Len(t, s.Events(), 1)
	var sizes []int
	for _, rq := range s.Requests() {
		sizes = append(sizes, rq.Bytes)
	}
	assert.Equal(t, []int{200, 201}, sizes, "Requests tell the size of refused events too")
}

func TestWaitFor(t *testing.T) {
	s, ts := newTestServer(t)
	isFinished := func(e Event) bool { return e.TypeName() == "sh.keptn.event.test.finished" }

	// already recorded events are found
	status, _ := post(t, ts, token, "application/json", `{"type":"sh.keptn.event.test.started","source":"a"}`, nil)
	require.Equal(t, 200, status)
	ev, err := s.WaitFor(context.Background(), func(e Event) bool { return strings.HasSuffix(e.TypeName(), ".started") })
	require.NoError(t, err)
	assert.Equal(t, "a", *ev.Source)

	// a future event wakes the waiter
	var wg sync.WaitGroup
	var got Event
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		got, werr = s.WaitFor(context.Background(), isFinished)
	}()
	status, _ = post(t, ts, token, "application/json", `{"type":"sh.keptn.event.test.finished","source":"b"}`, nil)
	require.Equal(t, 200, status)
	wg.Wait()
	require.NoError(t, werr)
	assert.Equal(t, "b", *got.Source)

	// cancellation ends the wait with a clear error
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.WaitFor(ctx, func(Event) bool { return false })
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "2 events received")
}

func TestFailNextAndStall(t *testing.T) {
	s, ts := newTestServer(t)
	path := base + "/resource/job%2Fconfig.yaml"

	s.FailNext(2, http.StatusServiceUnavailable)
	for i := 0; i < 2; i++ {
		status, _ := get(t, ts, path, nil)
		assert.Equal(t, 503, status)
	}
	status, _ := get(t, ts, path, nil)
	assert.Equal(t, 200, status, "only n requests fail")

	s.FailNextOf(EventRequests, 1, http.StatusBadGateway)
	status, _ = get(t, ts, path, nil)
	assert.Equal(t, 200, status, "event failures leave resources alone")
	status, _ = post(t, ts, token, "application/json", `{"type":"x","source":"y"}`, nil)
	assert.Equal(t, 502, status)
	assert.Empty(t, s.Events(), "a failed post is not recorded")

	// Stall: a client with a short timeout gives up; no wall-clock assertion needed.
	s.Stall(time.Hour)
	c := &http.Client{Timeout: 50 * time.Millisecond}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
	_, err := c.Do(req)
	require.Error(t, err)
	s.Stall(0)
	status, _ = get(t, ts, path, nil)
	assert.Equal(t, 200, status)

	reqs := s.Requests()
	require.NotEmpty(t, reqs)
	assert.Equal(t, 503, reqs[0].Status)
	assert.Equal(t, base+"/resource/job/config.yaml", reqs[0].Path)

	s.Reset()
	assert.Empty(t, s.Requests())
}

func TestFailUntil(t *testing.T) {
	s, ts := newTestServer(t)
	path := base + "/resource/job%2Fconfig.yaml"
	ev := `{"type":"x","source":"y"}`

	// An outage far in the future covers every attempt, and only its kind.
	s.FailUntil(EventRequests, time.Now().Add(time.Hour), http.StatusServiceUnavailable)
	for i := 0; i < 3; i++ {
		status, _ := post(t, ts, token, "application/json", ev, nil)
		assert.Equal(t, 503, status, "attempt %d", i)
	}
	status, _ := get(t, ts, path, nil)
	assert.Equal(t, 200, status, "resources stay up during an event outage")
	assert.Empty(t, s.Events())

	// FailNext counts are not used up while the outage answers.
	s.FailNextOf(EventRequests, 1, http.StatusBadGateway)
	status, _ = post(t, ts, token, "application/json", ev, nil)
	assert.Equal(t, 503, status)

	// A time in the past ends it; the pending FailNext applies next.
	s.FailUntil(EventRequests, time.Time{}, http.StatusServiceUnavailable)
	status, _ = post(t, ts, token, "application/json", ev, nil)
	assert.Equal(t, 502, status)
	status, _ = post(t, ts, token, "application/json", ev, nil)
	assert.Equal(t, 200, status)
	assert.Len(t, s.Events(), 1)

	// AnyRequest covers resources too; Reset clears outages.
	s.FailUntil(AnyRequest, time.Now().Add(time.Hour), http.StatusGatewayTimeout)
	status, _ = get(t, ts, path, nil)
	assert.Equal(t, 504, status)
	s.Reset()
	status, _ = get(t, ts, path, nil)
	assert.Equal(t, 200, status)
}

func TestStartAndClose(t *testing.T) {
	s := New(Options{})
	s.Put(Latest, Scope{Project: "p"}, "/job/config.yaml", []byte("x"))
	u, err := s.Start("127.0.0.1:0")
	require.NoError(t, err)
	resp, err := http.Get(u + "/resource-service/v1/project/p/resource/job%2Fconfig.yaml")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, "no token configured: open")
	require.NoError(t, s.Close())
	_, err = s.Start(strings.TrimPrefix(u, "http://"))
	require.NoError(t, err, "port is free again after Close")
	require.NoError(t, s.Close())
}

func TestLoadDirErrors(t *testing.T) {
	s := New(Options{})
	err := s.LoadDir(t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "neither latest/ nor commits/")
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"type":"sh.keptn.event.test.finished","source":"x","data":{"a":1}}`))
	f.Add([]byte(`{"type":"","source":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEvent(b)
		if err == nil && (ev.TypeName() == "" || ev.Source == nil) {
			t.Fatalf("accepted event without type/source: %q", b)
		}
	})
}

func FuzzHandler(f *testing.F) {
	s := New(Options{})
	require.NoError(f, s.LoadDir("testdata/api"))
	h := s.Handler()
	f.Add("GET", "/resource-service/v1/project/sockshop/stage/dev/resource/job%2Fconfig.yaml", "")
	f.Add("GET", "/resource-service/v1/project/sockshop/resource?pageSize=1&nextPageKey=99", "")
	f.Add("POST", "/v1/event", `{"type":"a","source":"b"}`)
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/") {
			return
		}
		if _, err := url.ParseRequestURI(target); err != nil {
			return
		}
		req, err := http.NewRequest(method, "http://x"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req) // must not panic
		if rec.Code == 0 {
			t.Fatal("no status written")
		}
	})
}
