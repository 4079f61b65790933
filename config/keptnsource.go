package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keptn/go-utils/pkg/api/models"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// KeptnSource reads resources from Keptn's resource-service API, e.g.
// http://api-gateway-nginx/api/resource-service or, through the distributor,
// http://127.0.0.1:8081/resource-service.
//
// It has its own HTTP client: TLS verification stays on unless
// WithInsecureSkipVerify is given (go-utils' client disables it process-wide).
type KeptnSource struct {
	base     string
	token    string
	pageSize int
	oauth    *oauthConfig

	mu     sync.Mutex
	client *http.Client // with OAuth: created lazily after discovery
	plain  *http.Client
}

type oauthConfig struct {
	clientID, clientSecret, discoveryURL string
	scopes                               []string
}

type keptnOptions struct {
	token    string
	insecure bool
	rootCAs  *x509.CertPool
	timeout  time.Duration
	pageSize int
	oauth    *oauthConfig
}

// KeptnOption configures NewKeptnSource.
type KeptnOption func(*keptnOptions)

// WithToken sends token in the x-token header (KEPTN_API_TOKEN).
func WithToken(token string) KeptnOption { return func(o *keptnOptions) { o.token = token } }

// WithOAuth authenticates with OAuth2 client credentials; the token URL is read
// from the OIDC discovery document at discoveryURL (OAUTH_DISCOVERY).
func WithOAuth(clientID, clientSecret, discoveryURL string, scopes []string) KeptnOption {
	return func(o *keptnOptions) {
		o.oauth = &oauthConfig{clientID: clientID, clientSecret: clientSecret, discoveryURL: discoveryURL, scopes: scopes}
	}
}

// WithInsecureSkipVerify disables TLS certificate verification (HTTP_SSL_VERIFY=false).
func WithInsecureSkipVerify() KeptnOption { return func(o *keptnOptions) { o.insecure = true } }

// WithRootCAs trusts pool instead of the system roots.
func WithRootCAs(pool *x509.CertPool) KeptnOption { return func(o *keptnOptions) { o.rootCAs = pool } }

// WithTimeout bounds each HTTP request (default 30s).
func WithTimeout(d time.Duration) KeptnOption { return func(o *keptnOptions) { o.timeout = d } }

// WithPageSize sets the page size of resource listings (default 50).
func WithPageSize(n int) KeptnOption { return func(o *keptnOptions) { o.pageSize = n } }

// maxResponseBytes bounds one API response; resources are base64 in JSON.
const maxResponseBytes = 64 << 20

// NewKeptnSource returns a Source for the resource-service at baseURL.
func NewKeptnSource(baseURL string, opts ...KeptnOption) (*KeptnSource, error) {
	o := keptnOptions{timeout: 30 * time.Second, pageSize: 50}
	for _, opt := range opts {
		opt(&o)
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid resource-service URL %q: need http(s)://host[/path]", baseURL)
	}
	if o.oauth != nil && o.oauth.discoveryURL == "" {
		return nil, errors.New("OAuth needs a discovery URL")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            o.rootCAs,
		InsecureSkipVerify: o.insecure, //nolint:gosec // explicit opt-in (HTTP_SSL_VERIFY=false)
	}
	plain := &http.Client{Transport: tr, Timeout: o.timeout}
	s := &KeptnSource{
		base:     strings.TrimRight(baseURL, "/"),
		token:    o.token,
		pageSize: max(o.pageSize, 1),
		oauth:    o.oauth,
		plain:    plain,
	}
	if o.oauth == nil {
		s.client = plain
	}
	return s, nil
}

// httpClient returns the client for API calls, doing OIDC discovery on first use
// (and again after a failure) so that the constructor needs no network.
func (s *KeptnSource) httpClient(ctx context.Context) (*http.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.oauth.discoveryURL, nil)
	if err != nil {
		return nil, fmt.Errorf("OAuth discovery: %w", err)
	}
	resp, err := s.plain.Do(req)
	if err != nil {
		return nil, fmt.Errorf("OAuth discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("OAuth discovery %s: HTTP %d", s.oauth.discoveryURL, resp.StatusCode)
	}
	var doc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil || doc.TokenEndpoint == "" {
		return nil, fmt.Errorf("OAuth discovery %s: no token_endpoint in document", s.oauth.discoveryURL)
	}
	cc := clientcredentials.Config{
		ClientID:     s.oauth.clientID,
		ClientSecret: s.oauth.clientSecret,
		TokenURL:     doc.TokenEndpoint,
		Scopes:       s.oauth.scopes,
	}
	// The token source outlives this request, so it gets a background context
	// carrying our TLS-configured client.
	tctx := context.WithValue(context.Background(), oauth2.HTTPClient, s.plain)
	s.client = &http.Client{
		Transport: &oauth2.Transport{Source: cc.TokenSource(tctx), Base: s.plain.Transport},
		Timeout:   s.plain.Timeout,
	}
	return s.client, nil
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

func (s *KeptnSource) get(ctx context.Context, rawURL string, out any) error {
	client, err := s.httpClient(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if s.token != "" {
		req.Header.Set("x-token", s.token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if len(body) > maxResponseBytes {
		return fmt.Errorf("response larger than %d bytes", maxResponseBytes)
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
	if q := commitQuery(ref).Encode(); q != "" {
		u += "?" + q
	}
	var res models.Resource
	if err := s.get(ctx, u, &res); err != nil {
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
		q := commitQuery(ref)
		q.Set("pageSize", strconv.Itoa(s.pageSize))
		if key != "" {
			q.Set("nextPageKey", key)
		}
		var page models.Resources
		if err := s.get(ctx, s.base+lp+"?"+q.Encode(), &page); err != nil {
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

// Transport authenticates like the source (x-token or OAuth) over the same TLS settings:
// the service sends its outgoing events to the same Keptn API with it.
func (s *KeptnSource) Transport() http.RoundTripper { return keptnTransport{s} }

type keptnTransport struct{ s *KeptnSource }

func (t keptnTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	client, err := t.s.httpClient(req.Context())
	if err != nil {
		return nil, err
	}
	if t.s.token != "" {
		req = req.Clone(req.Context())
		req.Header.Set("x-token", t.s.token)
	}
	return client.Transport.RoundTrip(req)
}
