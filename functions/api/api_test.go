package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/lbclient"
	"github.com/chatfleet/chatfleet/mongo"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/webhook"
	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// created is the answer to a create.
type created struct {
	Name, Instance      string
	OwnerID             string `json:"ownerId"`
	WebhookSecret       string `json:"webhookSecret"`
	HostID, Host        string
	Port                int
	WSURL               string `json:"wsUrl"`
	SSEURL              string `json:"sseUrl"`
	Role, UserID, Token string
	ExpiresAt           time.Time
}

// roomView is a room as the API shows it.
type roomView struct {
	Name, Title, Status, Producer, HostID, Host string
	ProducerLive                                bool
	OwnerID                                     string `json:"ownerId"`
	OwnerName                                   string `json:"ownerName"`
	Instance                                    string
	Viewers, Port                               int
	WSURL                                       string `json:"wsUrl"`
	SSEURL                                      string `json:"sseUrl"`
	HLSURL                                      string `json:"hlsUrl"`
}

type tokenAnswer struct {
	Room, Role, UserID, Name, Token string
	ExpiresAt                       time.Time
	WSURL                           string `json:"wsUrl"`
}

// TestControlAPI runs the room and admin APIs against the embedded store, a
// real load balancer and a real chatserver, shared by the subtests, which
// run in order.
func TestControlAPI(t *testing.T) {
	lb := startLB(t)
	picker := newPicker(t, lb)

	t.Run("no host", func(t *testing.T) {
		a := newAPIs(t, storetest.NewStore(t), picker)
		ans := call(t, "POST", a.rooms+"/api/v1/rooms/nohost", apiKey, "").want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
		if !strings.Contains(ans.Error.Message, "no host") {
			t.Errorf("message %q does not say there is no host", ans.Error.Message)
		}
		call(t, "GET", a.rooms+"/api/v1/rooms/nohost", apiKey, "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
	})

	h := startHost(t, lb, "WEBHOOK_SECRET="+webhookSecret)
	st := storetest.NewStore(t)
	a := newAPIs(t, st, picker, allowPrivateHooks)
	ctx := context.Background()
	hooks := newHookReceiver(t)
	var lobby created

	t.Run("create", func(t *testing.T) {
		before := time.Now()
		call(t, "POST", a.rooms+"/api/v1/rooms/lobby", apiKey,
			`{"hlsUrl":"https://cdn.example.com/lobby/index.m3u8","allowAnonymous":true,"webhookUrls":["`+hooks.URL+`"]}`).
			want(t, http.StatusCreated, "").decode(t, &lobby)
		hooks.trust(lobby.WebhookSecret)
		if len(lobby.WebhookSecret) != 64 || strings.Trim(lobby.WebhookSecret, "0123456789abcdef") != "" {
			t.Errorf("webhookSecret %q, want 32 random bytes in hex", lobby.WebhookSecret)
		}
		if len(lobby.Instance) != 32 || !strings.HasPrefix(lobby.OwnerID, "owner-") || lobby.UserID != lobby.OwnerID {
			t.Errorf("created %+v, want a 128-bit instance and a generated owner id as the producer's", lobby)
		}
		if lobby.Name != "lobby" || lobby.HostID != hostID || lobby.Host != "127.0.0.1" || lobby.Port < h.RoomMin || lobby.Port > h.RoomMax {
			t.Fatalf("created %+v, want lobby on %s 127.0.0.1 in %d-%d", lobby, hostID, h.RoomMin, h.RoomMax)
		}
		if want := fmt.Sprintf("ws://127.0.0.1:%d/ws", lobby.Port); lobby.WSURL != want {
			t.Errorf("wsUrl %q, want %q", lobby.WSURL, want)
		}
		if want := fmt.Sprintf("http://127.0.0.1:%d/events", lobby.Port); lobby.SSEURL != want {
			t.Errorf("sseUrl %q, want %q", lobby.SSEURL, want)
		}
		c, err := a.tokens.Verify(lobby.Token, "lobby", lobby.Instance)
		if err != nil || c.Role != chatfleet.RoleProducer || c.UserID() != lobby.UserID || lobby.Role != "producer" || c.Inst != lobby.Instance {
			t.Fatalf("producer token: claims %+v, err %v", c, err)
		}
		if _, err := a.tokens.Verify(lobby.Token, "other", ""); chatfleet.ErrorCode(err) != chatfleet.EFORBIDDEN {
			t.Errorf("the token verifies for another room: %v", err)
		}
		if !lobby.ExpiresAt.Equal(c.ExpiresAt.Time) || lobby.ExpiresAt.Before(before.Add(24*time.Hour-time.Second)) {
			t.Errorf("expiresAt %v, token expiry %v, want a day from now", lobby.ExpiresAt, c.ExpiresAt)
		}
		// The room runs on the host and lets the producer in with the token.
		ws := testutil.DialRoom(t, strings.TrimSuffix(lobby.WSURL, "/ws"), lobby.Token, -1)
		if w := ws.Next(protocol.TypeWelcome, 5*time.Second); w.You == nil || w.You.Role != chatfleet.RoleProducer {
			t.Errorf("welcome %+v, want the producer", w.You)
		}
		ws.Conn.Close()
		r, err := st.Room(ctx, "lobby")
		if err != nil || r.HostID != hostID || r.Port != lobby.Port || !r.Status.Open() || r.HLSURL != "https://cdn.example.com/lobby/index.m3u8" ||
			r.Instance != lobby.Instance || r.OwnerID != lobby.OwnerID {
			t.Fatalf("stored room %+v, %v", r, err)
		}
		// The host got the room's webhookUrls: it delivers the room's events
		// there, signed with its WEBHOOK_SECRET.
		if ev := hooks.wait(t, "lobby", webhook.TypeRoomOpened); ev.Port != lobby.Port || ev.HostID != hostID {
			t.Errorf("room.opened %+v, want lobby on %s port %d", ev, hostID, lobby.Port)
		}
	})

	t.Run("create with as many webhooks as a host takes", func(t *testing.T) {
		// 5 URLs, the last of 1024 bytes: the API lets through what a host takes.
		var urls []string
		for i := range 4 {
			urls = append(urls, fmt.Sprintf("%s/%d", hooks.URL, i))
		}
		long := hooks.URL + "/4?pad="
		urls = append(urls, long+strings.Repeat("p", 1024-len(long)))
		body, _ := json.Marshal(map[string]any{"webhookUrls": urls})
		var c created
		call(t, "POST", a.rooms+"/api/v1/rooms/hooks5", apiKey, string(body)).want(t, http.StatusCreated, "").decode(t, &c)
		if c.WebhookSecret == "" || c.WebhookSecret == lobby.WebhookSecret {
			t.Errorf("webhookSecret %q, want one of the room's own", c.WebhookSecret)
		}
		hooks.trust(c.WebhookSecret)
		testutil.Eventually(t, 10*time.Second, func() error {
			uris, _ := hooks.find("hooks5", webhook.TypeRoomOpened)
			for _, u := range urls {
				if !slices.Contains(uris, strings.TrimPrefix(u, strings.TrimSuffix(hooks.URL, "/hook"))) {
					return fmt.Errorf("no room.opened delivered to %.60s… (got %d)", u, len(uris))
				}
			}
			return nil
		})
		call(t, "DELETE", a.rooms+"/api/v1/rooms/hooks5", apiKey, "").want(t, http.StatusOK, "")
		h.waitGone(t, "hooks5")
	})

	t.Run("create existing", func(t *testing.T) {
		ans := call(t, "POST", a.rooms+"/api/v1/rooms/lobby", apiKey, "").want(t, http.StatusConflict, chatfleet.ECONFLICT)
		if ans.Error.Host != "127.0.0.1" || ans.Error.Port != lobby.Port {
			t.Errorf("conflict %s, want where lobby is (127.0.0.1:%d)", ans.Body, lobby.Port)
		}
	})

	t.Run("create a room its host runs unrecorded", func(t *testing.T) {
		status, body := testutil.Do(t, "POST", h.API+"/api/v1/room/orphan", fleetKey, "")
		var out struct{ Data struct{ Port int } }
		if status != http.StatusCreated || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("create on the host: %d %s", status, body)
		}
		ans := call(t, "POST", a.rooms+"/api/v1/rooms/orphan", apiKey, "").want(t, http.StatusConflict, chatfleet.ECONFLICT)
		if ans.Error.Port != out.Data.Port {
			t.Errorf("conflict %s, want port %d", ans.Body, out.Data.Port)
		}
	})

	t.Run("concurrent creates", func(t *testing.T) {
		const n = 3
		var wg sync.WaitGroup
		statuses := make([]int, n)
		for i := range n {
			wg.Go(func() {
				statuses[i], _, _ = testutil.TryDo("POST", a.rooms+"/api/v1/rooms/race", apiKey, "")
			})
		}
		wg.Wait()
		slices.Sort(statuses)
		if !slices.Equal(statuses, []int{201, 409, 409}) {
			t.Fatalf("statuses %v, want one 201 and two 409", statuses)
		}
	})

	t.Run("a create that loses the name in the store closes its room", func(t *testing.T) {
		rs := &racingStore{Store: st, name: "contested", winner: &chatfleet.Room{
			Name: "contested", HostID: "h9", HostAddr: "10.0.0.9", Port: 40000, Status: chatfleet.RoomLive}}
		ra := newAPIs(t, rs, picker)
		ans := call(t, "POST", ra.rooms+"/api/v1/rooms/contested", apiKey, "").want(t, http.StatusConflict, chatfleet.ECONFLICT)
		if ans.Error.Host != "10.0.0.9" || ans.Error.Port != 40000 {
			t.Errorf("conflict %s, want the winner's 10.0.0.9:40000", ans.Body)
		}
		h.waitGone(t, "contested")
	})

	t.Run("a name held by a record of 1.3.0 is refused by the store", func(t *testing.T) {
		// Keyed by an ObjectID, so the create's quick check by key misses it.
		cfg := storetest.Config(t)
		ls := storetest.Open(t, cfg)
		cl, err := mongodrv.Connect(options.Client().ApplyURI(cfg.URI))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Disconnect(ctx)
		_, err = cl.Database(cfg.Database).Collection("rooms").InsertOne(ctx, bson.D{{Key: "_id", Value: bson.NewObjectID()},
			{Key: "name", Value: "legacy"}, {Key: "hostId", Value: "h8"}, {Key: "hostAddr", Value: "10.0.0.8"},
			{Key: "port", Value: 40001}, {Key: "status", Value: chatfleet.RoomLive}})
		if err != nil {
			t.Fatal(err)
		}
		la := newAPIs(t, ls, picker)
		ans := call(t, "POST", la.rooms+"/api/v1/rooms/legacy", apiKey, "").want(t, http.StatusConflict, chatfleet.ECONFLICT)
		if ans.Error.Host != "10.0.0.8" || ans.Error.Port != 40001 {
			t.Errorf("conflict %s, want the record's 10.0.0.8:40001", ans.Body)
		}
		h.waitGone(t, "legacy")
	})

	t.Run("a room its host's sync recorded first is the created one", func(t *testing.T) {
		rs := &racingStore{Store: st, name: "synced", sameAsHost: true}
		ra := newAPIs(t, rs, picker)
		var c created
		call(t, "POST", ra.rooms+"/api/v1/rooms/synced", apiKey, `{"hlsUrl":"https://cdn.example.com/s.m3u8"}`).want(t, http.StatusCreated, "").decode(t, &c)
		if !slices.Contains(h.rooms(t), "synced") {
			t.Error("the room is not running")
		}
		if r, err := st.Room(ctx, "synced"); err != nil || r.HLSURL != "https://cdn.example.com/s.m3u8" || r.Port != c.Port || r.Instance != c.Instance {
			t.Errorf("stored %+v, %v", r, err)
		}
	})

	t.Run("a room its host's sync recorded first without its instance gets it", func(t *testing.T) {
		rs := &racingStore{Store: st, name: "legacysync", sameAsHost: true, withoutInstance: true}
		ra := newAPIs(t, rs, picker)
		var c created
		call(t, "POST", ra.rooms+"/api/v1/rooms/legacysync", apiKey, `{"hlsUrl":"https://cdn.example.com/l.m3u8"}`).want(t, http.StatusCreated, "").decode(t, &c)
		r, err := st.Room(ctx, "legacysync")
		if err != nil || r.Instance != c.Instance || r.OwnerID != c.OwnerID || !r.Status.Open() || r.Port != c.Port || r.HLSURL == "" {
			t.Fatalf("stored %+v, %v; want the created room with instance %s", r, err, c.Instance)
		}
		var tok tokenAnswer
		call(t, "POST", a.rooms+"/api/v1/rooms/legacysync/tokens", apiKey, "").want(t, http.StatusCreated, "").decode(t, &tok)
		if cl, err := a.tokens.Verify(tok.Token, "legacysync", c.Instance); err != nil || cl.Inst != c.Instance {
			t.Errorf("token claims %+v, %v; want instance %s", cl, err, c.Instance)
		}
	})

	t.Run("get", func(t *testing.T) {
		var v roomView
		call(t, "GET", a.rooms+"/api/v1/rooms/lobby", apiKey, "").want(t, http.StatusOK, "").decode(t, &v)
		if v.Name != "lobby" || v.HostID != hostID || v.Port != lobby.Port || v.WSURL != lobby.WSURL || v.SSEURL != lobby.SSEURL ||
			v.OwnerID != lobby.OwnerID || v.Instance != lobby.Instance ||
			!chatfleet.RoomStatus(v.Status).Open() || v.Producer != "offline" || v.HLSURL == "" {
			t.Errorf("room %+v", v)
		}
		call(t, "GET", a.rooms+"/api/v1/rooms/nosuch", apiKey, "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
	})

	t.Run("tokens", func(t *testing.T) {
		base := a.rooms + "/api/v1/rooms/lobby/tokens"
		var guest tokenAnswer
		call(t, "POST", base, apiKey, "").want(t, http.StatusCreated, "").decode(t, &guest)
		if guest.Role != "viewer" || !strings.HasPrefix(guest.UserID, "guest-") || len(guest.UserID) != len("guest-")+8 || guest.WSURL != lobby.WSURL {
			t.Errorf("default token %+v, want a viewer guest-xxxxxxxx", guest)
		}
		c, err := a.tokens.Verify(guest.Token, "lobby", lobby.Instance)
		if err != nil || c.UserID() != guest.UserID || c.Role != chatfleet.RoleViewer || c.Inst != lobby.Instance {
			t.Fatalf("viewer token: %+v %v", c, err)
		}
		if d := time.Until(guest.ExpiresAt); d < 59*time.Minute || d > time.Hour {
			t.Errorf("default expiry in %v, want an hour", d)
		}
		ws := testutil.DialRoom(t, strings.TrimSuffix(guest.WSURL, "/ws"), guest.Token, -1)
		if w := ws.Next(protocol.TypeWelcome, 5*time.Second); w.You == nil || w.You.UserID != guest.UserID || w.You.Role != chatfleet.RoleViewer {
			t.Errorf("welcome %+v, want the guest viewer", w.You)
		}
		ws.Conn.Close()

		var mod tokenAnswer
		call(t, "POST", base, apiKey, `{"role":"moderator","userId":"u-42","name":"Ann","ttlSeconds":60}`).want(t, http.StatusCreated, "").decode(t, &mod)
		c, err = a.tokens.Verify(mod.Token, "lobby", lobby.Instance)
		if err != nil || c.Role != chatfleet.RoleModerator || c.UserID() != "u-42" || c.Name != "Ann" || mod.Name != "Ann" {
			t.Fatalf("moderator token: %+v %v", c, err)
		}
		if d := time.Until(mod.ExpiresAt); d < 58*time.Second || d > 60*time.Second {
			t.Errorf("expiry in %v, want 60s", d)
		}

		for _, tt := range []struct {
			name, path, body string
			status           int
			code             string
		}{
			{"producer tokens only at creation", base, `{"role":"producer"}`, 403, chatfleet.EFORBIDDEN},
			{"unknown role", base, `{"role":"owner"}`, 400, chatfleet.EINVALID},
			{"negative ttl", base, `{"ttlSeconds":-1}`, 400, chatfleet.EINVALID},
			{"ttl over a day", base, `{"ttlSeconds":86401}`, 400, chatfleet.EINVALID},
			{"long user id", base, `{"userId":"` + strings.Repeat("u", 129) + `"}`, 400, chatfleet.EINVALID},
			{"long display name", base, `{"name":"` + strings.Repeat("n", 65) + `"}`, 400, chatfleet.EINVALID},
			{"unknown field", base, `{"room":"x"}`, 400, chatfleet.EINVALID},
			{"no such room", a.rooms + "/api/v1/rooms/nosuch/tokens", "", 404, chatfleet.ENOTFOUND},
		} {
			t.Run(tt.name, func(t *testing.T) {
				call(t, "POST", tt.path, apiKey, tt.body).want(t, tt.status, tt.code)
			})
		}
	})

	t.Run("list", func(t *testing.T) { testList(t, picker) })

	t.Run("delete", func(t *testing.T) {
		var out map[string]string
		call(t, "DELETE", a.rooms+"/api/v1/rooms/lobby", apiKey, "").want(t, http.StatusOK, "").decode(t, &out)
		if out["name"] != "lobby" || out["status"] != "closed" {
			t.Errorf("answer %v", out)
		}
		h.waitGone(t, "lobby")
		if r, err := st.Room(ctx, "lobby"); err != nil || r.Status != chatfleet.RoomClosed {
			t.Errorf("stored %+v, %v; want closed", r, err)
		}
		if ev := hooks.wait(t, "lobby", webhook.TypeRoomClosed); ev.Status != "closed" {
			t.Errorf("room.closed %+v, want status closed", ev)
		}
		var v roomView
		call(t, "GET", a.rooms+"/api/v1/rooms/lobby", apiKey, "").want(t, http.StatusOK, "").decode(t, &v)
		if v.Status != "closed" {
			t.Errorf("GET after close: status %q", v.Status)
		}
		call(t, "DELETE", a.rooms+"/api/v1/rooms/lobby", apiKey, "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
		call(t, "POST", a.rooms+"/api/v1/rooms/lobby/tokens", apiKey, "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
		call(t, "DELETE", a.rooms+"/api/v1/rooms/nosuch", apiKey, "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
		// The name is free again.
		call(t, "POST", a.rooms+"/api/v1/rooms/lobby", apiKey, "").want(t, http.StatusCreated, "")
	})

	t.Run("admin", func(t *testing.T) { testAdmin(t, a, h, picker) })

	t.Run("host unreachable", func(t *testing.T) {
		// Killed without deregistering: the load balancer still offers it.
		h.Proc.Cmd.Process.Kill()
		<-h.Proc.Done()
		ans := call(t, "POST", a.rooms+"/api/v1/rooms/stranded", apiKey, "").want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
		if !strings.Contains(ans.Error.Message, "no host could create the room (1 tried)") {
			t.Errorf("message %q, want that the one host was tried", ans.Error.Message)
		}
		call(t, "DELETE", a.rooms+"/api/v1/rooms/lobby", apiKey, "").want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
		if r, err := st.Room(ctx, "lobby"); err != nil || !r.Status.Open() {
			t.Errorf("a close its host did not confirm changed the store: %+v, %v", r, err)
		}
	})
}

// TestHostRefusesWebhooks checks that a create with webhookUrls the host
// refuses (a loopback URL the control API lets through with
// WEBHOOK_ALLOW_PRIVATE=1 but the host does not, or a host without
// WEBHOOK_SECRET before rooms had their own) comes back as the host's 400
// invalid, naming the field, rather than as an outage, and that nothing of
// it is left: no room on the host or in the store, no delivery.
func TestHostRefusesWebhooks(t *testing.T) {
	t.Parallel()
	lb := startLB(t)
	picker := newPicker(t, lb)
	h := startHost(t, lb, "WEBHOOK_ALLOW_PRIVATE=0")
	st := storetest.NewStore(t)
	a := newAPIs(t, st, picker, allowPrivateHooks)
	hooks := newHookReceiver(t)

	ans := call(t, "POST", a.rooms+"/api/v1/rooms/hooked", apiKey, `{"webhookUrls":["`+hooks.URL+`"]}`).
		want(t, http.StatusBadRequest, chatfleet.EINVALID)
	if !strings.Contains(ans.Error.Message, "webhookUrls") || !strings.HasPrefix(ans.Error.Message, "host ") {
		t.Errorf("message %q is not the host's refusal of webhookUrls", ans.Error.Message)
	}
	if slices.Contains(h.rooms(t), "hooked") {
		t.Error("the host runs the refused room")
	}
	call(t, "GET", a.rooms+"/api/v1/rooms/hooked", apiKey, "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
	// The host still serves creates without webhooks: the 400 did not take it out.
	call(t, "POST", a.rooms+"/api/v1/rooms/hooked", apiKey, `{"allowAnonymous":true}`).want(t, http.StatusCreated, "")
	if n := hooks.count(); n != 0 {
		t.Errorf("%d deliveries reached the room's webhook", n)
	}
}

// racingStore is the real store with a concurrent create forced in just
// before the API's own: a winner of another host (winner), or the room
// itself as its host's periodic sync would record it (sameAsHost).
type racingStore struct {
	*mongo.Store
	name            string
	winner          *chatfleet.Room
	sameAsHost      bool
	withoutInstance bool // the host's record lacks the instance and owner (a host that does not report them)
	raced           bool
}

func (s *racingStore) CreateRoom(ctx context.Context, r *chatfleet.Room) error {
	if r.Name == s.name && !s.raced {
		s.raced = true
		w := s.winner
		if s.sameAsHost {
			w = &chatfleet.Room{Name: r.Name, HostID: r.HostID, HostAddr: r.HostAddr, Port: r.Port, Status: chatfleet.RoomOffline,
				Instance: r.Instance, OwnerID: r.OwnerID}
			if s.withoutInstance {
				w.Instance, w.OwnerID = "", ""
			}
		}
		if err := s.Store.CreateRoom(ctx, w); err != nil {
			return fmt.Errorf("racing create: %w", err)
		}
	}
	return s.Store.CreateRoom(ctx, r)
}

// testList checks the listing's filter, orders, paging and validation on a
// store of its own.
func testList(t *testing.T, picker *lbclient.Picker) {
	st := storetest.NewStore(t)
	a := newAPIs(t, st, picker)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i, r := range []struct {
		name    string
		status  chatfleet.RoomStatus
		viewers int
		live    bool
	}{
		{"alpha", chatfleet.RoomLive, 50, true},
		{"bravo", chatfleet.RoomOffline, 5, false},
		{"charlie", chatfleet.RoomLive, 50, true},
		{"delta", chatfleet.RoomStarting, 100, false},
		{"echo", chatfleet.RoomStale, 70, false},
		{"foxtrot", chatfleet.RoomClosed, 80, false},
		{"golf", chatfleet.RoomOffline, 0, false},
	} {
		room := &chatfleet.Room{Name: r.name, HostID: hostID, HostAddr: "127.0.0.1", Port: 40000 + i, Status: chatfleet.RoomOffline,
			Viewers: r.viewers, ProducerLive: r.live, CreatedAt: t0.Add(time.Duration(i) * time.Minute)}
		if r.status == chatfleet.RoomLive || r.status == chatfleet.RoomStarting {
			room.Status = r.status
		}
		if err := st.CreateRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		if room.Status != r.status {
			status := r.status
			if err := st.UpdateRoom(ctx, r.name, chatfleet.RoomUpdate{Status: &status}); err != nil {
				t.Fatal(err)
			}
		}
	}
	byViewers := []string{"alpha", "charlie", "bravo", "golf"}
	byNewest := []string{"golf", "charlie", "bravo", "alpha"}

	page := func(t *testing.T, query string) ([]roomView, string) {
		t.Helper()
		var out struct {
			Rooms      []roomView
			NextCursor string
		}
		call(t, "GET", a.rooms+"/api/v1/rooms?"+query, apiKey, "").want(t, http.StatusOK, "").decode(t, &out)
		return out.Rooms, out.NextCursor
	}
	names := func(rs []roomView) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	for _, tt := range []struct {
		sort string
		want []string
	}{{"", byViewers}, {"viewers", byViewers}, {"newest", byNewest}} {
		t.Run("sort "+tt.sort, func(t *testing.T) {
			rooms, next := page(t, "sort="+tt.sort)
			if got := names(rooms); !slices.Equal(got, tt.want) || next != "" {
				t.Fatalf("rooms %v next %q, want %v and no next page", got, next, tt.want)
			}
			for _, limit := range []int{1, 2, 3} {
				var got []string
				cursor := ""
				for pages := 0; ; pages++ {
					if pages > len(tt.want)+1 {
						t.Fatalf("limit %d: no end after %d pages (%v)", limit, pages, got)
					}
					rooms, next := page(t, fmt.Sprintf("sort=%s&limit=%d&cursor=%s", tt.sort, limit, url.QueryEscape(cursor)))
					if len(rooms) > limit {
						t.Fatalf("limit %d: page of %d", limit, len(rooms))
					}
					got = append(got, names(rooms)...)
					if cursor = next; cursor == "" {
						break
					}
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("limit %d: paged through %v, want %v", limit, got, tt.want)
				}
			}
		})
	}
	t.Run("entries", func(t *testing.T) {
		rooms, _ := page(t, "sort=newest&limit=1")
		r := rooms[0]
		if r.Name != "golf" || r.Status != "offline" || r.Producer != "offline" || r.Viewers != 0 || r.WSURL != "ws://127.0.0.1:40006/ws" {
			t.Errorf("golf: %+v", r)
		}
		rooms, _ = page(t, "limit=1")
		if r := rooms[0]; r.Name != "alpha" || r.Producer != "live" || !r.ProducerLive || r.Viewers != 50 {
			t.Errorf("alpha: %+v", r)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		_, viewersCursor := page(t, "sort=viewers&limit=1")
		for _, q := range []string{"sort=popular", "limit=0", "limit=201", "limit=ten", "cursor=garbage",
			"sort=newest&cursor=" + url.QueryEscape(viewersCursor), "cursor=" + strings.Repeat("x", 1025)} {
			call(t, "GET", a.rooms+"/api/v1/rooms?"+q, apiKey, "").want(t, http.StatusBadRequest, chatfleet.EINVALID)
		}
	})
}

// testAdmin checks the admin API on the running host, and that each action
// lands in the audit log.
func testAdmin(t *testing.T, a *apis, h *host, picker *lbclient.Picker) {
	admin := func(method, path, body string) answer {
		t.Helper()
		return call(t, method, a.admin+path, adminAPIKey, body)
	}
	t.Run("hosts", func(t *testing.T) {
		var out struct{ Hosts []chatfleet.Host }
		admin("GET", "/admin/v1/hosts", "").want(t, http.StatusOK, "").decode(t, &out)
		if len(out.Hosts) != 1 || out.Hosts[0].ID != hostID || out.Hosts[0].State != chatfleet.HostAccepting || out.Hosts[0].AdminURL != h.Admin {
			t.Errorf("hosts %+v", out.Hosts)
		}
	})

	var announce created
	call(t, "POST", a.rooms+"/api/v1/rooms/announce", apiKey, "").want(t, http.StatusCreated, "").decode(t, &announce)
	var viewer tokenAnswer
	call(t, "POST", a.rooms+"/api/v1/rooms/announce/tokens", apiKey, `{"userId":"v1"}`).want(t, http.StatusCreated, "").decode(t, &viewer)
	ws := testutil.DialRoom(t, strings.TrimSuffix(viewer.WSURL, "/ws"), viewer.Token, -1)
	ws.Next(protocol.TypeWelcome, 5*time.Second)

	t.Run("global message", func(t *testing.T) {
		var out struct {
			Hosts, Rooms int
			Failed       []struct{ HostID, Error string }
		}
		admin("POST", "/admin/v1/messages", `{"text":"maintenance at noon"}`).want(t, http.StatusOK, "").decode(t, &out)
		if out.Hosts != 1 || out.Rooms < 1 || len(out.Failed) != 0 {
			t.Errorf("result %+v, want 1 host, some rooms, no failure", out)
		}
		m := ws.Next(protocol.TypeSystem, 5*time.Second)
		if m.Kind != protocol.KindGlobal || m.Text != "maintenance at noon" {
			t.Errorf("the room got %+v", m)
		}
	})

	t.Run("drain and resume", func(t *testing.T) {
		var out struct {
			HostID, Action string
			Result         map[string]string
		}
		admin("POST", "/admin/v1/hosts/h1/drain", "").want(t, http.StatusOK, "").decode(t, &out)
		if out.HostID != hostID || out.Action != "drain" || out.Result["state"] != "draining" {
			t.Errorf("drain: %+v", out)
		}
		waitHost(t, picker, chatfleet.HostDraining)
		call(t, "POST", a.rooms+"/api/v1/rooms/afterdrain", apiKey, "").want(t, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
		admin("POST", "/admin/v1/hosts/h1/resume", "").want(t, http.StatusOK, "").decode(t, &out)
		if out.Result["state"] != "accepting" {
			t.Errorf("resume: %+v", out)
		}
		waitHost(t, picker, chatfleet.HostAccepting)
		call(t, "POST", a.rooms+"/api/v1/rooms/afterdrain", apiKey, "").want(t, http.StatusCreated, "")
	})

	t.Run("restart", func(t *testing.T) {
		admin("POST", "/admin/v1/hosts/h1/restart", "").want(t, http.StatusAccepted, "")
		// The new image of the master takes the rooms over.
		testutil.Eventually(t, 15*time.Second, func() error {
			status, body, err := testutil.TryDo("GET", h.Admin+"/api/v1/rooms", fleetAdminKey, "")
			if err != nil || status != 200 || !strings.Contains(body, `"announce"`) {
				return fmt.Errorf("host rooms after restart: %d %s %v", status, body, err)
			}
			return nil
		})
		waitHost(t, picker, chatfleet.HostAccepting)
	})

	t.Run("close room", func(t *testing.T) {
		admin("DELETE", "/admin/v1/rooms/announce", `{"reason":"spam"}`).want(t, http.StatusOK, "")
		h.waitGone(t, "announce")
		if r, err := a.cfg.Store.Room(context.Background(), "announce"); err != nil || r.Status != chatfleet.RoomClosed {
			t.Errorf("stored %+v, %v", r, err)
		}
		admin("DELETE", "/admin/v1/rooms/announce", "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
	})

	t.Run("unknown host", func(t *testing.T) {
		admin("POST", "/admin/v1/hosts/h404/drain", "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
		admin("POST", "/admin/v1/hosts/-h1/drain", "").want(t, http.StatusBadRequest, chatfleet.EINVALID)
	})

	t.Run("audit", func(t *testing.T) {
		type entries struct {
			Entries    []chatfleet.AuditEntry
			NextBefore string
		}
		var all entries
		admin("GET", "/admin/v1/audit", "").want(t, http.StatusOK, "").decode(t, &all)
		var got []string
		for _, e := range all.Entries {
			if e.Actor != "admin" || e.ID == "" || e.At.IsZero() {
				t.Errorf("entry %+v", e)
			}
			got = append(got, e.Action+" "+e.Target)
		}
		want := []string{"room.close announce", "host.restart h1", "host.resume h1", "host.drain h1", "global.message *"}
		if !slices.Equal(got, want) || all.NextBefore != "" {
			t.Fatalf("audit log %v (next %q), want %v", got, all.NextBefore, want)
		}
		if d := all.Entries[0].Detail; d != "spam" {
			t.Errorf("room.close detail %q", d)
		}
		if d := all.Entries[4].Detail; !strings.Contains(d, "1 hosts") || !strings.Contains(d, "maintenance at noon") {
			t.Errorf("global.message detail %q", d)
		}

		var byHost entries
		admin("GET", "/admin/v1/audit?target=h1", "").want(t, http.StatusOK, "").decode(t, &byHost)
		if len(byHost.Entries) != 3 {
			t.Errorf("target h1: %d entries, want 3", len(byHost.Entries))
		}
		var first, rest entries
		admin("GET", "/admin/v1/audit?limit=2", "").want(t, http.StatusOK, "").decode(t, &first)
		if len(first.Entries) != 2 || first.NextBefore == "" {
			t.Fatalf("limit 2: %+v", first)
		}
		admin("GET", "/admin/v1/audit?limit=10&before="+url.QueryEscape(first.NextBefore), "").want(t, http.StatusOK, "").decode(t, &rest)
		if len(rest.Entries) != 3 || rest.Entries[0].Action != "host.resume" {
			t.Errorf("second page: %+v", rest.Entries)
		}
		for _, q := range []string{"limit=0", "limit=1001", "limit=x", "before=yesterday", "target=" + strings.Repeat("t", 129)} {
			admin("GET", "/admin/v1/audit?"+q, "").want(t, http.StatusBadRequest, chatfleet.EINVALID)
		}
	})
}
