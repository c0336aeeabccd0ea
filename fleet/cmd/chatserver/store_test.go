package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/mongo"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestStoreSyncAndOutage runs a host on a store of its own, stops the store
// under live rooms and starts it again: rooms keep serving, a room's ban
// issued meanwhile applies to its room at once and is written when the store
// returns, and the rooms collection catches up.
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

	// A fleet ban written by someone else (the control API) reaches the
	// rooms through the refresh, as one frame to each.
	frames := h.series("chatserver_ban_frames_sent_total")
	if err := st.AddBan(ctx, &chatfleet.Ban{UserID: "stored-ban", By: "admin", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	h.waitMetric("chatserver_fleet_bans", 1, 5*time.Second)
	h.waitMetric("chatserver_ban_frames_sent_total", frames+1, 5*time.Second)

	srv.Stop()
	// Live rooms keep serving: chat still flows.
	viewer := join(t, port, "stored", "vera", chatfleet.RoleViewer)
	prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "still here", ClientID: "c1"})
	if m := viewer.Next(protocol.TypeChat, 5*time.Second); m.Text != "still here" {
		t.Fatalf("chat during outage: %+v", m)
	}
	// New rooms can still be made, and a room's ban applies at once (to that
	// room only) and waits for the store.
	h.create("during")
	frames = h.series("chatserver_ban_frames_sent_total")
	prod.Send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "outage-troll", Reason: "spam"})
	h.waitMetric("chatserver_room_bans", 1, 5*time.Second)
	h.waitMetric("chatserver_bans_unstored", 1, 5*time.Second)
	h.waitMetric("chatserver_ban_frames_sent_total", frames+1, 5*time.Second)

	srv2, err := devstore.Start(context.Background(), devstore.Config{Dir: dir, Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Stop)
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, err := st.Room(ctx, "during"); err != nil {
			return fmt.Errorf("room made during the outage: %w", err)
		}
		bans, err := st.Bans(ctx, chatfleet.BanFilter{Room: "stored", Now: time.Now()})
		if err != nil {
			return err
		}
		for _, b := range bans {
			if b.UserID == "outage-troll" {
				return nil
			}
		}
		return errors.New("the room ban issued during the outage is not stored as the room's")
	})
}
