package room

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/protocol"
)

// Finding 1 (issue 15): a moderator's fleet:true ban is refused; room bans
// stay room bans.
func TestTrustFleetBanFromRoomRefused(t *testing.T) {
	e := newEnv(t, nil)
	mod := e.dial("mod", chatfleet.RoleModerator)
	vic := e.dial("vic", chatfleet.RoleViewer)
	mod.send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "vic", Fleet: true})
	m := mod.await(protocol.TypeError, nil)
	if m.Code != protocol.CodeForbidden || !strings.Contains(m.Message, "admin API") {
		t.Fatalf("fleet ban from a room: %+v", m)
	}
	vic.chat("still here")
	mod.send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "vic"})
	vic.expectClose(protocol.CloseBanned)
	if b := e.event(EventBan, nil).Ban; b.Room != testRoom {
		t.Fatalf("ban reported as %+v", b)
	}
}

// Finding 1 and 4: the owner is never moderated, present or absent, and no
// token but a producer's may carry the owner's id.
func TestTrustOwnerNeverModerated(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Owner = "own" })
	mod := e.dial("mod", chatfleet.RoleModerator)
	for _, typ := range []string{protocol.TypeMute, protocol.TypeUnmute, protocol.TypeKick, protocol.TypeBan} {
		if code := mod.errorCode(protocol.ClientMsg{Type: typ, UserID: "own"}); code != protocol.CodeForbidden {
			t.Fatalf("%s of the absent owner: %q", typ, code)
		}
	}
	_, resp, err := e.dialURL(e.wsURL(url.Values{"token": {e.token("own", chatfleet.RoleViewer)}}), nil)
	if err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("viewer token with the owner's id: %v %v", err, resp)
	}
	own := e.dial("own", chatfleet.RoleProducer)
	if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "own"}); code != protocol.CodeForbidden {
		t.Fatalf("ban of the present owner: %q", code)
	}
	own.chat("still here")
}

// Finding 1 and 4: moderation ranks a user by the highest role seen in the
// room, so an absent producer or moderator stays protected, and a viewer
// token with their id does not lower them.
func TestTrustHighestRoleSeenProtects(t *testing.T) {
	e := newEnv(t, nil)
	mod := e.dial("mod", chatfleet.RoleModerator)
	pat := e.dial("pat", chatfleet.RoleProducer)
	other := e.dial("other", chatfleet.RoleModerator)
	pat.ws.Close()
	other.ws.Close()
	mod.await(protocol.TypeLeave, func(m protocol.ServerMsg) bool { return m.UserID == "pat" })
	mod.await(protocol.TypeLeave, func(m protocol.ServerMsg) bool { return m.UserID == "other" })
	e.dial("pat", chatfleet.RoleViewer) // the same id as a viewer
	for _, id := range []string{"pat", "other"} {
		for _, typ := range []string{protocol.TypeMute, protocol.TypeKick, protocol.TypeBan} {
			if code := mod.errorCode(protocol.ClientMsg{Type: typ, UserID: id}); code != protocol.CodeForbidden {
				t.Fatalf("%s of %s: %q", typ, id, code)
			}
		}
	}
	// A plain viewer is still moderated.
	e.dial("vic", chatfleet.RoleViewer)
	mod.send(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "vic"})
	mod.await(protocol.TypeMuted, func(m protocol.ServerMsg) bool { return m.UserID == "vic" })
}

// Finding 8: moderation messages have a finite rate per user.
func TestTrustModerationRateLimited(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ModRate, c.ModBurst = 0.01, 3 })
	mod := e.dial("mod", chatfleet.RoleModerator)
	for i := range 3 {
		mod.send(protocol.ClientMsg{Type: protocol.TypeMute, UserID: fmt.Sprint("u", i)})
		mod.await(protocol.TypeMuted, nil)
	}
	if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "u9"}); code != protocol.CodeRateLimited {
		t.Fatalf("mute over the rate: %q", code)
	}
	mod.chat("chat is not moderation") // its own limit
	// Reconnecting does not refill the moderation limiter.
	mod.ws.Close()
	mod = e.dial("mod", chatfleet.RoleModerator)
	if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeKick, UserID: "u1"}); code != protocol.CodeRateLimited {
		t.Fatalf("moderation after reconnecting: %q", code)
	}
}

// Finding 8: the mutes a room holds are capped, and ended mutes make room.
func TestTrustMutesCapped(t *testing.T) {
	mu := make(chan time.Time, 1)
	mu <- time.Now()
	now := func() time.Time { t := <-mu; mu <- t; return t }
	advance := func(d time.Duration) { t := <-mu; mu <- t.Add(d) }
	e := newEnv(t, func(c *Config) { c.Now, c.MaxMutes = now, 2 })
	mod := e.dial("mod", chatfleet.RoleModerator)
	mod.send(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "a", Seconds: 60})
	mod.await(protocol.TypeMuted, nil)
	mod.send(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "b"})
	mod.await(protocol.TypeMuted, nil)
	if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "c"}); code != protocol.CodeLimitReached {
		t.Fatalf("mute over the cap: %q", code)
	}
	advance(61 * time.Second) // a's mute ended
	mod.send(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "c"})
	mod.await(protocol.TypeMuted, func(m protocol.ServerMsg) bool { return m.UserID == "c" })
}

// Finding 2 (room side): the room's own bans are capped (MaxRoomBans).
func TestTrustRoomBansCapped(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxRoomBans = 2 })
	e.room.ApplyBans(BanStep{Reset: true, Add: []chatfleet.Ban{{ID: "f1", UserID: "fleet-banned"}, {ID: "r1", UserID: "x", Room: testRoom}}})
	mod := e.dial("mod", chatfleet.RoleModerator)
	mod.send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "y"})
	mod.await(protocol.TypeBanned, nil)
	if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "z"}); code != protocol.CodeLimitReached {
		t.Fatalf("ban over the cap: %q", code)
	}
	// The master lifts one: room for another.
	e.room.ApplyBans(BanStep{Remove: []string{"r1"}})
	mod.send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "z"})
	mod.await(protocol.TypeBanned, func(m protocol.ServerMsg) bool { return m.UserID == "z" })
}

func TestBanListUpdates(t *testing.T) {
	l := NewBanList(testRoom)
	now := time.Now()
	l.AddLocal(chatfleet.Ban{ID: "l1", UserID: "loc", Room: testRoom})
	l.AddLocal(chatfleet.Ban{ID: "l2", UserID: "loc2", Room: testRoom, Until: now.Add(time.Hour)})
	l.Update(BanStep{Reset: true, Add: []chatfleet.Ban{
		{ID: "f1", UserID: "u"},
		{ID: "o1", UserID: "u2", Room: "other"},                               // another room's: ignored
		{ID: "m2", UserID: "loc2", Room: testRoom, Until: now.Add(time.Hour)}, // echoes l2 under another id
	}})
	if all, own := l.Len(); all != 3 || own != 2 {
		t.Fatalf("after reset: %d bans, %d own", all, own)
	}
	for _, id := range []string{"u", "loc", "loc2"} {
		if _, ok := l.Banned(id, now); !ok {
			t.Fatalf("%s not banned", id)
		}
	}
	if _, ok := l.Banned("u2", now); ok {
		t.Fatal("another room's ban applies")
	}
	l.Update(BanStep{Remove: []string{"m2", "f1"}})
	if _, ok := l.Banned("loc2", now); ok {
		t.Fatal("a removed echo still bans")
	}
	if _, ok := l.Banned("u", now); ok {
		t.Fatal("a removed ban still bans")
	}
	l.Update(BanStep{Add: []chatfleet.Ban{{ID: "t1", UserID: "t", Until: now.Add(time.Minute)}}})
	if _, ok := l.Banned("t", now.Add(2*time.Minute)); ok {
		t.Fatal("an ended ban applies")
	}
	if n := l.Prune(now.Add(2 * time.Minute)); n != 1 {
		t.Fatalf("pruned %d", n)
	}
	// Several bans of one user: each removal takes one.
	l.Update(BanStep{Add: []chatfleet.Ban{{ID: "d1", UserID: "dup"}, {ID: "d2", UserID: "dup", Room: testRoom}, {ID: "d3", UserID: "dup"}}})
	for _, id := range []string{"d2", "d1"} {
		l.Update(BanStep{Remove: []string{id}})
		if _, ok := l.Banned("dup", now); !ok {
			t.Fatalf("after removing %s of 3: not banned", id)
		}
	}
	l.Update(BanStep{Remove: []string{"d3"}})
	if _, ok := l.Banned("dup", now); ok {
		t.Fatal("all removed: still banned")
	}
}

// 100,000 bans: lookups stay fast and updates do not copy the list.
func BenchmarkBanListUpdate(b *testing.B) {
	l := NewBanList(testRoom)
	var bans []chatfleet.Ban
	for i := range 100_000 {
		bans = append(bans, chatfleet.Ban{ID: fmt.Sprint("b", i), UserID: fmt.Sprint("u", i)})
	}
	l.Update(BanStep{Reset: true, Add: bans})
	b.ResetTimer()
	for i := range b.N {
		l.Update(BanStep{Add: []chatfleet.Ban{{ID: fmt.Sprint("n", i), UserID: fmt.Sprint("n", i)}}})
		l.Banned(fmt.Sprint("u", i%100_000), time.Now())
	}
}

// Finding 7: connections per client address and per room are capped at the
// handshake (429 and 503, in the error envelope); guests count per address.
func TestTrustConnectionCaps(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnsPerIP, c.MaxRoomConns, c.Settings.AllowAnonymous = 2, 3, true })
	a := e.dial("", "") // a guest
	e.dial("", "")
	_, resp, err := e.dialURL(e.wsURL(nil), nil)
	if err == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection from one address: %v %v", err, resp)
	}
	a.ws.Close()
	waitDial := func() error {
		c, resp, err := e.dialURL(e.wsURL(nil), nil)
		if err != nil {
			return fmt.Errorf("%v %v", err, resp)
		}
		c.await(protocol.TypeWelcome, nil)
		return nil
	}
	if err := eventually(waitDial); err != nil {
		t.Fatalf("after one left: %v", err)
	}
}

func eventually(f func() error) error {
	var err error
	for deadline := time.Now().Add(waitFor); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = f(); err == nil {
			return nil
		}
	}
	return err
}

func TestConnLimitsRoomTotal(t *testing.T) {
	l := newConnLimits(Config{MaxConnsPerIP: 0, MaxRoomConns: 2})
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if l.acquire(a) != nil || l.acquire(b) != nil {
		t.Fatal("under the caps")
	}
	if err := l.acquire(netip.MustParseAddr("192.0.2.3")); chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE {
		t.Fatalf("room full: %v", err)
	}
	l.release(a)
	if l.acquire(a) != nil {
		t.Fatal("after a release")
	}
}

func TestClientAddrTrustedProxies(t *testing.T) {
	proxies, err := netguard.ParsePrefixes("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimits(Config{TrustedProxies: proxies})
	tests := []struct{ peer, xff, want string }{
		{"203.0.113.5:1000", "198.51.100.1", "203.0.113.5"},                  // untrusted peer: its header is ignored
		{"10.0.0.2:1000", "198.51.100.1", "198.51.100.1"},                    // behind a proxy
		{"10.0.0.2:1000", "6.6.6.6, 198.51.100.1, 10.0.0.9", "198.51.100.1"}, // right-most untrusted
		{"10.0.0.2:1000", "", "10.0.0.2"},
		{"10.0.0.2:1000", "garbage", "10.0.0.2"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("GET", "/ws", nil)
		req.RemoteAddr = tt.peer
		if tt.xff != "" {
			req.Header.Set("X-Forwarded-For", tt.xff)
		}
		if got := l.clientAddr(req); got.String() != tt.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", tt.peer, tt.xff, got, tt.want)
		}
	}
}
