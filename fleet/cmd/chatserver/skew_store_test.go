package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// TestStoreRecordsAcrossReleases: a host upgraded from the previous release
// keeps the room records that release wrote (keyed by an ObjectID up to
// 1.3.0) true, and a host rolled back to it keeps true the records this
// release wrote (keyed by name): viewers and a close reach the store either
// way, and no sync fails.
func TestStoreRecordsAcrossReleases(t *testing.T) {
	old, oldVersion := previousRelease(t)
	cur := testutil.Binary(t, "./fleet/cmd/chatserver")
	cfg := storetest.Config(t)
	st := storetest.Open(t, cfg)
	ctx := context.Background()

	path := filepath.Join(t.TempDir(), "chatserver")
	copyBinary(t, old, path)
	h := &host{t: t, Chatserver: testutil.NewChatserver(t, 10,
		"KEY="+userKey, "ADMIN_KEY="+adminKey, "LOADBALANCERS=", "LOG_LEVEL=info", "TOKEN_SECRET="+secret,
		"ORPHAN_GRACE=30s", "DRAIN_WINDOW=500ms", "ROOM_READY_TIMEOUT=12s",
		"MONGODB_URI="+cfg.URI, "MONGODB_DATABASE="+cfg.Database, "SYNC_EVERY=200ms", "STATS_EVERY=200ms",
		"STALE_AFTER=2s", "HOST_ID=skew-host")}
	h.Bin = path
	h.Start()
	version := func(want string) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, func() error {
			status, body, err := testutil.TryDo("GET", h.API+"/api/v1/", "", "")
			if err != nil || status != 200 || !strings.Contains(body, `"version":"`+want+`"`) {
				return fmt.Errorf("GET /api/v1/ = %d %s %v; want version %s", status, body, err, want)
			}
			return nil
		})
	}
	stored := func(name string, check func(r *chatfleet.Room) error) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() error {
			r, err := st.Room(ctx, name)
			if err != nil {
				return err
			}
			return check(r)
		})
	}
	viewers := func(n int) func(r *chatfleet.Room) error {
		return func(r *chatfleet.Room) error {
			if r.Viewers != n || r.HostID != "skew-host" || !r.Status.Open() {
				return fmt.Errorf("stored %+v, want open on skew-host with %d viewers", r, n)
			}
			return nil
		}
	}
	switchTo := func(bin, want string) {
		t.Helper()
		copyBinary(t, bin, h.Bin)
		h.Proc.Signal(syscall.SIGHUP)
		version(want)
	}

	version(oldVersion)
	olderPort := h.create("older")
	stored("older", viewers(0))

	switchTo(cur, chatfleet.Version)
	newerPort := h.create("newer")
	stored("newer", viewers(0))
	if _, err := st.RoomByKey(ctx, "newer"); err != nil {
		t.Fatalf("this release's record is not keyed by its name: %v", err)
	}
	join(t, olderPort, "older", "ann", chatfleet.RoleViewer)
	stored("older", viewers(1))

	switchTo(old, oldVersion)
	join(t, newerPort, "newer", "bob", chatfleet.RoleViewer)
	stored("newer", viewers(1))
	if status, body := testutil.Do(t, "DELETE", h.Admin+"/api/v1/rooms/newer", adminKey, ""); status != 200 {
		t.Fatalf("close newer: %d %s", status, body)
	}
	stored("newer", func(r *chatfleet.Room) error {
		if r.Status != chatfleet.RoomClosed {
			return fmt.Errorf("stored %+v, want closed", r)
		}
		return nil
	})
	if out := h.Proc.Output(); strings.Contains(out, "sync rooms to store") {
		t.Fatalf("a sync failed:\n%s", out)
	}
}
