package mongo_test

import (
	"context"
	"slices"
	"testing"
	"time"

	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
)

func TestBans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	s := newStore(t, c)
	now := c.Now()

	forever := &chatfleet.Ban{ID: "b1", UserID: "u1", By: "admin", Reason: "spam"}
	must(t, s.AddBan(ctx, forever))
	auto := &chatfleet.Ban{UserID: "u0", By: "admin"}
	must(t, s.AddBan(ctx, auto))
	if auto.ID == "" || !auto.CreatedAt.Equal(now) {
		t.Fatalf("AddBan filled id %q createdAt %v, want an id and %v", auto.ID, auto.CreatedAt, now)
	}
	must(t, s.RemoveBan(ctx, auto.ID))
	c.Add(time.Second)
	inRoom := &chatfleet.Ban{ID: "b2", UserID: "u2", Room: "lobby", By: "mod", Until: now.Add(time.Hour)}
	must(t, s.AddBan(ctx, inRoom))
	must(t, s.AddBan(ctx, &chatfleet.Ban{ID: "b4", UserID: "u2", Room: "kitchen", By: "mod"}))
	c.Add(time.Second)
	must(t, s.AddBan(ctx, &chatfleet.Ban{ID: "b3", UserID: "u3", By: "mod", Until: now.Add(time.Minute)}))

	ids := func(f chatfleet.BanFilter) []string {
		t.Helper()
		bans, err := s.Bans(ctx, f)
		must(t, err)
		var ids []string
		for _, b := range bans {
			ids = append(ids, b.ID)
		}
		return ids
	}
	if got := ids(chatfleet.BanFilter{Now: now}); !slices.Equal(got, []string{"b1", "b3"}) {
		t.Fatalf("fleet bans now: %v", got)
	}
	if got := ids(chatfleet.BanFilter{Now: now.Add(2 * time.Minute)}); !slices.Equal(got, []string{"b1"}) {
		t.Fatalf("fleet bans in 2 minutes: %v, want the forever ban", got)
	}
	if got := ids(chatfleet.BanFilter{}); !slices.Equal(got, []string{"b1", "b3"}) {
		t.Fatalf("fleet bans, expired included: %v", got)
	}
	if got := ids(chatfleet.BanFilter{Room: "lobby", Now: now}); !slices.Equal(got, []string{"b2"}) {
		t.Fatalf("lobby bans: %v", got)
	}
	if got := ids(chatfleet.BanFilter{Limit: 1}); !slices.Equal(got, []string{"b1"}) {
		t.Fatalf("first page of one: %v", got)
	}
	if got := ids(chatfleet.BanFilter{Limit: 1, After: "b1"}); !slices.Equal(got, []string{"b3"}) {
		t.Fatalf("second page of one: %v", got)
	}
	if _, err := s.Bans(ctx, chatfleet.BanFilter{Limit: chatfleet.MaxBanPage + 1}); chatfleet.ErrorCode(err) != chatfleet.EINVALID {
		t.Fatalf("oversized page: %v", err)
	}
	bans, err := s.Bans(ctx, chatfleet.BanFilter{Room: "lobby"})
	must(t, err)
	if len(bans) != 1 || bans[0] != *inRoom {
		t.Fatalf("stored room bans %+v, want %+v", bans, inRoom)
	}
	for room, want := range map[string]int{"": 2, "lobby": 1, "kitchen": 1, "nowhere": 0} {
		n, err := s.CountBans(ctx, room, now)
		must(t, err)
		if n != want {
			t.Fatalf("CountBans(%q) = %d, want %d", room, n, want)
		}
	}

	// A user's bans in one scope go together; other scopes keep theirs.
	removed, err := s.RemoveUserBans(ctx, "lobby", "u2")
	must(t, err)
	if len(removed) != 1 || removed[0].ID != "b2" {
		t.Fatalf("RemoveUserBans(lobby, u2) = %+v", removed)
	}
	if got := ids(chatfleet.BanFilter{Room: "kitchen"}); !slices.Equal(got, []string{"b4"}) {
		t.Fatalf("kitchen bans after removing lobby's: %v", got)
	}
	_, err = s.RemoveUserBans(ctx, "lobby", "u2")
	wantCode(t, err, chatfleet.ENOTFOUND)
	_, err = s.RemoveUserBans(ctx, "", "u2") // u2 has no fleet ban
	wantCode(t, err, chatfleet.ENOTFOUND)

	must(t, s.RemoveBan(ctx, "b3"))
	if got := ids(chatfleet.BanFilter{Now: now}); !slices.Equal(got, []string{"b1"}) {
		t.Fatalf("bans after removing b3: %v", got)
	}
	wantCode(t, s.RemoveBan(ctx, "b3"), chatfleet.ENOTFOUND)
	wantCode(t, s.AddBan(ctx, &chatfleet.Ban{ID: "b1", UserID: "u9"}), chatfleet.ECONFLICT)
	wantCode(t, s.AddBan(ctx, &chatfleet.Ban{}), chatfleet.EINVALID)
}

func TestSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, newClock())

	words, err := s.BlockedWords(ctx)
	must(t, err)
	if words == nil || len(words) != 0 {
		t.Fatalf("blocked words before any: %#v, want an empty list", words)
	}
	defaults, err := s.RoomDefaults(ctx)
	must(t, err)
	if defaults != chatfleet.DefaultRoomSettings {
		t.Fatalf("room defaults before any: %+v, want %+v", defaults, chatfleet.DefaultRoomSettings)
	}

	for _, set := range [][]string{{"foo", "bar"}, {"baz"}, nil} {
		must(t, s.SetBlockedWords(ctx, set))
		words, err := s.BlockedWords(ctx)
		must(t, err)
		if !slices.Equal(words, set) || words == nil {
			t.Fatalf("blocked words %#v, want %#v", words, set)
		}
	}

	rs := chatfleet.RoomSettings{HistorySize: 10, MaxMessageLen: 200, SlowModeSeconds: 3, AllowAnonymous: true}
	must(t, s.SetRoomDefaults(ctx, rs))
	got, err := s.RoomDefaults(ctx)
	must(t, err)
	if got != rs {
		t.Fatalf("room defaults %+v, want %+v", got, rs)
	}
	wantCode(t, s.SetRoomDefaults(ctx, chatfleet.RoomSettings{HistorySize: -1}), chatfleet.EINVALID)

	// The host daemon's cache comes from the same calls.
	must(t, s.SetBlockedWords(ctx, []string{"foo"}))
	must(t, s.AddBan(ctx, &chatfleet.Ban{ID: "b1", UserID: "u1"}))
	must(t, s.AddBan(ctx, &chatfleet.Ban{ID: "b2", UserID: "u2", Room: "lobby"}))
	cache, err := chatfleet.LoadCache(ctx, s, time.Now(), 100)
	must(t, err)
	if len(cache.Bans) != 1 || !slices.Equal(cache.BlockedWords, []string{"foo"}) || cache.Defaults != rs {
		t.Fatalf("cache %+v", cache)
	}
}

func TestAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	s := newStore(t, c)

	var all []*chatfleet.AuditEntry
	for i, target := range []string{"lobby", "u1", "lobby", "h1", "lobby"} {
		e := &chatfleet.AuditEntry{Actor: "admin", Action: "room.close", Target: target}
		if i == 4 {
			e.At = c.Now().Add(time.Hour) // given times are kept
		}
		must(t, s.Audit(ctx, e))
		if e.ID == "" || e.At.IsZero() {
			t.Fatalf("Audit did not fill id and time: %+v", e)
		}
		all = append(all, e)
		c.Add(time.Second)
	}
	wantCode(t, s.Audit(ctx, &chatfleet.AuditEntry{Actor: "admin"}), chatfleet.EINVALID)

	list := func(f chatfleet.AuditFilter) []chatfleet.AuditEntry {
		t.Helper()
		es, err := s.AuditLog(ctx, f)
		must(t, err)
		return es
	}
	want := func(es []chatfleet.AuditEntry, idx ...int) {
		t.Helper()
		if len(es) != len(idx) {
			t.Fatalf("got %d entries %+v, want entries %v", len(es), es, idx)
		}
		for i, j := range idx {
			if es[i] != *all[j] {
				t.Fatalf("entry %d: %+v, want %+v", i, es[i], *all[j])
			}
		}
	}
	want(list(chatfleet.AuditFilter{}), 4, 3, 2, 1, 0)
	want(list(chatfleet.AuditFilter{Target: "lobby"}), 4, 2, 0)
	want(list(chatfleet.AuditFilter{Limit: 2}), 4, 3)
	want(list(chatfleet.AuditFilter{Before: all[3].At, Limit: 2}), 2, 1)
	want(list(chatfleet.AuditFilter{Target: "lobby", Before: all[2].At}), 0)
}

// TestAddBansIdempotent stores a host's queue of bans twice, as a retry
// after a lost answer would: nothing is stored twice.
func TestAddBansIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, newClock())
	batch := []chatfleet.Ban{
		{ID: "f1", UserID: "u1"}, {ID: "r1", UserID: "u2", Room: "lobby"},
		{ID: "r2", UserID: "u3", Room: "lobby"}, {ID: "k1", UserID: "u2", Room: "kitchen"},
	}
	must(t, s.AddBans(ctx, batch))
	must(t, s.AddBans(ctx, append(batch, chatfleet.Ban{ID: "r3", UserID: "u4", Room: "lobby"})))
	for room, want := range map[string]int{"": 1, "lobby": 3, "kitchen": 1} {
		if n, err := s.CountBans(ctx, room, time.Time{}); err != nil || n != want {
			t.Fatalf("CountBans(%q) = %d, %v; want %d", room, n, err, want)
		}
	}
	wantCode(t, s.AddBan(ctx, &chatfleet.Ban{ID: "r1", UserID: "u9", Room: "lobby"}), chatfleet.ECONFLICT)
	must(t, s.RemoveBan(ctx, "r2")) // a room ban found by its id alone
	if n, _ := s.CountBans(ctx, "lobby", time.Time{}); n != 2 {
		t.Fatalf("lobby holds %d bans after removing r2, want 2", n)
	}
	wantCode(t, s.AddBans(ctx, []chatfleet.Ban{{ID: "x"}}), chatfleet.EINVALID)
}

// TestRoomBansMovedOnOpen opens a store whose bans collection holds room
// bans the way the previous release wrote them: they become their rooms'
// bans, never fleet bans.
func TestRoomBansMovedOnOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := storetest.Config(t)
	cl, err := mongodrv.Connect(options.Client().ApplyURI(cfg.URI))
	must(t, err)
	defer cl.Disconnect(ctx)
	_, err = cl.Database(cfg.Database).Collection("bans").InsertMany(ctx, []any{
		chatfleet.Ban{ID: "old-fleet", UserID: "u1"},
		chatfleet.Ban{ID: "old-room", UserID: "u2", Room: "lobby"},
	})
	must(t, err)
	s := storetest.Open(t, cfg)
	fleet, err := s.Bans(ctx, chatfleet.BanFilter{})
	must(t, err)
	lobby, err := s.Bans(ctx, chatfleet.BanFilter{Room: "lobby"})
	must(t, err)
	if len(fleet) != 1 || fleet[0].ID != "old-fleet" || len(lobby) != 1 || lobby[0].ID != "old-room" {
		t.Fatalf("after open: fleet %+v, lobby %+v", fleet, lobby)
	}
}
