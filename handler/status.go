package handler

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/keptn-contrib/job-executor-service/handler/lifecycle"
)

// StatusRoute is where the status of a Keptn context's events is served; ?event=ID narrows
// it to the event with that CloudEvent id.
const StatusRoute = "/v1/status/{shkeptncontext}"

// Bounds of the status request: Keptn contexts are UUIDs (36 characters); CloudEvent ids are
// free text, bounded here so that a request cannot make the service compare megabytes.
const (
	maxContextLen = 128
	maxEventIDLen = 256
)

// parseStatusRequest validates the Keptn context (path) and the optional event id (query);
// both come from whoever holds the token and are compared, never interpreted.
func parseStatusRequest(keptnContext string, query url.Values) (string, string, error) {
	if keptnContext == "" || len(keptnContext) > maxContextLen {
		return "", "", fmt.Errorf("the Keptn context must have 1 to %d characters", maxContextLen)
	}
	for _, c := range keptnContext {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", "", fmt.Errorf("the Keptn context may hold letters, digits, '-', '_' and '.' only (a UUID, as shkeptncontext)")
		}
	}
	eventID := ""
	for k, vs := range query {
		if k != "event" {
			return "", "", fmt.Errorf("unknown query parameter %q; the only one is event=<CloudEvent id>", k)
		}
		if len(vs) != 1 {
			return "", "", errors.New("give event= once")
		}
		eventID = vs[0]
		if eventID == "" || len(eventID) > maxEventIDLen || !utf8.ValidString(eventID) {
			return "", "", fmt.Errorf("event must be a CloudEvent id of 1 to %d bytes of UTF-8", maxEventIDLen)
		}
		for _, c := range eventID {
			if unicode.IsControl(c) {
				return "", "", errors.New("event must not contain control characters")
			}
		}
	}
	return keptnContext, eventID, nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	keptnContext, eventID, err := parseStatusRequest(chi.URLParam(r, "shkeptncontext"), r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	st, err := s.opts.Status.Status(r.Context(), keptnContext, eventID)
	switch {
	case errors.Is(err, lifecycle.ErrNoStatus):
		msg := "no event of Keptn context " + keptnContext
		if eventID != "" {
			msg = "no event " + eventID + " in Keptn context " + keptnContext
		}
		writeError(w, http.StatusNotFound, "not_found", msg+" is known here: not accepted by this service, or its event record was pruned (DEDUP_RETENTION_SECONDS after .finished)")
	case errors.Is(err, lifecycle.ErrStatusUnavailable):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	case err != nil:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	default:
		writeJSON(w, http.StatusOK, st)
	}
}
