package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/mongo"
	"github.com/chatfleet/chatfleet/protocol"
)

// refused reports nil once a join to the room on port with a fresh token for
// user is refused with 403 (banned).
func refused(port int, room, user string, t *testing.T) func() error {
	tok := issue(t, room, user, chatfleet.RoleViewer)
	return func() error {
		ws, resp, err := testutil.TryDialRoom(fmt.Sprintf("ws://127.0.0.1:%d", port), tok, -1)
		if err == nil {
			ws.Conn.Close()
			return fmt.Errorf("%s still joins %s", user, room)
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			return fmt.Errorf("handshake: %v %v", resp, err)
		}
		return nil
	}
}

// TestStoreSyncAndOutage runs a host on a store of its own, stops the store
// under live rooms and starts it again: rooms keep serving, a ban issued
// meanwhile applies at once and is written when the store returns, and the
// rooms collection catches up.
func TestStoreSyncAndOutage(t *testing.T) {
	dir := t.TempDir()
	srv, err := devstore.Start(context.Background(), devstore.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	addr := srv.Addr()
	db := "fleet_" + fmt.Sprint(time.Now().UnixNano())
	st, err := mongo.Open(context.Background(), mongo.Config{URI: srv.URI(), Database: db, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	ctx := context.Background()

	h := startHost(t, "MONGODB_URI="+srv.URI(), "MONGODB_DATABASE="+db, "SYNC_EVERY=200ms",
		"CACHE_REFRESH=300ms", "STATS_EVERY=200ms", "HOST_ID=store-host")
	port := h.create("stored")
	testutil.Eventually(t, 5*time.Second, func() error {
		r, err := st.Room(ctx, "stored")
		if err != nil {
			return err
		}
		if r.HostID != "store-host" || r.Port != port || r.Status != chatfleet.RoomOffline {
			return fmt.Errorf("stored room %+v", r)
		}
		return nil
	})
	prod := join(t, port, "stored", "pam", chatfleet.RoleProducer)
	prod.Send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: "https://video.example.com/stored.m3u8"})
	testutil.Eventually(t, 5*time.Second, func() error {
		r, err := st.Room(ctx, "stored")
		if err != nil {
			return err
		}
		if r.Status != chatfleet.RoomLive || !r.ProducerLive || r.HLSURL == "" {
			return fmt.Errorf("room not live in the store: %+v", r)
		}
		return nil
	})

	// A ban written by someone else (the control API) reaches the rooms
	// through the cache refresh.
	if err := st.AddBan(ctx, &chatfleet.Ban{UserID: "stored-ban", By: "admin", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, refused(port, "stored", "stored-ban", t))

	srv.Stop()
	// Live rooms keep serving: chat still flows.
	viewer := join(t, port, "stored", "vera", chatfleet.RoleViewer)
	prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "still here", ClientID: "c1"})
	if m := viewer.Next(protocol.TypeChat, 5*time.Second); m.Text != "still here" {
		t.Fatalf("chat during outage: %+v", m)
	}
	// New rooms can still be made, and a ban applies at once.
	during := h.create("during")
	prod.Send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "outage-troll", Reason: "spam", Fleet: true})
	testutil.Eventually(t, 5*time.Second, refused(during, "during", "outage-troll", t))

	srv2, err := devstore.Start(context.Background(), devstore.Config{Dir: dir, Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Stop)
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, err := st.Room(ctx, "during"); err != nil {
			return fmt.Errorf("room made during the outage: %w", err)
		}
		bans, err := st.Bans(ctx, chatfleet.BanFilter{Now: time.Now()})
		if err != nil {
			return err
		}
		for _, b := range bans {
			if b.UserID == "outage-troll" {
				return nil
			}
		}
		return errors.New("the ban issued during the outage is not stored")
	})
}
