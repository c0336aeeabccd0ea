package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/mongo"
	"github.com/chatfleet/chatfleet/protocol"
)

// storeFleet is a load balancer, a real host and both APIs on one store, the
// host's cache refreshed only when told (CACHE_REFRESH=1h): what reaches its
// rooms quickly came through POST /api/v1/cache/refresh.
type storeFleet struct {
	lb    string
	store *mongo.Store
	host  *host
	api   *apis
}

func newStoreFleet(t *testing.T) *storeFleet {
	t.Helper()
	cfg := storetest.Config(t)
	st := storetest.Open(t, cfg)
	lb := startLB(t)
	picker := newPicker(t, lb)
	h := startHost(t, lb, "MONGODB_URI="+cfg.URI, "MONGODB_DATABASE="+cfg.Database, "CACHE_REFRESH=1h", "STATS_EVERY=200ms")
	return &storeFleet{lb: lb, store: st, host: h, api: newAPIs(t, st, picker)}
}

// open creates room name and returns a viewer connected to it, past its welcome.
func (f *storeFleet) open(t *testing.T, name string) *testutil.WS {
	t.Helper()
	var room created
	call(t, "POST", f.api.rooms+"/api/v1/rooms/"+name, apiKey, "").want(t, http.StatusCreated, "").decode(t, &room)
	var tok tokenAnswer
	call(t, "POST", f.api.rooms+"/api/v1/rooms/"+name+"/tokens", apiKey, `{"userId":"v-`+name+`"}`).want(t, http.StatusCreated, "").decode(t, &tok)
	ws := testutil.DialRoom(t, strings.TrimSuffix(room.WSURL, "/ws"), tok.Token, -1)
	ws.Next(protocol.TypeWelcome, 5*time.Second)
	return ws
}

// say sends text as a chat and returns what the room broadcast of it, or
// the room's error code.
func say(t *testing.T, ws *testutil.WS, text string) (string, string) {
	t.Helper()
	ws.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: text})
	ws.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, frame, err := ws.Conn.ReadMessage()
		if err != nil {
			t.Fatalf("chat %q: %v", text, err)
		}
		var text, code string
		protocol.Split(frame, func(b []byte) {
			var m protocol.ServerMsg
			if json.Unmarshal(b, &m) != nil || text != "" || code != "" {
				return
			}
			switch {
			case m.Type == protocol.TypeChat && m.From != nil:
				text = m.Text
			case m.Type == protocol.TypeError:
				code = m.Code
			}
		})
		if text != "" || code != "" {
			return text, code
		}
	}
}

// settingsAnswer is the answer of the PUTs.
type settingsAnswer struct {
	Words    []string
	Defaults chatfleet.RoomSettings
	Hosts    int
	Failed   []struct{ HostID, Error string }
}

// lastAudit returns the newest audit entry of action.
func lastAudit(t *testing.T, a *apis, action string) chatfleet.AuditEntry {
	t.Helper()
	var page struct{ Entries []chatfleet.AuditEntry }
	call(t, "GET", a.admin+"/admin/v1/audit?target=*", adminAPIKey, "").want(t, http.StatusOK, "").decode(t, &page)
	for _, e := range page.Entries {
		if e.Action == action {
			return e
		}
	}
	t.Fatalf("no audit entry %s in %+v", action, page.Entries)
	return chatfleet.AuditEntry{}
}

// TestBlockedWordsReachRooms replaces the blocked words through the admin
// API and sees two rooms of a real host mask them in chat at once, the
// host's own refresh being an hour away; then clears them.
func TestBlockedWordsReachRooms(t *testing.T) {
	t.Parallel()
	f := newStoreFleet(t)
	a := f.api
	rooms := []*testutil.WS{f.open(t, "words-1"), f.open(t, "words-2")}
	for _, ws := range rooms {
		if got, _ := say(t, ws, "darn it"); got != "darn it" {
			t.Fatalf("before any blocked word: %q", got)
		}
	}

	start := time.Now()
	var out settingsAnswer
	call(t, "PUT", a.admin+"/admin/v1/blocked-words", adminAPIKey, `{"words":["darn","Heck"]}`).want(t, http.StatusOK, "").decode(t, &out)
	answered := time.Since(start)
	if out.Hosts != 1 || len(out.Failed) != 0 || strings.Join(out.Words, ",") != "darn,Heck" {
		t.Errorf("answer %+v, want the words and host h1 told", out)
	}
	for i, ws := range rooms {
		testutil.Eventually(t, 2*time.Second, func() error {
			if got, _ := say(t, ws, "DARN it, heck"); got != "**** it, ****" {
				return fmt.Errorf("room %d broadcast %q", i+1, got)
			}
			return nil
		})
	}
	t.Logf("blocked words: PUT answered in %v; both rooms masked %v after the request", answered, time.Since(start))

	var got struct{ Words []string }
	call(t, "GET", a.admin+"/admin/v1/blocked-words", adminAPIKey, "").want(t, http.StatusOK, "").decode(t, &got)
	if strings.Join(got.Words, ",") != "darn,Heck" {
		t.Errorf("GET words %v", got.Words)
	}
	if e := lastAudit(t, a, "blockedwords.set"); e.Actor != "admin" || !strings.Contains(e.Detail, `added ["darn" "Heck"]`) {
		t.Errorf("audit entry %+v", e)
	}

	// A host that fails the refresh is listed; the others are told.
	broken := newFakeHost(t, func(method, path string) (int, string) { return http.StatusServiceUnavailable, "store down" })
	broken.register(t, f.lb, "h2-broken", broken.URL)
	waitHostID(t, newPicker(t, f.lb), "h2-broken")
	call(t, "PUT", a.admin+"/admin/v1/blocked-words", adminAPIKey, `{"words":[]}`).want(t, http.StatusOK, "").decode(t, &out)
	if out.Hosts != 1 || len(out.Failed) != 1 || out.Failed[0].HostID != "h2-broken" || !strings.Contains(out.Failed[0].Error, "store down") {
		t.Errorf("answer %+v, want h1 told and h2-broken failed", out)
	}
	if r := broken.requests(); len(r) != 1 || r[0].Method != "POST" || r[0].Path != "/api/v1/cache/refresh" || r[0].Key != fleetAdminKey {
		t.Errorf("the broken host got %+v, want one POST /api/v1/cache/refresh with the fleet admin key", r)
	}
	testutil.Eventually(t, 2*time.Second, func() error {
		if got, _ := say(t, rooms[0], "darn"); got != "darn" {
			return fmt.Errorf("after clearing: %q", got)
		}
		return nil
	})
}

// TestBlockedWordsRefused checks the validation of PUT /admin/v1/blocked-words:
// nothing refused reaches the store.
func TestBlockedWordsRefused(t *testing.T) {
	t.Parallel()
	st := storetest.NewStore(t)
	a := newAPIs(t, st, newPicker(t, deadURL(t)))
	many := make([]string, 5001)
	for i := range many {
		many[i] = fmt.Sprintf("w%d", i)
	}
	manyJSON, _ := json.Marshal(map[string][]string{"words": many})
	for _, tt := range []struct{ name, body, want string }{
		{"no body", "", "required"},
		{"no words field", `{}`, "required"},
		{"null words", `{"words":null}`, "required"},
		{"not a list", `{"words":"darn"}`, "words"},
		{"unknown field", `{"words":[],"phrases":[]}`, "phrases"},
		{"empty word", `{"words":["darn",""]}`, "words[1]"},
		{"word too long", `{"words":["` + strings.Repeat("a", 101) + `"]}`, "words[0]"},
		{"two words in one", `{"words":["darn it"]}`, "letters and digits"},
		{"duplicate after lower-casing", `{"words":["Darn","heck","dARN"]}`, "words[2] repeats words[0]"},
		{"too many", string(manyJSON), "at most 5000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ans := call(t, "PUT", a.admin+"/admin/v1/blocked-words", adminAPIKey, tt.body).want(t, http.StatusBadRequest, chatfleet.EINVALID)
			if !strings.Contains(ans.Error.Message, tt.want) {
				t.Errorf("message %q does not say %q", ans.Error.Message, tt.want)
			}
		})
	}
	if words, err := st.BlockedWords(context.Background()); err != nil || len(words) != 0 {
		t.Errorf("stored %v, %v", words, err)
	}
	// 5,000 words of 100 bytes are taken, though no host can be told.
	full := make([]string, 5000)
	for i := range full {
		full[i] = fmt.Sprintf("%0100d", i)
	}
	body, _ := json.Marshal(map[string][]string{"words": full})
	var out settingsAnswer
	call(t, "PUT", a.admin+"/admin/v1/blocked-words", adminAPIKey, string(body)).want(t, http.StatusOK, "").decode(t, &out)
	if len(out.Words) != 5000 || out.Hosts != 0 || len(out.Failed) != 1 || !strings.Contains(out.Failed[0].Error, "next refresh") {
		t.Errorf("answer: %d words, %d hosts, failed %+v", len(out.Words), out.Hosts, out.Failed)
	}
	if words, err := st.BlockedWords(context.Background()); err != nil || len(words) != 5000 {
		t.Errorf("stored %d words, %v", len(words), err)
	}
}

// TestRoomDefaultsReachRooms replaces the room defaults and sees a running
// room of a real host apply the new maxMessageLen at once.
func TestRoomDefaultsReachRooms(t *testing.T) {
	t.Parallel()
	f := newStoreFleet(t)
	a := f.api
	ws := f.open(t, "defaults")
	if got, code := say(t, ws, "eleven char"); got != "eleven char" {
		t.Fatalf("before: %q %s", got, code)
	}

	var def chatfleet.RoomSettings
	call(t, "GET", a.admin+"/admin/v1/room-defaults", adminAPIKey, "").want(t, http.StatusOK, "").decode(t, &def)
	if def != chatfleet.DefaultRoomSettings {
		t.Errorf("defaults before any were set: %+v", def)
	}
	start := time.Now()
	var out settingsAnswer
	body := `{"historySize":50,"maxMessageLen":10,"slowModeSeconds":0,"allowAnonymous":false,"idleTimeoutSec":600}`
	call(t, "PUT", a.admin+"/admin/v1/room-defaults", adminAPIKey, body).want(t, http.StatusOK, "").decode(t, &out)
	want := chatfleet.RoomSettings{HistorySize: 50, MaxMessageLen: 10, IdleTimeoutSec: 600}
	if out.Defaults != want || out.Hosts != 1 || len(out.Failed) != 0 {
		t.Errorf("answer %+v", out)
	}
	testutil.Eventually(t, 2*time.Second, func() error {
		if _, code := say(t, ws, "eleven char"); code != protocol.CodeTooLarge {
			return fmt.Errorf("11 characters: error %q, want %q", code, protocol.CodeTooLarge)
		}
		return nil
	})
	t.Logf("room defaults: the room refused a message over the new maxMessageLen %v after the request", time.Since(start))
	if got, code := say(t, ws, "ten chars!"); got != "ten chars!" {
		t.Errorf("10 characters: %q %s", got, code)
	}
	call(t, "GET", a.admin+"/admin/v1/room-defaults", adminAPIKey, "").want(t, http.StatusOK, "").decode(t, &def)
	if stored, err := f.store.RoomDefaults(context.Background()); def != want || stored != want || err != nil {
		t.Errorf("GET %+v, stored %+v %v; want %+v", def, stored, err, want)
	}
	if e := lastAudit(t, a, "defaults.set"); e.Actor != "admin" || !strings.Contains(e.Detail, `"maxMessageLen":10`) {
		t.Errorf("audit entry %+v", e)
	}

	for _, tt := range []struct{ name, body, want string }{
		{"no body", "", "historySize"},
		{"missing field", `{"historySize":50,"maxMessageLen":10,"slowModeSeconds":0,"allowAnonymous":false}`, "idleTimeoutSec"},
		{"missing bool", `{"historySize":50,"maxMessageLen":10,"slowModeSeconds":0,"idleTimeoutSec":600}`, "allowAnonymous"},
		{"zero history", `{"historySize":0,"maxMessageLen":10,"slowModeSeconds":0,"allowAnonymous":false,"idleTimeoutSec":600}`, "historySize"},
		{"message too long", `{"historySize":50,"maxMessageLen":10001,"slowModeSeconds":0,"allowAnonymous":false,"idleTimeoutSec":600}`, "maxMessageLen"},
		{"negative slow mode", `{"historySize":50,"maxMessageLen":10,"slowModeSeconds":-1,"allowAnonymous":false,"idleTimeoutSec":600}`, "slowModeSeconds"},
		{"idle timeout under 10 s", `{"historySize":50,"maxMessageLen":10,"slowModeSeconds":0,"allowAnonymous":false,"idleTimeoutSec":9}`, "idleTimeoutSec"},
		{"slow mode over an hour", `{"historySize":50,"maxMessageLen":10,"slowModeSeconds":3601,"allowAnonymous":false,"idleTimeoutSec":600}`, "slowModeSeconds"},
		{"not a number", `{"historySize":"50","maxMessageLen":10,"slowModeSeconds":0,"allowAnonymous":false,"idleTimeoutSec":600}`, "historySize"},
		{"unknown field", `{"historySize":50,"maxMessageLen":10,"slowModeSeconds":0,"allowAnonymous":false,"idleTimeoutSec":600,"x":1}`, "x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ans := call(t, "PUT", a.admin+"/admin/v1/room-defaults", adminAPIKey, tt.body).want(t, http.StatusBadRequest, chatfleet.EINVALID)
			if !strings.Contains(ans.Error.Message, tt.want) {
				t.Errorf("message %q does not say %q", ans.Error.Message, tt.want)
			}
		})
	}
	if stored, _ := f.store.RoomDefaults(context.Background()); stored != want {
		t.Errorf("a refused PUT changed the defaults: %+v", stored)
	}
}

// TestHostAdminRoutes inspects a room, reads a host's stats and shuts the
// host down through the admin API, against a real host.
func TestHostAdminRoutes(t *testing.T) {
	t.Parallel()
	f := newStoreFleet(t)
	a := f.api
	f.open(t, "inspected")

	t.Run("inspect", func(t *testing.T) {
		var out struct {
			Room struct {
				Name, Status, HostID string
				Port                 int
			}
			Host *struct {
				PID      int
				Restarts int
				Stats    chatfleet.RoomStats
			}
		}
		testutil.Eventually(t, 5*time.Second, func() error {
			call(t, "GET", a.admin+"/admin/v1/rooms/inspected", adminAPIKey, "").want(t, http.StatusOK, "").decode(t, &out)
			if out.Host == nil || out.Host.Stats.Viewers != 1 || out.Host.Stats.Conns != 1 {
				return fmt.Errorf("inspection %+v, want the host's part with one viewer", out)
			}
			return nil
		})
		if out.Room.Name != "inspected" || out.Room.HostID != hostID || out.Room.Port == 0 || out.Host.PID == 0 {
			t.Errorf("inspection %+v", out)
		}
		call(t, "GET", a.admin+"/admin/v1/rooms/nowhere", adminAPIKey, "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
		call(t, "GET", a.admin+"/admin/v1/rooms/-bad", adminAPIKey, "").want(t, http.StatusBadRequest, chatfleet.EINVALID)
		// A room the store knows but the host no longer runs: the host's part is null.
		if err := f.store.CreateRoom(context.Background(), &chatfleet.Room{Name: "ghost", HostID: hostID, HostAddr: "127.0.0.1", Port: 40999}); err != nil {
			t.Fatal(err)
		}
		var ghost struct{ Host *struct{} }
		call(t, "GET", a.admin+"/admin/v1/rooms/ghost", adminAPIKey, "").want(t, http.StatusOK, "").decode(t, &ghost)
		if ghost.Host != nil {
			t.Errorf("the host's part of a room it does not run: %+v", ghost.Host)
		}
	})

	t.Run("stats", func(t *testing.T) {
		var st struct {
			HostID, State string
			Rooms, Conns  int
		}
		call(t, "GET", a.admin+"/admin/v1/hosts/"+hostID+"/stats", adminAPIKey, "").want(t, http.StatusOK, "").decode(t, &st)
		if st.HostID != hostID || st.State != "accepting" || st.Rooms < 1 {
			t.Errorf("stats %+v", st)
		}
		call(t, "GET", a.admin+"/admin/v1/hosts/nohost/stats", adminAPIKey, "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
		call(t, "GET", a.admin+"/admin/v1/hosts/-h/stats", adminAPIKey, "").want(t, http.StatusBadRequest, chatfleet.EINVALID)
	})

	t.Run("shutdown", func(t *testing.T) {
		call(t, "POST", a.admin+"/admin/v1/hosts/-h/shutdown", adminAPIKey, "").want(t, http.StatusBadRequest, chatfleet.EINVALID)
		call(t, "POST", a.admin+"/admin/v1/hosts/nohost/shutdown", adminAPIKey, "").want(t, http.StatusNotFound, chatfleet.ENOTFOUND)
		var out struct {
			HostID, Action string
			Result         map[string]any
		}
		call(t, "POST", a.admin+"/admin/v1/hosts/"+hostID+"/shutdown", adminAPIKey, "").want(t, http.StatusAccepted, "").decode(t, &out)
		if out.HostID != hostID || out.Action != "shutdown" || out.Result["message"] == nil {
			t.Errorf("answer %+v", out)
		}
		if err := f.host.Proc.Wait(t, 15*time.Second); err != nil {
			t.Logf("the host exited: %v", err)
		}
		if e := lastAuditOf(t, a, hostID, "host.shutdown"); e.Actor != "admin" {
			t.Errorf("audit entry %+v", e)
		}
	})
}

// lastAuditOf returns the newest audit entry of action on target.
func lastAuditOf(t *testing.T, a *apis, target, action string) chatfleet.AuditEntry {
	t.Helper()
	var page struct{ Entries []chatfleet.AuditEntry }
	call(t, "GET", a.admin+"/admin/v1/audit?target="+target, adminAPIKey, "").want(t, http.StatusOK, "").decode(t, &page)
	for _, e := range page.Entries {
		if e.Action == action && e.Actor == "admin" {
			return e
		}
	}
	t.Fatalf("no audit entry %s by admin on %s in %+v", action, target, page.Entries)
	return chatfleet.AuditEntry{}
}
