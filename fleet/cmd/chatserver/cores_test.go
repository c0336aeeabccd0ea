package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// TestBigRoomGetsCores: a room whose connections pass BIG_ROOM_CONNS is given
// a second core by its master (its process's GOMAXPROCS, in its stats), and
// gives it back when they fall below three quarters of that.
func TestBigRoomGetsCores(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: there is no core to give")
	}
	h := startHost(t, "BIG_ROOM_CONNS=100", "ROOM_CORES=1", "STATS_EVERY=100ms")
	port := h.create("big")
	procs := func() (int, error) {
		_, body, err := testutil.TryDo("GET", h.Admin+"/api/v1/rooms", adminKey, "")
		if err != nil {
			return 0, err
		}
		var resp struct {
			Data struct {
				Rooms []struct{ Stats chatfleet.RoomStats }
			}
		}
		if err := json.Unmarshal([]byte(body), &resp); err != nil || len(resp.Data.Rooms) != 1 {
			return 0, fmt.Errorf("listing %s: %v", body, err)
		}
		return resp.Data.Rooms[0].Stats.Procs, nil
	}
	waitProcs := func(want int) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, func() error {
			n, err := procs()
			if err == nil && n != want {
				err = fmt.Errorf("the room runs on %d cores, want %d", n, want)
			}
			return err
		})
	}
	waitProcs(1)
	var viewers []*testutil.WS
	for i := range 110 {
		viewers = append(viewers, testutil.DialRoom(t, fmt.Sprintf("ws://127.0.0.1:%d", port), issue(t, "big", fmt.Sprintf("v%d", i), chatfleet.RoleViewer), -1))
	}
	waitProcs(2)
	for _, v := range viewers[:40] { // 70 left: below 75, three quarters of 100
		v.Conn.Close()
	}
	waitProcs(1)
}
