package api_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/functions/api"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/mongo"
)

// deadURL is a loopback URL nothing listens at.
func deadURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

// TestBadRequests checks that every bad request is answered with its status
// and code in the error envelope before it reaches the store, a load
// balancer or a host (there is no load balancer here).
func TestBadRequests(t *testing.T) {
	t.Parallel()
	a := newAPIs(t, storetest.NewStore(t), newPicker(t, deadURL(t)))
	long := strings.Repeat("a", chatfleet.MaxRoomNameLen+1)
	for _, tt := range []struct {
		name              string
		method, path, key string
		body              string
		status            int
		code              string
		admin             bool
	}{
		{"no key", "POST", "/api/v1/rooms/x", "", "", 401, chatfleet.EUNAUTHORIZED, false},
		{"wrong key", "POST", "/api/v1/rooms/x", "nope", "", 403, chatfleet.EFORBIDDEN, false},
		{"admin key on the room API", "GET", "/api/v1/rooms", adminAPIKey, "", 403, chatfleet.EFORBIDDEN, false},
		{"no key on an unknown route", "GET", "/nowhere", "", "", 401, chatfleet.EUNAUTHORIZED, false},
		{"invalid name", "POST", "/api/v1/rooms/bad.name", apiKey, "", 400, chatfleet.EINVALID, false},
		{"name starting with a dash", "POST", "/api/v1/rooms/-x", apiKey, "", 400, chatfleet.EINVALID, false},
		{"name too long", "POST", "/api/v1/rooms/" + long, apiKey, "", 400, chatfleet.EINVALID, false},
		{"get invalid name", "GET", "/api/v1/rooms/bad.name", apiKey, "", 400, chatfleet.EINVALID, false},
		{"delete invalid name", "DELETE", "/api/v1/rooms/bad.name", apiKey, "", 400, chatfleet.EINVALID, false},
		{"token for invalid name", "POST", "/api/v1/rooms/bad.name/tokens", apiKey, "", 400, chatfleet.EINVALID, false},
		{"unknown route", "GET", "/api/v1/nope", apiKey, "", 404, chatfleet.ENOTFOUND, false},
		{"unknown version", "GET", "/api/v2/rooms", apiKey, "", 404, chatfleet.ENOTFOUND, false},
		{"too deep", "POST", "/api/v1/rooms/x/y", apiKey, "", 404, chatfleet.ENOTFOUND, false},
		{"admin route on the room API", "GET", "/admin/v1/hosts", apiKey, "", 404, chatfleet.ENOTFOUND, false},
		{"wrong method on a room", "PUT", "/api/v1/rooms/x", apiKey, "", 405, chatfleet.EMETHOD, false},
		{"wrong method on the listing", "PATCH", "/api/v1/rooms", apiKey, "", 405, chatfleet.EMETHOD, false},
		{"wrong method on tokens", "GET", "/api/v1/rooms/x/tokens", apiKey, "", 405, chatfleet.EMETHOD, false},
		{"oversized create", "POST", "/api/v1/rooms/x", apiKey, `{"hlsUrl":"` + strings.Repeat("h", 17<<10) + `"}`, 413, chatfleet.ETOOLARGE, false},
		{"oversized token request", "POST", "/api/v1/rooms/x/tokens", apiKey, `{"name":"` + strings.Repeat("n", 5<<10) + `"}`, 413, chatfleet.ETOOLARGE, false},
		{"malformed JSON", "POST", "/api/v1/rooms/x", apiKey, `{"hlsUrl":`, 400, chatfleet.EINVALID, false},
		{"unknown field", "POST", "/api/v1/rooms/x", apiKey, `{"color":"red"}`, 400, chatfleet.EINVALID, false},
		{"wrong type", "POST", "/api/v1/rooms/x", apiKey, `{"paid":"yes"}`, 400, chatfleet.EINVALID, false},
		{"trailing data", "POST", "/api/v1/rooms/x", apiKey, `{} {}`, 400, chatfleet.EINVALID, false},
		{"hls URL not http", "POST", "/api/v1/rooms/x", apiKey, `{"hlsUrl":"ftp://cdn/x.m3u8"}`, 400, chatfleet.EINVALID, false},
		{"hls URL with credentials", "POST", "/api/v1/rooms/x", apiKey, `{"hlsUrl":"https://u:p@cdn/x.m3u8"}`, 400, chatfleet.EINVALID, false},
		{"long title", "POST", "/api/v1/rooms/x", apiKey, `{"title":"` + strings.Repeat("t", 121) + `"}`, 400, chatfleet.EINVALID, false},
		{"title with a control character", "POST", "/api/v1/rooms/x", apiKey, `{"title":"a\u0007b"}`, 400, chatfleet.EINVALID, false},
		{"bad region", "POST", "/api/v1/rooms/x", apiKey, `{"region":"EU WEST"}`, 400, chatfleet.EINVALID, false},
		{"bad webhook", "POST", "/api/v1/rooms/x", apiKey, `{"webhookUrls":["javascript:alert(1)"]}`, 400, chatfleet.EINVALID, false},
		{"too many webhooks", "POST", "/api/v1/rooms/x", apiKey, `{"webhookUrls":[` + strings.Repeat(`"https://a.example/",`, 5) + `"https://a.example/"]}`, 400, chatfleet.EINVALID, false},
		{"long webhook", "POST", "/api/v1/rooms/x", apiKey, `{"webhookUrls":["https://a.example/` + strings.Repeat("p", 1024-len("https://a.example/")+1) + `"]}`, 400, chatfleet.EINVALID, false},
		{"webhook with credentials", "POST", "/api/v1/rooms/x", apiKey, `{"webhookUrls":["https://user:pw@a.example/"]}`, 400, chatfleet.EINVALID, false},

		{"admin: no key", "GET", "/admin/v1/hosts", "", "", 401, chatfleet.EUNAUTHORIZED, true},
		{"admin: wrong key", "GET", "/admin/v1/hosts", "nope", "", 403, chatfleet.EFORBIDDEN, true},
		{"admin: room key", "GET", "/admin/v1/hosts", apiKey, "", 403, chatfleet.EFORBIDDEN, true},
		{"admin: unknown route", "GET", "/admin/v1/nope", adminAPIKey, "", 404, chatfleet.ENOTFOUND, true},
		{"admin: room route", "GET", "/api/v1/rooms", adminAPIKey, "", 404, chatfleet.ENOTFOUND, true},
		{"admin: wrong method", "GET", "/admin/v1/messages", adminAPIKey, "", 405, chatfleet.EMETHOD, true},
		{"admin: wrong method on hosts", "DELETE", "/admin/v1/hosts", adminAPIKey, "", 405, chatfleet.EMETHOD, true},
		{"admin: empty message", "POST", "/admin/v1/messages", adminAPIKey, `{"text":""}`, 400, chatfleet.EINVALID, true},
		{"admin: no body", "POST", "/admin/v1/messages", adminAPIKey, "", 400, chatfleet.EINVALID, true},
		{"admin: long message", "POST", "/admin/v1/messages", adminAPIKey, `{"text":"` + strings.Repeat("m", 1001) + `"}`, 400, chatfleet.EINVALID, true},
		{"admin: oversized message", "POST", "/admin/v1/messages", adminAPIKey, `{"text":"` + strings.Repeat("m", 9<<10) + `"}`, 413, chatfleet.ETOOLARGE, true},
		{"admin: invalid room name", "DELETE", "/admin/v1/rooms/bad.name", adminAPIKey, "", 400, chatfleet.EINVALID, true},
		{"admin: long reason", "DELETE", "/admin/v1/rooms/x", adminAPIKey, `{"reason":"` + strings.Repeat("r", 201) + `"}`, 400, chatfleet.EINVALID, true},
		{"admin: invalid host id", "POST", "/admin/v1/hosts/bad*id/drain", adminAPIKey, "", 400, chatfleet.EINVALID, true},
		{"admin: unknown host action", "POST", "/admin/v1/hosts/h1/reboot", adminAPIKey, "", 404, chatfleet.ENOTFOUND, true},
		{"admin: bad audit limit", "GET", "/admin/v1/audit?limit=-1", adminAPIKey, "", 400, chatfleet.EINVALID, true},
		{"owner id too long", "POST", "/api/v1/rooms/x", apiKey, `{"ownerId":"` + strings.Repeat("o", 129) + `"}`, 400, chatfleet.EINVALID, false},
		{"owner id not printable", "POST", "/api/v1/rooms/x", apiKey, `{"ownerId":"a\u0000b"}`, 400, chatfleet.EINVALID, false},
		{"owner id of a guest", "POST", "/api/v1/rooms/x", apiKey, `{"ownerId":"guest-1234abcd"}`, 403, chatfleet.EFORBIDDEN, false},
		{"owner name too long", "POST", "/api/v1/rooms/x", apiKey, `{"ownerName":"` + strings.Repeat("n", 65) + `"}`, 400, chatfleet.EINVALID, false},
		{"admin: ban without user", "POST", "/admin/v1/bans", adminAPIKey, `{"reason":"spam"}`, 400, chatfleet.EINVALID, true},
		{"admin: ban with long user id", "POST", "/admin/v1/bans", adminAPIKey, `{"userId":"` + strings.Repeat("u", 129) + `"}`, 400, chatfleet.EINVALID, true},
		{"admin: ban with long reason", "POST", "/admin/v1/bans", adminAPIKey, `{"userId":"u","reason":"` + strings.Repeat("r", 201) + `"}`, 400, chatfleet.EINVALID, true},
		{"admin: ban with negative minutes", "POST", "/admin/v1/bans", adminAPIKey, `{"userId":"u","minutes":-1}`, 400, chatfleet.EINVALID, true},
		{"admin: ban of over ten years", "POST", "/admin/v1/bans", adminAPIKey, `{"userId":"u","minutes":5256001}`, 400, chatfleet.EINVALID, true},
		{"admin: ban with unknown field", "POST", "/admin/v1/bans", adminAPIKey, `{"userId":"u","fleet":true}`, 400, chatfleet.EINVALID, true},
		{"admin: ban list limit 0", "GET", "/admin/v1/bans?limit=0", adminAPIKey, "", 400, chatfleet.EINVALID, true},
		{"admin: ban list limit 1001", "GET", "/admin/v1/bans?limit=1001", adminAPIKey, "", 400, chatfleet.EINVALID, true},
		{"admin: ban list of a bad room", "GET", "/admin/v1/bans?room=bad.name", adminAPIKey, "", 400, chatfleet.EINVALID, true},
		{"admin: ban list of no room", "GET", "/admin/v1/bans?room=", adminAPIKey, "", 400, chatfleet.EINVALID, true},
		{"admin: ban list with long cursor", "GET", "/admin/v1/bans?cursor=" + strings.Repeat("c", 129), adminAPIKey, "", 400, chatfleet.EINVALID, true},
		{"admin: unban long user id", "DELETE", "/admin/v1/bans/" + strings.Repeat("u", 129), adminAPIKey, "", 400, chatfleet.EINVALID, true},
		{"admin: unban in a bad room", "DELETE", "/admin/v1/rooms/bad.name/bans/u", adminAPIKey, "", 400, chatfleet.EINVALID, true},
		{"admin: wrong method on bans", "PUT", "/admin/v1/bans", adminAPIKey, "", 405, chatfleet.EMETHOD, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := a.rooms
			if tt.admin {
				base = a.admin
			}
			ans := call(t, tt.method, base+tt.path, tt.key, tt.body).want(t, tt.status, tt.code)
			if tt.status == 405 && ans.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
}

// TestStoreDown checks that every endpoint that needs the store answers 503
// quickly when the store stops answering (its server is stopped under an
// open connection).
func TestStoreDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, err := devstore.Start(ctx, devstore.Config{Dir: t.TempDir(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	st, err := mongo.Open(ctx, mongo.Config{URI: srv.URI(), Database: "down", Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(ctx) })
	if err := st.CreateRoom(ctx, &chatfleet.Room{Name: "up", HostID: hostID, HostAddr: "127.0.0.1", Port: 40000}); err != nil {
		t.Fatal(err)
	}
	a := newAPIs(t, st, newPicker(t, deadURL(t)))
	call(t, "GET", a.rooms+"/api/v1/rooms/up", apiKey, "").want(t, http.StatusOK, "")
	srv.Stop()

	for _, tt := range []struct {
		method, path, body string
		admin              bool
	}{
		{"POST", "/api/v1/rooms/new", "", false},
		{"GET", "/api/v1/rooms", "", false},
		{"GET", "/api/v1/rooms/up", "", false},
		{"POST", "/api/v1/rooms/up/tokens", "", false},
		{"DELETE", "/api/v1/rooms/up", "", false},
		{"GET", "/admin/v1/audit", "", true},
		{"POST", "/admin/v1/messages", `{"text":"hi"}`, true},
		{"POST", "/admin/v1/hosts/h1/drain", "", true},
		{"DELETE", "/admin/v1/rooms/up", "", true},
		{"POST", "/admin/v1/bans", `{"userId":"u"}`, true},
		{"GET", "/admin/v1/bans", "", true},
		{"DELETE", "/admin/v1/bans/u", "", true},
		{"DELETE", "/admin/v1/rooms/up/bans/u", "", true},
		{"GET", "/admin/v1/blocked-words", "", true},
		{"PUT", "/admin/v1/blocked-words", `{"words":["darn"]}`, true},
		{"GET", "/admin/v1/room-defaults", "", true},
		{"PUT", "/admin/v1/room-defaults", `{"historySize":50,"maxMessageLen":10,"slowModeSeconds":0,"allowAnonymous":false,"idleTimeoutSec":600}`, true},
		{"POST", "/admin/v1/hosts/h1/shutdown", "", true},
		{"GET", "/admin/v1/rooms/up", "", true},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			base, key := a.rooms, apiKey
			if tt.admin {
				base, key = a.admin, adminAPIKey
			}
			start := time.Now()
			ans := call(t, tt.method, base+tt.path, key, tt.body).want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("answered after %v", d)
			}
			if strings.Contains(ans.Body, "127.0.0.1") || strings.Contains(ans.Body, "mongo") {
				t.Errorf("the answer tells the store's details: %s", ans.Body)
			}
		})
	}
}

// TestConfigFromEnv builds the APIs from the environment as a Lambda
// function does, with the store down at cold start: requests answer 503
// until the store is up, then succeed without a restart.
func TestConfigFromEnv(t *testing.T) {
	port := testutil.FreePort(t)
	env := map[string]string{
		"MONGODB_URI": fmt.Sprintf("mongodb://127.0.0.1:%d/", port), "MONGODB_DATABASE": "cfgenv",
		"LOADBALANCERS": deadURL(t) + ", " + deadURL(t), "LOADBALANCER_KEY": lbKey, "LOADBALANCER_CA_FILE": "",
		"TOKEN_SECRET": tokenSecret, "API_KEY": apiKey, "ADMIN_API_KEY": adminAPIKey,
		"FLEET_KEY": fleetKey, "FLEET_ADMIN_KEY": fleetAdminKey, "REQUEST_TIMEOUT": "", "LOG_LEVEL": "error",
		"FLEET_HOSTS_ALLOW": "", "WEBHOOK_ALLOW_PRIVATE": "", "MAX_FLEET_BANS": "",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	ctx := context.Background()
	cfg, closeAll, err := api.ConfigFromEnv(ctx, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAll)
	rooms, err := api.NewRoomAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := api.NewAdminAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rs, as := httptest.NewServer(rooms), httptest.NewServer(admin)
	t.Cleanup(rs.Close)
	t.Cleanup(as.Close)

	call(t, "GET", rs.URL+"/api/v1/rooms/x", apiKey, "").want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
	call(t, "GET", as.URL+"/admin/v1/audit", adminAPIKey, "").want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
	// No load balancer answers either.
	call(t, "GET", as.URL+"/admin/v1/hosts", adminAPIKey, "").want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)

	srv, err := devstore.Start(ctx, devstore.Config{Dir: t.TempDir(), Addr: fmt.Sprintf("127.0.0.1:%d", port), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	call(t, "GET", rs.URL+"/api/v1/rooms/x", apiKey, "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
	call(t, "GET", as.URL+"/admin/v1/audit", adminAPIKey, "").want(t, http.StatusOK, "")

	t.Run("trust settings", func(t *testing.T) {
		if len(cfg.HostsAllow) != 6 || cfg.WebhookAllowPrivate || cfg.MaxFleetBans != 0 {
			t.Errorf("defaults: hosts allow %v, webhook allow private %v, max fleet bans %d; want netguard.Private, false, 0 (100,000)",
				cfg.HostsAllow, cfg.WebhookAllowPrivate, cfg.MaxFleetBans)
		}
		t.Setenv("FLEET_HOSTS_ALLOW", "10.0.0.0/16, 192.168.1.7")
		t.Setenv("WEBHOOK_ALLOW_PRIVATE", "1")
		t.Setenv("MAX_FLEET_BANS", "500")
		c, closeC, err := api.ConfigFromEnv(ctx, os.Getenv)
		if err != nil {
			t.Fatal(err)
		}
		defer closeC()
		if fmt.Sprint(c.HostsAllow) != "[10.0.0.0/16 192.168.1.7/32]" || !c.WebhookAllowPrivate || c.MaxFleetBans != 500 {
			t.Errorf("hosts allow %v, webhook allow private %v, max fleet bans %d", c.HostsAllow, c.WebhookAllowPrivate, c.MaxFleetBans)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct{ name, key, value, want string }{
			{"no store", "MONGODB_URI", "", "MONGODB_URI"},
			{"malformed store URI", "MONGODB_URI", "http://x", "MONGODB_URI"},
			{"no load balancer", "LOADBALANCERS", " ", "LOADBALANCERS"},
			{"bad load balancer", "LOADBALANCERS", "lb:2000", "LOADBALANCERS"},
			{"no load balancer key", "LOADBALANCER_KEY", "", "key"},
			{"short token secret", "TOKEN_SECRET", "short", "TOKEN_SECRET"},
			{"bad timeout", "REQUEST_TIMEOUT", "soon", "REQUEST_TIMEOUT"},
			{"bad log level", "LOG_LEVEL", "loud", "LOG_LEVEL"},
			{"bad allowed host networks", "FLEET_HOSTS_ALLOW", "10.0.0.0/33", "FLEET_HOSTS_ALLOW"},
			{"no allowed host network", "FLEET_HOSTS_ALLOW", " , ", "FLEET_HOSTS_ALLOW"},
			{"bad webhook setting", "WEBHOOK_ALLOW_PRIVATE", "yes", "WEBHOOK_ALLOW_PRIVATE"},
			{"bad fleet ban cap", "MAX_FLEET_BANS", "0", "MAX_FLEET_BANS"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Setenv(tt.key, tt.value)
				_, _, err := api.ConfigFromEnv(ctx, os.Getenv)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err %v, want one naming %s", err, tt.want)
				}
				for _, secret := range []string{apiKey, adminAPIKey, fleetKey, lbKey, tokenSecret} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error holds a secret: %v", err)
					}
				}
			})
		}
	})

	t.Run("constructors", func(t *testing.T) {
		for _, tt := range []struct {
			name  string
			edit  func(*api.Config)
			admin bool
		}{
			{"room API without token issuer", func(c *api.Config) { c.Tokens = nil }, false},
			{"room API without key", func(c *api.Config) { c.APIKey = "" }, false},
			{"room API without fleet key", func(c *api.Config) { c.FleetKey = "" }, false},
			{"room API without store", func(c *api.Config) { c.Store = nil }, false},
			{"room API without picker", func(c *api.Config) { c.Picker = nil }, false},
			{"same key for both APIs", func(c *api.Config) { c.AdminAPIKey = c.APIKey }, false},
			{"admin API without key", func(c *api.Config) { c.AdminAPIKey = "" }, true},
			{"admin API without fleet admin key", func(c *api.Config) { c.FleetAdminKey = "" }, true},
			{"admin API with the room key", func(c *api.Config) { c.AdminAPIKey = c.APIKey }, true},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := cfg
				tt.edit(&c)
				var err error
				if tt.admin {
					_, err = api.NewAdminAPI(c)
				} else {
					_, err = api.NewRoomAPI(c)
				}
				if err == nil {
					t.Fatal("no error")
				}
			})
		}
	})
}

// TestRoutes checks that the exported route lists are what the muxes serve:
// every listed route answers with something other than 404 or 405, and the
// lists hold no duplicates.
func TestRoutes(t *testing.T) {
	t.Parallel()
	a := newAPIs(t, storetest.NewStore(t), newPicker(t, deadURL(t)))
	for _, set := range []struct {
		base, key string
		routes    []api.Route
	}{{a.rooms, apiKey, api.RoomRoutes}, {a.admin, adminAPIKey, api.AdminRoutes}} {
		seen := map[api.Route]bool{}
		for _, r := range set.routes {
			if seen[r] {
				t.Errorf("%s listed twice", r)
			}
			seen[r] = true
			path := strings.NewReplacer("{name}", "bad.name", "{id}", "bad*id", "{userId}", "u").Replace(r.Path)
			ans := call(t, r.Method, set.base+path, set.key, "{}")
			if ans.Status == http.StatusNotFound && ans.Error.Code == chatfleet.ENOTFOUND && strings.HasPrefix(ans.Error.Message, "no route") ||
				ans.Status == http.StatusMethodNotAllowed {
				t.Errorf("%s is not served: %d %s", r, ans.Status, ans.Body)
			}
		}
	}
	if n := len(api.RoomRoutes) + len(api.AdminRoutes); n != 23 {
		t.Errorf("%d routes, want 23", n)
	}
}
