package master

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
)

// refresh posts to the admin port's POST /api/v1/cache/refresh of m.
func refresh(m *Master) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/cache/refresh", nil)
	req.Header.Set("X-API-Key", m.cfg.AdminKey)
	rec := httptest.NewRecorder()
	m.adminHandler().ServeHTTP(rec, req)
	return rec
}

// TestCacheRefresh: POST /api/v1/cache/refresh reloads the cache at once,
// the periodic refresh being an hour away, and sends it to every room; a
// second one, with nothing changed, sends the same version again.
func TestCacheRefresh(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cache.json")
	write := func(words ...string) {
		b, _ := json.Marshal(chatfleet.Cache{BlockedWords: words, Defaults: chatfleet.DefaultRoomSettings})
		os.WriteFile(file, b, 0o600)
		later := time.Now().Add(time.Minute) // a new modification time, however fast
		os.Chtimes(file, later, later)
	}
	write("darn")
	m, dir := fakeRooms(t, Config{CacheFile: file, CacheEvery: time.Hour, AdminKey: "admin-key"})
	for _, name := range []string{"a", "b"} {
		if _, err := m.CreateRoom(context.Background(), name, RoomOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lastCache := func(name string) frameRecord {
		var last frameRecord
		for _, r := range records(t, dir, name) {
			if r.Type == ipc.TypeCache {
				last = r
			}
		}
		return last
	}
	waitCache := func(name string, words int, version int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c := lastCache(name)
			if c.Words == words && (version == 0 || c.Version == version) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("room %s: last cache %+v, want %d words (version %d)", name, c, words, version)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCache("a", 1, 0)
	waitCache("b", 1, 0)

	write("darn", "heck", "drat")
	rec := refresh(m)
	var out struct{ Data struct{ Rooms int } }
	if json.Unmarshal(rec.Body.Bytes(), &out); rec.Code != http.StatusOK || out.Data.Rooms != 2 {
		t.Fatalf("refresh: %d %s", rec.Code, rec.Body)
	}
	v := m.cache.current().Version
	waitCache("a", 3, v)
	waitCache("b", 3, v)
	if rec := refresh(m); rec.Code != http.StatusOK || m.cache.current().Version != v {
		t.Errorf("a refresh with nothing changed: %d %s, version %d, want %d", rec.Code, rec.Body, m.cache.current().Version, v)
	}
}

// TestCacheRefreshRefused: a host with neither store nor CACHE_FILE has
// nothing to reload and says so (503); the admin key is required.
func TestCacheRefreshRefused(t *testing.T) {
	m, err := New(Config{StateDir: t.TempDir(), Key: "k", AdminKey: "admin-key", Self: "/bin/false"})
	if err != nil {
		t.Fatal(err)
	}
	rec := refresh(m)
	if rec.Code != http.StatusServiceUnavailable || !json.Valid(rec.Body.Bytes()) {
		t.Errorf("no store: %d %s, want 503", rec.Code, rec.Body)
	}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/cache/refresh", nil)
	req.Header.Set("X-API-Key", "k")
	rec = httptest.NewRecorder()
	m.adminHandler().ServeHTTP(rec, req)
	if rec.Code/100 != 4 {
		t.Errorf("with the API key: %d, want a refusal", rec.Code)
	}
}
