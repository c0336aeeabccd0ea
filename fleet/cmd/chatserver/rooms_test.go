package main

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

const secret = "test-secret-0123456789"

func join(t *testing.T, port int, room, user string, role chatfleet.Role) *testutil.WS {
	t.Helper()
	tok := issue(t, room, user, role)
	ws := testutil.DialRoom(t, fmt.Sprintf("ws://127.0.0.1:%d", port), tok, -1)
	ws.Next(protocol.TypeWelcome, 5*time.Second)
	return ws
}

func issue(t *testing.T, room, user string, role chatfleet.Role) string {
	return testutil.Token(t, secret, room, user, role)
}

func TestGlobalMessageReachesEveryRoom(t *testing.T) {
	h := startHost(t)
	a, b := h.create("alpha"), h.create("beta")
	va := join(t, a, "alpha", "ann", chatfleet.RoleViewer)
	vb := join(t, b, "beta", "bob", chatfleet.RoleViewer)
	status, body := testutil.Do(t, "POST", h.Admin+"/api/v1/messages", adminKey, `{"text":"maintenance at noon"}`)
	if status != 200 || !strings.Contains(body, `"rooms":2`) {
		t.Fatalf("global: %d %s", status, body)
	}
	for _, ws := range []*testutil.WS{va, vb} {
		m := ws.Next(protocol.TypeSystem, 5*time.Second)
		if m.Kind != protocol.KindGlobal || m.Text != "maintenance at noon" {
			t.Fatalf("system message %+v", m)
		}
	}
}

func TestAdminCloseTellsClientsWhy(t *testing.T) {
	h := startHost(t)
	port := h.create("shut")
	v := join(t, port, "shut", "vic", chatfleet.RoleViewer)
	if status, body := testutil.Do(t, "DELETE", h.Admin+"/api/v1/rooms/shut", adminKey, `{"reason":"terms violation"}`); status != 200 {
		t.Fatalf("close: %d %s", status, body)
	}
	m := v.Next(protocol.TypeSystem, 5*time.Second)
	if m.Kind != protocol.KindClosing || !strings.Contains(m.Text, "terms violation") {
		t.Fatalf("closing notice %+v", m)
	}
	_, err := v.TryNext("never", 5*time.Second)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("connection ended with %v, want close 1001", err)
	}
}

func TestDrainClosesClientsWithRestartCode(t *testing.T) {
	h := startHost(t)
	port := h.create("draining")
	v := join(t, port, "draining", "val", chatfleet.RoleViewer)
	h.Proc.Signal(syscall.SIGTERM)
	m := v.Next(protocol.TypeSystem, 5*time.Second)
	if m.Kind != protocol.KindDrain {
		t.Fatalf("drain notice %+v", m)
	}
	_, err := v.TryNext("never", 10*time.Second)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
		t.Fatalf("connection ended with %v, want close 1012", err)
	}
	h.Proc.Wait(t, 20*time.Second)
	if listening(port) {
		t.Fatal("room port still listening after drain")
	}
}
