package master

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/httpx"
)

// FuzzCreateBody drives the API port's create route, POST
// /api/v1/room/{name}, with any name and body, on a Master that is built
// by New, never Run, and draining: no body can start a room, so every
// answer is a refusal, fast. It must be the error envelope with 400 (bad
// JSON, bad name, bad options), 413 (too large) or 503 (a request that
// passed every check and met the drain), never a 5xx of another kind (a
// panic answers 500), and no room may exist afterwards.
func FuzzCreateBody(f *testing.F) {
	f.Add("lobby", []byte(`{"options":{"allowAnonymous":true,"historySize":50}}`))
	f.Add("lobby", []byte(`{"options":{"historySize":"ten"}}`))
	f.Add("bad name", []byte(`{}`))
	dir := f.TempDir()
	m, err := New(Config{StateDir: dir, Key: "k", AdminKey: "a", Self: "/bin/false"})
	if err != nil {
		f.Fatal(err)
	}
	m.SetDraining(true) // CreateRoom stops before it binds a port or forks
	h := m.apiHandler()
	f.Fuzz(func(t *testing.T, name string, body []byte) {
		path := "/api/v1/room/" + url.PathEscape(name)
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("X-API-Key", "k")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		status := rec.Code
		if status < 300 {
			t.Fatalf("POST %s %q: %d %s on a draining host", path, body, status, rec.Body)
		}
		if chatfleet.ValidateRoomName(name) != nil && (status < 400 || status == 404 || status == 405) {
			// Names the router never passes on ("", ".", "..", "a/b"…):
			// not found, wrong method or a redirect, never a room.
			return
		}
		var env struct{ Error *chatfleet.Error }
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error == nil || env.Error.Message == "" || !utf8.Valid(rec.Body.Bytes()) {
			t.Fatalf("POST %s %q: %d %q is not the error envelope", path, body, status, rec.Body)
		}
		var cr hostapi.CreateRequest
		decodes := len(body) == 0 || httpx.Unmarshal(body, &cr) == nil
		switch {
		case status == http.StatusRequestEntityTooLarge:
			if len(body) <= 4<<10 {
				t.Fatalf("POST %s: %d for a %d-byte body", path, status, len(body))
			}
		case status == http.StatusBadRequest:
			plain := cr.Options.HistorySize >= 0 && cr.Options.HistorySize <= 10000 && len(cr.Options.WebhookURLs) == 0
			if decodes && chatfleet.ValidateRoomName(name) == nil && (plain || env.Error.Code != chatfleet.EINVALID) {
				t.Fatalf("POST %s %q: 400 %s for a request with nothing wrong", path, body, rec.Body)
			}
		case status == http.StatusServiceUnavailable:
			if !decodes || chatfleet.ValidateRoomName(name) != nil {
				t.Fatalf("POST %s %q: 503 for a request that should have been refused: %s", path, body, rec.Body)
			}
		default:
			t.Fatalf("POST %s %q: %d %s", path, body, status, rec.Body)
		}
		if rs := m.Rooms(); len(rs) != 0 {
			t.Fatalf("POST %s %q made rooms: %+v", path, body, rs)
		}
		if files, _ := filepath.Glob(filepath.Join(dir, "rooms", "*")); len(files) != 0 {
			t.Fatalf("POST %s %q left state files: %v", path, body, files)
		}
	})
}
