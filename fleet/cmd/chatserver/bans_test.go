package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/mongo"
	"github.com/chatfleet/chatfleet/protocol"
)

// banStore gives a test a store of its own, and the host environment that
// points at it.
func banStore(t *testing.T) (*mongo.Store, []string) {
	t.Helper()
	cfg := storetest.Config(t)
	cfg.Timeout = 30 * time.Second
	st := storetest.Open(t, cfg)
	// The embedded store runs in this test binary, under the race detector
	// when the tests do: a page of bans can take seconds.
	return st, []string{"MONGODB_URI=" + cfg.URI, "MONGODB_DATABASE=" + cfg.Database, "STORE_TIMEOUT=20s"}
}

// insertBans stores bans in bulk (the store's AddBans: one write per room
// and one for the fleet's, 5,000 at a time), as a store that gathered them
// over time would hold them.
func insertBans(t *testing.T, st *mongo.Store, bans []chatfleet.Ban) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for len(bans) > 0 {
		n := min(len(bans), 5000)
		if err := st.AddBans(ctx, bans[:n]); err != nil {
			t.Fatalf("insert bans: %v", err)
		}
		bans = bans[n:]
	}
}

// series returns the value of series (a metric name, with its labels if it
// has any, as /metrics prints it) on the host's admin port; 0 if absent.
func (h *host) series(series string) float64 {
	h.t.Helper()
	status, body := testutil.Do(h.t, "GET", h.Admin+"/metrics", adminKey, "")
	if status != 200 {
		h.t.Fatalf("metrics: %d", status)
	}
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				h.t.Fatalf("metric %s: %q", series, v)
			}
			return f
		}
	}
	return 0
}

// waitMetric polls until series is want.
func (h *host) waitMetric(series string, want float64, timeout time.Duration) {
	h.t.Helper()
	testutil.Eventually(h.t, timeout, func() error {
		if got := h.series(series); got != want {
			return fmt.Errorf("%s = %v, want %v", series, got, want)
		}
		return nil
	})
}

// floodBan is a ban as large as a room's moderator can make one: a user id
// of 128 bytes and a reason of 200 '<', which JSON escapes to 6 bytes each.
func floodBan(room string, i int) chatfleet.Ban {
	return chatfleet.Ban{ID: fmt.Sprintf("%0128d", i), UserID: fmt.Sprintf("u%0127d", i), Room: room, By: "mod",
		Reason: strings.Repeat("<", protocol.MaxReasonLen), CreatedAt: time.Now()}
}

// TestRoomBanFloodKeepsRoomsStarting is finding 2 of issue 15: 2,100 room
// bans with 128-byte ids and 200-character reasons of '<' (the store holds
// 2,060, a moderator issues 40 more) used to overflow the one cache frame
// every room got, and every room start failed on every host. Now they are
// that room's bans only: rooms keep starting, the flooded room restarts with
// its list in frames of bounded size, and each ban costs its room one frame
// of constant size.
func TestRoomBanFloodKeepsRoomsStarting(t *testing.T) {
	st, env := banStore(t)
	var stored []chatfleet.Ban
	for i := range 2060 {
		stored = append(stored, floodBan("flood", i))
	}
	insertBans(t, st, stored)
	// No refresh: each read of the bans scans the embedded store.
	h := startHost(t, append(env, "CACHE_REFRESH=1h")...)
	port := h.create("flood")
	h.create("bystander")
	h.waitMetric("chatserver_room_bans", 2060, 60*time.Second)
	h.waitMetric("chatserver_ban_lists_sent_total", 2, 60*time.Second)

	frames, bytes := h.series("chatserver_ban_frames_sent_total"), h.series("chatserver_ban_bytes_sent_total")
	mod := join(t, port, "flood", "mod", chatfleet.RoleModerator)
	const live = 40
	for i := range live {
		b := floodBan("", 10000+i)
		mod.Send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: b.UserID, Reason: b.Reason})
	}
	h.waitMetric("chatserver_room_bans", 2060+live, 10*time.Second)
	// Bounds, not timings: the embedded store runs in this (race) test binary
	// and rewrites the room's whole document (2,100 bans) for each write.
	h.waitMetric("chatserver_bans_unstored", 0, 60*time.Second)
	if n, err := st.CountBans(context.Background(), "flood", time.Now()); err != nil || n != 2060+live {
		t.Fatalf("stored bans of the room: %d %v, want %d", n, err, 2060+live)
	}
	dFrames := h.series("chatserver_ban_frames_sent_total") - frames
	dBytes := h.series("chatserver_ban_bytes_sent_total") - bytes
	t.Logf("%d bans: %v frames, %v bytes sent to rooms", live, dFrames, dBytes)
	if dFrames != live || dBytes/live > 3000 {
		t.Fatalf("%d bans sent %v frames of %v bytes in all; want one frame of under 3 KB a ban, to its room only", live, dFrames, dBytes)
	}

	// New rooms start, and the flooded room restarts with its whole list.
	var pid int
	for _, r := range h.rooms() {
		if r.Name == "flood" {
			pid = r.PID
		}
	}
	frames = h.series("chatserver_ban_frames_sent_total")
	h.create("after-flood")
	syscall.Kill(pid, syscall.SIGKILL)
	h.waitMetric("chatserver_ban_lists_sent_total", 4, 60*time.Second)
	// after-flood: Reset, Done; flood: Reset, 3 to 8 frames of Add, Done.
	if got := h.series("chatserver_ban_frames_sent_total") - frames; got < 7 || got > 12 {
		t.Fatalf("the restarted room's list of %d bans and the new room's empty one took %v frames, want 7 to 12", 2060+live, got)
	}
	if err := roomAnswers(port, "flood"); err != nil {
		t.Fatal(err)
	}
	if h.series("chatserver_bans_refused_total{reason=\"cap\"}") != 0 {
		t.Fatal("bans refused at the cap")
	}
}

// TestAdminBanReachesEveryRoom: a fleet ban posted to the admin port goes at
// once, as one small frame, to every room of the host; a room's ban only to
// that room; a removal likewise.
func TestAdminBanReachesEveryRoom(t *testing.T) {
	h := startHost(t)
	h.create("one")
	h.create("two")
	h.waitMetric("chatserver_ban_lists_sent_total", 2, 10*time.Second)
	frames := h.series("chatserver_ban_frames_sent_total")
	post := func(body string) string {
		status, resp := testutil.Do(t, "POST", h.Admin+"/api/v1/bans", adminKey, body)
		if status != 200 {
			t.Fatalf("post bans: %d %s", status, resp)
		}
		return resp
	}
	if resp := post(`{"add":[{"id":"op-1","userId":"troll","by":"admin","reason":"spam"}]}`); resp != `{"data":{"rooms":2}}` {
		t.Fatalf("fleet ban: %s, want it pushed to 2 rooms", resp)
	}
	h.waitMetric("chatserver_ban_frames_sent_total", frames+2, time.Second)
	h.waitMetric("chatserver_fleet_bans", 1, time.Second)
	if resp := post(`{"add":[{"id":"r-1","userId":"troll2","room":"one"},{"id":"r-2","userId":"x","room":"not-here"}]}`); resp != `{"data":{"rooms":1}}` {
		t.Fatalf("room ban: %s, want it pushed to its room only", resp)
	}
	h.waitMetric("chatserver_ban_frames_sent_total", frames+3, time.Second)
	h.waitMetric("chatserver_room_bans", 1, time.Second)
	if resp := post(`{"remove":[{"id":"op-1"}]}`); resp != `{"data":{"rooms":2}}` {
		t.Fatalf("removal: %s", resp)
	}
	h.waitMetric("chatserver_fleet_bans", 0, time.Second)
	status, body := testutil.Do(t, "POST", h.Admin+"/api/v1/bans", adminKey, `{"add":[{"id":"bad","userId":"`+strings.Repeat("u", 129)+`"}]}`)
	if status != 400 || !strings.Contains(body, `"code":"invalid"`) {
		t.Fatalf("bad ban: %d %s", status, body)
	}
	if status, _ := testutil.Do(t, "POST", h.Admin+"/api/v1/bans", userKey, `{}`); status != 403 {
		t.Fatalf("bans with the API key: %d, want 403", status)
	}
}

// TestManyBansRoomStart holds bans, 60% the fleet's and 40% rooms' (a
// quarter of them the room under test's): the host loads them at start, a
// new room is created and welcomes its first viewer (the fleet's bans reach
// it as a snapshot), refuses fleet-banned users at the handshake (403), and a
// fleet ban posted to the admin port reaches every room within a second,
// closing the banned viewer (4004) in each. The bans are in the store, then
// in CACHE_FILE (no store): there create→welcome is the host's and the
// room's own time, not the embedded store's, which scans every ban for each
// room's read of its bans. The default run holds 2,000 bans;
// CHATFLEET_BANS_100K=1 holds 100,000 (the figure of issue 15; run it
// without -race: at 100,000 the embedded store takes minutes to insert and
// seconds a page).
func TestManyBansRoomStart(t *testing.T) {
	total := 2000
	if os.Getenv("CHATFLEET_BANS_100K") != "" {
		total = 100000
	}
	fleetN, roomN := total*6/10, total*4/10
	own := roomN / 4
	bans := make([]chatfleet.Ban, 0, total)
	for i := range fleetN {
		bans = append(bans, chatfleet.Ban{ID: fmt.Sprintf("f%07d", i), UserID: fmt.Sprintf("user-%d", i), By: "admin", Reason: "spam", CreatedAt: time.Now()})
	}
	for i := range roomN {
		room := "target"
		if i >= own {
			room = fmt.Sprintf("other-%02d", i%30)
		}
		bans = append(bans, chatfleet.Ban{ID: fmt.Sprintf("r%07d", i), UserID: fmt.Sprintf("user-%d", i), Room: room, By: "mod", CreatedAt: time.Now()})
	}
	t.Run("store", func(t *testing.T) {
		st, env := banStore(t)
		start := time.Now()
		insertBans(t, st, bans)
		t.Logf("inserted %d bans in %v", total, time.Since(start))
		// The embedded store reads the whole bans collection for the
		// fleet's (about 5 s at 100,000; MongoDB streams it): no refresh meanwhile.
		wait := time.Duration(total/1000) * 3 * time.Second
		manyBansRoomStart(t, append(env, "CACHE_REFRESH=1h"), fleetN, own, wait)
	})
	t.Run("cache file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "cache.json")
		b, err := json.Marshal(chatfleet.Cache{Bans: bans, Defaults: chatfleet.DefaultRoomSettings})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		manyBansRoomStart(t, []string{"CACHE_FILE=" + file, "CACHE_REFRESH=1h"}, fleetN, own, 30*time.Second)
	})
}

// manyBansRoomStart runs a host with env, which holds fleetN fleet bans
// (of user-0 ...) and own bans of room target, and checks its room starts.
func manyBansRoomStart(t *testing.T, env []string, fleetN, own int, wait time.Duration) {
	start := time.Now()
	h := startHost(t, env...)
	h.waitMetric("chatserver_fleet_bans", float64(fleetN), wait)
	t.Logf("host up with %d fleet bans in %v", fleetN, time.Since(start))

	// Each room gets a viewer, late-troll, whom a fleet ban closes below.
	ports := map[string]int{}
	viewers := map[string]*testutil.WS{}
	timeCreate := func(name string) (create, welcome time.Duration) {
		start := time.Now()
		ports[name] = h.create(name)
		create = time.Since(start)
		// A room serves once it has its list: with the embedded store at
		// 100,000 bans its read takes longer than a handshake's timeout.
		url, tok := fmt.Sprintf("ws://127.0.0.1:%d", ports[name]), issue(t, name, "late-troll", chatfleet.RoleViewer)
		var ws *testutil.WS
		testutil.Eventually(t, wait, func() (err error) {
			ws, _, err = testutil.TryDialRoom(url, tok, -1)
			return err
		})
		t.Cleanup(func() { ws.Conn.Close() })
		if _, err := ws.TryNext(protocol.TypeWelcome, 5*time.Second); err != nil {
			t.Fatalf("welcome in %s: %v", name, err)
		}
		viewers[name] = ws
		return create, time.Since(start)
	}
	timeCreate("warm") // the first room pays for building the shared frames
	h.waitMetric("chatserver_ban_lists_sent_total", 1, wait)
	plainCreate, plainWelcome := timeCreate("plain")
	start = time.Now()
	target, targetWelcome := timeCreate("target")
	h.waitMetric("chatserver_ban_lists_sent_total", 3, wait)
	listed := time.Since(start)
	h.waitMetric("chatserver_room_bans", float64(own), time.Second)
	t.Logf("create answered in %v, create→welcome %v (a room without bans of its own: %v, %v); its whole list of %d bans sent %v after the create call",
		target, targetWelcome, plainCreate, plainWelcome, fleetN+own, listed)
	if target > 2*time.Second {
		t.Fatalf("create took %v", target)
	}
	if encodes := h.series("chatserver_fleet_ban_encodes_total"); encodes != 1 {
		t.Errorf("the fleet's bans were encoded %v times for 3 rooms, want once", encodes)
	}
	// Fleet-banned users (in the snapshot) and the room's own are refused
	// at the handshake of the new room.
	for _, user := range []string{"user-0", fmt.Sprint("user-", fleetN-1), fmt.Sprint("user-", own-1)} {
		_, resp, err := testutil.TryDialRoom(fmt.Sprintf("ws://127.0.0.1:%d", ports["target"]), issue(t, "target", user, chatfleet.RoleViewer), -1)
		if err == nil || resp == nil || resp.StatusCode != 403 {
			t.Fatalf("banned %s entering a new room: %v %v, want 403", user, err, resp)
		}
	}

	frames := h.series("chatserver_ban_frames_sent_total")
	start = time.Now()
	status, resp := testutil.Do(t, "POST", h.Admin+"/api/v1/bans", adminKey, `{"add":[{"id":"zz-new","userId":"late-troll","by":"admin"}]}`)
	if status != 200 || resp != `{"data":{"rooms":3}}` {
		t.Fatalf("post ban: %d %s", status, resp)
	}
	h.waitMetric("chatserver_ban_frames_sent_total", frames+3, time.Second)
	t.Logf("a fleet ban reached the 3 rooms in %v", time.Since(start))
	for name, v := range viewers {
		if _, err := v.TryNext("never", 5*time.Second); v.Closed == nil || v.Closed.Code != protocol.CloseBanned {
			t.Errorf("the banned viewer in %s: %v, want closed with %d", name, err, protocol.CloseBanned)
		}
	}
}

// TestAdoptedRoomsGetTheirBans: a master that comes back after a crash
// adopts the rooms still running and sends each its whole list again, read
// from the store: the fleet's bans and that room's own.
func TestAdoptedRoomsGetTheirBans(t *testing.T) {
	st, env := banStore(t)
	ctx := context.Background()
	for _, b := range []chatfleet.Ban{{ID: "f1", UserID: "troll"}, {ID: "k1", UserID: "u", Room: "kept"}, {ID: "o1", UserID: "u", Room: "other"}} {
		if err := st.AddBan(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	h := startHost(t, env...)
	port := h.create("kept")
	h.waitMetric("chatserver_ban_lists_sent_total", 1, 10*time.Second)
	h.Proc.Signal(syscall.SIGKILL)
	h.Proc.Wait(t, 5*time.Second)
	if err := st.AddBan(ctx, &chatfleet.Ban{ID: "k2", UserID: "u2", Room: "kept"}); err != nil {
		t.Fatal(err)
	}
	h.Start()
	h.waitMetric("chatserver_ban_lists_sent_total", 1, 10*time.Second)
	h.waitMetric("chatserver_fleet_bans", 1, time.Second)
	h.waitMetric("chatserver_room_bans", 2, time.Second)
	if err := roomAnswers(port, "kept"); err != nil {
		t.Fatal(err)
	}
}
