package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devnats"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// edge is an edge of a room as the API shows it.
type edge struct {
	HostID string `json:"hostId"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
	WSURL  string `json:"wsUrl"`
	SSEURL string `json:"sseUrl"`
}

// roles returns the rooms h runs, by name, with their roles.
func (h *host) roles(t *testing.T) map[string]string {
	t.Helper()
	status, body := testutil.Do(t, "GET", h.Admin+"/api/v1/rooms", fleetAdminKey, "")
	if status != 200 {
		t.Fatalf("host rooms: %d %s", status, body)
	}
	var out struct {
		Data struct{ Rooms []struct{ Name, Role string } }
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, r := range out.Data.Rooms {
		m[r.Name] = r.Role
	}
	return m
}

// TestRoomEdges creates a room with edges on a fleet of three hosts with
// NATS and one host that refuses every create: the origin runs on one host
// with role origin, an edge on each of the two others (the refusing host is
// skipped, and fewer edges than asked are made when no host is left); the
// store's record, the create answer and the room view list the edges;
// viewers' tokens point at the edges, moderators' at the origin, and a
// viewer joins an edge with its token; an admin close ends the room on every
// host. Out-of-range edges are refused.
func TestRoomEdges(t *testing.T) {
	lb := startLB(t)
	picker := newPicker(t, lb)
	ns, err := devnats.Start(devnats.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	hosts := map[string]*host{}
	for _, id := range []string{"h1", "h2", "h3"} {
		hosts[id] = startHostAs(t, lb, id, "NATS_URL="+ns.URL())
	}
	broken := newFakeHost(t, func(method, path string) (int, string) { return http.StatusServiceUnavailable, "host is full" })
	broken.register(t, lb, "broken", broken.URL)
	waitHostAs(t, picker, "broken", chatfleet.HostAccepting)
	st := storetest.NewStore(t)
	a := newAPIs(t, st, picker)
	ctx := context.Background()

	for _, body := range []string{`{"edges":17}`, `{"edges":-1}`, `{"edges":"2"}`} {
		call(t, "POST", a.rooms+"/api/v1/rooms/big", apiKey, body).want(t, http.StatusBadRequest, chatfleet.EINVALID)
	}

	var c struct {
		created
		Edges []edge
	}
	call(t, "POST", a.rooms+"/api/v1/rooms/spread", apiKey, `{"edges":16,"title":"Spread"}`).want(t, http.StatusCreated, "").decode(t, &c)
	if hosts[c.HostID] == nil {
		t.Fatalf("origin on %q, want a real host", c.HostID)
	}
	if len(c.Edges) != 2 {
		t.Fatalf("edges %+v, want one on each other real host", c.Edges)
	}
	edgeURLs := map[string]bool{}
	for _, e := range c.Edges {
		if e.HostID == c.HostID || hosts[e.HostID] == nil || e.WSURL != fmt.Sprintf("ws://127.0.0.1:%d/ws", e.Port) ||
			e.SSEURL != fmt.Sprintf("http://127.0.0.1:%d/events", e.Port) || e.Host != "127.0.0.1" {
			t.Fatalf("edge %+v of origin %s", e, c.HostID)
		}
		edgeURLs[e.WSURL] = true
	}
	if len(edgeURLs) != 2 {
		t.Fatalf("edges %+v, want two hosts", c.Edges)
	}
	for id, h := range hosts {
		want := "edge"
		if id == c.HostID {
			want = "origin"
		}
		if role, ok := h.roles(t)["spread"]; !ok || role != want {
			t.Errorf("host %s runs spread as %q (%v), want %q", id, role, ok, want)
		}
	}

	// The record and the view.
	r, err := st.Room(ctx, "spread")
	if err != nil {
		t.Fatal(err)
	}
	var stored []edge
	for _, e := range r.Edges {
		stored = append(stored, edge{HostID: e.HostID, Host: e.HostAddr, Port: e.Port, WSURL: e.WSURL, SSEURL: e.SSEURL})
	}
	if r.HostID != c.HostID || r.Port != c.Port || !reflect.DeepEqual(stored, c.Edges) {
		t.Fatalf("stored %+v, want origin %s:%d and edges %+v", r, c.HostID, c.Port, c.Edges)
	}
	var v struct {
		roomView
		Edges []edge
	}
	call(t, "GET", a.rooms+"/api/v1/rooms/spread", apiKey, "").want(t, http.StatusOK, "").decode(t, &v)
	if v.WSURL != c.WSURL || !reflect.DeepEqual(v.Edges, c.Edges) {
		t.Fatalf("view %+v, want the origin's wsUrl %s and the edges %+v", v, c.WSURL, c.Edges)
	}

	// Tokens: viewers on the edges (both in use), moderators on the origin.
	seen := map[string]bool{}
	var viewer tokenAnswer
	for range 64 {
		call(t, "POST", a.rooms+"/api/v1/rooms/spread/tokens", apiKey, `{"role":"viewer"}`).want(t, http.StatusCreated, "").decode(t, &viewer)
		if !edgeURLs[viewer.WSURL] {
			t.Fatalf("viewer token for %s, want an edge of %v", viewer.WSURL, edgeURLs)
		}
		seen[viewer.WSURL] = true
	}
	if len(seen) != 2 {
		t.Errorf("64 viewers went to %v only", seen)
	}
	var mod tokenAnswer
	call(t, "POST", a.rooms+"/api/v1/rooms/spread/tokens", apiKey, `{"role":"moderator","userId":"mod-1"}`).want(t, http.StatusCreated, "").decode(t, &mod)
	if mod.WSURL != c.WSURL {
		t.Errorf("moderator token for %s, want the origin's %s", mod.WSURL, c.WSURL)
	}
	// An edge takes the room's tokens (same instance).
	ws := testutil.DialRoom(t, strings.TrimSuffix(viewer.WSURL, "/ws"), viewer.Token, -1)
	if w := ws.Next(protocol.TypeWelcome, 5*time.Second); w.You == nil || w.You.Role != chatfleet.RoleViewer {
		t.Errorf("welcome on the edge %+v, want the viewer", w.You)
	}
	ws.Conn.Close()

	// An admin close ends the room on every host.
	call(t, "DELETE", a.admin+"/admin/v1/rooms/spread", adminAPIKey, "").want(t, http.StatusOK, "")
	for _, h := range hosts {
		h.waitGone(t, "spread")
	}
	if r, err := st.Room(ctx, "spread"); err != nil || r.Status.Open() {
		t.Fatalf("after the close: %+v, %v", r, err)
	}

	// A plain room has no edges, and every token points at it.
	var plain created
	call(t, "POST", a.rooms+"/api/v1/rooms/plain", apiKey, "").want(t, http.StatusCreated, "").decode(t, &plain)
	call(t, "POST", a.rooms+"/api/v1/rooms/plain/tokens", apiKey, `{}`).want(t, http.StatusCreated, "").decode(t, &viewer)
	if role := hosts[plain.HostID].roles(t)["plain"]; role != "" || viewer.WSURL != plain.WSURL {
		t.Errorf("plain room runs as %q; viewer sent to %s, want %s", role, viewer.WSURL, plain.WSURL)
	}
	if !slices.Contains(hosts[plain.HostID].rooms(t), "plain") {
		t.Errorf("plain room not on its host")
	}
}
