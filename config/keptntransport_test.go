package config

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustTransport(t *testing.T, opts ...TransportOption) http.RoundTripper {
	t.Helper()
	tr, err := NewKeptnTransport(opts...)
	require.NoError(t, err)
	return tr
}

func TestKeptnTransportTLS(t *testing.T) {
	fake := newFakeKeptn()
	srv := httptest.NewUnstartedServer(fake)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshake is expected
	srv.StartTLS()
	defer srv.Close()
	ctx := context.Background()
	ref := Ref{Project: "sockshop", Stage: "dev", Service: "carts", CommitID: "abc123"}

	strict, err := NewKeptnSource(srv.URL+"/api/resource-service", mustTransport(t, WithToken("secret-token")))
	require.NoError(t, err)
	_, err = strict.Get(ctx, ref, LevelService, "job/config.yaml")
	require.Error(t, err, "self-signed certificate must be rejected by default")
	assert.Contains(t, err.Error(), "certificate")
	assert.False(t, errors.Is(err, ErrNotFound))

	// A source without a transport of its own verifies too.
	def, err := NewKeptnSource(srv.URL+"/api/resource-service", nil)
	require.NoError(t, err)
	_, err = def.Get(ctx, ref, LevelService, "job/config.yaml")
	assert.ErrorContains(t, err, "certificate")

	insecure, err := NewKeptnSource(srv.URL+"/api/resource-service", mustTransport(t, WithToken("secret-token"), WithInsecureSkipVerify()))
	require.NoError(t, err)
	b, err := insecure.Get(ctx, ref, LevelService, "job/config.yaml")
	require.NoError(t, err)
	assert.Equal(t, "service", string(b))

	trusted, err := NewKeptnSource(srv.URL+"/api/resource-service", mustTransport(t, WithToken("secret-token"), WithRootCAs(srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs)))
	require.NoError(t, err)
	_, err = trusted.Get(ctx, ref, LevelService, "job/config.yaml")
	require.NoError(t, err)

	// The default transport is untouched (go-utils' client used to flip it process-wide).
	assert.True(t, http.DefaultTransport.(*http.Transport).TLSClientConfig == nil ||
		!http.DefaultTransport.(*http.Transport).TLSClientConfig.InsecureSkipVerify)
}

func TestKeptnTransportPlain(t *testing.T) {
	tr := mustTransport(t, WithInsecureSkipVerify())
	plain, ok := tr.(*http.Transport)
	require.True(t, ok, "no credentials: a plain *http.Transport, got %T", tr)
	assert.NotSame(t, http.DefaultTransport, plain, "a clone, never the process-wide transport")
	assert.Equal(t, uint16(tls.VersionTLS12), plain.TLSClientConfig.MinVersion)
	assert.True(t, plain.TLSClientConfig.InsecureSkipVerify)
	assert.False(t, mustTransport(t).(*http.Transport).TLSClientConfig.InsecureSkipVerify)

	// Without WithToken or WithOAuth nothing identifies us (K_SINK, EVENTBROKER).
	var gotToken, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotToken, gotAuth = r.Header.Get("x-token"), r.Header.Get("Authorization")
	}))
	defer srv.Close()
	res, err := (&http.Client{Transport: tr}).Post(srv.URL, "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	res.Body.Close()
	assert.Empty(t, gotToken)
	assert.Empty(t, gotAuth)
}

func TestKeptnTransportOAuth(t *testing.T) {
	fake := newFakeKeptn()
	fake.token = ""
	fake.bearer = "tok-1"
	var tokenCalls int
	mux := http.NewServeMux()
	mux.Handle("/api/", fake)
	var srv *httptest.Server
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"token_endpoint": srv.URL + "/token"})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		tokenCalls++
		_ = r.ParseForm()
		if r.Form.Get("grant_type") != "client_credentials" || r.Form.Get("scope") != "keptn:read" {
			http.Error(w, "bad grant", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}`))
	})
	var gotAuth, gotToken string
	mux.HandleFunc("/api/v1/event", func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotToken = r.Header.Get("Authorization"), r.Header.Get("x-token")
		w.WriteHeader(http.StatusOK)
	})
	srv = httptest.NewTLSServer(mux)
	defer srv.Close()

	tr := mustTransport(t, WithInsecureSkipVerify(), WithOAuth("id", "secret", srv.URL+"/.well-known/openid-configuration", []string{"keptn:read"}))
	src, err := NewKeptnSource(srv.URL+"/api/resource-service", tr)
	require.NoError(t, err)
	ref := Ref{Project: "sockshop", Stage: "dev", Service: "carts", CommitID: "c"}
	for range 2 {
		b, err := src.Get(context.Background(), ref, LevelService, "job/config.yaml")
		require.NoError(t, err)
		assert.Equal(t, "service", string(b))
	}
	assert.Equal(t, 1, tokenCalls, "token is reused")

	// Outgoing events go through the same transport: a Bearer token, not x-token.
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/event", strings.NewReader("{}"))
	require.NoError(t, err)
	res, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, "Bearer tok-1", gotAuth)
	assert.Empty(t, gotToken)
	assert.Equal(t, 1, tokenCalls, "the token is shared with resource reads")
}

func TestKeptnTransportOAuthDiscoveryRetried(t *testing.T) {
	var mu sync.Mutex
	discoveries, failFirst := 0, true
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		discoveries++
		if failFirst {
			failFirst = false
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"token_endpoint": srv.URL + "/token"})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"tok-2","token_type":"Bearer","expires_in":3600}`))
	})
	var gotAuth string
	mux.HandleFunc("/v1/event", func(w http.ResponseWriter, r *http.Request) { gotAuth = r.Header.Get("Authorization") })
	srv = httptest.NewServer(mux)
	defer srv.Close()

	// Building the transport needs no network; discovery happens on the first request.
	tr := mustTransport(t, WithOAuth("id", "secret", srv.URL+"/.well-known/openid-configuration", nil))
	mu.Lock()
	assert.Equal(t, 0, discoveries)
	mu.Unlock()
	client := &http.Client{Transport: tr}
	_, err := client.Post(srv.URL+"/v1/event", "application/json", strings.NewReader("{}"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "OAuth discovery")
	assert.Contains(t, err.Error(), "HTTP 503")

	for range 2 {
		res, err := client.Post(srv.URL+"/v1/event", "application/json", strings.NewReader("{}"))
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, "Bearer tok-2", gotAuth)
	}
	mu.Lock()
	assert.Equal(t, 2, discoveries, "retried after the failure, then kept")
	mu.Unlock()
}

func TestNewKeptnTransportOAuthNeedsDiscoveryURL(t *testing.T) {
	_, err := NewKeptnTransport(WithOAuth("id", "secret", "", nil))
	assert.ErrorContains(t, err, "discovery URL")
}

func TestKeptnTransportToken(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("x-token") }))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/event", strings.NewReader("{}"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Transport: mustTransport(t, WithToken("t0k"))}).Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, "t0k", got)
	assert.Empty(t, req.Header.Get("x-token"), "the caller's request is not modified")
}

// redirectPair is a Keptn stand-in that redirects everything to another host, which
// records every credential it is sent.
type redirectPair struct {
	keptn, other *httptest.Server
	mu           sync.Mutex
	seen         []string // x-token and Authorization values the other host got
	otherCalls   int
}

func newRedirectPair(t *testing.T, status int) *redirectPair {
	p := &redirectPair{}
	p.other = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.otherCalls++
		for _, h := range []string{"x-token", "Authorization"} {
			if v := r.Header.Get(h); v != "" {
				p.seen = append(p.seen, h+": "+v)
			}
		}
		_, _ = w.Write([]byte(`{"resourceContent":"b3RoZXI="}`))
	}))
	t.Cleanup(p.other.Close)
	p.keptn = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("same") != "" {
			_, _ = w.Write([]byte(`{"resourceContent":"c2FtZQ=="}`))
			return
		}
		if strings.HasPrefix(r.URL.Path, "/same-host") {
			http.Redirect(w, r, "/api/resource-service"+strings.TrimPrefix(r.URL.Path, "/same-host")+"?same=1", status)
			return
		}
		http.Redirect(w, r, p.other.URL+r.URL.Path, status)
	}))
	t.Cleanup(p.keptn.Close)
	return p
}

// TestKeptnTransportRefusesCrossHostRedirect: the x-token header must never reach a host a
// Keptn response redirects to, for resource reads (GET) and events (POST, 307) alike.
func TestKeptnTransportRefusesCrossHostRedirect(t *testing.T) {
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect} {
		p := newRedirectPair(t, status)
		tr := mustTransport(t, WithToken("secret-token"))
		src, err := NewKeptnSource(p.keptn.URL+"/api/resource-service", tr)
		require.NoError(t, err)
		_, err = src.Get(context.Background(), Ref{Project: "p"}, LevelProject, "job/config.yaml")
		if assert.Error(t, err) {
			assert.Contains(t, err.Error(), "redirect")
			assert.Contains(t, err.Error(), p.other.Listener.Addr().String())
		}

		req, err := http.NewRequest(http.MethodPost, p.keptn.URL+"/api/v1/event", strings.NewReader("{}"))
		require.NoError(t, err)
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			res.Body.Close()
		}
		assert.Error(t, err)

		p.mu.Lock()
		assert.Empty(t, p.seen, "credentials sent to the other host (status %d)", status)
		assert.Zero(t, p.otherCalls, "the other host must not be called at all")
		p.mu.Unlock()

		// A redirect on the same host still works, with the token.
		src2, err := NewKeptnSource(p.keptn.URL+"/same-host", tr)
		require.NoError(t, err)
		b, err := src2.Get(context.Background(), Ref{Project: "p"}, LevelProject, "job/config.yaml")
		require.NoError(t, err)
		assert.Equal(t, "same", string(b))
	}
}
