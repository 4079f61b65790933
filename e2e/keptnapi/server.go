// Package keptnapi is an in-memory stand-in for the parts of the Keptn API the
// job-executor-service talks to: the resource-service (job/config.yaml and task files,
// per project/stage/service and per git commit), POST /v1/event and the control plane's
// integration registration and triggered-event polling that Keptn's distributor uses
// (controlplane.go). It records every
// request and event so tests can assert on them, and can be told to fail or stall.
//
// Resources follow the resource-service's git layout (branch mode, keptn/keptn
// resource-service/handler/stage_context.go BranchConfigurationContext): each project is a
// repository whose default branch holds the project-level resources and which has one branch
// per stage. A stage branch is created from the default branch (handler/stage_manager.go
// BranchingStageManager.CreateStage), so its root starts with the project files of that
// moment; stage-level resources live in that same root, service-level ones in a directory
// per service. Project files added or edited on the default branch later never reach it.
//
// It is used by the e2e scenarios (with a real service process) and can be used by
// handler tests through Handler() and httptest. It has no build tag and only light deps.
package keptnapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keptn/go-utils/pkg/api/models"
)

// Latest names a branch's head, the newest version of its resources; it is served when a
// request carries no gitCommitID.
const Latest = ""

// DefaultPageSize is used for resource lists when the request has no pageSize (Keptn's default).
const DefaultPageSize = 20

// maxEventBytes bounds a recorded event body; Keptn's API rejects far smaller ones.
const maxEventBytes = 10 << 20

// Scope is a position in Keptn's hierarchy: Project only, Project+Stage, or all three.
type Scope struct {
	Project, Stage, Service string
}

func (s Scope) String() string {
	switch {
	case s.Service != "":
		return fmt.Sprintf("project %q stage %q service %q", s.Project, s.Stage, s.Service)
	case s.Stage != "":
		return fmt.Sprintf("project %q stage %q", s.Project, s.Stage)
	default:
		return fmt.Sprintf("project %q", s.Project)
	}
}

// Options configure a Server.
type Options struct {
	// Token, when set, must be sent as the x-token header on every request (401 otherwise),
	// as Keptn's API gateway demands.
	Token string
	// LatestCommitID is reported as metadata.version for resources of a branch head
	// (default "latest").
	LatestCommitID string
	// UpstreamURL is reported as metadata.upstreamURL (optional).
	UpstreamURL string
	// MaxEventBytes, when set, refuses larger event bodies with 413, as the distributor's API
	// proxy does with API_PROXY_MAX_PAYLOAD_BYTES_KB (its MaxBytesReader; the proxy itself
	// answers 500, which a sender would retry for minutes). Default: 10 MiB.
	MaxEventBytes int
}

// Kind selects which requests a FailNext applies to.
type Kind int

// Request kinds.
const (
	AnyRequest Kind = iota
	ResourceRequests
	EventRequests
	ControlPlaneRequests // registration, heartbeats, logs, triggered-event polls (controlplane.go)
)

// Event is one event POSTed to /v1/event.
type Event struct {
	models.KeptnContextExtendedCE
	// Raw is the body as received.
	Raw      []byte
	Received time.Time
}

// TypeName is the event type ("" if missing).
func (e Event) TypeName() string {
	if e.Type == nil {
		return ""
	}
	return *e.Type
}

// DataMap is the event data decoded as a JSON object (nil if it is not one).
func (e Event) DataMap() map[string]any {
	m, _ := e.Data.(map[string]any)
	return m
}

// Request is one request the server answered.
type Request struct {
	Method, Path string
	Query        url.Values
	Status       int
	Time         time.Time
	// Bytes is the size of an event body (POST /v1/event), also of a refused one.
	Bytes int
}

type failRule struct {
	kind   Kind
	n      int
	status int
}

// outage fails every request of a kind until a point in time.
type outage struct {
	kind   Kind
	until  time.Time
	status int
}

// DefaultBranch is the branch a project's own resources live on (the resource-service's
// GetDefaultBranch falls back to "master" when git names none).
const DefaultBranch = "master"

// tree is the content of one commit (or branch head) of a project's repository.
type tree struct {
	// root holds the files at the repository root: project-level resources on the default
	// branch, stage-level resources (and the project files inherited when the branch was
	// made) on a stage branch.
	root map[string][]byte
	// services are the service directories of a stage branch; a present key means the
	// service exists, even without files.
	services map[string]map[string][]byte
}

func newTree() *tree {
	return &tree{root: map[string][]byte{}, services: map[string]map[string][]byte{}}
}

func (t *tree) clone() *tree {
	c := newTree()
	for p, b := range t.root {
		c.root[p] = b
	}
	for svc, files := range t.services {
		c.services[svc] = map[string][]byte{}
		for p, b := range files {
			c.services[svc][p] = b
		}
	}
	return c
}

// files is the directory a scope reads in this tree (nil if a service directory is missing).
func (t *tree) files(sc Scope) map[string][]byte {
	if sc.Service != "" {
		return t.services[sc.Service]
	}
	return t.root
}

type branch struct {
	head *tree // what a request without gitCommitID reads
	base *tree // the tree the branch was created with; named commits start from it
}

// repo is one project's git repository.
type repo struct {
	branches map[string]*branch // DefaultBranch and one per stage
	commits  map[string]*tree   // named commits of every branch
}

func branchName(sc Scope) string {
	if sc.Stage == "" {
		return DefaultBranch
	}
	return sc.Stage
}

// Server is the stand-in. The zero value is not usable; call New.
type Server struct {
	opts Options

	mu       sync.Mutex
	repos    map[string]*repo // by project
	events   []Event
	requests []Request
	fails    []failRule
	outages  []outage
	stall    time.Duration
	changed  chan struct{} // closed and replaced whenever an event arrives

	integrations map[string]*Registration        // by id (controlplane.go)
	triggered    []models.KeptnContextExtendedCE // open .triggered events, for pollers

	srv *http.Server
	ln  net.Listener
}

// New returns an empty server.
func New(opts Options) *Server {
	if opts.LatestCommitID == "" {
		opts.LatestCommitID = "latest"
	}
	return &Server{opts: opts, repos: map[string]*repo{}, changed: make(chan struct{}), integrations: map[string]*Registration{}}
}

// branchLocked returns sc's branch, making the project and the branch as needed. A new stage
// branch starts from the default branch's head, as the resource-service creates stages.
func (s *Server) branchLocked(sc Scope) (*repo, *branch) {
	r := s.repos[sc.Project]
	if r == nil {
		r = &repo{branches: map[string]*branch{DefaultBranch: {head: newTree(), base: newTree()}}, commits: map[string]*tree{}}
		s.repos[sc.Project] = r
	}
	name := branchName(sc)
	b := r.branches[name]
	if b == nil {
		base := newTree()
		for p, c := range r.branches[DefaultBranch].head.root {
			base.root[p] = c
		}
		b = &branch{head: base.clone(), base: base}
		r.branches[name] = b
	}
	return r, b
}

// treeLocked returns the tree that commit names for sc, making it as needed: Latest is the
// head of sc's branch; a new named commit is made on sc's branch and starts with what the
// branch was created with. A named commit that exists is used whatever sc's branch, as git
// reads any commit's tree.
func (s *Server) treeLocked(commitID string, sc Scope) *tree {
	r, b := s.branchLocked(sc)
	if commitID == Latest {
		return b.head
	}
	c := r.commits[commitID]
	if c == nil {
		c = b.base.clone()
		r.commits[commitID] = c
	}
	return c
}

// AddScope makes a project/stage/service exist (with its parents) without any resource. A
// stage that does not exist yet gets its branch from the default branch as it is now. A
// service is added to the branch head too: the resource-service looks for the service's
// directory there before reading at any commit.
func (s *Server) AddScope(commitID string, sc Scope) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addScopeLocked(commitID, sc)
}

func (s *Server) addScopeLocked(commitID string, sc Scope) *tree {
	t := s.treeLocked(commitID, sc)
	if sc.Service != "" {
		_, b := s.branchLocked(sc)
		for _, t := range []*tree{t, b.head} {
			if t.services[sc.Service] == nil {
				t.services[sc.Service] = map[string][]byte{}
			}
		}
	}
	return t
}

// Put stores a resource at path (leading slash optional) in the given commit of sc's branch
// (Latest: its head). See AddScope for how branches and commits are made.
func (s *Server) Put(commitID string, sc Scope, path string, content []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.addScopeLocked(commitID, sc)
	t.files(sc)[strings.TrimPrefix(path, "/")] = append([]byte(nil), content...)
}

// Delete removes a resource; it is not an error if it does not exist.
func (s *Server) Delete(commitID string, sc Scope, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repos[sc.Project]
	if r == nil {
		return
	}
	var t *tree
	if commitID == Latest {
		if b := r.branches[branchName(sc)]; b != nil {
			t = b.head
		}
	} else {
		t = r.commits[commitID]
	}
	if t != nil {
		delete(t.files(sc), strings.TrimPrefix(path, "/"))
	}
}

// Events returns a snapshot of all events received so far, in arrival order.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Requests returns a snapshot of all requests answered so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Reset forgets recorded events and requests and clears FailNext/Stall; resources stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events, s.requests, s.fails, s.outages, s.stall = nil, nil, nil, nil, 0
}

// WaitFor returns the first recorded event (past or future) for which match is true, or the
// context's error when it ends first.
func (s *Server) WaitFor(ctx context.Context, match func(Event) bool) (Event, error) {
	seen := 0
	for {
		s.mu.Lock()
		evs, changed := s.events[seen:], s.changed
		seen = len(s.events)
		s.mu.Unlock()
		for _, e := range evs {
			if match(e) {
				return e, nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("waiting for event: %w (%d events received)", ctx.Err(), seen)
		}
	}
}

// FailNext makes the next n requests (of any kind) answer with status.
func (s *Server) FailNext(n, status int) { s.FailNextOf(AnyRequest, n, status) }

// FailNextOf makes the next n requests of one kind answer with status.
func (s *Server) FailNextOf(kind Kind, n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, failRule{kind: kind, n: n, status: status})
}

// FailUntil makes every request of one kind answer with status until the given time: an
// outage of the Keptn API (e.g. 503 for all event POSTs for a minute), however often the
// client retries. A time in the past ends earlier outages of that kind.
func (s *Server) FailUntil(kind Kind, until time.Time, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.outages[:0]
	for _, o := range s.outages {
		if o.kind != kind {
			kept = append(kept, o)
		}
	}
	s.outages = append(kept, outage{kind: kind, until: until, status: status})
}

// Stall delays every following response by d (0 turns it off). A stalled request still
// ends early when the client gives up.
func (s *Server) Stall(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stall = d
}

// Handler serves the API. Paths are the Keptn API's without the /api prefix.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	const rs = "/resource-service/v1/project/{project}"
	mux.HandleFunc("GET "+rs+"/resource/{path...}", s.getResource)
	mux.HandleFunc("GET "+rs+"/stage/{stage}/resource/{path...}", s.getResource)
	mux.HandleFunc("GET "+rs+"/stage/{stage}/service/{service}/resource/{path...}", s.getResource)
	mux.HandleFunc("POST /v1/event", s.postEvent)
	s.controlPlaneRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint in the Keptn API stand-in: "+r.Method+" "+r.URL.Path)
	})
	return s.wrap(mux)
}

// wrap records the request and applies auth, FailUntil, FailNext and Stall before the real handler.
func (s *Server) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			s.mu.Lock()
			s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(),
				Status: rec.status, Time: time.Now(), Bytes: rec.bytes})
			s.mu.Unlock()
		}()
		kind := ResourceRequests
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/event"):
			kind = EventRequests
		case strings.HasPrefix(r.URL.Path, "/controlPlane/"):
			kind = ControlPlaneRequests
		}
		s.mu.Lock()
		stall, failStatus := s.stall, 0
		now := time.Now()
		for _, o := range s.outages {
			if now.Before(o.until) && (o.kind == AnyRequest || o.kind == kind) {
				failStatus = o.status
			}
		}
		for i := range s.fails {
			if failStatus != 0 {
				break
			}
			f := &s.fails[i]
			if f.n > 0 && (f.kind == AnyRequest || f.kind == kind) {
				f.n--
				failStatus = f.status
				break
			}
		}
		s.mu.Unlock()
		if stall > 0 {
			select {
			case <-time.After(stall):
			case <-r.Context().Done():
				rec.status = 499 // client closed request; nothing can be written
				return
			}
		}
		if failStatus != 0 {
			writeError(rec, failStatus, "injected failure (FailNext)")
			return
		}
		if s.opts.Token != "" && r.Header.Get("x-token") != s.opts.Token {
			writeError(rec, http.StatusUnauthorized, "missing or wrong x-token header")
			return
		}
		next.ServeHTTP(rec, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int // set by postEvent
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, models.Error{Code: int64(status), Message: &msg})
}

// resourcePath is the resource URI as the resource-service reads it: the router unescapes
// the path once (PathValue), then the handler url.QueryUnescapes the URI again
// (resource-service/handler/resource_manager.go GetResource). The second step matters behind
// the distributor's API proxy for a remote control plane, which QueryEscapes the already
// escaped URI ("job%2Fconfig.yaml" arrives as "job%252Fconfig.yaml";
// distributor/pkg/config/envconfig.go queryEscapeConfigurationServiceURI).
func resourcePath(r *http.Request) (string, error) {
	p, err := url.QueryUnescape(r.PathValue("path"))
	return strings.Trim(p, "/"), err
}

// getResource answers as the resource-service's ResourceManager does (keptn/keptn
// resource-service/handler/resource_manager.go): it checks out the scope's branch (the
// default branch for the project level, else the stage's: a missing one is "Stage not
// found"), requires a service's directory on that branch, then reads the file from the
// branch head or, with gitCommitID, from that commit's tree (common/git.go GetFileRevision),
// whichever branch the commit is on. So a project-level read at a stage commit sees the
// project files as they were when the stage branch was made. A listing ignores gitCommitID
// (GetResources lists the checked-out branch).
func (s *Server) getResource(w http.ResponseWriter, r *http.Request) {
	sc := Scope{Project: r.PathValue("project"), Stage: r.PathValue("stage"), Service: r.PathValue("service")}
	commitID := r.URL.Query().Get("gitCommitID")
	path, err := resourcePath(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid resource URI: "+err.Error())
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.repos[sc.Project]
	if rp == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("project %q not found", sc.Project))
		return
	}
	b := rp.branches[branchName(sc)]
	if b == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("stage %q not found", sc.Stage))
		return
	}
	if sc.Service != "" && b.head.services[sc.Service] == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("service %q not found", sc.Service))
		return
	}
	meta := &models.Version{Version: s.opts.LatestCommitID, UpstreamURL: s.opts.UpstreamURL, Branch: branchName(sc)}
	if path == "" {
		s.listLocked(w, r, b.head.files(sc), meta)
		return
	}
	t := b.head
	if commitID != Latest {
		c := rp.commits[commitID]
		if c == nil {
			// git cannot resolve the revision; the resource-service maps that error to no
			// status of its own (handler/common.go OnAPIError): 500.
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("Internal server error (commit %q not found)", commitID))
			return
		}
		t, meta.Version = c, commitID
	}
	content, ok := t.files(sc)[path]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("resource %q not found in %s", path, sc))
		return
	}
	uri := "/" + path
	writeJSON(w, http.StatusOK, models.Resource{ResourceURI: &uri, Metadata: meta,
		ResourceContent: base64.StdEncoding.EncodeToString(content)})
}

// listLocked answers a resource list: URIs only (like Keptn), sorted, paged by an offset
// carried in nextPageKey.
func (s *Server) listLocked(w http.ResponseWriter, r *http.Request, files map[string][]byte, meta *models.Version) {
	q := r.URL.Query()
	size, err := atoiDefault(q.Get("pageSize"), DefaultPageSize)
	if err != nil || size <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid pageSize %q", q.Get("pageSize")))
		return
	}
	from, err := atoiDefault(q.Get("nextPageKey"), 0)
	if err != nil || from < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid nextPageKey %q", q.Get("nextPageKey")))
		return
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	res := models.Resources{Resources: []*models.Resource{}, TotalCount: float64(len(paths))}
	to := min(from+size, len(paths))
	for _, p := range paths[min(from, len(paths)):to] {
		uri := "/" + p
		res.Resources = append(res.Resources, &models.Resource{ResourceURI: &uri, Metadata: meta})
	}
	res.PageSize = float64(len(res.Resources))
	if to < len(paths) {
		res.NextPageKey = strconv.Itoa(to)
	}
	writeJSON(w, http.StatusOK, res)
}

func atoiDefault(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	return strconv.Atoi(s)
}

// postEvent accepts what Keptn's API accepts: a structured JSON CloudEvent (the
// KeptnContextExtendedCE model) with type and source. Binary-mode CloudEvents are refused
// on purpose, because the real API would not understand them either.
func (s *Server) postEvent(w http.ResponseWriter, r *http.Request) {
	limit := maxEventBytes
	if s.opts.MaxEventBytes > 0 {
		limit = s.opts.MaxEventBytes
	}
	// Read past the limit (up to the hard one) so that Requests tells how large a refused event was.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxEventBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	if rec, ok := w.(*statusRecorder); ok {
		rec.bytes = len(body)
	}
	if len(body) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("event larger than %d bytes", limit))
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "" &&
		mt != "application/json" && mt != "application/cloudevents+json" {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: the Keptn API takes a JSON CloudEvent", mt))
		return
	}
	if r.Header.Get("ce-type") != "" {
		writeError(w, http.StatusBadRequest, "binary-mode CloudEvent (ce-* headers): the Keptn API takes the structured JSON form")
		return
	}
	ev, err := ParseEvent(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if ev.Shkeptncontext == "" {
		// Keptn starts a new context for an event without one.
		ev.Shkeptncontext = newID()
	}
	ev.Received = time.Now()
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.closeTriggeredLocked(ev)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	ctx := ev.Shkeptncontext
	writeJSON(w, http.StatusOK, models.EventContext{KeptnContext: &ctx})
}

// ParseEvent decodes a structured JSON CloudEvent as the Keptn API does and checks the
// fields it requires.
func ParseEvent(body []byte) (Event, error) {
	var ce models.KeptnContextExtendedCE
	if err := json.Unmarshal(body, &ce); err != nil {
		return Event{}, fmt.Errorf("event is not a JSON CloudEvent: %w", err)
	}
	switch {
	case ce.Type == nil || *ce.Type == "":
		return Event{}, errors.New("event has no type")
	case ce.Source == nil || *ce.Source == "":
		return Event{}, errors.New("event has no source")
	case ce.Specversion != "" && ce.Specversion != "1.0":
		return Event{}, fmt.Errorf("event specversion %q, want 1.0", ce.Specversion)
	}
	return Event{KeptnContextExtendedCE: ce, Raw: body}, nil
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves in the background.
// It returns the base URL to use as KEPTN_API_ENDPOINT.
func (s *Server) Start(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("keptnapi: listen on %s: %w", addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s.URL(), nil
}

// URL is the base URL of a started server ("" before Start).
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Close stops a started server.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
