package keptnapi

// The control plane's part of the API, as Keptn's distributor uses it (keptn/keptn
// shipyard-controller/internal/handler/uniformintegrationhandler.go and the triggered-event
// query of eventhandler.go): an integration registers, sends heartbeats that return its
// subscriptions, and, on a remote execution plane, polls the open .triggered events of each
// subscription. Through the API gateway these live under /controlPlane; in the cluster the
// shipyard-controller Service serves them at its root (ShipyardController).

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/keptn/go-utils/pkg/api/models"
)

// Registration is what the control plane keeps of one registered integration.
type Registration struct {
	models.Integration
	// Pings counts heartbeats (PUT .../ping). A distributor applies the subscriptions of a
	// heartbeat's answer only then: until its first heartbeat it forwards nothing.
	Pings int
}

// Registrations returns a copy of every registered integration.
func (s *Server) Registrations() []Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Registration, 0, len(s.integrations))
	for _, r := range s.integrations {
		c := *r
		c.Subscriptions = slices.Clone(r.Subscriptions)
		out = append(out, c)
	}
	return out
}

// Publish makes ev an open .triggered event: the control plane lists it to pollers
// (GET /controlPlane/v1/event/triggered/{type}) until a .finished naming it arrives at
// POST /v1/event, as the shipyard-controller drops a triggered event once its task is done.
func (s *Server) Publish(ev models.KeptnContextExtendedCE) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.triggered = append(s.triggered, ev)
}

// closeTriggeredLocked removes the open .triggered event a .finished names.
func (s *Server) closeTriggeredLocked(ev Event) {
	if !strings.HasSuffix(ev.TypeName(), ".finished") {
		return
	}
	s.triggered = slices.DeleteFunc(s.triggered, func(t models.KeptnContextExtendedCE) bool {
		return t.ID == ev.Triggeredid
	})
}

func (s *Server) controlPlaneRoutes(mux *http.ServeMux) {
	const reg = "/controlPlane/v1/uniform/registration"
	mux.HandleFunc("POST "+reg, s.register)
	mux.HandleFunc("PUT "+reg+"/{id}/ping", s.ping)
	mux.HandleFunc("DELETE "+reg+"/{id}", s.unregister)
	mux.HandleFunc("POST /controlPlane/v1/log", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct{}{}) // the distributor's error log entries: accepted, not kept
	})
	mux.HandleFunc("GET /controlPlane/v1/event/triggered/{type}", s.openTriggered)
}

// register creates an integration (201, id = hash of name, namespace and node, subscriptions
// get fresh ids) or, when one of that name and namespace exists, answers 200 with its id
// and keeps its subscriptions: the replicas of a deployment share one registration.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var in models.Integration
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	for _, sub := range in.Subscriptions {
		if sub.Event == "" {
			writeError(w, http.StatusBadRequest, "the event must be specified when setting up a subscription")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, old := range s.integrations {
		if old.Name == in.Name && old.MetaData.KubernetesMetaData.Namespace == in.MetaData.KubernetesMetaData.Namespace {
			old.MetaData.LastSeen = time.Now().UTC()
			writeJSON(w, http.StatusOK, models.RegisterIntegrationResponse{ID: old.ID})
			return
		}
	}
	id, err := models.IntegrationID{Name: in.Name, Namespace: in.MetaData.KubernetesMetaData.Namespace, NodeName: in.MetaData.Hostname}.Hash()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	in.ID = id
	in.MetaData.LastSeen = time.Now().UTC()
	for i := range in.Subscriptions {
		in.Subscriptions[i].ID = uuid.NewString()
	}
	s.integrations[id] = &Registration{Integration: in}
	writeJSON(w, http.StatusCreated, models.RegisterIntegrationResponse{ID: id})
}

// ping is the heartbeat: it answers the integration with its subscriptions (404 if unknown).
func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	reg := s.integrations[r.PathValue("id")]
	if reg == nil {
		writeError(w, http.StatusNotFound, "uniform integration not found")
		return
	}
	reg.Pings++
	reg.MetaData.LastSeen = time.Now().UTC()
	writeJSON(w, http.StatusOK, reg.Integration)
}

func (s *Server) unregister(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.integrations, r.PathValue("id"))
	writeJSON(w, http.StatusOK, struct{}{})
}

// openTriggered lists the open .triggered events of one type, optionally of one project,
// stage and service, in one page.
func (s *Server) openTriggered(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := models.Events{Events: []*models.KeptnContextExtendedCE{}}
	for i := range s.triggered {
		ev := s.triggered[i]
		if ev.Type == nil || *ev.Type != r.PathValue("type") {
			continue
		}
		var d struct{ Project, Stage, Service string }
		raw, _ := json.Marshal(ev.Data)
		_ = json.Unmarshal(raw, &d)
		if (q.Get("project") != "" && q.Get("project") != d.Project) ||
			(q.Get("stage") != "" && q.Get("stage") != d.Stage) ||
			(q.Get("service") != "" && q.Get("service") != d.Service) {
			continue
		}
		out.Events = append(out.Events, &ev)
	}
	out.PageSize = float64(len(out.Events))
	out.TotalCount = float64(len(out.Events))
	writeJSON(w, http.StatusOK, out)
}

// ResourceService serves the resource-service API at its root, as the in-cluster Service
// resource-service:8080 does (the distributor's API proxy strips /resource-service).
func (s *Server) ResourceService() http.Handler { return prefixed("/resource-service", s.Handler()) }

// ShipyardController serves the control plane's API at its root, as the in-cluster Service
// shipyard-controller:8080 does (the distributor's proxy strips /controlPlane; its
// registration, heartbeat and log clients call it directly).
func (s *Server) ShipyardController() http.Handler { return prefixed("/controlPlane", s.Handler()) }

// prefixed adds the API gateway's path prefix back, keeping escaped paths (job%2Fconfig.yaml) escaped.
func prefixed(prefix string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = prefix + r.URL.Path
		if r.URL.RawPath != "" {
			r2.URL.RawPath = prefix + r.URL.RawPath
		}
		h.ServeHTTP(w, r2)
	})
}
