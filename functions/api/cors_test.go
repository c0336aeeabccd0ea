package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/functions/api"
	"github.com/chatfleet/chatfleet/token"
)

const (
	allowedOrigin = "https://app.example.com"
	otherOrigin   = "https://evil.example.net"
)

// corsAnswer is a raw answer: status, headers and body.
type corsAnswer struct {
	status int
	header http.Header
	body   string
}

// corsDo sends one request with the given headers (a key under X-API-Key).
func corsDo(t *testing.T, method, url string, header map[string]string) corsAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return corsAnswer{resp.StatusCode, resp.Header, string(b)}
}

// corsHeaders returns the Access-Control-* headers of h.
func corsHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k)
		}
	}
	return out
}

// errorCode returns the error envelope's code of body, or "" if it is none.
func errorCode(body string) string {
	var env struct{ Error *chatfleet.Error }
	if json.Unmarshal([]byte(body), &env) != nil || env.Error == nil {
		return ""
	}
	return env.Error.Code
}

// TestCORS checks the room API's CORS over real HTTP: an allowed origin gets
// Access-Control-Allow-Origin on answers and errors alike, and its
// preflights are answered without a key with the route's methods; a refused
// origin gets no CORS header and its preflight 403; the admin API answers no
// CORS header to anyone.
func TestCORS(t *testing.T) {
	t.Parallel()
	a := newAPIs(t, storetest.NewStore(t), newPicker(t, deadURL(t)), func(c *api.Config) {
		c.CORSAllowedOrigins = []string{allowedOrigin, "http://localhost:5173"}
	})

	t.Run("answers", func(t *testing.T) {
		for _, tt := range []struct {
			name, method, path, key string
			status                  int
		}{
			{"listing", "GET", "/api/v1/rooms", apiKey, 200},
			{"missing room", "GET", "/api/v1/rooms/nope", apiKey, 404},
			{"no key", "GET", "/api/v1/rooms", "", 401},
			{"wrong key", "POST", "/api/v1/rooms/x/tokens", "wrong", 403},
			{"bad input", "GET", "/api/v1/rooms?limit=0", apiKey, 400},
			{"unknown route", "GET", "/api/v1/nope", apiKey, 404},
			{"wrong method", "PUT", "/api/v1/rooms/x", apiKey, 405},
		} {
			t.Run(tt.name, func(t *testing.T) {
				got := corsDo(t, tt.method, a.rooms+tt.path, map[string]string{"Origin": allowedOrigin, "X-API-Key": tt.key})
				if got.status != tt.status {
					t.Fatalf("status %d, want %d: %s", got.status, tt.status, got.body)
				}
				if o := got.header.Get("Access-Control-Allow-Origin"); o != allowedOrigin {
					t.Errorf("Access-Control-Allow-Origin %q, want %q", o, allowedOrigin)
				}
				if v := got.header.Values("Vary"); !strings.Contains(strings.Join(v, ","), "Origin") {
					t.Errorf("Vary %v lacks Origin", v)
				}
				if tt.status >= 400 && errorCode(got.body) == "" {
					t.Errorf("body %q is not the error envelope", got.body)
				}

				got = corsDo(t, tt.method, a.rooms+tt.path, map[string]string{"Origin": otherOrigin, "X-API-Key": tt.key})
				if got.status != tt.status {
					t.Fatalf("refused origin: status %d, want %d: %s", got.status, tt.status, got.body)
				}
				if h := corsHeaders(got.header); len(h) != 0 {
					t.Errorf("refused origin got CORS headers %v", h)
				}
				got = corsDo(t, tt.method, a.rooms+tt.path, map[string]string{"X-API-Key": tt.key})
				if h := corsHeaders(got.header); got.status != tt.status || len(h) != 0 {
					t.Errorf("no origin: status %d, CORS headers %v", got.status, h)
				}
			})
		}
	})

	t.Run("preflight", func(t *testing.T) {
		for _, tt := range []struct {
			path, method, methods string
		}{
			{"/api/v1/rooms", "GET", "GET"},
			{"/api/v1/rooms/demo", "DELETE", "POST, GET, DELETE"},
			{"/api/v1/rooms/demo/tokens", "POST", "POST"},
		} {
			got := corsDo(t, "OPTIONS", a.rooms+tt.path, map[string]string{
				"Origin": "http://localhost:5173", "Access-Control-Request-Method": tt.method,
				"Access-Control-Request-Headers": "content-type,x-api-key",
			})
			if got.status != http.StatusNoContent || got.body != "" {
				t.Errorf("OPTIONS %s: %d %q, want 204 and no body", tt.path, got.status, got.body)
			}
			for k, want := range map[string]string{
				"Access-Control-Allow-Origin":  "http://localhost:5173",
				"Access-Control-Allow-Methods": tt.methods,
				"Access-Control-Allow-Headers": "Content-Type, X-API-Key",
				"Access-Control-Max-Age":       "600",
			} {
				if v := got.header.Get(k); v != want {
					t.Errorf("OPTIONS %s: %s %q, want %q", tt.path, k, v, want)
				}
			}
		}
	})

	t.Run("refused preflight", func(t *testing.T) {
		for _, origin := range []string{otherOrigin, "", "https://app.example.com.evil.net", "http://app.example.com", "https://app.example.com:8443", "null"} {
			h := map[string]string{"Access-Control-Request-Method": "POST"}
			if origin != "" {
				h["Origin"] = origin
			}
			got := corsDo(t, "OPTIONS", a.rooms+"/api/v1/rooms/demo", h)
			if got.status != http.StatusForbidden || errorCode(got.body) != chatfleet.EFORBIDDEN {
				t.Errorf("origin %q: %d %s, want 403 forbidden", origin, got.status, got.body)
			}
			if h := corsHeaders(got.header); len(h) != 0 {
				t.Errorf("origin %q got CORS headers %v", origin, h)
			}
		}
	})

	t.Run("preflight of no route", func(t *testing.T) {
		got := corsDo(t, "OPTIONS", a.rooms+"/api/v1/nope", map[string]string{"Origin": allowedOrigin, "Access-Control-Request-Method": "GET"})
		if got.status != http.StatusNotFound || errorCode(got.body) != chatfleet.ENOTFOUND || got.header.Get("Access-Control-Allow-Methods") != "" {
			t.Errorf("%d %s %v", got.status, got.body, got.header)
		}
	})

	t.Run("OPTIONS that is no preflight needs the key", func(t *testing.T) {
		got := corsDo(t, "OPTIONS", a.rooms+"/api/v1/rooms", map[string]string{"Origin": allowedOrigin})
		if got.status != http.StatusUnauthorized || errorCode(got.body) != chatfleet.EUNAUTHORIZED {
			t.Errorf("%d %s", got.status, got.body)
		}
		got = corsDo(t, "OPTIONS", a.rooms+"/api/v1/rooms", map[string]string{"Origin": allowedOrigin, "X-API-Key": apiKey})
		if got.status != http.StatusMethodNotAllowed || got.header.Get("Access-Control-Allow-Methods") != "" {
			t.Errorf("%d %s %v", got.status, got.body, got.header)
		}
	})

	t.Run("admin API is same-origin only", func(t *testing.T) {
		for _, tt := range []struct {
			method, path, key string
			header            map[string]string
			status            int
		}{
			{"GET", "/admin/v1/audit", adminAPIKey, nil, 200},
			{"GET", "/admin/v1/audit", "", nil, 401},
			{"GET", "/admin/v1/nope", adminAPIKey, nil, 404},
			{"OPTIONS", "/admin/v1/bans", "", map[string]string{"Access-Control-Request-Method": "POST"}, 401},
			{"OPTIONS", "/admin/v1/bans", adminAPIKey, map[string]string{"Access-Control-Request-Method": "POST"}, 405},
		} {
			h := map[string]string{"Origin": allowedOrigin, "X-API-Key": tt.key}
			for k, v := range tt.header {
				h[k] = v
			}
			got := corsDo(t, tt.method, a.admin+tt.path, h)
			if got.status != tt.status {
				t.Errorf("%s %s: status %d, want %d: %s", tt.method, tt.path, got.status, tt.status, got.body)
			}
			if h := corsHeaders(got.header); len(h) != 0 {
				t.Errorf("%s %s: admin API answered CORS headers %v", tt.method, tt.path, h)
			}
		}
	})
}

// TestCORSNone checks that without CORS_ALLOWED_ORIGINS no origin gets CORS
// headers and every preflight is refused.
func TestCORSNone(t *testing.T) {
	t.Parallel()
	a := newAPIs(t, storetest.NewStore(t), newPicker(t, deadURL(t)))
	got := corsDo(t, "GET", a.rooms+"/api/v1/rooms", map[string]string{"Origin": allowedOrigin, "X-API-Key": apiKey})
	if got.status != 200 || len(corsHeaders(got.header)) != 0 {
		t.Errorf("%d %v", got.status, got.header)
	}
	got = corsDo(t, "OPTIONS", a.rooms+"/api/v1/rooms", map[string]string{"Origin": allowedOrigin, "Access-Control-Request-Method": "GET"})
	if got.status != 403 || len(corsHeaders(got.header)) != 0 {
		t.Errorf("preflight: %d %v", got.status, got.header)
	}
}

// TestParseOrigins checks which CORS_ALLOWED_ORIGINS values are accepted,
// from ParseOrigins and from NewRoomAPI.
func TestParseOrigins(t *testing.T) {
	got, err := api.ParseOrigins(" https://a.example.com, http://localhost:5173,https://a.example.com ,")
	if err != nil || strings.Join(got, " ") != "https://a.example.com http://localhost:5173" {
		t.Errorf("got %q, %v", got, err)
	}
	if got, err := api.ParseOrigins(""); err != nil || len(got) != 0 {
		t.Errorf("empty: %q, %v", got, err)
	}
	tokens, err := token.NewIssuer(tokenSecret)
	if err != nil {
		t.Fatal(err)
	}
	base := api.Config{Store: storetest.NewStore(t), Picker: newPicker(t, deadURL(t)), Tokens: tokens, APIKey: apiKey, FleetKey: fleetKey}
	for _, bad := range []string{
		"https://a.example.com/", "https://a.example.com/app", "a.example.com", "ftp://a.example.com",
		"https://user@a.example.com", "https://A.example.com", "HTTPS://a.example.com", "*", "null",
		"https://a.example.com:0", "https://a.example.com:99999", "https://a.example.com?x", "https://:80",
	} {
		if _, err := api.ParseOrigins(bad); err == nil {
			t.Errorf("ParseOrigins(%q) accepted", bad)
		}
		cfg := base
		cfg.CORSAllowedOrigins = []string{bad}
		if _, err := api.NewRoomAPI(cfg); err == nil || !strings.Contains(err.Error(), "CORS_ALLOWED_ORIGINS") {
			t.Errorf("NewRoomAPI with origin %q: %v", bad, err)
		}
	}
}

// TestConfigFromEnvCORS checks that ConfigFromEnv reads CORS_ALLOWED_ORIGINS
// and refuses a malformed one before connecting to anything.
func TestConfigFromEnvCORS(t *testing.T) {
	t.Setenv("MONGODB_URI", "mongodb://127.0.0.1:1/")
	t.Setenv("LOADBALANCERS", deadURL(t))
	t.Setenv("LOG_LEVEL", "error")
	t.Setenv("LOADBALANCER_KEY", lbKey)
	t.Setenv("CORS_ALLOWED_ORIGINS", "https://app.example.com/")
	if _, _, err := api.ConfigFromEnv(context.Background(), os.Getenv); err == nil || !strings.Contains(err.Error(), "CORS_ALLOWED_ORIGINS") {
		t.Errorf("a path in an origin: %v", err)
	}
	t.Setenv("CORS_ALLOWED_ORIGINS", "https://app.example.com, http://localhost:5173")
	cfg, closeAll, err := api.ConfigFromEnv(context.Background(), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	closeAll()
	if strings.Join(cfg.CORSAllowedOrigins, " ") != "https://app.example.com http://localhost:5173" {
		t.Errorf("CORSAllowedOrigins %q", cfg.CORSAllowedOrigins)
	}
}
