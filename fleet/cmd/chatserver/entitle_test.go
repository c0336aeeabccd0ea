package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// payService is a real entitlement hook (an HTTP server of the test
// process): it allows everyone but the denied users, and hangs every
// request while hang is set.
type payService struct {
	url  string
	hang atomic.Bool

	mu     sync.Mutex
	deny   map[string]string
	asked  map[string]int // user id -> checks
	roles  map[chatfleet.Role]int
	most   int // checks in the largest request
	stopCh chan struct{}
}

func newPayService(t *testing.T) *payService {
	ps := &payService{deny: map[string]string{}, asked: map[string]int{}, roles: map[chatfleet.Role]int{}, stopCh: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Checks []struct {
				UserID string         `json:"userId"`
				Room   string         `json:"room"`
				Role   chatfleet.Role `json:"role"`
			} `json:"checks"`
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			t.Errorf("entitlement request %q: %v", body, err)
		}
		if ps.hang.Load() {
			select {
			case <-r.Context().Done():
			case <-ps.stopCh:
			}
			return
		}
		type result struct {
			UserID   string `json:"userId"`
			Decision string `json:"decision"`
			Reason   string `json:"reason,omitempty"`
		}
		var out struct {
			Results []result `json:"results"`
		}
		ps.mu.Lock()
		ps.most = max(ps.most, len(req.Checks))
		for _, c := range req.Checks {
			ps.asked[c.UserID]++
			ps.roles[c.Role]++
			if reason, ok := ps.deny[c.UserID]; ok {
				out.Results = append(out.Results, result{c.UserID, "deny", reason})
			} else {
				out.Results = append(out.Results, result{c.UserID, "allow", ""})
			}
		}
		ps.mu.Unlock()
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(func() { close(ps.stopCh); srv.Close() })
	ps.url = srv.URL + "/entitlements"
	return ps
}

func (ps *payService) setDeny(user, reason string) {
	ps.mu.Lock()
	ps.deny[user] = reason
	ps.mu.Unlock()
}

// refusedWith dials the room as a viewer and returns the handshake's status
// (0 if it was accepted).
func refusedWith(t *testing.T, port int, room, user string) int {
	t.Helper()
	ws, resp, err := testutil.TryDialRoom(fmt.Sprintf("ws://127.0.0.1:%d", port), issue(t, room, user, chatfleet.RoleViewer), -1)
	if err == nil {
		ws.Conn.Close()
		return 0
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	return resp.StatusCode
}

// closedWith waits for ws to be closed and returns the close frame.
func closedWith(t *testing.T, ws *testutil.WS, within time.Duration) *websocket.CloseError {
	t.Helper()
	_, err := ws.TryNext("never", within)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("connection ended with %v, want a close frame", err)
	}
	return ce
}

// TestEntitlementHookDeniesMidSession: in a paid room the hook is asked at
// every viewer's handshake and then every ENTITLEMENT_INTERVAL, in one
// request for all viewers; a viewer it stops allowing gets a system message
// with the reason and is closed with 4005; producers and moderators are
// never asked about.
func TestEntitlementHookDeniesMidSession(t *testing.T) {
	ps := newPayService(t)
	h := startHost(t, "ENTITLEMENT_URL="+ps.url, "ENTITLEMENT_SECRET="+entSecret, "ENTITLEMENT_INTERVAL=1s")
	port := h.createWith("paid", hostapi.RoomOptions{Paid: true})
	free := h.create("free")
	prod := join(t, port, "paid", "pia", chatfleet.RoleProducer)
	join(t, port, "paid", "moe", chatfleet.RoleModerator)
	fan := join(t, port, "paid", "fan", chatfleet.RoleViewer)
	lapsed := join(t, port, "paid", "lapsed", chatfleet.RoleViewer)
	join(t, free, "free", "anyone", chatfleet.RoleViewer)
	testutil.Eventually(t, 10*time.Second, func() error {
		ps.mu.Lock()
		defer ps.mu.Unlock()
		if ps.most < 2 {
			return fmt.Errorf("largest request held %d checks; want both viewers in one", ps.most)
		}
		return nil
	})

	ps.setDeny("lapsed", "subscription expired")
	m := lapsed.Next(protocol.TypeSystem, 5*time.Second)
	if m.Kind != protocol.KindEntitlement || !strings.Contains(m.Text, "subscription expired") {
		t.Fatalf("denied viewer got %+v", m)
	}
	if ce := closedWith(t, lapsed, 5*time.Second); ce.Code != protocol.CloseNotEntitled {
		t.Fatalf("denied viewer closed with %d %q, want 4005", ce.Code, ce.Text)
	}
	if status := refusedWith(t, port, "paid", "lapsed"); status != http.StatusForbidden {
		t.Fatalf("denied viewer's new handshake: %d, want 403", status)
	}
	prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "for subscribers", ClientID: "c1"})
	if m := fan.Next(protocol.TypeChat, 5*time.Second); m.Text != "for subscribers" {
		t.Fatalf("allowed viewer got %+v", m)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.roles[chatfleet.RoleProducer]+ps.roles[chatfleet.RoleModerator] != 0 || ps.asked["anyone"] != 0 {
		t.Fatalf("asked about roles %v and users %v: only viewers of paid rooms are checked", ps.roles, ps.asked)
	}
}

// TestEntitlementHookTimeoutPolicy: a hook that stops answering (every call
// times out) is failed open for ENTITLEMENT_FAIL_OPEN after its last answer
// (new viewers get in), then closed: viewers are disconnected with the
// reason and new ones refused with 503, until the hook answers again.
func TestEntitlementHookTimeoutPolicy(t *testing.T) {
	ps := newPayService(t)
	h := startHost(t, "ENTITLEMENT_URL="+ps.url, "ENTITLEMENT_SECRET="+entSecret, "ENTITLEMENT_INTERVAL=1s", "ENTITLEMENT_TIMEOUT=300ms", "ENTITLEMENT_FAIL_OPEN=6s")
	port := h.createWith("gated", hostapi.RoomOptions{Paid: true})
	prod := join(t, port, "gated", "pia", chatfleet.RoleProducer)
	early := join(t, port, "gated", "early", chatfleet.RoleViewer)

	ps.hang.Store(true)
	// Open: within the grace a new viewer gets in although the hook hangs.
	late := join(t, port, "gated", "late", chatfleet.RoleViewer)
	// Closed: past the grace the viewers are disconnected, with the reason.
	for _, ws := range []*testutil.WS{early, late} {
		m := ws.Next(protocol.TypeSystem, 15*time.Second)
		if m.Kind != protocol.KindEntitlement || !strings.Contains(m.Text, "unavailable") {
			t.Fatalf("viewer got %+v", m)
		}
		if ce := closedWith(t, ws, 5*time.Second); ce.Code != protocol.CloseNotEntitled {
			t.Fatalf("closed with %d %q, want 4005", ce.Code, ce.Text)
		}
	}
	if status := refusedWith(t, port, "gated", "newcomer"); status != http.StatusServiceUnavailable {
		t.Fatalf("join while the hook is down past the grace: %d, want 503", status)
	}
	// The producer is never affected.
	prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "still on air", ClientID: "c1"})
	if m := prod.Next(protocol.TypeChat, 5*time.Second); m.Text != "still on air" {
		t.Fatalf("producer got %+v", m)
	}
	ps.hang.Store(false)
	join(t, port, "gated", "newcomer", chatfleet.RoleViewer)
}
