package room

import (
	"fmt"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"maps"
	"net/url"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

func TestRoleRights(t *testing.T) {
	e := newEnv(t, nil)
	prod := e.dial("prod", chatfleet.RoleProducer)
	mod := e.dial("mod", chatfleet.RoleModerator)
	mod2 := e.dial("mod2", chatfleet.RoleModerator)
	vic := e.dial("vic", chatfleet.RoleViewer)
	e.dial("vera", chatfleet.RoleViewer)
	seq := vic.chat("hello")

	stream := protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: "https://cdn.example.com/x.m3u8"}
	actions := map[string]protocol.ClientMsg{
		"stream":   stream,
		"close":    {Type: protocol.TypeClose},
		"delete":   {Type: protocol.TypeDelete, Seq: seq},
		"mute":     {Type: protocol.TypeMute, UserID: "vera"},
		"unmute":   {Type: protocol.TypeUnmute, UserID: "vera"},
		"kick":     {Type: protocol.TypeKick, UserID: "vera"},
		"ban":      {Type: protocol.TypeBan, UserID: "vera"},
		"slowmode": {Type: protocol.TypeSlowMode, Seconds: 5},
	}
	t.Run("viewer", func(t *testing.T) {
		for name, m := range actions {
			if code := vic.errorCode(m); code != protocol.CodeForbidden {
				t.Errorf("viewer %s: %q, want forbidden", name, code)
			}
		}
	})
	t.Run("moderator", func(t *testing.T) {
		for _, name := range []string{"stream", "close"} {
			if code := mod.errorCode(actions[name]); code != protocol.CodeForbidden {
				t.Errorf("moderator %s: %q, want forbidden", name, code)
			}
		}
		// Not on a producer, nor another moderator, nor oneself.
		for _, m := range []protocol.ClientMsg{
			{Type: protocol.TypeMute, UserID: "prod"},
			{Type: protocol.TypeKick, UserID: "mod2"},
			{Type: protocol.TypeBan, UserID: "prod"},
		} {
			if code := mod.errorCode(m); code != protocol.CodeForbidden {
				t.Errorf("moderator %s %s: %q, want forbidden", m.Type, m.UserID, code)
			}
		}
		if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "mod"}); code != protocol.CodeInvalid {
			t.Errorf("mute oneself: %q, want invalid", code)
		}
		mod.send(actions["slowmode"])
		if m := vic.await(protocol.TypeSlowMode, nil); m.Seconds != 5 || m.By.UserID != "mod" {
			t.Errorf("slowmode %+v", m)
		}
	})
	t.Run("producer", func(t *testing.T) {
		prod.send(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "mod2", Seconds: 30})
		if m := vic.await(protocol.TypeMuted, nil); m.UserID != "mod2" || m.Seconds != 30 || m.Until == 0 || m.By.UserID != "prod" {
			t.Errorf("muted %+v", m)
		}
		prod.send(stream)
		vic.await(protocol.TypeStream, nil)
	})
	mod2.ws.Close()
}

func TestStream(t *testing.T) {
	e := newEnv(t, nil)
	prod := e.dial("prod", chatfleet.RoleProducer)
	if w := prod.welcome; w.Stream == nil || w.Stream.Live {
		t.Fatalf("initial stream %+v", w.Stream)
	}
	for _, bad := range []string{"ftp://cdn.example.com/x.m3u8", "/relative.m3u8", "https://", "javascript:alert(1)", "https://user:pw@cdn.example.com/x"} {
		if code := prod.errorCode(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: bad}); code != protocol.CodeInvalid {
			t.Errorf("hlsUrl %q: %q, want invalid", bad, code)
		}
	}
	const hls = "https://cdn.example.com/live/lobby.m3u8"
	prod.send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: hls})
	if m := prod.await(protocol.TypeStream, nil); !m.Live || m.HLSURL != hls || m.Seq == 0 {
		t.Fatalf("stream %+v", m)
	}
	if ev := e.event(EventStream, nil); !ev.Live || ev.HLSURL != hls {
		t.Fatalf("event %+v", ev)
	}
	late := e.dial("late", chatfleet.RoleViewer)
	if s := late.welcome.Stream; !s.Live || s.HLSURL != hls {
		t.Fatalf("late joiner's stream %+v", s)
	}
	if st := e.room.Stats(); !st.ProducerLive || st.HLSURL != hls {
		t.Fatalf("stats %+v", st)
	}
	prod.send(protocol.ClientMsg{Type: protocol.TypeStream})
	if m := late.await(protocol.TypeStream, nil); m.Live || m.HLSURL != "" {
		t.Fatalf("offline %+v", m)
	}
	if late := e.dial("later", chatfleet.RoleViewer); late.welcome.Stream.Live {
		t.Fatal("stream still live after going offline")
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t, nil)
	mod := e.dial("mod", chatfleet.RoleModerator)
	vic := e.dial("vic", chatfleet.RoleViewer)
	keep := vic.chat("keep me")
	gone := vic.chat("delete me")
	mod.send(protocol.ClientMsg{Type: protocol.TypeDelete, Seq: gone})
	if m := vic.await(protocol.TypeDeleted, nil); m.Target != gone || m.By.UserID != "mod" || m.Seq <= gone {
		t.Fatalf("deleted %+v", m)
	}
	if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeDelete, Seq: gone}); code != protocol.CodeNotFound {
		t.Errorf("delete twice: %q", code)
	}
	if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeDelete, Seq: 9999}); code != protocol.CodeNotFound {
		t.Errorf("delete the future: %q", code)
	}
	if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeDelete, Seq: 1}); code != protocol.CodeInvalid {
		t.Errorf("delete a join: %q", code)
	}
	late := e.dial("late", chatfleet.RoleViewer)
	got := chats(historyOf(t, late.welcome))
	if len(got) != 1 || got[0] != "keep me" {
		t.Fatalf("history after a delete: %q (keep %d)", got, keep)
	}
}

func TestMute(t *testing.T) {
	e := newEnv(t, nil)
	mod := e.dial("mod", chatfleet.RoleModerator)
	vic := e.dial("vic", chatfleet.RoleViewer)
	mod.send(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "vic"})
	if m := vic.await(protocol.TypeMuted, nil); m.UserID != "vic" || m.Name != "Vic" || m.Until != 0 {
		t.Fatalf("muted %+v", m)
	}
	if code := vic.errorCode(protocol.ClientMsg{Type: protocol.TypeChat, Text: "hi"}); code != protocol.CodeMuted {
		t.Fatalf("muted chat: %q", code)
	}
	// A second tab is muted too: the mute is the user's, and its welcome
	// says so (until unmuted: no end).
	vic2 := e.dial("vic", chatfleet.RoleViewer)
	if !vic2.welcome.Muted || vic2.welcome.Until != 0 {
		t.Fatalf("welcome of a muted user: muted %v until %d, want muted with no end", vic2.welcome.Muted, vic2.welcome.Until)
	}
	if mod.welcome.Muted {
		t.Fatal("the moderator's welcome says muted")
	}
	if code := vic2.errorCode(protocol.ClientMsg{Type: protocol.TypeChat, Text: "hi"}); code != protocol.CodeMuted {
		t.Fatalf("muted chat from a second tab: %q", code)
	}
	mod.send(protocol.ClientMsg{Type: protocol.TypeUnmute, UserID: "vic"})
	vic.await(protocol.TypeUnmuted, nil)
	vic.chat("free again")
	if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeUnmute, UserID: "vic"}); code != protocol.CodeNotFound {
		t.Fatalf("unmute twice: %q", code)
	}
}

func TestMuteExpires(t *testing.T) {
	var mu = make(chan time.Time, 1)
	mu <- time.Now()
	now := func() time.Time { t := <-mu; mu <- t; return t }
	advance := func(d time.Duration) { t := <-mu; mu <- t.Add(d) }
	e := newEnv(t, func(c *Config) { c.Now = now })
	mod := e.dial("mod", chatfleet.RoleModerator)
	vic := e.dial("vic", chatfleet.RoleViewer)
	mod.send(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "vic", Seconds: 60})
	vic.await(protocol.TypeMuted, nil)
	if code := vic.errorCode(protocol.ClientMsg{Type: protocol.TypeChat, Text: "hi"}); code != protocol.CodeMuted {
		t.Fatalf("muted chat: %q", code)
	}
	advance(61 * time.Second)
	vic.chat("the mute is over")
}

func TestSlowMode(t *testing.T) {
	var mu = make(chan time.Time, 1)
	mu <- time.Now()
	now := func() time.Time { t := <-mu; mu <- t; return t }
	advance := func(d time.Duration) { t := <-mu; mu <- t.Add(d) }
	e := newEnv(t, func(c *Config) { c.Now = now; c.Settings.SlowModeSeconds = 10 })
	vic := e.dial("vic", chatfleet.RoleViewer)
	mod := e.dial("mod", chatfleet.RoleModerator)
	if vic.welcome.SlowMode != 10 {
		t.Fatalf("welcome slowMode %d", vic.welcome.SlowMode)
	}
	vic.chat("one")
	if code := vic.errorCode(protocol.ClientMsg{Type: protocol.TypeChat, Text: "two"}); code != protocol.CodeSlowMode {
		t.Fatalf("second message in slow mode: %q", code)
	}
	mod.chat("moderators are exempt")
	mod.chat("really")
	advance(10 * time.Second)
	vic.chat("two, later")
	mod.send(protocol.ClientMsg{Type: protocol.TypeSlowMode, Seconds: 0})
	vic.await(protocol.TypeSlowMode, func(m protocol.ServerMsg) bool { return m.Seconds == 0 })
	vic.chat("three")
}

func TestKick(t *testing.T) {
	e := newEnv(t, nil)
	mod := e.dial("mod", chatfleet.RoleModerator)
	vic := e.dial("vic", chatfleet.RoleViewer)
	other := e.dial("other", chatfleet.RoleViewer)
	if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeKick, UserID: "nobody"}); code != protocol.CodeNotFound {
		t.Fatalf("kick an absent user: %q", code)
	}
	mod.send(protocol.ClientMsg{Type: protocol.TypeKick, UserID: "vic", Reason: "spam"})
	if m := other.await(protocol.TypeKicked, nil); m.UserID != "vic" || m.Reason != "spam" || m.By.UserID != "mod" {
		t.Fatalf("kicked %+v", m)
	}
	if m := vic.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindKicked }); m.Text != "spam" {
		t.Fatalf("system %+v", m)
	}
	if reason := vic.expectClose(protocol.CloseKicked); reason != "spam" {
		t.Fatalf("close reason %q", reason)
	}
	other.await(protocol.TypeLeave, func(m protocol.ServerMsg) bool { return m.UserID == "vic" })
	// A kick is not a ban.
	e.dial("vic", chatfleet.RoleViewer).chat("back")
}

func TestBan(t *testing.T) {
	e := newEnv(t, nil)
	prod := e.dial("prod", chatfleet.RoleProducer)
	vic := e.dial("vic", chatfleet.RoleViewer)
	vic2 := e.dial("vic", chatfleet.RoleViewer)
	other := e.dial("other", chatfleet.RoleViewer)

	before := time.Now()
	prod.send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "vic", Reason: "abuse", Minutes: 30})
	if m := other.await(protocol.TypeBanned, nil); m.UserID != "vic" || m.Reason != "abuse" || m.Minutes != 30 || m.Fleet || m.By.UserID != "prod" {
		t.Fatalf("banned %+v", m)
	}
	for _, c := range []*tclient{vic, vic2} {
		c.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindBanned })
		c.expectClose(protocol.CloseBanned)
	}
	ev := e.event(EventBan, nil)
	b := ev.Ban
	if b == nil || b.UserID != "vic" || b.Room != testRoom || b.By != "prod" || b.Reason != "abuse" || b.ID == "" ||
		b.Until.Sub(before) < 29*time.Minute || b.Until.Sub(before) > 31*time.Minute {
		t.Fatalf("ban event %+v", b)
	}
	_, resp, err := e.dialURL(e.wsURL(url.Values{"token": {e.token("vic", chatfleet.RoleViewer)}}), nil)
	if err == nil || resp.StatusCode != 403 {
		t.Fatalf("banned user's handshake: %v %v", err, resp)
	}

	t.Run("fleet refused", func(t *testing.T) {
		if code := prod.errorCode(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "other", Fleet: true}); code != protocol.CodeForbidden {
			t.Fatalf("fleet ban from a room: %q", code)
		}
		other.chat("still here")
	})
	t.Run("survives a reset without it", func(t *testing.T) {
		// The master has not stored the ban yet: its list must not lift it.
		e.room.ApplyBans(BanStep{Reset: true, Add: []chatfleet.Ban{{ID: "f1", UserID: "someone"}}})
		e.room.Global("sync") // the list is applied once this arrives
		prod.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Text == "sync" })
		if _, resp, err := e.dialURL(e.wsURL(url.Values{"token": {e.token("vic", chatfleet.RoleViewer)}}), nil); err == nil || resp.StatusCode != 403 {
			t.Fatalf("after an older cache: %v %v", err, resp)
		}
	})
}

func TestApplyBans(t *testing.T) {
	e := newEnv(t, nil)
	vic := e.dial("vic", chatfleet.RoleViewer)
	other := e.dial("other", chatfleet.RoleViewer)
	e.room.ApplyBans(BanStep{Add: []chatfleet.Ban{
		{ID: "b1", UserID: "vic", Reason: "fleet-wide"},
		{ID: "b2", UserID: "other", Room: "another-room"},
		{ID: "b3", UserID: "other", Until: time.Now().Add(-time.Minute)}, // over
	}})
	if m := vic.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindBanned }); m.Text != "you are banned: fleet-wide" {
		t.Fatalf("system %+v", m)
	}
	vic.expectClose(protocol.CloseBanned)
	other.await(protocol.TypeBanned, func(m protocol.ServerMsg) bool { return m.UserID == "vic" })
	if _, resp, err := e.dialURL(e.wsURL(url.Values{"token": {e.token("vic", chatfleet.RoleViewer)}}), nil); err == nil || resp.StatusCode != 403 {
		t.Fatalf("banned handshake: %v %v", err, resp)
	}
	other.chat("still here")
	testutil.Eventually(t, waitFor, func() error {
		if st := e.room.Stats(); st.Viewers != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	// A removal lets the user in at once.
	e.room.ApplyBans(BanStep{Remove: []string{"b1"}})
	testutil.Eventually(t, waitFor, func() error {
		c, _, err := e.dialURL(e.wsURL(url.Values{"token": {e.token("vic", chatfleet.RoleViewer)}}), nil)
		if err != nil {
			return err
		}
		c.ws.Close()
		return nil
	})
}

// The moderation value type alone, without a hub.

func testModeration(maxMutes, maxStaff int) moderation {
	return newModeration(&Config{MaxMutes: maxMutes, MaxRolesSeen: maxStaff, MsgRate: 5, MsgBurst: 10, RoomMsgRate: 2000, RoomMsgBurst: 200, ModRate: 10, ModBurst: 50})
}

func TestAuthorize(t *testing.T) {
	mod := protocol.User{UserID: "mod", Role: chatfleet.RoleModerator}
	prod := protocol.User{UserID: "prod", Role: chatfleet.RoleProducer}
	for _, tt := range []struct {
		name   string
		msg    protocol.ClientMsg
		by     protocol.User
		owner  string
		target chatfleet.Role
		code   string
	}{
		{"moderator mutes a viewer", protocol.ClientMsg{Type: protocol.TypeMute, UserID: "v"}, mod, "", chatfleet.RoleViewer, ""},
		{"producer kicks a moderator", protocol.ClientMsg{Type: protocol.TypeKick, UserID: "m2"}, prod, "", chatfleet.RoleModerator, ""},
		{"room ban", protocol.ClientMsg{Type: protocol.TypeBan, UserID: "v"}, mod, "owner", chatfleet.RoleViewer, ""},
		{"fleet ban", protocol.ClientMsg{Type: protocol.TypeBan, UserID: "v", Fleet: true}, prod, "", chatfleet.RoleViewer, protocol.CodeForbidden},
		{"oneself", protocol.ClientMsg{Type: protocol.TypeMute, UserID: "mod"}, mod, "", chatfleet.RoleModerator, protocol.CodeInvalid},
		{"the owner", protocol.ClientMsg{Type: protocol.TypeKick, UserID: "owner"}, prod, "owner", chatfleet.RoleViewer, protocol.CodeForbidden},
		{"moderator on a moderator", protocol.ClientMsg{Type: protocol.TypeMute, UserID: "m2"}, mod, "", chatfleet.RoleModerator, protocol.CodeForbidden},
		{"moderator on a producer", protocol.ClientMsg{Type: protocol.TypeBan, UserID: "prod"}, mod, "", chatfleet.RoleProducer, protocol.CodeForbidden},
		{"producer on a producer", protocol.ClientMsg{Type: protocol.TypeUnmute, UserID: "p2"}, prod, "", chatfleet.RoleProducer, protocol.CodeForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, text := authorize(&tt.msg, tt.by, tt.owner, tt.target)
			if code != tt.code || (code == "") != (text == "") {
				t.Errorf("authorize = %q %q, want code %q", code, text, tt.code)
			}
		})
	}
}

func TestModerationMutes(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	later := now.Add(time.Minute)
	for _, tt := range []struct {
		name   string
		held   map[string]time.Time // mutes before
		max    int
		id     string
		until  time.Time
		ok     bool // mute accepted
		remain int  // mutes held after
	}{
		{"first", nil, 2, "a", later, true, 1},
		{"until unmuted", nil, 2, "a", time.Time{}, true, 1},
		{"at the cap", map[string]time.Time{"x": later, "y": {}}, 2, "a", later, false, 2},
		{"at the cap, one ended", map[string]time.Time{"x": now, "y": {}}, 2, "a", later, true, 2},
		{"at the cap, muted again", map[string]time.Time{"a": later, "y": {}}, 2, "a", time.Time{}, true, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := testModeration(tt.max, 10)
			maps.Copy(m.mutes, tt.held)
			if ok := m.mute(tt.id, tt.until, now); ok != tt.ok || len(m.mutes) != tt.remain {
				t.Fatalf("mute = %v with %d held, want %v with %d", ok, len(m.mutes), tt.ok, tt.remain)
			}
			if m.muted(tt.id, now) != tt.ok {
				t.Errorf("muted = %v, want %v", !tt.ok, tt.ok)
			}
		})
	}

	m := testModeration(10, 10)
	m.mute("timed", later, now)
	m.mute("open", time.Time{}, now)
	for _, tt := range []struct {
		id    string
		at    time.Time
		muted bool
	}{
		{"timed", later.Add(-time.Millisecond), true},
		{"open", later.Add(time.Hour), true},
		{"nobody", now, false},
		{"timed", later, false}, // ended: forgotten
		{"timed", now, false},   // even asked about an earlier time
	} {
		if got := m.muted(tt.id, tt.at); got != tt.muted {
			t.Errorf("muted(%s, %v) = %v, want %v", tt.id, tt.at.Sub(now), got, tt.muted)
		}
	}
	if !m.unmute("open", now) || m.unmute("open", now) || m.unmute("nobody", now) {
		t.Error("unmute: want true once for a muted user, then false")
	}
	m.mute("a", now.Add(time.Second), now)
	m.mute("b", time.Time{}, now)
	m.pruneMutes(later)
	if _, ok := m.mutes["a"]; ok || len(m.mutes) != 1 {
		t.Errorf("after pruneMutes: %v, want only b", m.mutes)
	}
}

func TestModerationRoles(t *testing.T) {
	m := testModeration(10, 2)
	lim, modLim, full := m.limits("v", chatfleet.RoleViewer)
	if lim == nil || modLim != nil || full || len(m.staff) != 0 {
		t.Fatalf("viewer limits: %v %v %v, %d remembered", lim, modLim, full, len(m.staff))
	}
	if lim.Burst() != 10 {
		t.Errorf("viewer burst %d, want MsgBurst 10", lim.Burst())
	}
	lim, modLim, _ = m.limits("mod", chatfleet.RoleModerator)
	if lim.Burst() != 200 || modLim.Burst() != 50 {
		t.Errorf("moderator bursts %d %d, want the room's 200 and ModBurst 50", lim.Burst(), modLim.Burst())
	}
	// Reconnecting does not refill: the same limiters come back.
	if lim2, modLim2, _ := m.limits("mod", chatfleet.RoleModerator); lim2 != lim || modLim2 != modLim {
		t.Error("a moderator's second connection got new limiters")
	}
	m.limits("prod", chatfleet.RoleProducer)
	if _, modLim, full := m.limits("late", chatfleet.RoleModerator); !full || modLim == nil || len(m.staff) != 2 {
		t.Errorf("over MaxRolesSeen: full %v, modLim %v, %d remembered; want full, fresh limiters, 2", full, modLim, len(m.staff))
	}
	// A role only rises; absent users keep the highest they had.
	m.limits("mod", chatfleet.RoleProducer)
	for _, tt := range []struct {
		id      string
		present chatfleet.Role
		want    chatfleet.Role
	}{
		{"mod", chatfleet.RoleViewer, chatfleet.RoleProducer},
		{"prod", chatfleet.RoleViewer, chatfleet.RoleProducer},
		{"late", chatfleet.RoleViewer, chatfleet.RoleViewer}, // not remembered
		{"late", chatfleet.RoleModerator, chatfleet.RoleModerator},
		{"v", chatfleet.RoleViewer, chatfleet.RoleViewer},
	} {
		if got := m.highestRole(tt.id, tt.present); got != tt.want {
			t.Errorf("highestRole(%s, %s) = %s, want %s", tt.id, tt.present, got, tt.want)
		}
	}
}
