package master

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// TestHostAPIClient runs the host API's client against a Master serving
// both ports on loopback, its rooms real chatserver processes: every call
// the control API, the benchmarks and the tests make decodes what the
// handlers encode, and refusals come back as *hostapi.Error with the
// host's status and code.
func TestHostAPIClient(t *testing.T) {
	cacheFile := filepath.Join(t.TempDir(), "cache.json")
	if err := os.WriteFile(cacheFile, []byte(`{"blockedWords":["darn"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	m := startMaster(t, Config{
		Self:      testutil.Binary(t, "./fleet/cmd/chatserver"),
		RoomEnv:   []string{"TOKEN_SECRET=" + strings.Repeat("ab", 32)},
		CacheFile: cacheFile,
	})
	c := &hostapi.Client{
		API: "http://" + m.cfg.APIListener.Addr().String(), Key: "k",
		Admin: "http://" + m.cfg.AdminListener.Addr().String() + "/", AdminKey: "a",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// wantErr checks err is the host's refusal with status and code.
	wantErr := func(what string, err error, status int, code string) *hostapi.Error {
		t.Helper()
		var he *hostapi.Error
		if !errors.As(err, &he) || he.Status != status || he.Err.Code != code {
			t.Fatalf("%s: %v, want a host error %d %s", what, err, status, code)
		}
		return he
	}

	created, err := c.CreateRoom(ctx, "lobby", hostapi.RoomOptions{HistorySize: 20, Title: "Lobby",
		WebhookURLs: []string{"https://hooks.example.com/in"}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.Port < m.cfg.RoomPortMin || created.Port > m.cfg.RoomPortMax || created.Message != "Room created" ||
		!strings.HasPrefix(created.WebhookSecret, "whsec_") {
		t.Fatalf("create answered %+v", created)
	}
	_, err = c.CreateRoom(ctx, "lobby", hostapi.RoomOptions{})
	if he := wantErr("second create", err, http.StatusConflict, chatfleet.ECONFLICT); he.Err.Port != created.Port {
		t.Errorf("conflict names port %d, want %d", he.Err.Port, created.Port)
	}
	_, err = c.CreateRoom(ctx, "other", hostapi.RoomOptions{HistorySize: -1})
	wantErr("create with bad options", err, http.StatusBadRequest, chatfleet.EINVALID)

	for _, get := range []func(context.Context, string) (hostapi.RoomInfo, error){c.Room, c.AdminRoom} {
		info, err := get(ctx, "lobby")
		if err != nil || info.Name != "lobby" || info.Port != created.Port || info.PID <= 0 || info.CreatedAt.IsZero() {
			t.Errorf("room: %+v, %v", info, err)
		}
		_, err = get(ctx, "nobody")
		wantErr("room nobody", err, http.StatusNotFound, chatfleet.ENOTFOUND)
	}
	for _, list := range []func(context.Context) ([]hostapi.RoomInfo, error){c.Rooms, c.AdminRooms} {
		if rs, err := list(ctx); err != nil || len(rs) != 1 || rs[0].Name != "lobby" {
			t.Errorf("rooms: %+v, %v", rs, err)
		}
	}
	if n, err := c.Global(ctx, "hello"); err != nil || n != 1 {
		t.Errorf("global: %d rooms, %v", n, err)
	}
	_, err = c.Global(ctx, "")
	wantErr("empty global", err, http.StatusBadRequest, chatfleet.EINVALID)
	ban := chatfleet.Ban{ID: "b1", UserID: "spammer", CreatedAt: time.Now()}
	if n, err := c.ApplyBans(ctx, hostapi.BanChanges{Add: []chatfleet.Ban{ban}}); err != nil || n != 1 {
		t.Errorf("bans: %d rooms, %v", n, err)
	}
	if n, err := c.RefreshCache(ctx); err != nil || n != 1 {
		t.Errorf("cache refresh: %d rooms, %v", n, err)
	}
	if s, err := c.Stats(ctx); err != nil || s.Rooms != 1 || s.Version != chatfleet.Version {
		t.Errorf("stats: %+v, %v", s, err)
	}

	if a, err := c.Do(ctx, hostapi.Drain); err != nil || a.State != chatfleet.HostDraining {
		t.Errorf("drain: %+v, %v", a, err)
	}
	_, err = c.CreateRoom(ctx, "late", hostapi.RoomOptions{})
	wantErr("create while draining", err, http.StatusServiceUnavailable, chatfleet.EUNAVAILABLE)
	if a, err := c.Do(ctx, hostapi.Resume); err != nil || a.State != chatfleet.HostAccepting {
		t.Errorf("resume: %+v, %v", a, err)
	}

	if err := c.CloseRoom(ctx, "lobby", "done"); err != nil {
		t.Fatalf("close: %v", err)
	}
	err = c.AdminCloseRoom(ctx, "lobby", "again")
	wantErr("second close", err, http.StatusNotFound, chatfleet.ENOTFOUND)

	wrong := *c
	wrong.Key, wrong.AdminKey = "wrong", ""
	_, err = wrong.Rooms(ctx)
	wantErr("wrong key", err, http.StatusForbidden, chatfleet.EFORBIDDEN)
	_, err = wrong.Stats(ctx)
	wantErr("no admin key", err, http.StatusUnauthorized, chatfleet.EUNAUTHORIZED)
}
