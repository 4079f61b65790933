package handler

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
)

// FuzzReceive posts arbitrary bodies and content types to the receiver: every answer must be
// a known status, and every error a JSON body. The processor behind it is real; config and
// Jobs are fakes.
func FuzzReceive(f *testing.F) {
	f.Add([]byte(sampleStructured), "application/cloudevents+json")
	f.Add([]byte(`{"project":"p","stage":"s","service":"x"}`), "application/json")
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"project":{"a":1}}}`), "application/cloudevents+json")
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"sh.keptn.event.x.triggered","data":"\xff\xfe"}`), "application/cloudevents+json")
	f.Add([]byte("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["), "application/cloudevents+json")
	p := newProcessor(nil)
	h := NewServer(p, zap.NewNop(), ServerOptions{MaxBodyBytes: 64 << 10}).Router()
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Id", "fuzz")
		req.Header.Set("Ce-Source", "fuzz")
		req.Header.Set("Ce-Type", "sh.keptn.event.test.triggered")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusAccepted:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var e errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Message == "" {
				t.Fatalf("status %d without a JSON error body: %q", w.Code, w.Body.String())
			}
		default:
			t.Fatalf("unexpected status %d: %s", w.Code, w.Body.String())
		}
		p.Wait()
	})
}
