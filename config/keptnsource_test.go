package config

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keptn/go-utils/pkg/api/models"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeResourceService serves resources keyed by collection path (".../resource")
// and records every request.
type fakeResourceService struct {
	mu        sync.Mutex
	resources map[string]map[string]string // collection -> URI ("/job/config.yaml") -> content
	requests  []*http.Request
	token     string // required x-token when set
	bearer    string // required Authorization when set
}

func (f *fakeResourceService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Clone(context.Background()))
	if f.token != "" && r.Header.Get("x-token") != f.token {
		http.Error(w, `{"message":"bad token"}`, http.StatusUnauthorized)
		return
	}
	if f.bearer != "" && r.Header.Get("Authorization") != "Bearer "+f.bearer {
		http.Error(w, `{"message":"bad bearer"}`, http.StatusUnauthorized)
		return
	}
	p := strings.TrimPrefix(r.URL.EscapedPath(), "/api/resource-service")
	if coll, ok := f.resources[p]; ok { // listing
		var uris []string
		for u := range coll {
			uris = append(uris, u)
		}
		sort.Strings(uris)
		size, _ := strconv.Atoi(r.URL.Query().Get("pageSize"))
		start, _ := strconv.Atoi(r.URL.Query().Get("nextPageKey"))
		end := min(start+size, len(uris))
		page := models.Resources{PageSize: float64(size), TotalCount: float64(len(uris))}
		for _, u := range uris[start:end] {
			page.Resources = append(page.Resources, &models.Resource{ResourceURI: &u})
		}
		if end < len(uris) {
			page.NextPageKey = strconv.Itoa(end)
		} else {
			page.NextPageKey = "0"
		}
		_ = json.NewEncoder(w).Encode(page)
		return
	}
	i := strings.LastIndex(p, "/resource/")
	if i < 0 {
		http.NotFound(w, r)
		return
	}
	uri, err := url.PathUnescape(p[i+len("/resource/"):])
	if err != nil {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	content, ok := f.resources[p[:i+len("/resource")]]["/"+uri]
	if !ok {
		http.Error(w, `{"code":404,"message":"Could not find resource"}`, http.StatusNotFound)
		return
	}
	_ = json.NewEncoder(w).Encode(models.Resource{
		ResourceURI:     &uri,
		ResourceContent: base64.StdEncoding.EncodeToString([]byte(content)),
	})
}

func (f *fakeResourceService) reqs() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.requests...)
}

const (
	svcColl   = "/v1/project/sockshop/stage/dev/service/carts/resource"
	stageColl = "/v1/project/sockshop/stage/dev/resource"
	projColl  = "/v1/project/sockshop/resource"
)

func newFakeKeptn() *fakeResourceService {
	return &fakeResourceService{
		token: "secret-token",
		resources: map[string]map[string]string{
			svcColl: {
				"/job/config.yaml":            "service",
				"/locust/basic.py":            "basic",
				"/locust/sub dir/x.py":        "x",
				"/helm/Chart.yaml":            "chart",
				"/helm/templates/deploy.yaml": "deploy",
				"/other.txt":                  "other",
			},
			stageColl: {"/job/config.yaml": "stage"},
			projColl:  {"/job/config.yaml": "project"},
		},
	}
}

func TestKeptnSourceGetAndList(t *testing.T) {
	fake := newFakeKeptn()
	srv := httptest.NewServer(fake)
	defer srv.Close()
	ctx := context.Background()
	ref := Ref{Project: "sockshop", Stage: "dev", Service: "carts", CommitID: "abc123"}
	src, err := NewKeptnSource(srv.URL+"/api/resource-service/", mustTransport(t, WithToken("secret-token")), WithPageSize(2), WithTimeout(5*time.Second))
	require.NoError(t, err)

	for level, want := range map[Level]string{LevelService: "service", LevelStage: "stage", LevelProject: "project"} {
		b, err := src.Get(ctx, ref, level, "/job/config.yaml")
		require.NoError(t, err)
		assert.Equal(t, want, string(b))
	}
	reqs := fake.reqs()
	require.Len(t, reqs, 3)
	assert.ElementsMatch(t, []string{
		"/api/resource-service" + svcColl + "/job%2Fconfig.yaml",
		"/api/resource-service" + stageColl + "/job%2Fconfig.yaml",
		"/api/resource-service" + projColl + "/job%2Fconfig.yaml",
	}, []string{reqs[0].URL.EscapedPath(), reqs[1].URL.EscapedPath(), reqs[2].URL.EscapedPath()})
	for _, r := range reqs {
		want := "abc123"
		if strings.HasPrefix(r.URL.EscapedPath(), "/api/resource-service"+projColl) {
			want = "" // the project level is always read at its latest
		}
		assert.Equal(t, want, r.URL.Query().Get("gitCommitID"), r.URL.String())
		assert.Equal(t, want != "", r.URL.Query().Has("gitCommitID"), r.URL.String())
		assert.Equal(t, "secret-token", r.Header.Get("x-token"))
	}

	b, err := src.Get(ctx, ref, LevelService, "locust/sub dir/x.py")
	require.NoError(t, err)
	assert.Equal(t, "x", string(b))

	_, err = src.Get(ctx, ref, LevelStage, "locust/basic.py")
	assert.ErrorIs(t, err, ErrNotFound)

	// Paging: 6 resources with a page size of 2 take 3 requests.
	before := len(fake.reqs())
	names, err := src.List(ctx, ref, LevelService, "/helm")
	require.NoError(t, err)
	assert.Equal(t, []string{"helm/Chart.yaml", "helm/templates/deploy.yaml"}, names)
	listReqs := fake.reqs()[before:]
	require.Len(t, listReqs, 3)
	assert.Equal(t, "", listReqs[0].URL.Query().Get("nextPageKey"))
	assert.Equal(t, "2", listReqs[1].URL.Query().Get("nextPageKey"))
	assert.Equal(t, "4", listReqs[2].URL.Query().Get("nextPageKey"))
	for _, r := range listReqs {
		assert.Equal(t, "abc123", r.URL.Query().Get("gitCommitID"))
		assert.Equal(t, "2", r.URL.Query().Get("pageSize"))
	}

	names, err = src.List(ctx, ref, LevelService, "locust")
	require.NoError(t, err)
	assert.Equal(t, []string{"locust/basic.py", "locust/sub dir/x.py"}, names)

	// No commit: no gitCommitID parameter (latest).
	_, err = src.Get(ctx, Ref{Project: "sockshop"}, LevelProject, "job/config.yaml")
	require.NoError(t, err)
	last := fake.reqs()[len(fake.reqs())-1]
	assert.False(t, last.URL.Query().Has("gitCommitID"))

	// Wrong token: a clear non-404 error.
	bad, err := NewKeptnSource(srv.URL+"/api/resource-service", mustTransport(t, WithToken("wrong")))
	require.NoError(t, err)
	_, err = bad.Get(ctx, ref, LevelService, "job/config.yaml")
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), "HTTP 401")
}

// TestKeptnSourceProjectLevelLatest: Keptn keeps project resources on the default branch,
// which an event's commit (a stage branch's) does not show as it is now, so the project
// level's config and files are requested without gitCommitID; the stage and service levels
// carry it.
func TestKeptnSourceProjectLevelLatest(t *testing.T) {
	fake := &fakeResourceService{resources: map[string]map[string]string{
		svcColl:   {"/scripts/svc.sh": "svc"},
		stageColl: {"/scripts/stage.sh": "stage"},
		projColl:  {"/job/config.yaml": minimalConfig, "/scripts/a.sh": "a", "/scripts/b.sh": "b", "/one.txt": "1"},
	}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	src, err := NewKeptnSource(srv.URL+"/api/resource-service", nil)
	require.NoError(t, err)
	ctx := context.Background()
	ref := Ref{Project: "sockshop", Stage: "dev", Service: "carts", CommitID: "c1"}

	// commits maps each level's requests to the gitCommitID values they carried.
	commits := func(from int) map[string][]string {
		out := map[string][]string{}
		for _, r := range fake.reqs()[from:] {
			p := strings.TrimPrefix(r.URL.EscapedPath(), "/api/resource-service")
			level := "project"
			if strings.HasPrefix(p, svcColl) {
				level = "service"
			} else if strings.HasPrefix(p, stageColl) {
				level = "stage"
			}
			out[level] = append(out[level], r.URL.Query().Get("gitCommitID"))
		}
		return out
	}

	ld, err := NewLoader(src).Load(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, LevelProject, ld.Level)
	assert.Equal(t, map[string][]string{"service": {"c1"}, "stage": {"c1"}, "project": {""}}, commits(0))

	for _, tt := range []struct {
		level Level
		paths []string
		want  map[string][]string
	}{
		{LevelProject, []string{"one.txt", "scripts"}, map[string][]string{"project": {"", "", "", "", ""}}}, // get, get, list, get, get
		{LevelStage, []string{"scripts"}, map[string][]string{"stage": {"c1", "c1", "c1"}}},
		{LevelService, []string{"scripts/svc.sh"}, map[string][]string{"service": {"c1"}}},
	} {
		before := len(fake.reqs())
		files, err := CollectFiles(ctx, src, ref, tt.level, tt.paths, 0)
		require.NoError(t, err, tt.level)
		assert.NotEmpty(t, files)
		assert.Equal(t, tt.want, commits(before), "%s level files", tt.level)
	}
}

func TestNewKeptnSourceBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "::"} {
		_, err := NewKeptnSource(u, nil)
		assert.Error(t, err, u)
	}
}

func TestKeptnSourceTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	src, err := NewKeptnSource(srv.URL, nil, WithTimeout(50*time.Millisecond))
	require.NoError(t, err)
	_, err = src.Get(context.Background(), Ref{Project: "p"}, LevelProject, "job/config.yaml")
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound)
}

// endless is a response body that never ends; it counts what was read from it.
type endless struct{ read *int64 }

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	*e.read += int64(len(p))
	return len(p), nil
}

func (endless) Close() error { return nil }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestKeptnSourceBoundsResponses: a response larger than any resource or listing page the
// service can use is refused after reading just past the bound, not 64 MiB.
func TestKeptnSourceBoundsResponses(t *testing.T) {
	var read int64
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: endless{&read}, Request: r}, nil
	})
	src, err := NewKeptnSource("http://keptn.invalid/resource-service", tr, WithPageSize(50))
	require.NoError(t, err)
	ref := Ref{Project: "p", Stage: "s", Service: "c"}

	_, err = src.Get(context.Background(), ref, LevelService, "job/config.yaml")
	if assert.Error(t, err) {
		assert.Contains(t, err.Error(), fmt.Sprintf("response larger than %d bytes", MaxResourceResponseBytes))
	}
	assert.LessOrEqual(t, read, int64(MaxResourceResponseBytes)+64<<10, "read %d bytes", read)
	// A file of MaxConfigBytes, base64 in JSON, fits.
	assert.Greater(t, MaxResourceResponseBytes, (MaxConfigBytes+2)/3*4+1024)
	assert.Less(t, MaxResourceResponseBytes, 2*MaxConfigBytes)

	read = 0
	_, err = src.List(context.Background(), ref, LevelService, "files")
	if assert.Error(t, err) {
		assert.Contains(t, err.Error(), fmt.Sprintf("response larger than %d bytes", listingResponseBytes(50)))
	}
	assert.LessOrEqual(t, read, int64(listingResponseBytes(50))+64<<10, "read %d bytes", read)
	assert.Less(t, listingResponseBytes(50), MaxResourceResponseBytes)
}
