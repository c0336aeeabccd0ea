package httpx

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chatfleet/chatfleet"
)

func envelope(t *testing.T, rec *httptest.ResponseRecorder) chatfleet.Error {
	t.Helper()
	var env struct{ Error chatfleet.Error }
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return env.Error
}

func TestMuxAndKeys(t *testing.T) {
	mux := NewMux()
	mux.Handle("POST /things/{id}", RequireKey("secret", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v struct{ N int }
		if err := DecodeJSON(w, r, 16, &v); err != nil {
			WriteError(w, nil, err)
			return
		}
		WriteData(w, 201, v)
	})))
	mux.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
	h := Recover(slog.New(slog.DiscardHandler), mux)
	tests := []struct {
		name, method, path, key, body string
		status                        int
		code                          string
	}{
		{"ok", "POST", "/things/1", "secret", `{"N":3}`, 201, ""},
		{"no key", "POST", "/things/1", "", "", 401, chatfleet.EUNAUTHORIZED},
		{"wrong key", "POST", "/things/1", "secrets", "", 403, chatfleet.EFORBIDDEN},
		{"unknown route", "GET", "/nope", "", "", 404, chatfleet.ENOTFOUND},
		{"wrong method", "DELETE", "/things/1", "", "", 405, chatfleet.EMETHOD},
		{"too large", "POST", "/things/1", "secret", `{"N":3333333333333333}`, 413, chatfleet.ETOOLARGE},
		{"unknown field", "POST", "/things/1", "secret", `{"M":1}`, 400, chatfleet.EINVALID},
		{"wrong type", "POST", "/things/1", "secret", `{"N":"x"}`, 400, chatfleet.EINVALID},
		{"trailing data", "POST", "/things/1", "secret", `{} {}`, 400, chatfleet.EINVALID},
		{"panic", "GET", "/boom", "", "", 500, chatfleet.EINTERNAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.key != "" {
				req.Header.Set("X-API-Key", tt.key)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.code != "" {
				if e := envelope(t, rec); e.Code != tt.code || e.Message == "" {
					t.Fatalf("envelope %+v, want code %s", e, tt.code)
				}
			}
			if tt.status == 405 && rec.Header().Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
}

func TestInternalErrorsAreNotLeaked(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, nil, errString("mongo: connection refused to 10.0.0.1"))
	if e := envelope(t, rec); rec.Code != 500 || e.Code != chatfleet.EINTERNAL || e.Message != "internal error" {
		t.Fatalf("got %d %+v", rec.Code, e)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestKeyEqual(t *testing.T) {
	if KeyEqual("", "") || KeyEqual("a", "") || !KeyEqual("k", "k") || KeyEqual("k", "K") {
		t.Fatal("KeyEqual is wrong")
	}
}
