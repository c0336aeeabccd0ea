package room

import (
	"cmp"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/protocol"
)

// snapshotOf returns the snapshot of the fleet's bans ends (user id to Unix
// ms, 0: forever), as the master builds it.
func snapshotOf(ends map[string]int64) []byte {
	type entry struct {
		key   uint64
		until int64
	}
	var es []entry
	for u, until := range ends {
		es = append(es, entry{ipc.BanKey(u), until})
	}
	slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.key, b.key) })
	var b []byte
	for _, e := range es {
		b = ipc.AppendSnapshotEntry(b, e.key, e.until)
	}
	return b
}

// TestBanListSnapshot: Banned answers from the overlay first (with its
// reason), then from the snapshot unless the user was lifted; a Reset drops
// snapshot, lifts and the fleet's bans but keeps the local bans not echoed;
// a bad snapshot applies nothing.
func TestBanListSnapshot(t *testing.T) {
	now := time.Now()
	soon := now.Add(time.Hour).UnixMilli()
	l := NewBanList(testRoom)
	l.AddLocal(chatfleet.Ban{ID: "l1", UserID: "local", Room: testRoom})
	snap := snapshotOf(map[string]int64{"forever": 0, "timed": soon, "reasoned": 0, "lifted": 0, "both": soon})
	half := len(snap) / 2 / ipc.SnapshotEntry * ipc.SnapshotEntry
	if _, err := l.Update(BanStep{Reset: true, Snapshot: snap[:half]}, BanStep{Snapshot: snap[half:]},
		BanStep{Add: []chatfleet.Ban{{ID: "r1", UserID: "reasoned", Reason: "spam"}, {ID: "o1", UserID: "other", Room: "x"}}}); err != nil {
		t.Fatal(err)
	}
	banned := func(user string, at time.Time) (chatfleet.Ban, bool) { return l.Banned(user, at) }
	for _, tc := range []struct {
		user   string
		at     time.Time
		want   bool
		reason string
	}{
		{"forever", now, true, ""},
		{"timed", now, true, ""},
		{"timed", now.Add(2 * time.Hour), false, ""},
		{"reasoned", now, true, "spam"},
		{"local", now, true, ""},
		{"other", now, false, ""},
		{"nobody", now, false, ""},
	} {
		b, ok := banned(tc.user, tc.at)
		if ok != tc.want || b.Reason != tc.reason || ok && b.UserID != tc.user {
			t.Errorf("Banned(%s, %v) = %+v %v, want %v %q", tc.user, tc.at.Sub(now), b, ok, tc.want, tc.reason)
		}
	}
	if b, _ := banned("timed", now); b.ID != "" || b.Room != "" || b.Until.UnixMilli() != soon || banText(b) != "you are banned" {
		t.Errorf("a snapshot ban %+v (%q), want a fleet ban without id or reason", b, banText(b))
	}
	if all, own := l.Len(); all != 5+2 || own != 1 || l.SnapshotBytes() != 5*ipc.SnapshotEntry {
		t.Errorf("Len %d %d, snapshot %d bytes", all, own, l.SnapshotBytes())
	}

	// A removal lifts: "lifted" is out; "both" keeps a shorter ban, sent whole
	// before the lift.
	l.Update(BanStep{Add: []chatfleet.Ban{{ID: "b2", UserID: "both", Until: now.Add(time.Minute)}}},
		BanStep{Remove: []string{"gone-1", "gone-2"}, Lift: []string{"lifted", "both", "not-in-snapshot"}})
	if _, ok := banned("lifted", now); ok {
		t.Error("a lifted user is banned")
	}
	if _, ok := banned("both", now.Add(30*time.Minute)); ok {
		t.Error("a lifted user is banned by its snapshot entry")
	}
	if b, ok := banned("both", now); !ok || b.ID != "b2" {
		t.Errorf("both: %+v %v, want its remaining ban", b, ok)
	}
	if len(l.lifted) != 2 {
		t.Errorf("%d keys lifted, want the 2 in the snapshot", len(l.lifted))
	}
	// Lifted, then banned again: the new ban comes whole.
	l.Update(BanStep{Add: []chatfleet.Ban{{ID: "f9", UserID: "lifted", Reason: "again"}}})
	if b, ok := banned("lifted", now); !ok || b.Reason != "again" {
		t.Errorf("banned again: %+v %v", b, ok)
	}

	t.Run("bad snapshots apply nothing", func(t *testing.T) {
		unsorted := append(slices.Clone(snap[ipc.SnapshotEntry:2*ipc.SnapshotEntry]), snap[:ipc.SnapshotEntry]...)
		for name, steps := range map[string][]BanStep{
			"partial entry":  {{Reset: true, Snapshot: snap[:20]}},
			"unsorted":       {{Reset: true, Snapshot: unsorted}},
			"parts overlap":  {{Reset: true, Snapshot: snap}, {Snapshot: snap[:ipc.SnapshotEntry]}},
			"negative end":   {{Reset: true, Snapshot: ipc.AppendSnapshotEntry(nil, 1, -5)}},
			"follows a part": {{Snapshot: snap[:ipc.SnapshotEntry]}},
		} {
			if _, err := l.Update(steps...); err == nil {
				t.Errorf("%s: no error", name)
			}
			if _, ok := banned("forever", now); !ok {
				t.Fatalf("%s: the list held was dropped", name)
			}
			if _, ok := banned("lifted", now); !ok {
				t.Fatalf("%s: the overlay was dropped", name)
			}
		}
	})

	t.Run("reset", func(t *testing.T) {
		l.Update(BanStep{Reset: true, Snapshot: snapshotOf(map[string]int64{"lifted": 0})})
		for user, want := range map[string]bool{"forever": false, "reasoned": false, "both": false, "local": true, "lifted": true} {
			if _, ok := banned(user, now); ok != want {
				t.Errorf("after a reset %s banned %v, want %v", user, ok, want)
			}
		}
		if b, _ := banned("lifted", now); b.Reason != "" || len(l.lifted) != 0 {
			t.Errorf("after a reset: %+v, %d lifted; want the new snapshot's ban and no lifts", b, len(l.lifted))
		}
	})
}

// A room that serves and gets a list again with a snapshot closes the
// users it now bans (4004, "you are banned"); a lift lets them back in.
func TestApplyBansSnapshot(t *testing.T) {
	e := newEnv(t, nil)
	vic := e.dial("vic", chatfleet.RoleViewer)
	other := e.dial("other", chatfleet.RoleViewer)
	e.room.ApplyBans(BanStep{Reset: true, Snapshot: snapshotOf(map[string]int64{"vic": 0, "absent": 0})})
	if m := vic.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindBanned }); m.Text != "you are banned" {
		t.Fatalf("system %+v", m)
	}
	vic.expectClose(protocol.CloseBanned)
	if m := other.await(protocol.TypeBanned, func(m protocol.ServerMsg) bool { return m.UserID == "vic" }); !m.Fleet || m.Minutes != 0 {
		t.Fatalf("banned %+v, want a fleet ban without end", m)
	}
	dial := func() int {
		c, resp, err := e.dialURL(e.wsURL(url.Values{"token": {e.token("vic", chatfleet.RoleViewer)}}), nil)
		if err != nil {
			return resp.StatusCode
		}
		c.ws.Close()
		return 101
	}
	if st := dial(); st != 403 {
		t.Fatalf("banned handshake: %d", st)
	}
	e.room.ApplyBans(BanStep{Remove: []string{"f1"}, Lift: []string{"vic"}})
	e.room.Global("sync")
	other.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Text == "sync" })
	if st := dial(); st != 101 {
		t.Fatalf("lifted handshake: %d", st)
	}
}

// BenchmarkBannedSnapshot: a handshake's lookup in a snapshot of 100,000
// users (SHA-256 and a binary search), banned and not.
func BenchmarkBannedSnapshot(b *testing.B) {
	ends := map[string]int64{}
	for i := range 100_000 {
		ends[fmt.Sprint("u", i)] = 0
	}
	l := NewBanList(testRoom)
	l.Update(BanStep{Reset: true, Snapshot: snapshotOf(ends)})
	now := time.Now()
	i := 0
	for b.Loop() {
		l.Banned(fmt.Sprint("u", i%200_000), now)
		i++
	}
	runtime.KeepAlive(l)
}
