package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// NewKeptnTransport returns the HTTP transport for talking to Keptn: the resource-service
// (KeptnSource) and the Keptn API's /v1/event share one, so both authenticate the same way
// and an OAuth token is fetched once for both.
//
// It is its own clone of http.DefaultTransport, which it never modifies: go-utils' API
// client disables TLS verification process-wide, so we never use it. TLS verification
// stays on (TLS 1.2 or newer) unless WithInsecureSkipVerify is given.
//
// Without WithToken or WithOAuth the transport carries no credentials; that is the one for
// a Knative sink or the distributor's event broker, which must never see the Keptn token.
func NewKeptnTransport(opts ...TransportOption) (http.RoundTripper, error) {
	var o transportOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.oauth != nil && o.oauth.discoveryURL == "" {
		return nil, errors.New("OAuth needs a discovery URL")
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            o.rootCAs,
		InsecureSkipVerify: o.insecure, //nolint:gosec // explicit opt-in (HTTP_SSL_VERIFY=false)
	}
	var rt http.RoundTripper = base
	if o.oauth != nil {
		rt = &oauthTransport{cfg: *o.oauth, base: base}
	}
	if o.token != "" {
		rt = tokenTransport{token: o.token, next: rt}
	}
	if o.token != "" || o.oauth != nil {
		rt = sameOrigin{next: rt}
	}
	return rt, nil
}

// sameOrigin refuses a redirect to another scheme or host before the credentials are
// added. net/http strips Authorization on cross-host redirects only when the caller set
// it; our credentials are added here, in the transport, on every round trip, so the client
// would send them to wherever Keptn (or whoever answers in its place) redirects. Refusing in
// the transport, rather than with a CheckRedirect on each http.Client, covers every client
// that carries the Keptn credentials (KeptnSource's and the event sender's, which
// cloudevents builds) and both x-token and OAuth. Keptn's APIs do not redirect across hosts,
// so a redirect that does is an error, not something to follow without credentials.
type sameOrigin struct{ next http.RoundTripper }

func (t sameOrigin) RoundTrip(req *http.Request) (*http.Response, error) {
	// The client links each redirected request to the response that caused it.
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	if first != req && (first.URL.Scheme != req.URL.Scheme || first.URL.Host != req.URL.Host) {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("refusing redirect from %s://%s to %s://%s: Keptn credentials are only sent to the host they were configured for",
			first.URL.Scheme, first.URL.Host, req.URL.Scheme, req.URL.Host)
	}
	return t.next.RoundTrip(req)
}

type transportOptions struct {
	token    string
	insecure bool
	rootCAs  *x509.CertPool
	oauth    *oauthConfig
}

type oauthConfig struct {
	clientID, clientSecret, discoveryURL string
	scopes                               []string
}

// TransportOption configures NewKeptnTransport.
type TransportOption func(*transportOptions)

// WithToken sends token in the x-token header of every request (KEPTN_API_TOKEN).
func WithToken(token string) TransportOption {
	return func(o *transportOptions) { o.token = token }
}

// WithOAuth authenticates with OAuth2 client credentials; the token URL is read from the
// OIDC discovery document at discoveryURL (OAUTH_DISCOVERY) on the first request, so that
// building the transport needs no network.
func WithOAuth(clientID, clientSecret, discoveryURL string, scopes []string) TransportOption {
	return func(o *transportOptions) {
		o.oauth = &oauthConfig{clientID: clientID, clientSecret: clientSecret, discoveryURL: discoveryURL, scopes: scopes}
	}
}

// WithInsecureSkipVerify disables TLS certificate verification (HTTP_SSL_VERIFY=false) for
// this transport only.
func WithInsecureSkipVerify() TransportOption {
	return func(o *transportOptions) { o.insecure = true }
}

// WithRootCAs trusts pool instead of the system roots.
func WithRootCAs(pool *x509.CertPool) TransportOption {
	return func(o *transportOptions) { o.rootCAs = pool }
}

// tokenTransport adds the x-token header. It clones the request: a RoundTripper must not
// modify the caller's.
type tokenTransport struct {
	token string
	next  http.RoundTripper
}

func (t tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("x-token", t.token)
	return t.next.RoundTrip(req)
}

// oauthAuthTimeout bounds the calls to the discovery and token endpoints, which are not
// made by the caller's http.Client (the token source outlives any one request).
const oauthAuthTimeout = 30 * time.Second

// oauthTransport does OIDC discovery on its first request, and again after a failure, then
// sends every request with a Bearer token from the client-credentials flow.
type oauthTransport struct {
	cfg  oauthConfig
	base *http.Transport

	mu sync.Mutex
	rt http.RoundTripper // set after a successful discovery
}

func (t *oauthTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt, err := t.authorized(req.Context())
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper closes the body even on errors
		}
		return nil, err
	}
	return rt.RoundTrip(req)
}

func (t *oauthTransport) authorized(ctx context.Context) (http.RoundTripper, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rt != nil {
		return t.rt, nil
	}
	// The discovery and token requests go over the same TLS settings, without credentials.
	auth := &http.Client{Transport: t.base, Timeout: oauthAuthTimeout}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.cfg.discoveryURL, nil)
	if err != nil {
		return nil, fmt.Errorf("OAuth discovery: %w", err)
	}
	resp, err := auth.Do(req)
	if err != nil {
		return nil, fmt.Errorf("OAuth discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("OAuth discovery %s: HTTP %d", t.cfg.discoveryURL, resp.StatusCode)
	}
	var doc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil || doc.TokenEndpoint == "" {
		return nil, fmt.Errorf("OAuth discovery %s: no token_endpoint in document", t.cfg.discoveryURL)
	}
	cc := clientcredentials.Config{
		ClientID:     t.cfg.clientID,
		ClientSecret: t.cfg.clientSecret,
		TokenURL:     doc.TokenEndpoint,
		Scopes:       t.cfg.scopes,
	}
	// The token source outlives this request, so it gets a background context carrying
	// our TLS-configured client.
	tctx := context.WithValue(context.Background(), oauth2.HTTPClient, auth)
	t.rt = &oauth2.Transport{Source: cc.TokenSource(tctx), Base: t.base}
	return t.rt, nil
}
