package room

import (
	"fmt"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

func TestChat(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Settings.MaxMessageLen = 10 })
	ann := e.dial("ann", chatfleet.RoleViewer)
	bob := e.dial("bob", chatfleet.RoleViewer)
	if ann.welcome.MaxLen != 10 {
		t.Fatalf("welcome maxLen %d, want the room's 10", ann.welcome.MaxLen)
	}

	ann.send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "héllo 👋", ClientID: "m1", SendTS: 1234})
	ack := ann.await(protocol.TypeAck, nil)
	if ack.ClientID != "m1" || ack.Seq == 0 {
		t.Fatalf("ack = %+v", ack)
	}
	for _, c := range []*tclient{ann, bob} {
		m := c.await(protocol.TypeChat, nil)
		if m.Seq != ack.Seq || m.Text != "héllo 👋" || m.SendTS != 1234 || m.TS == 0 ||
			m.From == nil || *m.From != (protocol.User{UserID: "ann", Name: "Ann", Role: chatfleet.RoleViewer}) {
			t.Fatalf("%s got %+v", c.name, m)
		}
	}

	t.Run("limits", func(t *testing.T) {
		for _, tt := range []struct {
			text string
			code string
		}{
			{"0123456789", ""},                     // 10 characters
			{"ééééééééé😀", ""},                     // 10 characters, more bytes
			{"01234567890", protocol.CodeTooLarge}, // 11
			{"   ", protocol.CodeInvalid},
			{"", protocol.CodeInvalid},
		} {
			ann.send(protocol.ClientMsg{Type: protocol.TypeChat, Text: tt.text, ClientID: "x"})
			m := ann.await("", func(m protocol.ServerMsg) bool { return m.Type == protocol.TypeAck || m.Type == protocol.TypeError })
			if tt.code == "" && m.Type != protocol.TypeAck || tt.code != "" && m.Code != tt.code {
				t.Errorf("chat %q: %+v, want code %q", tt.text, m, tt.code)
			}
			if m.Type == protocol.TypeError && m.Ref != "x" {
				t.Errorf("error ref %q, want the clientId", m.Ref)
			}
		}
	})
	t.Run("ping", func(t *testing.T) {
		bob.send(protocol.ClientMsg{Type: protocol.TypePing})
		if m := bob.await(protocol.TypePong, nil); m.TS == 0 {
			t.Fatalf("pong %+v", m)
		}
	})
	if st := e.room.Stats(); st.Messages != 3 || st.Viewers != 2 || st.Conns != 2 || st.Seq < 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBlockedWords(t *testing.T) {
	e := newEnv(t, nil)
	e.room.ApplyCache(&chatfleet.Cache{BlockedWords: []string{"darn", " HECK "}})
	ann := e.dial("ann", chatfleet.RoleViewer)
	for in, want := range map[string]string{
		"darn it":               "**** it",
		"Heck, DARN!":           "****, ****!",
		"darned heckle":         "darned heckle", // whole words only
		"what the heck.":        "what the ****.",
		"nothing to see here 🙂": "nothing to see here 🙂",
	} {
		seq := ann.chat(in)
		if m := ann.await(protocol.TypeChat, func(m protocol.ServerMsg) bool { return m.Seq == seq }); m.Text != want {
			t.Errorf("chat %q broadcast as %q, want %q", in, m.Text, want)
		}
	}
}

func TestMaskWords(t *testing.T) {
	blocked := map[string]bool{"bad": true, "ünïcode": true}
	for in, want := range map[string]string{
		"":                "",
		"bad":             "***",
		"bad bad":         "*** ***",
		"BAD-bad_badder":  "***-***_badder",
		"ÜNÏCODE is fine": "******* is fine",
		"abad bada":       "abad bada",
	} {
		if got := maskWords(in, blocked); got != want {
			t.Errorf("maskWords(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPresence(t *testing.T) {
	e := newEnv(t, nil)
	ann := e.dial("ann", chatfleet.RoleProducer)
	if ann.welcome.ViewerCount != 1 {
		t.Fatalf("welcome viewerCount %d", ann.welcome.ViewerCount)
	}
	bob := e.dial("bob", chatfleet.RoleViewer)
	j := ann.await(protocol.TypeJoin, func(m protocol.ServerMsg) bool { return m.UserID == "bob" })
	if j.UserID != "bob" || j.Name != "Bob" || j.Role != chatfleet.RoleViewer || j.ViewerCount != 2 || j.Seq == 0 {
		t.Fatalf("join %+v", j)
	}

	// A second tab of bob: no join; closing one of two tabs: no leave.
	bob2 := e.dial("bob", chatfleet.RoleViewer)
	if bob2.welcome.ViewerCount != 2 {
		t.Fatalf("second tab: viewerCount %d", bob2.welcome.ViewerCount)
	}
	bob2.ws.Close()
	testutil.Eventually(t, waitFor, func() error {
		if st := e.room.Stats(); st.Conns != 2 || st.Viewers != 2 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	carl := e.dial("carl", chatfleet.RoleViewer)
	j2 := ann.await(protocol.TypeJoin, func(m protocol.ServerMsg) bool { return m.UserID == "carl" })
	if j2.ViewerCount != 3 || j2.Seq != j.Seq+1 {
		t.Fatalf("join after a tab closed: %+v after %d: bob's second tab made a join or leave", j2, j.Seq)
	}

	t.Run("viewers", func(t *testing.T) {
		dave := e.dial("dave", chatfleet.RoleModerator)
		carl.send(protocol.ClientMsg{Type: protocol.TypeViewers, PageSize: 2})
		v := carl.await(protocol.TypeViewers, nil)
		if v.Total != 4 || len(v.Users) != 2 || v.Users[0].UserID != "ann" || v.Users[1].UserID != "dave" {
			t.Fatalf("page 0: %+v", v)
		}
		carl.send(protocol.ClientMsg{Type: protocol.TypeViewers, Page: 1, PageSize: 2})
		v = carl.await(protocol.TypeViewers, nil)
		if v.Page != 1 || len(v.Users) != 2 || v.Users[0].UserID != "bob" || v.Users[1].UserID != "carl" {
			t.Fatalf("page 1: %+v", v)
		}
		carl.send(protocol.ClientMsg{Type: protocol.TypeViewers, Page: 5})
		if v = carl.await(protocol.TypeViewers, nil); len(v.Users) != 0 || v.Total != 4 {
			t.Fatalf("page 5: %+v", v)
		}
		dave.ws.Close()
	})

	bob.ws.Close()
	l := ann.await(protocol.TypeLeave, func(m protocol.ServerMsg) bool { return m.UserID == "bob" })
	if l.ViewerCount < 2 {
		t.Fatalf("leave %+v", l)
	}
}

func TestPresenceLargeRoom(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.PresenceMax = 2 })
	ann := e.dial("ann", chatfleet.RoleViewer)
	e.dial("bob", chatfleet.RoleViewer)
	ann.await(protocol.TypeJoin, nil)
	e.dial("carl", chatfleet.RoleViewer) // the third: no join, a count
	if m := ann.await(protocol.TypeCount, nil); m.ViewerCount != 3 || m.Seq != 0 {
		t.Fatalf("count %+v", m)
	}
}

func TestHistoryAndRecovery(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Settings.HistorySize = 20 })
	prod := e.dial("prod", chatfleet.RoleProducer)
	for _, s := range texts(5, "early %d") {
		prod.chat(s)
	}

	t.Run("history on join", func(t *testing.T) {
		v := e.dial("vic", chatfleet.RoleViewer)
		h := historyOf(t, v.welcome)
		if got := chats(h); !slices.Equal(got, texts(5, "early %d")) {
			t.Fatalf("history chats %q", got)
		}
		checkSeqs(t, h, h[0].Seq)
		if v.welcome.Missed || v.welcome.Seq != h[len(h)-1].Seq || v.welcome.FirstSeq != 1 {
			t.Fatalf("welcome %+v", v.welcome)
		}
		v.ws.Close()
		testutil.Eventually(t, waitFor, func() error {
			if n := e.room.Stats().Viewers; n != 1 {
				return fmt.Errorf("%d viewers", n)
			}
			return nil
		})
	})

	t.Run("reconnect after 10", func(t *testing.T) {
		v := e.dial("vic", chatfleet.RoleViewer)
		last := prod.chat("seen")
		v.await(protocol.TypeChat, func(m protocol.ServerMsg) bool { return m.Seq == last })
		v.ws.Close()
		v.closed()
		missed := texts(10, "missed %d")
		for _, s := range missed {
			prod.chat(s)
		}
		v = e.dial("vic", chatfleet.RoleViewer, "lastSeq", fmt.Sprint(last))
		h := historyOf(t, v.welcome)
		if got := chats(h); !slices.Equal(got, missed) {
			t.Fatalf("after reconnecting got chats %q, want %q", got, missed)
		}
		checkSeqs(t, h, last+1) // exactly what came after lastSeq: its own leave, then the chats
		if v.welcome.Missed || h[len(h)-1].Seq != v.welcome.Seq {
			t.Fatalf("welcome %+v", v.welcome)
		}
		// What comes next follows without a gap or a duplicate.
		next := prod.chat("after")
		if m := v.await(protocol.TypeChat, nil); m.Seq != next || m.Text != "after" {
			t.Fatalf("next chat %+v, want seq %d", m, next)
		}

		// resume on the open connection: the same answer.
		v.send(protocol.ClientMsg{Type: protocol.TypeResume, LastSeq: last, HasLastSeq: true})
		w := v.await(protocol.TypeWelcome, nil)
		if got := chats(historyOf(t, w)); !slices.Equal(got, append(missed, "after")) || w.Missed {
			t.Fatalf("resume: %q missed=%v", got, w.Missed)
		}
		// Up to date: nothing.
		v.send(protocol.ClientMsg{Type: protocol.TypeHello, LastSeq: w.Seq, HasLastSeq: true})
		if w = v.await(protocol.TypeWelcome, nil); len(w.History) != 0 || w.Missed {
			t.Fatalf("hello at the head: %+v", w)
		}
	})

	t.Run("gap beyond the buffer", func(t *testing.T) {
		// The ring holds historyFactor events per message of the history size.
		kept := 20 * historyFactor
		for _, s := range texts(kept+5, "flood %d") {
			prod.chat(s)
		}
		v := e.dial("vic2", chatfleet.RoleViewer, "lastSeq", "3")
		h := historyOf(t, v.welcome)
		if !v.welcome.Missed || len(h) != kept || v.welcome.FirstSeq != h[0].Seq || h[0].Seq <= 4 {
			t.Fatalf("missed=%v firstSeq=%d, %d entries from %d", v.welcome.Missed, v.welcome.FirstSeq, len(h), h[0].Seq)
		}
		checkSeqs(t, h, h[0].Seq)
		// A lastSeq this room never reached (it restarted without its log): missed.
		v2 := e.dial("vic3", chatfleet.RoleViewer, "lastSeq", "999999")
		if !v2.welcome.Missed || len(v2.welcome.History) != kept {
			t.Fatalf("future lastSeq: missed=%v, %d entries", v2.welcome.Missed, len(v2.welcome.History))
		}
	})
}

func TestResumeFromLog(t *testing.T) {
	// A room that logs its events...
	e := newEnv(t, func(c *Config) { c.LogEvents = true })
	prod := e.dial("prod", chatfleet.RoleProducer)
	prod.send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: "https://cdn.example.com/a.m3u8"})
	prod.await(protocol.TypeStream, nil)
	last := prod.chat("before the restart")
	var log []chatfleet.Event
	testutil.Eventually(t, waitFor, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		log = nil
		for _, ev := range e.events {
			if ev.Type == EventLog {
				log = append(log, ev.Log...)
			}
		}
		if len(log) == 0 || log[len(log)-1].Seq != last {
			return fmt.Errorf("logged %d events", len(log))
		}
		return nil
	})
	// ...and its next life.
	e2 := newEnv(t, func(c *Config) { c.Resume = log; c.StartSeq = last })
	v := e2.dial("vic", chatfleet.RoleViewer)
	if got := chats(historyOf(t, v.welcome)); !slices.Equal(got, []string{"before the restart"}) {
		t.Fatalf("history after resume: %q", got)
	}
	if v.welcome.Seq != last || !v.welcome.Stream.Live || v.welcome.Stream.HLSURL != "https://cdn.example.com/a.m3u8" {
		t.Fatalf("welcome after resume: %+v stream %+v", v.welcome, v.welcome.Stream)
	}
	v2 := e2.dial("vic2", chatfleet.RoleViewer, "lastSeq", fmt.Sprint(last))
	if v2.welcome.Missed || len(chats(historyOf(t, v2.welcome))) != 0 {
		t.Fatalf("resuming client: %+v", v2.welcome)
	}
	if seq := v.await(protocol.TypeJoin, nil).Seq; seq <= last {
		t.Fatalf("seq went back: %d after %d", seq, last)
	}
}

func TestInvalidInput(t *testing.T) {
	e := newEnv(t, nil)
	ann := e.dial("ann", chatfleet.RoleViewer)
	for _, tt := range []struct {
		name string
		in   string
		code string
	}{
		{"invalid json", `{"type":"chat",`, protocol.CodeInvalidJSON},
		{"not an object", `[1,2]`, protocol.CodeInvalidJSON},
		{"unknown type", `{"type":"explode"}`, protocol.CodeUnknownType},
		{"invalid utf8", "{\"type\":\"chat\",\"text\":\"\xc3\x28\"}", protocol.CodeInvalidUTF8},
		{"missing field", `{"type":"chat"}`, protocol.CodeMissingField},
		{"missing type", `{"text":"hi"}`, protocol.CodeMissingField},
		{"wrong type", `{"type":"chat","text":42}`, protocol.CodeInvalidField},
		{"unknown field", `{"type":"chat","text":"hi","admin":true}`, protocol.CodeInvalidField},
		{"negative", `{"type":"viewers","page":-1}`, protocol.CodeInvalidField},
		{"huge number", `{"type":"delete","seq":1e400}`, protocol.CodeInvalidField},
		{"empty", ``, protocol.CodeInvalidJSON},
		{"nul bytes", "\x00\x00", protocol.CodeInvalidJSON},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ann.sendRaw(websocket.TextMessage, []byte(tt.in))
			if m := ann.await(protocol.TypeError, nil); m.Code != tt.code || m.Message == "" {
				t.Fatalf("error %+v, want code %s", m, tt.code)
			}
		})
	}
	// The connection is still fine.
	ann.chat("still here")

	t.Run("binary frame", func(t *testing.T) {
		ann.sendRaw(websocket.BinaryMessage, []byte{1, 2, 3})
		ann.expectClose(protocol.CloseUnsupported)
	})
	e.dial("bob", chatfleet.RoleViewer).chat("the room is fine")
}

func TestLongText(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Settings.MaxMessageLen = 2000 })
	ann := e.dial("ann", chatfleet.RoleViewer)
	long := strings.Repeat("é", 2000) // 4000 bytes: the read limit follows MaxMessageLen
	ann.chat(long)
}
