package room

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/entitle"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// payHook is a real HTTP entitlement service: it allows everyone but the
// users in deny, records every request, and fails with 503 while down.
type payHook struct {
	url  string
	down atomic.Bool

	mu       sync.Mutex
	deny     map[string]string // user -> reason
	until    map[string]time.Time
	requests [][]entitle.Check
}

func newPayHook(t *testing.T) *payHook {
	h := &payHook{deny: map[string]string{}, until: map[string]time.Time{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Checks []entitle.Check }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("hook got a bad request: %v", err)
		}
		h.mu.Lock()
		h.requests = append(h.requests, req.Checks)
		var out struct {
			Results []entitle.Result `json:"results"`
		}
		for _, c := range req.Checks {
			if reason, ok := h.deny[c.UserID]; ok {
				out.Results = append(out.Results, entitle.Result{UserID: c.UserID, Decision: entitle.Deny, Reason: reason})
			} else {
				out.Results = append(out.Results, entitle.Result{UserID: c.UserID, Decision: entitle.Allow, Until: h.until[c.UserID]})
			}
		}
		h.mu.Unlock()
		if h.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

func (h *payHook) setDeny(user, reason string) {
	h.mu.Lock()
	h.deny[user] = reason
	h.mu.Unlock()
}

// checked returns every user id the hook was asked about, with the largest
// number of checks one request held.
func (h *payHook) checked() (map[string]int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	users, most := map[string]int{}, 0
	for _, req := range h.requests {
		most = max(most, len(req))
		for _, c := range req {
			users[c.UserID]++
		}
	}
	return users, most
}

func paidEnv(t *testing.T, hook *payHook, failOpen, every time.Duration) *env {
	return newEnv(t, func(c *Config) {
		c.Entitle = entitle.NewPolicy(&entitle.Client{URL: hook.url, Timeout: time.Second}, failOpen, nil)
		c.EntitleEvery = every
	})
}

func TestEntitlementAtTheHandshake(t *testing.T) {
	hook := newPayHook(t)
	hook.setDeny("freeloader", "no ticket")
	e := paidEnv(t, hook, time.Minute, time.Hour)

	e.dial("host", chatfleet.RoleProducer)
	e.dial("mod", chatfleet.RoleModerator)
	e.dial("fan", chatfleet.RoleViewer)
	_, resp, err := e.dialURL(e.wsURL(url.Values{"token": {e.token("freeloader", chatfleet.RoleViewer)}}), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied viewer: %v %v, want 403", resp, err)
	}
	var body struct{ Error chatfleet.Error }
	json.NewDecoder(resp.Body).Decode(&body)
	if !strings.Contains(body.Error.Message, "no ticket") {
		t.Errorf("refusal %+v does not give the hook's reason", body.Error)
	}
	// The SSE fallback is checked the same way, before the stream starts.
	sse, err := http.Get(e.url + "/events?token=" + url.QueryEscape(e.token("freeloader", chatfleet.RoleViewer)))
	if err != nil {
		t.Fatal(err)
	}
	sse.Body.Close()
	if sse.StatusCode != http.StatusForbidden {
		t.Fatalf("denied viewer's SSE stream: %d, want 403", sse.StatusCode)
	}
	users, _ := hook.checked()
	if users["host"]+users["mod"] != 0 || users["fan"] != 1 || users["freeloader"] != 2 {
		t.Fatalf("hook asked about %v: want each viewer's handshake once, never the producer or a moderator", users)
	}
}

func TestEntitlementRecheckDisconnectsDeniedViewers(t *testing.T) {
	hook := newPayHook(t)
	e := paidEnv(t, hook, time.Minute, 100*time.Millisecond)
	prod := e.dial("host", chatfleet.RoleProducer)
	fan := e.dial("fan", chatfleet.RoleViewer)
	late := e.dial("late", chatfleet.RoleViewer)
	stays := e.dial("stays", chatfleet.RoleViewer)
	// One request per interval holds every viewer.
	testutil.Eventually(t, waitFor, func() error {
		if _, most := hook.checked(); most < 3 {
			return fmt.Errorf("largest hook request held %d checks, want the 3 viewers", most)
		}
		return nil
	})
	hook.setDeny("late", "subscription expired")
	m := late.await(protocol.TypeSystem, nil)
	if m.Kind != protocol.KindEntitlement || !strings.Contains(m.Text, "subscription expired") || m.Seq != 0 {
		t.Fatalf("denied viewer got %+v, want a private entitlement notice with the reason", m)
	}
	if reason := late.expectClose(protocol.CloseNotEntitled); !strings.Contains(reason, "subscription expired") {
		t.Fatalf("close reason %q", reason)
	}
	// The others stay and chat on.
	prod.chat("still here")
	fan.await(protocol.TypeChat, func(m protocol.ServerMsg) bool { return m.Text == "still here" })
	stays.await(protocol.TypeChat, func(m protocol.ServerMsg) bool { return m.Text == "still here" })
	if users, _ := hook.checked(); users["host"] != 0 {
		t.Fatal("the producer was checked")
	}
}

func TestEntitlementUntilSparesChecks(t *testing.T) {
	hook := newPayHook(t)
	hook.mu.Lock()
	hook.until["season"] = time.Now().Add(time.Hour)
	hook.mu.Unlock()
	e := paidEnv(t, hook, time.Minute, 50*time.Millisecond)
	e.dial("season", chatfleet.RoleViewer)
	e.dial("daily", chatfleet.RoleViewer)
	testutil.Eventually(t, waitFor, func() error {
		if users, _ := hook.checked(); users["daily"] < 4 {
			return fmt.Errorf("daily checked %d times", users["daily"])
		}
		return nil
	})
	if users, _ := hook.checked(); users["season"] != 1 {
		t.Fatalf("a viewer allowed for an hour was checked %d times, want once (the handshake)", users["season"])
	}
}

// TestEntitlementFailsClosed: with no grace, a failing hook disconnects the
// viewers at the next re-check and refuses new viewers with 503; producers
// are not affected.
func TestEntitlementFailsClosed(t *testing.T) {
	hook := newPayHook(t)
	e := paidEnv(t, hook, 0, 100*time.Millisecond)
	prod := e.dial("host", chatfleet.RoleProducer)
	fan := e.dial("fan", chatfleet.RoleViewer)
	hook.down.Store(true)
	m := fan.await(protocol.TypeSystem, nil)
	if m.Kind != protocol.KindEntitlement || m.Text != textUnavailable {
		t.Fatalf("viewer got %+v", m)
	}
	fan.expectClose(protocol.CloseNotEntitled)
	_, resp, err := e.dialURL(e.wsURL(url.Values{"token": {e.token("newfan", chatfleet.RoleViewer)}}), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("join while the hook is down: %v %v, want 503", resp, err)
	}
	prod.chat("the producer stays")
	hook.down.Store(false)
	e.dial("newfan", chatfleet.RoleViewer)
}
