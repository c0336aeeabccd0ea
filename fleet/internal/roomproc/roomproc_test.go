package roomproc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/fleet/internal/room"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/token"
)

func TestReadEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	s, err := readEnv(env())
	if err != nil || s.idle != 30*time.Second || s.perIP != 1000 || s.roomConns != 20000 || s.modRate != 10 || s.modBurst != 50 || s.maxBans != 10000 || s.proxies != nil || s.grace != 30*time.Second {
		t.Fatalf("defaults: %+v %v", s, err)
	}
	s, err = readEnv(env("MAX_CONNS_PER_IP", "0", "TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1", "ROOM_IDLE_TIMEOUT", "5s", "ROOM_PRODUCER_GRACE", "2s"))
	if err != nil || s.perIP != -1 || len(s.proxies) != 2 || s.idle != 5*time.Second || s.grace != 2*time.Second {
		t.Fatalf("set: %+v %v", s, err)
	}
	for _, kv := range [][2]string{
		{"ROOM_IDLE_TIMEOUT", "0s"}, {"ROOM_IDLE_TIMEOUT", "2h"}, {"MAX_CONNS_PER_IP", "-1"}, {"MAX_ROOM_CONNS", "0"},
		{"TRUSTED_PROXIES", "proxy.local"}, {"ROOM_MOD_RATE", "NaN"}, {"ROOM_MOD_BURST", "0"}, {"MAX_ROOM_BANS", "1e6"},
		{"ROOM_PRODUCER_GRACE", "500ms"}, {"ROOM_PRODUCER_GRACE", "11m"}, {"ROOM_PRODUCER_GRACE", "30"},
	} {
		if err := CheckEnv(env(kv[0], kv[1])); err == nil || !strings.Contains(err.Error(), kv[0]) {
			t.Errorf("%s=%s: %v", kv[0], kv[1], err)
		}
	}
}

// A ban list sent again to a running room (a master reconnecting) applies
// at once at Done: handshakes never see it half sent.
func TestBanListSentAgainAppliesAtDone(t *testing.T) {
	iss, _ := token.NewIssuer("test-secret-0123456789")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := &proc{name: "lobby", log: log, bans: room.NewBanList("lobby"), bansDone: make(chan struct{})}
	p.applyBans(&ipc.BanUpdate{Reset: true, Add: []chatfleet.Ban{{ID: "b1", UserID: "old"}}, Done: true})
	select {
	case <-p.bansDone:
	default:
		t.Fatal("Done not seen")
	}
	rm, err := room.New(room.Config{Name: "lobby", Tokens: iss, Log: log, Bans: p.bans})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rm.Run(ctx)
	p.room = rm

	banned := func(id string) bool { _, ok := p.bans.Banned(id, time.Now()); return ok }
	snap := ipc.AppendSnapshotEntry(nil, ipc.BanKey("fleet-user"), 0)
	p.applyBans(&ipc.BanUpdate{Reset: true})
	p.applyBans(&ipc.BanUpdate{Snapshot: snap})
	p.applyBans(&ipc.BanUpdate{Add: []chatfleet.Ban{{ID: "b2", UserID: "new1"}}})
	p.applyBans(&ipc.BanUpdate{Add: []chatfleet.Ban{{ID: "b3", UserID: "new2"}}})
	if !banned("old") || banned("new1") || banned("fleet-user") {
		t.Fatal("a half-sent list was applied")
	}
	p.applyBans(&ipc.BanUpdate{Add: []chatfleet.Ban{{ID: "b4", UserID: "new3"}}, Done: true})
	testutil.Eventually(t, 5*time.Second, func() error {
		if banned("old") || !banned("new1") || !banned("new2") || !banned("new3") || !banned("fleet-user") {
			return fmt.Errorf("not applied")
		}
		return nil
	})
	// Deltas apply as they come.
	p.applyBans(&ipc.BanUpdate{Remove: []string{"b2"}})
	testutil.Eventually(t, 5*time.Second, func() error {
		if banned("new1") {
			return fmt.Errorf("removal not applied")
		}
		return nil
	})
	// A list sent again with a bad snapshot (a part of 17 bytes) is not
	// applied: the room keeps the list it has.
	p.applyBans(&ipc.BanUpdate{Reset: true, Snapshot: append(snap, 0)})
	p.applyBans(&ipc.BanUpdate{Add: []chatfleet.Ban{{ID: "b5", UserID: "new5"}}, Done: true})
	p.applyBans(&ipc.BanUpdate{Add: []chatfleet.Ban{{ID: "b6", UserID: "new6"}}}) // applied after it
	testutil.Eventually(t, 5*time.Second, func() error {
		if !banned("new6") {
			return fmt.Errorf("the delta after the bad list not applied")
		}
		return nil
	})
	if !banned("fleet-user") || !banned("new2") || banned("new5") {
		t.Fatal("a list with a bad snapshot replaced the list held")
	}
}

// snapshotFrames returns frames of a snapshot of n fleet-banned users
// (user-0 ... user-<n-1>, forever), split as the master splits them.
func snapshotFrames(t testing.TB, n int) [][]byte {
	t.Helper()
	keys := make([]uint64, n)
	for i := range n {
		keys[i] = ipc.BanKey(fmt.Sprint("user-", i))
	}
	slices.Sort(keys)
	raw := make([]byte, 0, n*ipc.SnapshotEntry)
	for _, k := range keys {
		raw = ipc.AppendSnapshotEntry(raw, k, 0)
	}
	var frames [][]byte
	for len(raw) > 0 {
		part := raw[:min(len(raw), ipc.MaxSnapshotFrameBytes)]
		raw = raw[len(part):]
		b, err := ipc.Encode(ipc.Msg{Type: ipc.TypeBans, Bans: &ipc.BanUpdate{Snapshot: part}})
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
	return frames
}

func handleFrames(t testing.TB, p *proc, frames [][]byte) {
	t.Helper()
	for _, b := range frames {
		m, err := ipc.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		p.handle(m)
	}
}

func newTestProc() *proc {
	return &proc{name: "lobby", log: slog.New(slog.NewTextHandler(io.Discard, nil)), bans: room.NewBanList("lobby"), bansDone: make(chan struct{})}
}

// The room's part of a room start with the most bans: 100,000 fleet bans
// as a snapshot and 10,000 of the room's own, as the master sends them. The
// snapshot costs the room 16 bytes a fleet ban.
func TestBanListOf100000(t *testing.T) {
	encode := func(u *ipc.BanUpdate) []byte {
		b, err := ipc.Encode(ipc.Msg{Type: ipc.TypeBans, Bans: u})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	snap := snapshotFrames(t, 100_000)
	var own [][]byte
	for f := range 10 {
		u := &ipc.BanUpdate{}
		for i := range ipc.MaxBansPerFrame {
			n := f*ipc.MaxBansPerFrame + i
			u.Add = append(u.Add, chatfleet.Ban{ID: fmt.Sprintf("ban-%06d", n), UserID: fmt.Sprintf("mod-banned-%06d", n), Room: "lobby", By: "mod", Reason: "spam", CreatedAt: time.Now()})
		}
		own = append(own, encode(u))
	}

	p := newTestProc()
	start := time.Now()
	handleFrames(t, p, append([][]byte{encode(&ipc.BanUpdate{Reset: true})}, snap...))
	dSnap := time.Since(start)
	handleFrames(t, p, append(own, encode(&ipc.BanUpdate{Done: true})))
	d := time.Since(start)
	select {
	case <-p.bansDone:
	default:
		t.Fatal("Done not seen")
	}
	if all, own := p.bans.Len(); all != 110_000 || own != 10_000 || p.bans.SnapshotBytes() != 100_000*ipc.SnapshotEntry {
		t.Fatalf("%d bans, %d own, snapshot of %d bytes", all, own, p.bans.SnapshotBytes())
	}
	for _, u := range []string{"user-0", "user-99999", "mod-banned-000007"} {
		if _, ok := p.bans.Banned(u, time.Now()); !ok {
			t.Fatalf("%s not banned", u)
		}
	}
	if _, ok := p.bans.Banned("user-100000", time.Now()); ok {
		t.Fatal("a user without a ban is banned")
	}
	// The heap the snapshot holds: what a Reset frees of a list of the
	// fleet's bans alone.
	p = newTestProc()
	handleFrames(t, p, append([][]byte{encode(&ipc.BanUpdate{Reset: true})}, snap...))
	var with, without runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&with)
	p.bans.Update(room.BanStep{Reset: true})
	runtime.GC()
	runtime.ReadMemStats(&without)
	held := int64(with.HeapAlloc) - int64(without.HeapAlloc)
	t.Logf("100,000 fleet bans in %d snapshot frames decoded and applied in %v (with 10,000 room bans in 10 frames: %v); the snapshot holds %d bytes of heap (%.1f a fleet ban)",
		len(snap), dSnap, d, held, float64(held)/100_000)
	if held > 2*100_000*ipc.SnapshotEntry {
		t.Fatalf("the snapshot holds %d bytes of heap, want about %d", held, 100_000*ipc.SnapshotEntry)
	}
}

// BenchmarkApplySnapshot measures the room's part of receiving the fleet's
// 100,000 bans: decoding the snapshot frames and applying them.
func BenchmarkApplySnapshot(b *testing.B) {
	reset, _ := ipc.Encode(ipc.Msg{Type: ipc.TypeBans, Bans: &ipc.BanUpdate{Reset: true}})
	frames := append([][]byte{reset}, snapshotFrames(b, 100_000)...)
	var p *proc
	for b.Loop() {
		p = newTestProc()
		handleFrames(b, p, frames)
	}
	b.ReportMetric(float64(p.bans.SnapshotBytes()), "bytes-held")
}
