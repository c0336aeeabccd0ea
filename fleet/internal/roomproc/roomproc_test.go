package roomproc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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
	if err != nil || s.idle != 30*time.Second || s.perIP != 1000 || s.roomConns != 20000 || s.modRate != 10 || s.modBurst != 50 || s.maxBans != 10000 || s.proxies != nil {
		t.Fatalf("defaults: %+v %v", s, err)
	}
	s, err = readEnv(env("MAX_CONNS_PER_IP", "0", "TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1", "ROOM_IDLE_TIMEOUT", "5s"))
	if err != nil || s.perIP != -1 || len(s.proxies) != 2 || s.idle != 5*time.Second {
		t.Fatalf("set: %+v %v", s, err)
	}
	for _, kv := range [][2]string{
		{"ROOM_IDLE_TIMEOUT", "0s"}, {"ROOM_IDLE_TIMEOUT", "2h"}, {"MAX_CONNS_PER_IP", "-1"}, {"MAX_ROOM_CONNS", "0"},
		{"TRUSTED_PROXIES", "proxy.local"}, {"ROOM_MOD_RATE", "NaN"}, {"ROOM_MOD_BURST", "0"}, {"MAX_ROOM_BANS", "1e6"},
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
	p.applyBans(&ipc.BanUpdate{Reset: true, Add: []chatfleet.Ban{{ID: "b2", UserID: "new1"}}})
	p.applyBans(&ipc.BanUpdate{Add: []chatfleet.Ban{{ID: "b3", UserID: "new2"}}})
	if !banned("old") || banned("new1") {
		t.Fatal("a half-sent list was applied")
	}
	p.applyBans(&ipc.BanUpdate{Add: []chatfleet.Ban{{ID: "b4", UserID: "new3"}}, Done: true})
	testutil.Eventually(t, 5*time.Second, func() error {
		if banned("old") || !banned("new1") || !banned("new2") || !banned("new3") {
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
}

// 100,000 bans (fleet's and the room's) as the master sends them: the
// room's part of a room start.
func TestBanListOf100000(t *testing.T) {
	p := &proc{name: "lobby", log: slog.New(slog.NewTextHandler(io.Discard, nil)), bans: room.NewBanList("lobby"), bansDone: make(chan struct{})}
	var frames [][]byte
	for f := range 100 {
		u := &ipc.BanUpdate{Reset: f == 0, Done: f == 99}
		for i := range ipc.MaxBansPerFrame {
			n := f*ipc.MaxBansPerFrame + i
			b := chatfleet.Ban{ID: fmt.Sprintf("ban-%06d", n), UserID: fmt.Sprintf("user-%06d", n), By: "admin", Reason: "spam", CreatedAt: time.Now()}
			if n%10 == 0 {
				b.Room = "lobby"
			}
			u.Add = append(u.Add, b)
		}
		b, err := ipc.Encode(ipc.Msg{Type: ipc.TypeBans, Bans: u})
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
	start := time.Now()
	for _, b := range frames {
		m, err := ipc.Decode(strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		p.handle(m)
	}
	d := time.Since(start)
	if all, own := p.bans.Len(); all != 100_000 || own != 10_000 {
		t.Fatalf("%d bans, %d own", all, own)
	}
	t.Logf("100,000 bans in 100 frames decoded and applied in %v", d)
	if d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
}
