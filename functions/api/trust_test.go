package api_test

// Regression tests of issue 15 (trust) for the control API: each test names
// the finding it refuses.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/functions/api"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestOldInstanceTokenRefused (finding 3): a producer token of a closed room
// "show" is refused 403 at the WebSocket handshake of a new room of the same
// name, whose own producer token works. Every create gets a new instance,
// recorded in the store, passed to the host and carried by the tokens.
func TestOldInstanceTokenRefused(t *testing.T) {
	t.Parallel()
	lb := startLB(t)
	picker := newPicker(t, lb)
	h := startHost(t, lb)
	st := storetest.NewStore(t)
	a := newAPIs(t, st, picker)

	var first, second created
	call(t, "POST", a.rooms+"/api/v1/rooms/show", apiKey, "").want(t, http.StatusCreated, "").decode(t, &first)
	var viewer tokenAnswer
	call(t, "POST", a.rooms+"/api/v1/rooms/show/tokens", apiKey, `{"userId":"fan"}`).want(t, http.StatusCreated, "").decode(t, &viewer)
	call(t, "DELETE", a.rooms+"/api/v1/rooms/show", apiKey, "").want(t, http.StatusOK, "")
	h.waitGone(t, "show")
	call(t, "POST", a.rooms+"/api/v1/rooms/show", apiKey, "").want(t, http.StatusCreated, "").decode(t, &second)

	if first.Instance == "" || first.Instance == second.Instance {
		t.Fatalf("instances %q and %q, want two different ones", first.Instance, second.Instance)
	}
	if r, err := st.Room(context.Background(), "show"); err != nil || r.Instance != second.Instance {
		t.Fatalf("stored %+v, %v; want instance %s", r, err, second.Instance)
	}
	if _, err := a.tokens.Verify(first.Token, "show", second.Instance); chatfleet.ErrorCode(err) != chatfleet.EFORBIDDEN {
		t.Errorf("the first room's token verifies for the second: %v", err)
	}
	base := strings.TrimSuffix(second.WSURL, "/ws")
	for _, old := range []struct{ who, token string }{{"producer", first.Token}, {"viewer", viewer.Token}} {
		ws, resp, err := testutil.TryDialRoom(base, old.token, -1)
		if err == nil {
			ws.Conn.Close()
			t.Errorf("the closed room's %s token connects to the new room", old.who)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("the closed room's %s token: %v, want a 403 handshake", old.who, err)
		}
	}
	ws := testutil.DialRoom(t, base, second.Token, -1)
	if w := ws.Next(protocol.TypeWelcome, 5*time.Second); w.You == nil || w.You.Role != chatfleet.RoleProducer || w.You.UserID != second.OwnerID {
		t.Errorf("welcome %+v, want the new room's producer %s", w.You, second.OwnerID)
	}
}

// TestReservedUserIDs (finding 4): no token but the producer's carries the
// room's owner id, and no token claims an id of the guests' namespace.
func TestReservedUserIDs(t *testing.T) {
	t.Parallel()
	lb := startLB(t)
	picker := newPicker(t, lb)
	startHost(t, lb)
	st := storetest.NewStore(t)
	a := newAPIs(t, st, picker)

	var one, two, named created
	call(t, "POST", a.rooms+"/api/v1/rooms/one", apiKey, "").want(t, http.StatusCreated, "").decode(t, &one)
	call(t, "POST", a.rooms+"/api/v1/rooms/two", apiKey, "").want(t, http.StatusCreated, "").decode(t, &two)
	call(t, "POST", a.rooms+"/api/v1/rooms/named", apiKey, `{"ownerId":"user-7","ownerName":"Ann"}`).want(t, http.StatusCreated, "").decode(t, &named)
	if one.OwnerID == two.OwnerID || !strings.HasPrefix(one.OwnerID, "owner-") || !strings.HasPrefix(two.OwnerID, "owner-") {
		t.Errorf("owner ids %q and %q, want two different generated ones", one.OwnerID, two.OwnerID)
	}
	for _, c := range []created{one, two, named} {
		claims, err := a.tokens.Verify(c.Token, c.Name, c.Instance)
		if err != nil || claims.UserID() != c.OwnerID || c.UserID != c.OwnerID || claims.Role != chatfleet.RoleProducer {
			t.Errorf("%s: producer token %+v, %v; want the owner %s", c.Name, claims, err, c.OwnerID)
		}
	}
	if named.OwnerID != "user-7" {
		t.Errorf("owner %q, want user-7", named.OwnerID)
	}
	if claims, _ := a.tokens.Verify(named.Token, "named", named.Instance); claims == nil || claims.Name != "Ann" {
		t.Errorf("producer display name: %+v, want Ann", claims)
	}

	// A room stored before owners existed: its producer is "producer".
	if err := st.CreateRoom(context.Background(), &chatfleet.Room{Name: "legacy", HostID: hostID, HostAddr: "127.0.0.1", Port: 40000, Status: chatfleet.RoomOffline}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ room, body string }{
		{"one", `{"userId":"` + one.OwnerID + `"}`},
		{"one", `{"userId":"` + one.OwnerID + `","role":"viewer"}`},
		{"one", `{"userId":"` + one.OwnerID + `","role":"moderator"}`},
		{"named", `{"userId":"user-7","role":"moderator"}`},
		{"legacy", `{"userId":"producer"}`},
		{"one", `{"userId":"guest-abc"}`},
		{"one", `{"userId":"guest-abc","role":"moderator"}`},
		{"one", `{"role":"producer"}`},
		{"one", `{"userId":"anyone","role":"producer"}`},
	} {
		ans := call(t, "POST", a.rooms+"/api/v1/rooms/"+tt.room+"/tokens", apiKey, tt.body).want(t, http.StatusForbidden, chatfleet.EFORBIDDEN)
		if ans.Error.Message == "" {
			t.Errorf("%s %s: refused without a reason", tt.room, tt.body)
		}
	}
	// The owner of one room is an ordinary user of another.
	var tok tokenAnswer
	call(t, "POST", a.rooms+"/api/v1/rooms/two/tokens", apiKey, `{"userId":"`+one.OwnerID+`"}`).want(t, http.StatusCreated, "").decode(t, &tok)
	// Generated guests keep their namespace.
	call(t, "POST", a.rooms+"/api/v1/rooms/one/tokens", apiKey, "").want(t, http.StatusCreated, "").decode(t, &tok)
	if !strings.HasPrefix(tok.UserID, "guest-") {
		t.Errorf("generated user id %q, want guest-…", tok.UserID)
	}
}

// TestCreateRefusesPrivateWebhooks (finding 5, API half): a webhook URL
// whose host is a literal loopback, private, link-local (metadata), CGNAT
// or otherwise non-public address, in any spelling, is a 400 naming
// webhookUrls before any host is asked; WEBHOOK_ALLOW_PRIVATE=1 lets it
// through.
func TestCreateRefusesPrivateWebhooks(t *testing.T) {
	t.Parallel()
	lb := startLB(t) // no host: a create that passes validation is a 503
	st := storetest.NewStore(t)
	a := newAPIs(t, st, newPicker(t, lb))
	dev := newAPIs(t, st, newPicker(t, lb), allowPrivateHooks)
	for _, u := range []string{
		"http://127.0.0.1:9999/x", "http://10.0.0.5/hook", "http://192.168.1.1/", "http://172.16.0.1/",
		"http://169.254.169.254/latest/meta-data/", "http://[::1]:8090/api/v1/rooms", "http://[::ffff:127.0.0.1]/",
		"http://[fd00::1]/", "http://100.64.0.1/", "http://0.0.0.0:8090/", "http://localhost:8090/api/v1/rooms",
		"http://2130706433/", "http://0x7f000001/", "http://127.1/",
	} {
		body, _ := json.Marshal(map[string]any{"webhookUrls": []string{"https://hooks.example.com/ok", u}})
		ans := call(t, "POST", a.rooms+"/api/v1/rooms/hooked", apiKey, string(body)).want(t, http.StatusBadRequest, chatfleet.EINVALID)
		if !strings.Contains(ans.Error.Message, "webhookUrls") {
			t.Errorf("%s: message %q does not name webhookUrls", u, ans.Error.Message)
		}
		call(t, "POST", dev.rooms+"/api/v1/rooms/hooked", apiKey, string(body)).want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
	}
	// Names and public addresses pass (what names resolve to is the hosts'
	// check, at dial time).
	for _, u := range []string{"https://hooks.example.com/x", "http://93.184.215.14/x", "https://[2606:4700::1111]/x"} {
		body, _ := json.Marshal(map[string]any{"webhookUrls": []string{u}})
		call(t, "POST", a.rooms+"/api/v1/rooms/hooked", apiKey, string(body)).want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
	}
	call(t, "GET", a.rooms+"/api/v1/rooms/hooked", apiKey, "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
}

// TestBanAdmin (finding 1, API half): the operator's ban administration.
// Each change is written to the store, then pushed to the hosts' admin
// ports (a recording host registered with a real load balancer stands for
// them), and audited.
func TestBanAdmin(t *testing.T) {
	t.Parallel()
	lb := startLB(t)
	picker := newPicker(t, lb)
	fake := newFakeHost(t, func(method, path string) (int, string) {
		if method == "POST" && path == "/api/v1/bans" {
			return http.StatusOK, `{"rooms":3}`
		}
		return http.StatusServiceUnavailable, "not a room host"
	})
	fake.register(t, lb, "fake-1", fake.URL)
	waitHostID(t, picker, "fake-1")
	st := storetest.NewStore(t)
	a := newAPIs(t, st, picker)
	ctx := context.Background()
	admin := func(method, path, body string) answer {
		t.Helper()
		return call(t, method, a.admin+path, adminAPIKey, body)
	}
	type banAnswer struct {
		Ban          chatfleet.Ban
		Hosts, Rooms int
		Failed       []struct{ HostID, Error string }
		Down         []string
	}
	type unbanAnswer struct {
		Removed      int
		Bans         []chatfleet.Ban
		Hosts, Rooms int
		Failed       []struct{ HostID, Error string }
	}

	var spam banAnswer
	t.Run("add", func(t *testing.T) {
		before := time.Now()
		admin("POST", "/admin/v1/bans", `{"userId":"spammer","reason":"spam","minutes":60}`).want(t, http.StatusCreated, "").decode(t, &spam)
		b := spam.Ban
		if b.ID == "" || b.UserID != "spammer" || b.Room != "" || b.By != "admin" || b.Reason != "spam" ||
			b.Until.Before(before.Add(59*time.Minute)) || b.Until.After(time.Now().Add(61*time.Minute)) {
			t.Errorf("ban %+v, want a fleet ban of spammer for an hour", b)
		}
		if spam.Hosts != 1 || spam.Rooms != 3 || len(spam.Failed) != 0 {
			t.Errorf("answer %+v, want 1 host, 3 rooms, no failure", spam)
		}
		pushes := fake.banPushes(t)
		if len(pushes) != 1 || len(pushes[0].Add) != 1 || pushes[0].Add[0].ID != b.ID || pushes[0].Add[0].Room != "" || len(pushes[0].Remove) != 0 {
			t.Fatalf("the host got %+v, want the one ban added", pushes)
		}
		stored, err := st.Bans(ctx, chatfleet.BanFilter{})
		if err != nil || len(stored) != 1 || stored[0].ID != b.ID {
			t.Errorf("stored fleet bans %+v, %v", stored, err)
		}
		var forever banAnswer
		admin("POST", "/admin/v1/bans", `{"userId":"troll"}`).want(t, http.StatusCreated, "").decode(t, &forever)
		if !forever.Ban.Until.IsZero() {
			t.Errorf("ban without minutes until %v, want forever", forever.Ban.Until)
		}
	})

	// Room bans, as rooms store them, for the listing and the room removal.
	if err := st.CreateRoom(ctx, &chatfleet.Room{Name: "lobby", HostID: "fake-1", HostAddr: "127.0.0.1", Port: 40000, Status: chatfleet.RoomOffline}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"r1", "r2", "r1"} {
		if err := st.AddBan(ctx, &chatfleet.Ban{UserID: u, Room: "lobby", By: "mod"}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("list", func(t *testing.T) {
		for i := range 3 {
			admin("POST", "/admin/v1/bans", fmt.Sprintf(`{"userId":"u%d"}`, i)).want(t, http.StatusCreated, "")
		}
		type page struct {
			Bans       []chatfleet.Ban
			NextCursor string
		}
		var all page
		admin("GET", "/admin/v1/bans", "").want(t, http.StatusOK, "").decode(t, &all)
		if len(all.Bans) != 5 || all.NextCursor != "" {
			t.Fatalf("fleet bans %+v, want 5 and no next page", all)
		}
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("no end of the pages")
			}
			var p page
			admin("GET", "/admin/v1/bans?limit=2&cursor="+url.QueryEscape(cursor), "").want(t, http.StatusOK, "").decode(t, &p)
			if len(p.Bans) > 2 {
				t.Fatalf("page of %d", len(p.Bans))
			}
			for _, b := range p.Bans {
				got = append(got, b.ID)
				if b.Room != "" {
					t.Errorf("a room ban in the fleet listing: %+v", b)
				}
			}
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
		var want []string
		for _, b := range all.Bans {
			want = append(want, b.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("paged through %v, want %v", got, want)
		}
		var room page
		admin("GET", "/admin/v1/bans?room=lobby", "").want(t, http.StatusOK, "").decode(t, &room)
		if len(room.Bans) != 3 || room.Bans[0].Room != "lobby" {
			t.Errorf("lobby's bans %+v, want 3", room.Bans)
		}
	})

	t.Run("remove fleet bans", func(t *testing.T) {
		var out unbanAnswer
		admin("DELETE", "/admin/v1/bans/spammer", "").want(t, http.StatusOK, "").decode(t, &out)
		if out.Removed != 1 || out.Hosts != 1 || len(out.Failed) != 0 || out.Bans[0].ID != spam.Ban.ID {
			t.Errorf("answer %+v", out)
		}
		pushes := fake.banPushes(t)
		if last := pushes[len(pushes)-1]; len(last.Remove) != 1 || last.Remove[0].ID != spam.Ban.ID || len(last.Add) != 0 {
			t.Errorf("the host got %+v, want the ban removed", last)
		}
		admin("DELETE", "/admin/v1/bans/spammer", "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
		// Room bans are not the fleet's.
		admin("DELETE", "/admin/v1/bans/r1", "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
	})

	t.Run("remove room bans", func(t *testing.T) {
		n := len(fake.banPushes(t))
		var out unbanAnswer
		admin("DELETE", "/admin/v1/rooms/lobby/bans/r1", "").want(t, http.StatusOK, "").decode(t, &out)
		if out.Removed != 2 || out.Hosts != 1 || len(out.Failed) != 0 {
			t.Errorf("answer %+v, want 2 removed on the room's host", out)
		}
		pushes := fake.banPushes(t)
		if len(pushes) != n+1 || len(pushes[n].Remove) != 2 || pushes[n].Remove[0].Room != "lobby" {
			t.Errorf("the host got %+v, want lobby's 2 bans of r1 removed", pushes[n:])
		}
		admin("DELETE", "/admin/v1/rooms/lobby/bans/r1", "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
		if left, _ := st.Bans(ctx, chatfleet.BanFilter{Room: "lobby"}); len(left) != 1 || left[0].UserID != "r2" {
			t.Errorf("lobby's bans left %+v, want r2's", left)
		}
		// A room that is not running: the store alone.
		if err := st.AddBan(ctx, &chatfleet.Ban{UserID: "r3", Room: "gone", By: "mod"}); err != nil {
			t.Fatal(err)
		}
		admin("DELETE", "/admin/v1/rooms/gone/bans/r3", "").want(t, http.StatusOK, "").decode(t, &out)
		if out.Removed != 1 || out.Hosts != 0 || len(fake.banPushes(t)) != n+1 {
			t.Errorf("answer %+v; no host runs gone", out)
		}
	})

	t.Run("cap", func(t *testing.T) {
		capped := newAPIs(t, st, picker, func(c *api.Config) { c.MaxFleetBans = 4 })
		n, _ := st.CountBans(ctx, "", time.Now())
		if n != 4 {
			t.Fatalf("%d fleet bans, want 4", n)
		}
		ans := call(t, "POST", capped.admin+"/admin/v1/bans", adminAPIKey, `{"userId":"one-too-many"}`).want(t, http.StatusConflict, chatfleet.ECONFLICT)
		if !strings.Contains(ans.Error.Message, "MAX_FLEET_BANS") {
			t.Errorf("message %q does not name the limit", ans.Error.Message)
		}
		if m, _ := st.CountBans(ctx, "", time.Now()); m != 4 {
			t.Errorf("%d fleet bans after a refused one", m)
		}
		call(t, "DELETE", capped.admin+"/admin/v1/bans/u0", adminAPIKey, "").want(t, http.StatusOK, "")
		call(t, "POST", capped.admin+"/admin/v1/bans", adminAPIKey, `{"userId":"one-too-many"}`).want(t, http.StatusCreated, "")
	})

	t.Run("audit", func(t *testing.T) {
		var log struct{ Entries []chatfleet.AuditEntry }
		admin("GET", "/admin/v1/audit?limit=1000", "").want(t, http.StatusOK, "").decode(t, &log)
		var got []string
		for _, e := range log.Entries {
			if e.Actor != "admin" {
				t.Errorf("entry %+v, want actor admin", e)
			}
			got = append(got, e.Action+" "+e.Target)
		}
		for _, want := range []string{"ban.add spammer", "ban.add troll", "ban.remove spammer", "roomban.remove r1", "roomban.remove r3", "ban.remove u0", "ban.add one-too-many"} {
			if !slices.Contains(got, want) {
				t.Errorf("audit log %v lacks %q", got, want)
			}
		}
		if slices.Contains(got, "ban.add one-too-many") && strings.Count(strings.Join(got, ","), "ban.add one-too-many") != 1 {
			t.Errorf("the refused ban was audited: %v", got)
		}
	})
}

// waitHostID waits until the load balancers list host id.
func waitHostID(t *testing.T, p api.HostPicker, id string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		hosts, err := p.Hosts(t.Context())
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.ID == id {
				return nil
			}
		}
		return fmt.Errorf("host %s not listed", id)
	})
}

// TestHostsOutsideAllowedNetworks (finding 9, second half): a host
// registered (with the load-balancer key) at an address outside
// FLEET_HOSTS_ALLOW never receives a request, so never a fleet key: not for
// a create, which fails 503, nor for an admin call, which reports it. An
// address given as a name is checked on what it resolves to.
func TestHostsOutsideAllowedNetworks(t *testing.T) {
	t.Parallel()
	lb := startLB(t)
	picker := newPicker(t, lb)
	fake := newFakeHost(t, func(method, path string) (int, string) {
		return http.StatusServiceUnavailable, "full"
	})
	st := storetest.NewStore(t)
	only10 := func(c *api.Config) { c.HostsAllow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }
	a := newAPIs(t, st, picker, only10)
	port := strings.TrimPrefix(fake.URL, "http://127.0.0.1")

	for _, base := range []string{fake.URL, "http://localhost" + port} {
		t.Run(base, func(t *testing.T) {
			fake.register(t, lb, "forged", base)
			testutil.Eventually(t, 10*time.Second, func() error {
				hosts, err := picker.Hosts(t.Context())
				if err != nil || len(hosts) != 1 || hosts[0].APIURL != base {
					return fmt.Errorf("hosts %+v, %v", hosts, err)
				}
				return nil
			})
			ans := call(t, "POST", a.rooms+"/api/v1/rooms/stolen", apiKey, "").want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
			if !strings.Contains(ans.Error.Message, "no host could create the room (1 tried)") {
				t.Errorf("message %q", ans.Error.Message)
			}
			var msg struct {
				Hosts  int
				Failed []struct{ HostID, Error string }
			}
			call(t, "POST", a.admin+"/admin/v1/messages", adminAPIKey, `{"text":"hi"}`).want(t, http.StatusOK, "").decode(t, &msg)
			if msg.Hosts != 0 || len(msg.Failed) != 1 || !strings.Contains(msg.Failed[0].Error, "FLEET_HOSTS_ALLOW") {
				t.Errorf("global message %+v, want the host reported outside FLEET_HOSTS_ALLOW", msg)
			}
			call(t, "POST", a.admin+"/admin/v1/bans", adminAPIKey, `{"userId":"x"}`).want(t, http.StatusCreated, "").decode(t, &msg)
			if msg.Hosts != 0 || len(msg.Failed) != 1 || !strings.Contains(msg.Failed[0].Error, "FLEET_HOSTS_ALLOW") {
				t.Errorf("ban %+v, want the host reported outside FLEET_HOSTS_ALLOW", msg)
			}
			call(t, "POST", a.admin+"/admin/v1/hosts/forged/drain", adminAPIKey, "").want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
			if reqs := fake.requests(); len(reqs) != 0 {
				t.Fatalf("the forged host got %d requests, the first %s %s with key %q", len(reqs), reqs[0].Method, reqs[0].Path, reqs[0].Key)
			}
		})
	}

	// The same host inside the allowed networks (loopback, by default) is
	// called: the listener does count what reaches it.
	t.Run("allowed", func(t *testing.T) {
		def := newAPIs(t, st, picker)
		call(t, "POST", def.rooms+"/api/v1/rooms/allowed", apiKey, "").want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
		reqs := fake.requests()
		if len(reqs) == 0 || reqs[0].Key != fleetKey || reqs[0].Path != "/api/v1/room/allowed" {
			t.Fatalf("requests %+v, want the create with the fleet key", reqs)
		}
	})
}

// TestRefusedHostSkipped (finding 9, second half): a create that is
// offered a host outside FLEET_HOSTS_ALLOW first (the forged host is the
// only one in the asked region) skips it for another, which creates the
// room; the forged host never gets a request.
func TestRefusedHostSkipped(t *testing.T) {
	t.Parallel()
	lb := startLB(t)
	picker := newPicker(t, lb)
	startHost(t, lb)
	forged := newFakeHostOn(t, "127.0.0.2", func(method, path string) (int, string) { return http.StatusOK, `{"port":40000}` })
	forged.register(t, lb, "forged", forged.URL)
	waitHostID(t, picker, "forged")
	a := newAPIs(t, storetest.NewStore(t), picker, func(c *api.Config) {
		c.HostsAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	for i := range 3 {
		var c created
		call(t, "POST", a.rooms+fmt.Sprintf("/api/v1/rooms/skip%d", i), apiKey, `{"region":"eu-west-1"}`).want(t, http.StatusCreated, "").decode(t, &c)
		if c.HostID != hostID {
			t.Errorf("created on %s, want %s", c.HostID, hostID)
		}
	}
	if reqs := forged.requests(); len(reqs) != 0 {
		t.Fatalf("the forged host got %d requests", len(reqs))
	}
}

// TestFleetBanReachesRooms checks end to end that a fleet ban made through
// the admin API disconnects the user from a room of a real host and keeps
// them out, and that its removal lets them in again. It needs the host side
// of POST /api/v1/bans (fleet/internal/master).
func TestFleetBanReachesRooms(t *testing.T) {
	t.Parallel()
	lb := startLB(t)
	picker := newPicker(t, lb)
	startHost(t, lb)
	a := newAPIs(t, storetest.NewStore(t), picker)

	var room created
	call(t, "POST", a.rooms+"/api/v1/rooms/banned", apiKey, "").want(t, http.StatusCreated, "").decode(t, &room)
	var tok tokenAnswer
	call(t, "POST", a.rooms+"/api/v1/rooms/banned/tokens", apiKey, `{"userId":"troll"}`).want(t, http.StatusCreated, "").decode(t, &tok)
	base := strings.TrimSuffix(room.WSURL, "/ws")
	ws := testutil.DialRoom(t, base, tok.Token, -1)
	ws.Next(protocol.TypeWelcome, 5*time.Second)

	var out struct{ Hosts, Rooms int }
	start := time.Now()
	call(t, "POST", a.admin+"/admin/v1/bans", adminAPIKey, `{"userId":"troll","reason":"abuse"}`).want(t, http.StatusCreated, "").decode(t, &out)
	if out.Hosts != 1 || out.Rooms < 1 {
		t.Errorf("ban reached %+v, want the host and its room", out)
	}
	if _, err := ws.TryNext("never", 5*time.Second); ws.Closed == nil {
		t.Fatalf("the banned user is still connected after 5s (%v)", err)
	}
	t.Logf("the fleet ban closed the connection (%d) %v after the request", ws.Closed.Code, time.Since(start))
	refused := func() error {
		w, resp, err := testutil.TryDialRoom(base, tok.Token, -1)
		if err == nil {
			w.Conn.Close()
			return errors.New("the banned user connects")
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			return fmt.Errorf("dial: %v, want 403", err)
		}
		return nil
	}
	testutil.Eventually(t, time.Second, refused)

	start = time.Now()
	call(t, "DELETE", a.admin+"/admin/v1/bans/troll", adminAPIKey, "").want(t, http.StatusOK, "")
	defer func() { t.Logf("the user got in again %v after the removal's request", time.Since(start)) }()
	testutil.Eventually(t, time.Second, func() error {
		w, _, err := testutil.TryDialRoom(base, tok.Token, -1)
		if err != nil {
			return fmt.Errorf("still refused after the removal: %w", err)
		}
		w.Conn.Close()
		return nil
	})
}

// TestBanWithoutLoadBalancers: a fleet ban is the store's once written; if
// the load balancers cannot list the hosts, the answer says the hosts will
// read it at their next refresh.
func TestBanWithoutLoadBalancers(t *testing.T) {
	t.Parallel()
	st := storetest.NewStore(t)
	a := newAPIs(t, st, newPicker(t, deadURL(t)))
	var out struct {
		Ban    chatfleet.Ban
		Hosts  int
		Failed []struct{ HostID, Error string }
	}
	call(t, "POST", a.admin+"/admin/v1/bans", adminAPIKey, `{"userId":"u1"}`).want(t, http.StatusCreated, "").decode(t, &out)
	if out.Hosts != 0 || len(out.Failed) != 1 || !strings.Contains(out.Failed[0].Error, "next refresh") {
		t.Errorf("answer %+v, want one failure saying the hosts read it at their next refresh", out)
	}
	if bans, err := st.Bans(context.Background(), chatfleet.BanFilter{}); err != nil || len(bans) != 1 || bans[0].ID != out.Ban.ID {
		t.Errorf("stored %+v, %v", bans, err)
	}
}
