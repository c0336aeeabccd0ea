package mongo_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/mongo"
	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func room(name, host string, port int) *chatfleet.Room {
	return &chatfleet.Room{Name: name, HostID: host, HostAddr: host + ".example.com", Port: port, Status: chatfleet.RoomLive}
}

func TestCreateRoom(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("StoresAndReads", func(t *testing.T) {
		t.Parallel()
		c := newClock()
		s := newStore(t, c)
		r := &chatfleet.Room{Name: "lobby", HostID: "h1", HostAddr: "h1.example.com", Port: 34001,
			ProducerLive: true, HLSURL: "https://cdn/lobby.m3u8", Viewers: 3, Paid: true}
		must(t, s.CreateRoom(ctx, r))
		if r.Status != chatfleet.RoomStarting || !r.CreatedAt.Equal(c.Now()) || !r.UpdatedAt.Equal(c.Now()) {
			t.Fatalf("CreateRoom filled status %q, createdAt %v, updatedAt %v; want starting and %v", r.Status, r.CreatedAt, r.UpdatedAt, c.Now())
		}
		got, err := s.Room(ctx, "lobby")
		must(t, err)
		if !reflect.DeepEqual(*got, *r) {
			t.Fatalf("Room = %+v, want %+v", got, r)
		}
	})

	t.Run("RoundsTimesToMilliseconds", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, newClock())
		at := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
		r := &chatfleet.Room{Name: "precise", CreatedAt: at}
		must(t, s.CreateRoom(ctx, r))
		got, err := s.Room(ctx, "precise")
		must(t, err)
		if !got.CreatedAt.Equal(r.CreatedAt) || got.CreatedAt.Nanosecond() != 123000000 {
			t.Fatalf("createdAt stored %v, returned %v; want %v rounded to the millisecond", got.CreatedAt, r.CreatedAt, at)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, newClock())
		wantCode(t, s.CreateRoom(ctx, &chatfleet.Room{Name: "bad name"}), chatfleet.EINVALID)
		wantCode(t, s.CreateRoom(ctx, &chatfleet.Room{Name: "ok", Status: chatfleet.RoomClosed}), chatfleet.EINVALID)
		wantCode(t, s.CreateRoom(ctx, &chatfleet.Room{Name: "ok", Status: "weird"}), chatfleet.EINVALID)
	})

	t.Run("OpenRoomConflicts", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, newClock())
		must(t, s.CreateRoom(ctx, room("lobby", "h1", 34001)))
		for _, status := range []chatfleet.RoomStatus{chatfleet.RoomLive, chatfleet.RoomOffline, chatfleet.RoomStale, chatfleet.RoomStarting} {
			must(t, s.UpdateRoom(ctx, "lobby", chatfleet.RoomUpdate{Status: &status}))
			err := s.CreateRoom(ctx, room("lobby", "h2", 34999))
			wantCode(t, err, chatfleet.ECONFLICT)
			if e := domainError(t, err); e.Host != "h1.example.com" || e.Port != 34001 {
				t.Fatalf("conflict with a %s room says host %q port %d, want h1.example.com 34001", status, e.Host, e.Port)
			}
		}
	})

	t.Run("ReplacesEndedRoom", func(t *testing.T) {
		t.Parallel()
		c := newClock()
		s := newStore(t, c)
		for i, status := range []chatfleet.RoomStatus{chatfleet.RoomClosed, chatfleet.RoomFailed} {
			must(t, s.CreateRoom(ctx, room("lobby", "h1", 34001)))
			must(t, s.UpdateRoom(ctx, "lobby", chatfleet.RoomUpdate{Status: &status}))
			c.Add(time.Minute)
			again := room("lobby", "h2", 35000+i)
			must(t, s.CreateRoom(ctx, again))
			got, err := s.Room(ctx, "lobby")
			must(t, err)
			if !reflect.DeepEqual(*got, *again) {
				t.Fatalf("after replacing a %s room: %+v, want %+v", status, got, again)
			}
			must(t, s.UpdateRoom(ctx, "lobby", chatfleet.RoomUpdate{Status: ptr(chatfleet.RoomClosed)}))
		}
	})

	t.Run("ConcurrentCreatesOneWins", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, newClock())
		// Once on a free name, once on the name of a closed room.
		for round, setup := range []func(){
			func() {},
			func() {
				must(t, s.UpdateRoom(ctx, "race", chatfleet.RoomUpdate{Status: ptr(chatfleet.RoomClosed)}))
			},
		} {
			setup()
			const n = 8
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					errs[i] = s.CreateRoom(ctx, room("race", fmt.Sprintf("h%d", i), 40000+i))
				})
			}
			wg.Wait()
			winner := -1
			for i, err := range errs {
				if err == nil {
					if winner >= 0 {
						t.Fatalf("round %d: creates %d and %d both won", round, winner, i)
					}
					winner = i
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: no create won: %v", round, errs)
			}
			for i, err := range errs {
				if i == winner {
					continue
				}
				wantCode(t, err, chatfleet.ECONFLICT)
				if e := domainError(t, err); e.Port != 40000+winner || e.Host != fmt.Sprintf("h%d.example.com", winner) {
					t.Fatalf("round %d: loser %d sees host %q port %d, want the winner's h%d.example.com %d", round, i, e.Host, e.Port, winner, 40000+winner)
				}
			}
			got, err := s.Room(ctx, "race")
			must(t, err)
			if got.Port != 40000+winner {
				t.Fatalf("round %d: stored port %d, want the winner's %d", round, got.Port, 40000+winner)
			}
		}
	})
}

func TestRoomAndUpdateRoom(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	s := newStore(t, c)
	created := c.Now()
	must(t, s.CreateRoom(ctx, room("lobby", "h1", 34001)))

	t.Run("NotFound", func(t *testing.T) {
		_, err := s.Room(ctx, "nowhere")
		wantCode(t, err, chatfleet.ENOTFOUND)
		wantCode(t, s.UpdateRoom(ctx, "nowhere", chatfleet.RoomUpdate{Viewers: ptr(1)}), chatfleet.ENOTFOUND)
	})

	t.Run("SetsGivenFields", func(t *testing.T) {
		later := c.Add(time.Minute)
		must(t, s.UpdateRoom(ctx, "lobby", chatfleet.RoomUpdate{
			Status: ptr(chatfleet.RoomOffline), ProducerLive: ptr(true), HLSURL: ptr("https://cdn/x.m3u8"), Viewers: ptr(42),
		}))
		got, err := s.Room(ctx, "lobby")
		must(t, err)
		want := chatfleet.Room{Name: "lobby", HostID: "h1", HostAddr: "h1.example.com", Port: 34001,
			Status: chatfleet.RoomOffline, ProducerLive: true, HLSURL: "https://cdn/x.m3u8", Viewers: 42,
			CreatedAt: created, UpdatedAt: later}
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("after update: %+v, want %+v", got, want)
		}

		// Nil fields stay.
		later = c.Add(time.Minute)
		must(t, s.UpdateRoom(ctx, "lobby", chatfleet.RoomUpdate{Viewers: ptr(7)}))
		got, err = s.Room(ctx, "lobby")
		must(t, err)
		want.Viewers, want.UpdatedAt = 7, later
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("after viewers update: %+v, want %+v", got, want)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		wantCode(t, s.UpdateRoom(ctx, "lobby", chatfleet.RoomUpdate{Status: ptr(chatfleet.RoomStatus("weird"))}), chatfleet.EINVALID)
		wantCode(t, s.UpdateRoom(ctx, "lobby", chatfleet.RoomUpdate{Viewers: ptr(-1)}), chatfleet.EINVALID)
	})
}

func TestListRooms(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	s := newStore(t, c)
	// name, host, viewers, status; created one minute apart in this order.
	rooms := []struct {
		name    string
		host    string
		viewers int
		status  chatfleet.RoomStatus
	}{
		{"a", "h1", 10, chatfleet.RoomLive},
		{"b", "h2", 30, chatfleet.RoomLive},
		{"c", "h1", 10, chatfleet.RoomOffline},
		{"d", "h2", 0, chatfleet.RoomClosed},
		{"e", "h1", 30, chatfleet.RoomStale},
		{"f", "h2", 5, chatfleet.RoomFailed},
		{"g", "h1", 10, chatfleet.RoomStarting},
	}
	for _, r := range rooms {
		c.Add(time.Minute)
		must(t, s.CreateRoom(ctx, &chatfleet.Room{Name: r.name, HostID: r.host}))
		must(t, s.UpdateRoom(ctx, r.name, chatfleet.RoomUpdate{Viewers: &r.viewers, Status: &r.status}))
	}
	// Two rooms created in the same millisecond: the name breaks the tie.
	must(t, s.CreateRoom(ctx, &chatfleet.Room{Name: "h", HostID: "h2"}))

	for _, tc := range []struct {
		name   string
		filter chatfleet.RoomFilter
		want   []string
	}{
		{"Newest", chatfleet.RoomFilter{}, []string{"g", "h", "f", "e", "d", "c", "b", "a"}},
		{"Viewers", chatfleet.RoomFilter{Sort: chatfleet.SortViewers}, []string{"b", "e", "a", "c", "g", "f", "d", "h"}},
		{"OpenOnly", chatfleet.RoomFilter{OpenOnly: true, Sort: chatfleet.SortViewers}, []string{"b", "e", "a", "c", "g", "h"}},
		{"Host", chatfleet.RoomFilter{HostID: "h1"}, []string{"g", "e", "c", "a"}},
		{"OpenOnHost", chatfleet.RoomFilter{HostID: "h2", OpenOnly: true, Sort: chatfleet.SortNewest}, []string{"h", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, limit := range []int{0, 1, 2, 3, 100} {
				f := tc.filter
				f.Limit = limit
				var got []string
				for page := 0; ; page++ {
					rs, next, err := s.ListRooms(ctx, f)
					must(t, err)
					if limit > 0 && len(rs) > limit {
						t.Fatalf("limit %d: page of %d rooms", limit, len(rs))
					}
					for _, r := range rs {
						got = append(got, r.Name)
					}
					if next == "" {
						break
					}
					if page > len(tc.want) {
						t.Fatalf("limit %d: paging does not end: %v", limit, got)
					}
					f.Cursor = next
				}
				if !slices.Equal(got, tc.want) {
					t.Fatalf("limit %d: listed %v, want %v", limit, got, tc.want)
				}
			}
		})
	}

	t.Run("LastPageHasNoCursor", func(t *testing.T) {
		rs, next, err := s.ListRooms(ctx, chatfleet.RoomFilter{HostID: "h1", Limit: 4})
		must(t, err)
		if len(rs) != 4 || next != "" {
			t.Fatalf("exactly full last page: %d rooms, cursor %q; want 4 and none", len(rs), next)
		}
	})

	t.Run("BadCursorAndSort", func(t *testing.T) {
		_, next, err := s.ListRooms(ctx, chatfleet.RoomFilter{Sort: chatfleet.SortViewers, Limit: 1})
		must(t, err)
		_, _, err = s.ListRooms(ctx, chatfleet.RoomFilter{Sort: chatfleet.SortNewest, Cursor: next})
		wantCode(t, err, chatfleet.EINVALID)
		_, _, err = s.ListRooms(ctx, chatfleet.RoomFilter{Cursor: "not a cursor!"})
		wantCode(t, err, chatfleet.EINVALID)
		_, _, err = s.ListRooms(ctx, chatfleet.RoomFilter{Sort: "random"})
		wantCode(t, err, chatfleet.EINVALID)
	})
}

func TestListRoomsPageSizes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, newClock())
	rooms := make([]*chatfleet.Room, 205)
	for i := range rooms {
		rooms[i] = room(fmt.Sprintf("r%03d", i), "h1", 30000+i)
	}
	// SyncHost writes them in one batch.
	must(t, s.SyncHost(ctx, "h1", rooms, always))
	for _, tc := range []struct{ limit, want int }{{0, 50}, {-1, 50}, {200, 200}, {201, 200}, {1000, 200}} {
		rs, next, err := s.ListRooms(ctx, chatfleet.RoomFilter{Limit: tc.limit})
		must(t, err)
		if len(rs) != tc.want || next == "" {
			t.Fatalf("limit %d: %d rooms, cursor %q; want %d and a cursor", tc.limit, len(rs), next, tc.want)
		}
	}
}

func TestSyncHost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	s := newStore(t, c)
	t0 := c.Now()
	must(t, s.CreateRoom(ctx, room("kept", "h1", 1)))
	must(t, s.CreateRoom(ctx, room("gone", "h1", 2)))
	must(t, s.CreateRoom(ctx, room("ended", "h2", 3)))
	must(t, s.UpdateRoom(ctx, "ended", chatfleet.RoomUpdate{Status: ptr(chatfleet.RoomClosed)}))
	must(t, s.CreateRoom(ctx, room("theirs", "h2", 4)))
	must(t, s.CreateRoom(ctx, room("other", "h2", 5)))
	must(t, s.CreateRoom(ctx, room("old", "h1", 6)))
	must(t, s.UpdateRoom(ctx, "old", chatfleet.RoomUpdate{Status: ptr(chatfleet.RoomFailed)}))

	t1 := c.Add(time.Minute)
	report := []*chatfleet.Room{
		{Name: "kept", HostAddr: "h1.new", Port: 11, Status: chatfleet.RoomOffline, Viewers: 9, HLSURL: "u"},
		{Name: "ended", HostAddr: "h1.new", Port: 13, ProducerLive: true},
		{Name: "theirs", HostAddr: "h1.new", Port: 14, Status: chatfleet.RoomLive},
		{Name: "fresh", HostAddr: "h1.new", Port: 15, Status: chatfleet.RoomStarting},
	}
	must(t, s.SyncHost(ctx, "h1", report, always))

	want := map[string]chatfleet.Room{
		"kept":   {Name: "kept", HostID: "h1", HostAddr: "h1.new", Port: 11, Status: chatfleet.RoomOffline, Viewers: 9, HLSURL: "u", CreatedAt: t0, UpdatedAt: t1},
		"gone":   {Name: "gone", HostID: "h1", HostAddr: "h1.example.com", Port: 2, Status: chatfleet.RoomClosed, CreatedAt: t0, UpdatedAt: t1},
		"ended":  {Name: "ended", HostID: "h1", HostAddr: "h1.new", Port: 13, Status: chatfleet.RoomLive, ProducerLive: true, CreatedAt: t1, UpdatedAt: t1},
		"theirs": {Name: "theirs", HostID: "h2", HostAddr: "h2.example.com", Port: 4, Status: chatfleet.RoomLive, CreatedAt: t0, UpdatedAt: t0},
		"other":  {Name: "other", HostID: "h2", HostAddr: "h2.example.com", Port: 5, Status: chatfleet.RoomLive, CreatedAt: t0, UpdatedAt: t0},
		"old":    {Name: "old", HostID: "h1", HostAddr: "h1.example.com", Port: 6, Status: chatfleet.RoomFailed, CreatedAt: t0, UpdatedAt: t0},
		"fresh":  {Name: "fresh", HostID: "h1", HostAddr: "h1.new", Port: 15, Status: chatfleet.RoomStarting, CreatedAt: t1, UpdatedAt: t1},
	}
	check := func(t *testing.T) {
		t.Helper()
		for name, w := range want {
			got, err := s.Room(ctx, name)
			must(t, err)
			if !reflect.DeepEqual(*got, w) {
				t.Errorf("room %s:\n got %+v\nwant %+v", name, got, &w)
			}
		}
	}
	check(t)

	// The same report again changes nothing but UpdatedAt.
	t2 := c.Add(time.Minute)
	must(t, s.SyncHost(ctx, "h1", report, always))
	for _, name := range []string{"kept", "ended", "fresh"} {
		w := want[name]
		w.UpdatedAt = t2
		want[name] = w
	}
	check(t)

	// An empty report closes every open room of the host.
	t3 := c.Add(time.Minute)
	must(t, s.SyncHost(ctx, "h1", nil, always))
	for _, name := range []string{"kept", "ended", "fresh"} {
		w := want[name]
		w.Status, w.UpdatedAt, w.Viewers, w.ProducerLive = chatfleet.RoomClosed, t3, 0, false
		want[name] = w
	}
	check(t)

	wantCode(t, s.SyncHost(ctx, "", nil, always), chatfleet.EINVALID)
	wantCode(t, s.SyncHost(ctx, "h1", []*chatfleet.Room{{Name: "no good"}}, always), chatfleet.EINVALID)
}

func TestReapStale(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	s := newStore(t, c)
	t0 := c.Now()
	must(t, s.CreateRoom(ctx, room("quiet", "h1", 1)))
	must(t, s.CreateRoom(ctx, room("chatty", "h2", 2)))
	must(t, s.CreateRoom(ctx, room("done", "h1", 3)))
	must(t, s.UpdateRoom(ctx, "done", chatfleet.RoomUpdate{Status: ptr(chatfleet.RoomClosed)}))

	status := func(name string) chatfleet.RoomStatus {
		t.Helper()
		r, err := s.Room(ctx, name)
		must(t, err)
		return r.Status
	}
	reap := func(staleBefore, closeBefore time.Time, wantStale, wantClosed int) {
		t.Helper()
		stale, closed, err := s.ReapStale(ctx, staleBefore, closeBefore)
		must(t, err)
		if stale != wantStale || closed != wantClosed {
			t.Fatalf("ReapStale marked %d and closed %d, want %d and %d", stale, closed, wantStale, wantClosed)
		}
	}

	// Nothing older than t0.
	reap(t0, t0.Add(-time.Minute), 0, 0)

	// chatty reports at t0+1m; at t0+2m, rooms silent for 90s are stale.
	c.Add(time.Minute)
	must(t, s.SyncHost(ctx, "h2", []*chatfleet.Room{room("chatty", "h2", 2)}, always))
	now := c.Add(time.Minute)
	reap(now.Add(-90*time.Second), now.Add(-10*time.Minute), 1, 0)
	if status("quiet") != chatfleet.RoomStale || status("chatty") != chatfleet.RoomLive || status("done") != chatfleet.RoomClosed {
		t.Fatalf("after marking: quiet %s, chatty %s, done %s; want stale, live, closed", status("quiet"), status("chatty"), status("done"))
	}
	// A stale room still holds its name and is listed as open.
	wantCode(t, s.CreateRoom(ctx, room("quiet", "h3", 9)), chatfleet.ECONFLICT)
	rs, _, err := s.ListRooms(ctx, chatfleet.RoomFilter{OpenOnly: true, HostID: "h1"})
	must(t, err)
	if len(rs) != 1 || rs[0].Name != "quiet" {
		t.Fatalf("open rooms of h1: %v, want quiet", rs)
	}

	// Marking left UpdatedAt alone: 10 minutes after t0 the stale room closes.
	now = c.Add(10 * time.Minute)
	reap(now.Add(-30*time.Second), t0.Add(time.Second), 1, 1)
	if status("quiet") != chatfleet.RoomClosed || status("chatty") != chatfleet.RoomStale {
		t.Fatalf("after closing: quiet %s, chatty %s; want closed, stale", status("quiet"), status("chatty"))
	}
	r, err := s.Room(ctx, "quiet")
	must(t, err)
	if !r.UpdatedAt.Equal(now) {
		t.Fatalf("closing set updatedAt %v, want %v", r.UpdatedAt, now)
	}

	// The host coming back revives its stale room.
	must(t, s.SyncHost(ctx, "h2", []*chatfleet.Room{room("chatty", "h2", 2)}, always))
	if status("chatty") != chatfleet.RoomLive {
		t.Fatalf("after the host's report chatty is %s, want live", status("chatty"))
	}
	// And a closed name may be taken again.
	must(t, s.CreateRoom(ctx, room("quiet", "h3", 9)))
}

// TestRoomEdges: a room's edges are stored with it, replaced by an update,
// bounded, and kept by its host's sync (which reports the origin alone).
func TestRoomEdges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, newClock())
	edges := []chatfleet.RoomEdge{
		{HostID: "h2", HostAddr: "h2.example.com", Port: 34001, WSURL: "ws://h2.example.com:34001/ws", SSEURL: "http://h2.example.com:34001/events"},
		{HostID: "h3", HostAddr: "h3.example.com", Port: 34002},
	}
	r := room("spread", "h1", 34000)
	r.Edges = edges
	must(t, s.CreateRoom(ctx, r))
	got, err := s.Room(ctx, "spread")
	must(t, err)
	if !reflect.DeepEqual(got.Edges, edges) {
		t.Fatalf("stored edges %+v, want %+v", got.Edges, edges)
	}
	must(t, s.SyncHost(ctx, "h1", []*chatfleet.Room{{Name: "spread", HostAddr: "h1.example.com", Port: 34000, Viewers: 5}}, always))
	if got, err = s.Room(ctx, "spread"); err != nil || got.Viewers != 5 || !reflect.DeepEqual(got.Edges, edges) {
		t.Fatalf("after the origin host's sync: %+v, %v; want its viewers and the edges kept", got, err)
	}
	must(t, s.UpdateRoom(ctx, "spread", chatfleet.RoomUpdate{Edges: ptr(edges[:1])}))
	if got, err = s.Room(ctx, "spread"); err != nil || !reflect.DeepEqual(got.Edges, edges[:1]) {
		t.Fatalf("after an update of the edges: %+v, %v", got, err)
	}
	tooMany := make([]chatfleet.RoomEdge, chatfleet.MaxRoomEdges+1)
	wantCode(t, s.UpdateRoom(ctx, "spread", chatfleet.RoomUpdate{Edges: &tooMany}), chatfleet.EINVALID)
	big := room("big", "h1", 34003)
	big.Edges = tooMany
	wantCode(t, s.CreateRoom(ctx, big), chatfleet.EINVALID)
}

// TestRoomsOfEitherKey: rooms keyed by their name, as this release writes
// them, and by an ObjectID, as releases up to 1.3.0 did, are read, listed,
// updated, synced, reaped and replaced alike.
func TestRoomsOfEitherKey(t *testing.T) {
	t.Parallel()
	for _, key := range []struct {
		name string
		id   func(name string) any
	}{
		{"name", func(name string) any { return name }},
		{"ObjectID", func(string) any { return bson.NewObjectID() }},
	} {
		t.Run(key.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := newClock()
			cfg := storetest.Config(t)
			cfg.Now = c.Now
			s := storetest.Open(t, cfg)
			coll := rawRooms(t, cfg)
			at := c.Now().Truncate(time.Millisecond)
			doc := func(name, host string, status chatfleet.RoomStatus) bson.D {
				return bson.D{{Key: "_id", Value: key.id(name)}, {Key: "name", Value: name}, {Key: "hostId", Value: host},
					{Key: "hostAddr", Value: "10.0.0.1"}, {Key: "port", Value: 34000}, {Key: "status", Value: status},
					{Key: "createdAt", Value: at}, {Key: "updatedAt", Value: at}}
			}
			_, err := coll.InsertMany(ctx, []any{
				doc("open-one", "h1", chatfleet.RoomLive), doc("ended-one", "h1", chatfleet.RoomClosed),
				doc("synced", "h2", chatfleet.RoomLive), doc("gone", "h2", chatfleet.RoomLive),
			})
			must(t, err)

			r, err := s.Room(ctx, "open-one")
			must(t, err)
			if r.Status != chatfleet.RoomLive || r.HostID != "h1" {
				t.Fatalf("Room: %+v", r)
			}
			// RoomByKey finds the records keyed by their name only.
			if r, err := s.RoomByKey(ctx, "open-one"); key.name == "name" && (err != nil || r.HostID != "h1") {
				t.Errorf("RoomByKey: %+v, %v", r, err)
			} else if key.name != "name" {
				wantCode(t, err, chatfleet.ENOTFOUND)
			}
			rooms, _, err := s.ListRooms(ctx, chatfleet.RoomFilter{OpenOnly: true})
			must(t, err)
			if len(rooms) != 3 {
				t.Errorf("ListRooms: %d open rooms, want 3", len(rooms))
			}
			must(t, s.UpdateRoom(ctx, "open-one", chatfleet.RoomUpdate{Viewers: ptr(7)}))
			if r, _ := s.Room(ctx, "open-one"); r == nil || r.Viewers != 7 {
				t.Errorf("UpdateRoom: %+v", r)
			}
			// A create of an open room's name conflicts; of an ended one
			// replaces it, keyed by its name.
			wantCode(t, s.CreateRoom(ctx, &chatfleet.Room{Name: "open-one", HostID: "h3", HostAddr: "10.0.0.3", Port: 1}), chatfleet.ECONFLICT)
			must(t, s.CreateRoom(ctx, &chatfleet.Room{Name: "ended-one", HostID: "h3", HostAddr: "10.0.0.3", Port: 2}))
			if r, _ := s.Room(ctx, "ended-one"); r == nil || r.HostID != "h3" || !r.Status.Open() {
				t.Errorf("create over an ended room: %+v", r)
			}
			wantKeys(t, coll, "ended-one")
			// The host h2 reports synced, not gone.
			must(t, s.SyncHost(ctx, "h2", []*chatfleet.Room{{Name: "synced", HostID: "h2", HostAddr: "10.0.0.2", Port: 9, Status: chatfleet.RoomOffline}}, always))
			if r, _ := s.Room(ctx, "synced"); r == nil || r.Port != 9 || r.Status != chatfleet.RoomOffline {
				t.Errorf("SyncHost update: %+v", r)
			}
			if r, _ := s.Room(ctx, "gone"); r == nil || r.Status != chatfleet.RoomClosed {
				t.Errorf("SyncHost close: %+v", r)
			}
			// h1 stops reporting: open-one goes stale, then closed.
			c.Add(time.Hour)
			stale, _, err := s.ReapStale(ctx, c.Now().Add(-time.Minute), c.Now().Add(-2*time.Hour))
			must(t, err)
			if stale == 0 {
				t.Error("ReapStale marked nothing stale")
			}
			if r, _ := s.Room(ctx, "open-one"); r == nil || r.Status != chatfleet.RoomStale {
				t.Errorf("ReapStale: %+v", r)
			}
		})
	}
}

// TestRoomsWrittenByName: what creates and syncs store is keyed by the
// room's name, and a document whose key is a name but whose name is another
// is not taken for the room of its key.
func TestRoomsWrittenByName(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := storetest.Config(t)
	s := storetest.Open(t, cfg)
	coll := rawRooms(t, cfg)
	must(t, s.CreateRoom(ctx, room("created", "h1", 34000)))
	must(t, s.SyncHost(ctx, "h2", []*chatfleet.Room{room("synced", "h2", 34001)}, always))
	if storedKey(t, coll, "created") != "created" || storedKey(t, coll, "synced") != "synced" {
		t.Errorf("keys %v, %v; want the names", storedKey(t, coll, "created"), storedKey(t, coll, "synced"))
	}
	// A create over an ended room takes the key the ended one did not have.
	must(t, s.CreateRoom(ctx, room("again", "h1", 34002)))
	for i, want := range []string{"again~", "again", "again~"} {
		must(t, s.UpdateRoom(ctx, "again", chatfleet.RoomUpdate{Status: ptr(chatfleet.RoomClosed)}))
		must(t, s.CreateRoom(ctx, room("again", "h1", 34003+i)))
		if got := storedKey(t, coll, "again"); got != want {
			t.Errorf("keyed %v, want %v", got, want)
		}
		for _, read := range []func(context.Context, string) (*chatfleet.Room, error){s.Room, s.RoomByKey} {
			if r, err := read(ctx, "again"); err != nil || r.Port != 34003+i {
				t.Errorf("read: %+v, %v", r, err)
			}
		}
	}

	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "posing"}, {Key: "name", Value: "other"},
		{Key: "hostId", Value: "h9"}, {Key: "status", Value: chatfleet.RoomLive}})
	must(t, err)
	_, err = s.Room(ctx, "posing")
	wantCode(t, err, chatfleet.ENOTFOUND)
	_, err = s.RoomByKey(ctx, "posing")
	wantCode(t, err, chatfleet.ENOTFOUND)
	if r, err := s.RoomByKey(ctx, "created"); err != nil || r.Port != 34000 {
		t.Errorf("RoomByKey: %+v, %v", r, err)
	}
	wantCode(t, s.UpdateRoom(ctx, "posing", chatfleet.RoomUpdate{Viewers: ptr(1)}), chatfleet.ENOTFOUND)
	if r, err := s.Room(ctx, "other"); err != nil || r.Viewers != 0 {
		t.Errorf("the posing document: %+v, %v", r, err)
	}
	// Its key does not keep the name from a room: that one takes the other.
	must(t, s.CreateRoom(ctx, room("posing", "h1", 34009)))
	if r, err := s.Room(ctx, "posing"); err != nil || r.Port != 34009 || storedKey(t, coll, "posing") != "posing~" {
		t.Errorf("created over a posing key: %+v, %v, keyed %v", r, err, storedKey(t, coll, "posing"))
	}
}

// rawRooms is the rooms collection of cfg's store, through the driver.
func rawRooms(t *testing.T, cfg mongo.Config) *mongodrv.Collection {
	t.Helper()
	cl, err := mongodrv.Connect(options.Client().ApplyURI(cfg.URI))
	must(t, err)
	t.Cleanup(func() { cl.Disconnect(context.Background()) })
	return cl.Database(cfg.Database).Collection("rooms")
}

// wantKeys fails t unless each of names is stored keyed by the name or its
// second key, name~.
func wantKeys(t *testing.T, coll *mongodrv.Collection, names ...string) {
	t.Helper()
	for _, name := range names {
		if id := storedKey(t, coll, name); id != name && id != name+"~" {
			t.Errorf("room %q is keyed %v, want its name", name, id)
		}
	}
}

// storedKey returns the _id of the room named name.
func storedKey(t *testing.T, coll *mongodrv.Collection, name string) any {
	t.Helper()
	var d bson.M
	if err := coll.FindOne(context.Background(), bson.D{{Key: "name", Value: name}}).Decode(&d); err != nil {
		t.Errorf("room %q: %v", name, err)
	}
	return d["_id"]
}

// TestSyncHostManyRooms: a host reporting more rooms than the embedded
// store's connection pool (100) holds syncs them, first as inserts and then
// as updates, every time.
func TestSyncHostManyRooms(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := storetest.Config(t)
	cfg.Timeout = time.Minute // the embedded store under the race detector is slow, not stuck
	s := storetest.Open(t, cfg)
	var rooms []*chatfleet.Room
	for i := range 120 {
		rooms = append(rooms, room(fmt.Sprintf("many-%03d", i), "h1", 34000+i))
	}
	for round := range 2 { // inserts, then updates
		for _, r := range rooms {
			r.Viewers = round
		}
		must(t, s.SyncHost(ctx, "h1", rooms, always))
	}
	got, _, err := s.ListRooms(ctx, chatfleet.RoomFilter{HostID: "h1", Limit: 200})
	must(t, err)
	if len(got) != 120 || got[0].Viewers != 1 {
		t.Fatalf("after two syncs: %d rooms, the first with %d viewers", len(got), got[0].Viewers)
	}
}

// TestSyncHostRefreshesUnchanged: rooms whose report did not change are
// refreshed (UpdatedAt) in one write once their UpdatedAt is before
// refreshBefore and left alone before, changed ones get their fields at
// every sync, and a room held by another host is not touched.
func TestSyncHostRefreshesUnchanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	s := newStore(t, c)
	t0 := c.Now().Truncate(time.Millisecond)
	same, changed := room("same", "h1", 1), room("changed", "h1", 2)
	must(t, s.SyncHost(ctx, "h1", []*chatfleet.Room{same, changed}, always))
	must(t, s.CreateRoom(ctx, room("other", "h2", 3)))
	type stored struct {
		name    string
		updated time.Time
		viewers int
		host    string
	}
	want := func(step string, rooms ...stored) {
		t.Helper()
		for _, tc := range rooms {
			r, err := s.Room(ctx, tc.name)
			must(t, err)
			if !r.UpdatedAt.Equal(tc.updated) || r.Viewers != tc.viewers || r.HostID != tc.host {
				t.Errorf("%s: %s: updated %v, %d viewers, host %s; want %v, %d, %s", step, tc.name, r.UpdatedAt, r.Viewers, r.HostID, tc.updated, tc.viewers, tc.host)
			}
		}
	}

	// Unchanged and not yet due (written after refreshBefore): left alone;
	// changed: written.
	t1 := c.Add(time.Minute)
	changed.Viewers = 5
	must(t, s.SyncHost(ctx, "h1", []*chatfleet.Room{same, changed, room("other", "h1", 4)}, t0.Add(-time.Second)))
	want("not due", stored{"same", t0, 0, "h1"}, stored{"changed", t1, 5, "h1"}, stored{"other", t0, 0, "h2"})

	// Unchanged and due: refreshed, in one write.
	t2 := c.Add(time.Minute)
	must(t, s.SyncHost(ctx, "h1", []*chatfleet.Room{same, changed}, t1))
	want("due", stored{"same", t2, 0, "h1"}, stored{"changed", t1, 5, "h1"})
	must(t, s.SyncHost(ctx, "h1", []*chatfleet.Room{same, changed}, always))
	want("always", stored{"same", t2, 0, "h1"}, stored{"changed", t2, 5, "h1"})
}
