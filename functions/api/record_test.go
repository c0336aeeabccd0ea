package api_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// listed returns room as the listing shows it, or an error if it is not there.
func listed(t *testing.T, a *apis, room string) (roomView, error) {
	t.Helper()
	var page struct{ Rooms []roomView }
	call(t, "GET", a.rooms+"/api/v1/rooms?limit=200", apiKey, "").want(t, http.StatusOK, "").decode(t, &page)
	for _, r := range page.Rooms {
		if r.Name == room {
			return r, nil
		}
	}
	return roomView{}, fmt.Errorf("%s not listed (%d rooms)", room, len(page.Rooms))
}

// TestRoomRecordIsTrue runs the control API on a host that syncs its rooms
// to the store every 200 ms: the hlsUrl and title given at create survive
// the syncs and a master killed with SIGKILL (the next one re-adopts the
// room from its state file); a producer whose connection drops makes the
// room offline for the listing and the viewers after ROOM_PRODUCER_GRACE,
// and live again when it returns.
func TestRoomRecordIsTrue(t *testing.T) {
	ctx := context.Background()
	lb := startLB(t)
	cfg := storetest.Config(t)
	st := storetest.Open(t, cfg)
	h := startHost(t, lb, "MONGODB_URI="+cfg.URI, "MONGODB_DATABASE="+cfg.Database, "STORE_TIMEOUT=20s",
		"SYNC_EVERY=200ms", "STATS_EVERY=200ms", "ROOM_PRODUCER_GRACE=2s",
		"STALE_AFTER=800ms") // an unchanged room is rewritten once 200 ms old: every sync or two
	a := newAPIs(t, st, newPicker(t, lb))
	const (
		hls   = "https://cdn.example.com/live/rec.m3u8"
		title = "Friday night jazz — live"
		owner = "Ann Lee"
	)
	var rec created
	call(t, "POST", a.rooms+"/api/v1/rooms/rec", apiKey, `{"hlsUrl":"`+hls+`","title":"`+title+`","ownerName":"`+owner+`"}`).
		want(t, http.StatusCreated, "").decode(t, &rec)

	// syncs waits until the host has written the room n more times,
	// checking every record it sees.
	syncs := func(n int, what string, check func(r *chatfleet.Room) error) {
		t.Helper()
		seen := map[time.Time]bool{}
		testutil.Eventually(t, 15*time.Second, func() error {
			r, err := st.Room(ctx, "rec")
			if err != nil {
				return err
			}
			if err := check(r); err != nil {
				t.Fatalf("%s: stored room: %v", what, err)
			}
			seen[r.UpdatedAt] = true
			if len(seen) < n+1 {
				return fmt.Errorf("%d syncs seen, want %d", len(seen)-1, n)
			}
			return nil
		})
	}
	offline := func(r *chatfleet.Room) error {
		if r.HLSURL != hls || r.Title != title || r.OwnerName != owner || r.Status != chatfleet.RoomOffline || r.ProducerLive {
			return fmt.Errorf("%+v, want offline with hlsUrl %q, title %q and ownerName %q", r, hls, title, owner)
		}
		return nil
	}
	view := func(what string) {
		t.Helper()
		var v roomView
		call(t, "GET", a.rooms+"/api/v1/rooms/rec", apiKey, "").want(t, http.StatusOK, "").decode(t, &v)
		if v.HLSURL != hls || v.Title != title || v.OwnerName != owner || v.Status != "offline" || v.Producer != "offline" {
			t.Fatalf("%s: room view %+v", what, v)
		}
	}
	syncs(5, "after syncs", offline)
	view("after syncs")

	// The options are in the room's state file, for the next master.
	files, _ := filepath.Glob(filepath.Join(h.StateDir, "rooms", "*.json"))
	if len(files) != 1 {
		t.Fatalf("state files %v", files)
	}
	if b, _ := os.ReadFile(files[0]); !strings.Contains(string(b), `"hlsUrl":"`+hls+`"`) {
		t.Fatalf("state file %s", b)
	}
	h.Proc.Signal(syscall.SIGKILL)
	h.Proc.Wait(t, 5*time.Second)
	h.Start()
	syncs(5, "after the master's SIGKILL and re-adoption", offline)
	view("after re-adoption")

	// A producer goes live, then with a URL of its own: the listing shows it.
	const announced = "https://cdn.example.com/live/rec-hd.m3u8"
	base := strings.TrimSuffix(rec.WSURL, "/ws")
	prod := testutil.DialRoom(t, base, rec.Token, -1)
	prod.Next(protocol.TypeWelcome, 5*time.Second)
	var vt tokenAnswer
	call(t, "POST", a.rooms+"/api/v1/rooms/rec/tokens", apiKey, `{"userId":"vera"}`).want(t, http.StatusCreated, "").decode(t, &vt)
	viewer := testutil.DialRoom(t, base, vt.Token, -1)
	viewer.Next(protocol.TypeWelcome, 5*time.Second)
	// Announced live without a URL, the stream is at the create's.
	prod.Send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true})
	if m := viewer.Next(protocol.TypeStream, 5*time.Second); !m.Live || m.HLSURL != hls {
		t.Fatalf("stream %+v, want live at the create's URL", m)
	}
	prod.Send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: announced})
	if m := viewer.Next(protocol.TypeStream, 5*time.Second); !m.Live || m.HLSURL != announced {
		t.Fatalf("stream %+v", m)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		v, err := listed(t, a, "rec")
		if err == nil && (v.Status != "live" || !v.ProducerLive || v.HLSURL != announced || v.Title != title) {
			err = fmt.Errorf("listed %+v, want live at %s", v, announced)
		}
		return err
	})

	// Its connection drops: after the 2 s grace the viewers are told and
	// the listing says offline, with the create's URL again.
	dropped := time.Now()
	prod.Conn.Close()
	off := viewer.Next(protocol.TypeStream, 10*time.Second)
	toViewers := time.Since(dropped)
	if off.Live || off.Reason != "the producer left" || off.Seq == 0 {
		t.Fatalf("stream after the drop: %+v", off)
	}
	if toViewers < 2*time.Second {
		t.Fatalf("offline after %s, within the grace", toViewers)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		v, err := listed(t, a, "rec")
		if err == nil && (v.Status != "offline" || v.Producer != "offline" || v.ProducerLive || v.HLSURL != hls) {
			err = fmt.Errorf("listed %+v, want offline", v)
		}
		return err
	})
	toListing := time.Since(dropped)
	t.Logf("producer dropped: viewers told after %s, listing offline after %s (grace 2s)", toViewers.Round(time.Millisecond), toListing.Round(time.Millisecond))

	// It returns: live again with the URL it had announced.
	back := testutil.DialRoom(t, base, rec.Token, -1)
	back.Next(protocol.TypeWelcome, 5*time.Second)
	if m := viewer.Next(protocol.TypeStream, 5*time.Second); !m.Live || m.HLSURL != announced || m.Seq <= off.Seq {
		t.Fatalf("stream on the producer's return: %+v", m)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		v, err := listed(t, a, "rec")
		if err == nil && (v.Status != "live" || !v.ProducerLive || v.HLSURL != announced) {
			err = fmt.Errorf("listed %+v, want live again", v)
		}
		return err
	})

	// A live room stays live in the store through its master's SIGKILL:
	// the next master's first sync already knows (the room's ready carries
	// its stats).
	live := func(r *chatfleet.Room) error {
		if r.Status != chatfleet.RoomLive || !r.ProducerLive || r.HLSURL != announced || r.Title != title {
			return fmt.Errorf("%+v, want live at %s", r, announced)
		}
		return nil
	}
	syncs(2, "live", live)
	h.Proc.Signal(syscall.SIGKILL)
	h.Proc.Wait(t, 5*time.Second)
	h.Start()
	syncs(5, "live, after the master's SIGKILL", live)
}
