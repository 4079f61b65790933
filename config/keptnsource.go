package config

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keptn/go-utils/pkg/api/models"
)

// KeptnSource reads resources from Keptn's resource-service API, e.g.
// http://api-gateway-nginx/api/resource-service or, through the distributor,
// http://127.0.0.1:8081/resource-service.
//
// It authenticates through the transport it is given (see NewKeptnTransport), which the
// service shares with its outgoing events to the Keptn API; go-utils' client is not used
// because it disables TLS verification process-wide.
type KeptnSource struct {
	base     string
	pageSize int
	client   *http.Client
}

type keptnOptions struct {
	timeout  time.Duration
	pageSize int
}

// KeptnOption configures NewKeptnSource.
type KeptnOption func(*keptnOptions)

// WithTimeout bounds each HTTP request (default 30s).
func WithTimeout(d time.Duration) KeptnOption { return func(o *keptnOptions) { o.timeout = d } }

// WithPageSize sets the page size of resource listings (default 50).
func WithPageSize(n int) KeptnOption { return func(o *keptnOptions) { o.pageSize = n } }

// Response bounds. Nothing larger than MaxConfigBytes (1 MiB) is ever used: a config is
// refused by Parse above it, and a task's files are refused by jobs above jobs.MaxFilesBytes
// (900 KiB) in total (MAX_TASK_FILES_BYTES can only lower that), so one file is no larger.
// The bounds are checked while reading, so a hostile or broken server costs at most this much
// memory, not the whole body.
const (
	// MaxResourceResponseBytes bounds a single-resource response: the content is base64 in
	// JSON, 4/3 of MaxConfigBytes (1,398,104 bytes), plus 64 KiB for the JSON fields and
	// metadata around it.
	MaxResourceResponseBytes = (MaxConfigBytes+2)/3*4 + 64<<10
	// maxListEntryBytes bounds one entry of a resource listing: a resource URI (a path, at
	// most 4 KiB on Linux) and its metadata; listings carry no content.
	maxListEntryBytes = 8 << 10
)

// listingResponseBytes bounds one page of a listing of pageSize entries, plus 64 KiB for
// the page's own fields.
func listingResponseBytes(pageSize int) int { return pageSize*maxListEntryBytes + 64<<10 }

// NewKeptnSource returns a Source for the resource-service at baseURL. It sends its requests
// through transport, normally built by NewKeptnTransport with the Keptn credentials; nil
// means NewKeptnTransport() (no credentials, TLS verification on).
func NewKeptnSource(baseURL string, transport http.RoundTripper, opts ...KeptnOption) (*KeptnSource, error) {
	o := keptnOptions{timeout: 30 * time.Second, pageSize: 50}
	for _, opt := range opts {
		opt(&o)
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid resource-service URL %q: need http(s)://host[/path]", baseURL)
	}
	if transport == nil {
		if transport, err = NewKeptnTransport(); err != nil {
			return nil, err
		}
	}
	return &KeptnSource{
		base:     strings.TrimRight(baseURL, "/"),
		pageSize: max(o.pageSize, 1),
		client:   &http.Client{Transport: transport, Timeout: o.timeout},
	}, nil
}

// levelPath is the API path of a level's resources collection.
func levelPath(ref Ref, level Level) (string, error) {
	if ref.Project == "" {
		return "", errors.New("project is empty")
	}
	p := "/v1/project/" + url.PathEscape(ref.Project)
	switch level {
	case LevelService:
		if ref.Stage == "" || ref.Service == "" {
			return "", errors.New("stage or service is empty")
		}
		p += "/stage/" + url.PathEscape(ref.Stage) + "/service/" + url.PathEscape(ref.Service)
	case LevelStage:
		if ref.Stage == "" {
			return "", errors.New("stage is empty")
		}
		p += "/stage/" + url.PathEscape(ref.Stage)
	case LevelProject:
	default:
		return "", fmt.Errorf("unknown level %d", int(level))
	}
	return p + "/resource", nil
}

func (s *KeptnSource) get(ctx context.Context, rawURL string, limit int, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.ContentLength > int64(limit) {
		return fmt.Errorf("response larger than %d bytes (Content-Length %d)", limit, resp.ContentLength)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if len(body) > limit {
		return fmt.Errorf("response larger than %d bytes", limit)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return ErrNotFound
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, snippet(body))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decoding response: %w", err)
	}
	return nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func commitQuery(ref Ref) url.Values {
	q := url.Values{}
	if ref.CommitID != "" {
		q.Set("gitCommitID", ref.CommitID)
	}
	return q
}

// Get implements Source.
func (s *KeptnSource) Get(ctx context.Context, ref Ref, level Level, p string) ([]byte, error) {
	lp, err := levelPath(ref, level)
	if err != nil {
		return nil, fmt.Errorf("%s resource %s: %w", level, p, err)
	}
	p = strings.TrimPrefix(p, "/")
	u := s.base + lp + "/" + url.PathEscape(p)
	if q := commitQuery(ref.At(level)).Encode(); q != "" {
		u += "?" + q
	}
	var res models.Resource
	if err := s.get(ctx, u, MaxResourceResponseBytes, &res); err != nil {
		return nil, fmt.Errorf("%s resource %s: %w", level, p, err)
	}
	b, err := base64.StdEncoding.DecodeString(res.ResourceContent)
	if err != nil {
		return nil, fmt.Errorf("%s resource %s: content is not base64: %w", level, p, err)
	}
	return b, nil
}

// maxPages stops a listing whose paging never ends.
const maxPages = 1000

// List implements Source: it pages through the level's resources and keeps those
// under dir, returned without a leading slash.
func (s *KeptnSource) List(ctx context.Context, ref Ref, level Level, dir string) ([]string, error) {
	lp, err := levelPath(ref, level)
	if err != nil {
		return nil, fmt.Errorf("listing %s resources: %w", level, err)
	}
	prefix := strings.Trim(dir, "/")
	if prefix != "" {
		prefix += "/"
	}
	var out []string
	seen := map[string]bool{}
	key := ""
	for range maxPages {
		q := commitQuery(ref.At(level))
		q.Set("pageSize", strconv.Itoa(s.pageSize))
		if key != "" {
			q.Set("nextPageKey", key)
		}
		var page models.Resources
		if err := s.get(ctx, s.base+lp+"?"+q.Encode(), listingResponseBytes(s.pageSize), &page); err != nil {
			return nil, fmt.Errorf("listing %s resources under %s: %w", level, dir, err)
		}
		for _, r := range page.Resources {
			if r == nil || r.ResourceURI == nil {
				continue
			}
			name := strings.TrimPrefix(*r.ResourceURI, "/")
			if strings.HasPrefix(name, prefix) && !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
		// The resource-service ends paging with an empty key or "0".
		if page.NextPageKey == "" || page.NextPageKey == "0" || page.NextPageKey == key {
			return out, nil
		}
		key = page.NextPageKey
	}
	return nil, fmt.Errorf("listing %s resources under %s: more than %d pages", level, dir, maxPages)
}
