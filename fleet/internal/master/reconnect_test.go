package master

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// A room process that closes its control connection while it runs on (as
// one does after a write to its master timed out) gets a new session at
// once, as an adopted room does: hello, ready, the cache and its whole ban
// list, no resume. The master still supervises it.
func TestDroppedControlConnectionIsReconnected(t *testing.T) {
	ctx := context.Background()
	m, dir := fakeRooms(t, Config{})
	if _, err := m.CreateRoom(ctx, "lively", RoomOptions{}); err != nil {
		t.Fatal(err)
	}
	// sessions counts the caches and resumes the room got, and says
	// whether the last session's ban list is complete.
	sessions := func() (caches, resumes int, done bool, pids map[int]bool) {
		pids = map[int]bool{}
		for _, r := range records(t, dir, "lively") {
			pids[r.PID] = true
			switch r.Type {
			case ipc.TypeCache:
				caches, done = caches+1, false
			case ipc.TypeResume:
				resumes++
			case ipc.TypeBans:
				done = done || r.Done
			}
		}
		return caches, resumes, done, pids
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if caches, _, done, _ := sessions(); caches != 1 || !done {
			return fmt.Errorf("first session: %d caches, ban list done %v", caches, done)
		}
		return nil
	})
	m.Global("drop lively")
	testutil.Eventually(t, 10*time.Second, func() error {
		if caches, _, done, _ := sessions(); caches != 2 || !done {
			return fmt.Errorf("after the drop: %d caches, ban list done %v; want a second session", caches, done)
		}
		return nil
	})
	if _, resumes, _, pids := sessions(); resumes != 1 || len(pids) != 1 {
		t.Fatalf("%d resumes to %d processes, want 1 to 1: the same process, not started again", resumes, len(pids))
	}
	if n := m.Global("still there"); n != 1 {
		t.Fatalf("the global message reached %d rooms, want 1", n)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if recs := records(t, dir, "lively"); recs[len(recs)-1].Type != ipc.TypeGlobal {
			return fmt.Errorf("the room got no global message after the reconnect")
		}
		return nil
	})
	if err := m.CloseRoom(ctx, "lively", "done"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if rs := m.Rooms(); len(rs) != 0 {
			return fmt.Errorf("rooms %+v after close", rs)
		}
		return nil
	})
}
