package master

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// TestAdoptsRoomOfPreviousStateFormat feeds a master the state file of a
// running room as release 1.0.0 wrote it (testdata/state-v1.json: no format
// field): the master adopts the room, the same process, with the options the
// file holds. A change to the state file that the previous release's files
// cannot be read by fails here.
func TestAdoptsRoomOfPreviousStateFormat(t *testing.T) {
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := testutil.FreePortRange(t, 5)
	cfg := Config{
		Self: self, RoomEnv: []string{fakeRoomEnv + "=" + dir}, StateDir: t.TempDir(),
		RoomPortMin: base, RoomPortMax: base + 4,
		DrainWindow: 100 * time.Millisecond, StopDeadline: 5 * time.Second,
	}

	// The first master starts the room, then leaves it running (a restart).
	m1 := startMaster(t, cfg)
	info, err := m1.CreateRoom(context.Background(), "veteran", RoomOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m1.detachAll()

	// Its state file becomes the one release 1.0.0 writes for this process.
	var st map[string]any
	b, err := os.ReadFile("testdata/state-v1.json")
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st["format"]; ok {
		t.Fatal("testdata/state-v1.json has a format field: release 1.0.0 wrote none")
	}
	st["pid"], st["port"] = info.PID, info.Port
	b, _ = json.Marshal(st)
	path := filepath.Join(cfg.StateDir, "rooms", strconv.Itoa(info.Port)+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	m2 := startMaster(t, cfg)
	var r *room
	testutil.Eventually(t, 10*time.Second, func() error {
		r, err = m2.room("veteran")
		return err
	})
	select {
	case <-r.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("adopted room never reported ready to the new master")
	}
	got := r.info()
	if got.PID != info.PID || got.Status == chatfleet.RoomStarting {
		t.Fatalf("adopted room = pid %d status %s, want the running pid %d", got.PID, got.Status, info.PID)
	}
	if r.opts.Title != "A room of release 1.0.0" || r.opts.Instance != "VJ3KQ7XH2M4PZ6RT" || r.opts.HistorySize != 50 ||
		r.opts.WebhookSecret != "whsec_0123456789abcdef" || len(r.opts.WebhookURLs) != 1 {
		t.Fatalf("options read from the 1.0.0 state file = %+v", r.opts)
	}
	// The file is written again in this release's format on the next start;
	// until then the adopted room keeps the old one, which readState reads.
	if st, err := readState(path); err != nil || st.Format != 1 || st.Name != "veteran" {
		t.Fatalf("readState = %+v, %v; want format 1 of room veteran", st, err)
	}
	if err := m2.CloseRoom(context.Background(), "veteran", "test over"); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
