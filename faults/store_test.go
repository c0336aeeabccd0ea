package faults

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/mongo"
)

// TestStoreLinkFaults runs a chatserver whose MONGODB_URI goes through a
// Toxiproxy to an embedded store. Latency, then connections reset, then a
// link that swallows everything: live rooms keep serving chat, new rooms
// are still created, the master does not crash, and once the link is clean
// again the rooms collection catches up with every room of the host.
func TestStoreLinkFaults(t *testing.T) {
	t.Parallel()
	srv, err := devstore.Start(context.Background(), devstore.Config{Dir: t.TempDir(), LogLevel: slog.LevelError})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	px := newProxy(t, "store", srv.Addr())
	db := fmt.Sprintf("faults_%d", time.Now().UnixNano())
	// The test reads the store directly, not through the proxy.
	st, err := mongo.Open(context.Background(), mongo.Config{URI: srv.URI(), Database: db, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	ctx := context.Background()

	h := startHost(t, "MONGODB_URI=mongodb://"+px.Addr+"/", "MONGODB_DATABASE="+db,
		"SYNC_EVERY=300ms", "CACHE_REFRESH=500ms", "HOST_ID=store-host")
	stored := func(names ...string) func() error {
		return func() error {
			for _, n := range names {
				r, err := st.Room(ctx, n)
				if err != nil {
					return fmt.Errorf("room %s: %w", n, err)
				}
				if r.HostID != "store-host" || !r.Status.Open() {
					return fmt.Errorf("room %s stored as %+v", n, r)
				}
			}
			return nil
		}
	}
	port := h.create("lobby")
	testutil.Eventually(t, 15*time.Second, stored("lobby"))
	prod := join(t, port, "lobby", "pam", chatfleet.RoleProducer)
	view := join(t, port, "lobby", "vera", chatfleet.RoleViewer)
	var made []string
	serving := func(phase string) {
		t.Helper()
		chatRoundTrip(t, prod, "chat during "+phase, view)
		name := "made-" + phase
		p := h.create(name)
		made = append(made, name)
		join(t, p, name, "vic", chatfleet.RoleViewer)
		h.alive()
	}

	// 300 ms each way: every store call is slow, nothing fails.
	px.Add("lag-up", "latency", "upstream", map[string]any{"latency": 300})
	px.Add("lag-down", "latency", "downstream", map[string]any{"latency": 300})
	mark := time.Now()
	serving("latency")
	testutil.Eventually(t, 20*time.Second, stored(made...))
	t.Logf("latency: room made and stored in %v", time.Since(mark).Round(100*time.Millisecond))
	px.Remove("lag-up")
	px.Remove("lag-down")

	// Every connection reset at its first byte: calls fail fast.
	px.Add("reset", "reset_peer", "upstream", map[string]any{"timeout": 0})
	serving("reset")
	serving("reset2")
	notStored(t, st, "made-reset2") // the outage is real
	px.Remove("reset")
	mark = time.Now()
	testutil.Eventually(t, 30*time.Second, stored(made...))
	t.Logf("reset_peer removed: store caught up after %v", time.Since(mark).Round(100*time.Millisecond))

	// The link swallows everything and never closes: calls hit their
	// deadlines.
	px.Add("blackhole", "timeout", "upstream", map[string]any{"timeout": 0})
	serving("blackhole")
	serving("blackhole2")
	notStored(t, st, "made-blackhole2")
	px.Remove("blackhole")
	mark = time.Now()
	testutil.Eventually(t, 30*time.Second, stored(append(made, "lobby")...))
	t.Logf("timeout removed: store caught up after %v", time.Since(mark).Round(100*time.Millisecond))

	// The rooms collection holds exactly the host's open rooms.
	rooms, _, err := st.ListRooms(ctx, chatfleet.RoomFilter{OpenOnly: true, HostID: "store-host", Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(made) + 1; len(rooms) != want {
		t.Errorf("store lists %d open rooms of the host, want %d", len(rooms), want)
	}
	h.noPanic()
	t.Logf("store warnings logged by the chatserver during the faults: %d", strings.Count(h.Proc.Output(), "store unavailable"))
}

// notStored fails the test if the store already holds room name: made
// during an outage, it cannot be there before the link is back.
func notStored(t *testing.T, st *mongo.Store, name string) {
	t.Helper()
	r, err := st.Room(context.Background(), name)
	if chatfleet.ErrorCode(err) != chatfleet.ENOTFOUND {
		t.Fatalf("room %s made during the outage is in the store (%+v, %v): the fault did not cut the link", name, r, err)
	}
}
