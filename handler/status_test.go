package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
)

// statusFunc is a StatusReader from a function; it records what it was asked.
type statusFunc func(ctx context.Context, keptnContext, eventID string) (*lifecycle.Status, error)

func (f statusFunc) Status(ctx context.Context, keptnContext, eventID string) (*lifecycle.Status, error) {
	return f(ctx, keptnContext, eventID)
}

const knownContext = "138f7bf1-f027-42c4-b705-9033b5f5871e"

func fakeStatus(keptnContext, eventID string) (*lifecycle.Status, error) {
	switch {
	case keptnContext == "broken":
		return nil, fmt.Errorf("%w: cache gone", lifecycle.ErrStatusUnavailable)
	case keptnContext != knownContext || eventID != "" && eventID != "e1":
		return nil, lifecycle.ErrNoStatus
	}
	return &lifecycle.Status{KeptnContext: keptnContext, Events: []lifecycle.EventStatus{{ID: "e1", State: lifecycle.EventRunning}}}, nil
}

func statusServer(t *testing.T, opts ServerOptions) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewServer(acceptorFunc(nil), zap.NewNop(), opts).Router())
	t.Cleanup(srv.Close)
	return srv
}

func getJSON(t *testing.T, rawURL, token string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	if resp.Header.Get("Content-Type") == "application/json" {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	}
	return resp.StatusCode, body
}

func TestStatusAnswers(t *testing.T) {
	srv := statusServer(t, ServerOptions{Token: "tok", Status: statusFunc(func(_ context.Context, c, e string) (*lifecycle.Status, error) {
		return fakeStatus(c, e)
	})})
	tests := []struct {
		path, token string
		code        int
		errCode     string
	}{
		{"/v1/status/" + knownContext, "", http.StatusUnauthorized, "unauthorized"},
		{"/v1/status/" + knownContext, "wrong", http.StatusUnauthorized, "unauthorized"},
		{"/v1/status/" + knownContext, "tok", http.StatusOK, ""},
		{"/v1/status/" + knownContext + "?event=e1", "tok", http.StatusOK, ""},
		{"/v1/status/" + knownContext + "?event=e2", "tok", http.StatusNotFound, "not_found"},
		{"/v1/status/5c5b0a4e-0000-4000-8000-000000000000", "tok", http.StatusNotFound, "not_found"},
		{"/v1/status/broken", "tok", http.StatusServiceUnavailable, "unavailable"},
		{"/v1/status/" + knownContext + "?event=", "tok", http.StatusBadRequest, "invalid_request"},
		{"/v1/status/" + knownContext + "?event=e1&event=e2", "tok", http.StatusBadRequest, "invalid_request"},
		{"/v1/status/" + knownContext + "?evnet=e1", "tok", http.StatusBadRequest, "invalid_request"},
		{"/v1/status/" + knownContext + "?event=%00", "tok", http.StatusBadRequest, "invalid_request"},
		{"/v1/status/a%2Fb", "tok", http.StatusBadRequest, "invalid_request"},
		{"/v1/status/%24%7Bjndi%7D", "tok", http.StatusBadRequest, "invalid_request"},
		{"/v1/status/" + strings.Repeat("a", 129), "tok", http.StatusBadRequest, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			code, body := getJSON(t, srv.URL+tc.path, tc.token)
			assert.Equal(t, tc.code, code)
			require.NotNil(t, body, "every answer has a JSON body")
			if tc.errCode != "" {
				assert.Equal(t, tc.errCode, body["error"])
				assert.NotEmpty(t, body["message"])
			} else {
				assert.Equal(t, knownContext, body["shkeptncontext"])
			}
		})
	}
}

// TestStatusRouteOnlyWhenConfigured: no StatusReader, no route; the monitoring listener never
// has it (it shows task data and takes no token).
func TestStatusRouteOnlyWhenConfigured(t *testing.T) {
	off := statusServer(t, ServerOptions{Token: "tok"})
	code, _ := getJSON(t, off.URL+"/v1/status/"+knownContext, "tok")
	assert.Equal(t, http.StatusNotFound, code)

	s := NewServer(acceptorFunc(nil), zap.NewNop(), ServerOptions{Token: "tok", Status: statusFunc(func(_ context.Context, c, e string) (*lifecycle.Status, error) {
		return fakeStatus(c, e)
	})})
	mon := httptest.NewServer(s.MonitoringRouter())
	defer mon.Close()
	code, body := getJSON(t, mon.URL+"/v1/status/"+knownContext, "tok")
	assert.Equal(t, http.StatusNotFound, code)
	assert.NotContains(t, body, "events")
}

var statusContextForm = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// FuzzStatusRequest: whatever path segment and query arrive, the answer is 200, 400 or 404
// with a JSON body, and the reader is only ever asked for a context of the documented form and
// an event id of bounded, printable UTF-8.
func FuzzStatusRequest(f *testing.F) {
	for _, seed := range [][2]string{
		{knownContext, ""}, {knownContext, "event=e1"}, {"a%2Fb", ""}, {"..", ""}, {knownContext, "event=%ff"},
		{knownContext, "event=a&event=b"}, {"x", "event=%0a"}, {"%00", "x=y"}, {knownContext, "event=" + fmt.Sprintf("%0300d", 1)},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, segment, rawQuery string) {
		s := NewServer(acceptorFunc(nil), zap.NewNop(), ServerOptions{Status: statusFunc(func(_ context.Context, c, e string) (*lifecycle.Status, error) {
			if !statusContextForm.MatchString(c) {
				t.Fatalf("reader asked for context %q", c)
			}
			if len(e) > maxEventIDLen || !utf8.ValidString(e) {
				t.Fatalf("reader asked for event %q", e)
			}
			return fakeStatus(c, e)
		})})
		u := &url.URL{Path: "/v1/status/" + segment, RawQuery: rawQuery}
		req, err := http.NewRequest(http.MethodGet, "http://x"+u.String(), nil)
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		s.Router().ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed:
		default:
			t.Fatalf("GET %s: %d %s", u, w.Code, w.Body)
		}
		if req.URL.Path == "/v1/status/"+segment && w.Code != http.StatusNotFound && w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d without a JSON body", u, w.Code)
		}
	})
}
