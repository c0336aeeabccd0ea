package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// spread is a room spread over two real rooms in one process: an origin,
// and an edge whose Edge.Relay calls the origin's Remote and whose Deliver
// gets the origin's EventLog events in order. The feed and the relay are the
// transport's stand-ins (package bus is tested on NATS elsewhere).
type spread struct {
	t      *testing.T
	origin *env
	edge   *env

	feed   chan chatfleet.Event
	delay  atomic.Int64                                                   // the feed holds each event this long (ns): the origin's events reach the edge late
	relay  atomic.Pointer[func(context.Context) (json.RawMessage, error)] // when set, Relay calls it instead of the origin
	relays atomic.Int64                                                   // relayed messages
}

// newSpread starts an origin (configured by modOrigin) and an edge of it
// (modEdge); either may be nil.
func newSpread(t *testing.T, modOrigin, modEdge func(*Config)) *spread {
	t.Helper()
	s := &spread{t: t, feed: make(chan chatfleet.Event, 1<<16)}
	s.origin = newEnv(t, func(c *Config) {
		c.LogEvents = true
		record := c.OnEvent
		c.OnEvent = func(ev Event) {
			record(ev)
			if ev.Type != EventLog {
				return
			}
			for _, le := range ev.Log {
				select {
				case s.feed <- le:
				default:
					t.Errorf("test feed full")
				}
			}
		}
		if modOrigin != nil {
			modOrigin(c)
		}
	})
	s.edge = newEnv(t, func(c *Config) {
		c.Edge = &Edge{Relay: s.relayFn}
		if modEdge != nil {
			modEdge(c)
		}
	})
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case <-stop:
				return
			case le := <-s.feed:
				if d := time.Duration(s.delay.Load()); d > 0 {
					time.Sleep(d)
				}
				s.edge.room.Deliver(le.Seq, le.Data)
			}
		}
	}()
	return s
}

func (s *spread) relayFn(ctx context.Context, who protocol.User, msg protocol.ClientMsg) (json.RawMessage, error) {
	s.relays.Add(1)
	if f := s.relay.Load(); f != nil {
		return (*f)(ctx)
	}
	return s.origin.room.Remote(ctx, who, msg), nil
}

// setRelay makes the edge's relay call f instead of the origin.
func (s *spread) setRelay(f func(context.Context) (json.RawMessage, error)) { s.relay.Store(&f) }

// waitSeq waits until the edge has delivered the origin's seq.
func (s *spread) waitSeq() int64 {
	s.t.Helper()
	var seq int64
	testutil.Eventually(s.t, waitFor, func() error {
		seq = s.origin.room.Stats().Seq
		if got := s.edge.room.Stats().Seq; got != seq {
			return fmt.Errorf("edge at seq %d, origin at %d", got, seq)
		}
		return nil
	})
	return seq
}

// inOrder returns c's messages, in the order they came, up to the first
// that matches ok (included).
func (c *tclient) inOrder(ok func(protocol.ServerMsg) bool) []protocol.ServerMsg {
	c.t.Helper()
	var out []protocol.ServerMsg
	for len(c.pending) > 0 {
		m := c.pending[0]
		c.pending = c.pending[1:]
		if out = append(out, m); ok(m) {
			return out
		}
	}
	for {
		m := c.await("", nil)
		if out = append(out, m); ok(m) {
			return out
		}
	}
}

func TestSpreadChat(t *testing.T) {
	s := newSpread(t, nil, nil)
	prod := s.origin.dial("prod", chatfleet.RoleProducer)
	olga := s.origin.dial("olga", chatfleet.RoleViewer)
	ed := s.edge.dial("ed", chatfleet.RoleViewer)
	eve := s.edge.dial("eve", chatfleet.RoleViewer)
	if ed.welcome.Room != testRoom || ed.welcome.You.UserID != "ed" {
		t.Fatalf("edge welcome %+v", ed.welcome)
	}

	// The origin's events reach the edge late: the ack waits for the message.
	s.delay.Store(int64(300 * time.Millisecond))
	ed.send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "hello from the edge", ClientID: "e1", SendTS: 77})
	got := ed.inOrder(func(m protocol.ServerMsg) bool { return m.Type == protocol.TypeAck || m.Type == protocol.TypeError })
	ack := got[len(got)-1]
	if ack.Type != protocol.TypeAck || ack.ClientID != "e1" || ack.Seq == 0 {
		t.Fatalf("edge sender got %+v", ack)
	}
	sawChat := false
	for _, m := range got {
		sawChat = sawChat || (m.Type == protocol.TypeChat && m.Seq == ack.Seq)
	}
	if !sawChat {
		t.Fatalf("the ack came before its message: %+v", got)
	}
	s.delay.Store(0)
	for _, c := range []*tclient{prod, olga, eve} {
		m := c.await(protocol.TypeChat, func(m protocol.ServerMsg) bool { return m.Text == "hello from the edge" })
		if m.Seq != ack.Seq || m.SendTS != 77 || m.From == nil || m.From.UserID != "ed" || m.From.Role != chatfleet.RoleViewer {
			t.Fatalf("%s got %+v (ack seq %d)", c.name, m, ack.Seq)
		}
	}

	// The origin's chat and stream reach the edge with the same seqs.
	seq := olga.chat("hello from the origin")
	if m := eve.await(protocol.TypeChat, func(m protocol.ServerMsg) bool { return m.Text == "hello from the origin" }); m.Seq != seq {
		t.Fatalf("edge got seq %d, origin %d", m.Seq, seq)
	}
	prod.send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: "https://cdn.example.com/live.m3u8"})
	eve.await(protocol.TypeStream, func(m protocol.ServerMsg) bool { return m.Live })
	prod.send(protocol.ClientMsg{Type: protocol.TypeSlowMode, Seconds: 30})
	eve.await(protocol.TypeSlowMode, nil)
	last := s.waitSeq()

	// A late edge client's welcome: the state and history the origin made.
	fay := s.edge.dial("fay", chatfleet.RoleViewer)
	w := fay.welcome
	if w.Seq != last || w.Stream == nil || !w.Stream.Live || w.Stream.HLSURL != "https://cdn.example.com/live.m3u8" || w.SlowMode != 30 {
		t.Fatalf("late edge welcome %+v", w)
	}
	if got := chats(historyOf(t, w)); strings.Join(got, "|") != "hello from the edge|hello from the origin" {
		t.Fatalf("edge history %q", got)
	}
	if st := s.edge.room.Stats(); st.Viewers != 3 || st.Conns != 3 || !st.ProducerLive || st.Messages != 2 {
		t.Fatalf("edge stats %+v", st)
	}
	// Slow mode, set at the origin, applies to edge viewers.
	fay.chat("one") // her first message goes
	if code := fay.errorCode(protocol.ClientMsg{Type: protocol.TypeChat, Text: "two"}); code != protocol.CodeSlowMode {
		t.Fatalf("second chat in slow mode: %q", code)
	}

	t.Run("sse", func(t *testing.T) {
		sse := s.edge.openSSE("sam", chatfleet.RoleViewer, nil)
		sse.await(protocol.TypeWelcome, nil)
		prod.send(protocol.ClientMsg{Type: protocol.TypeSlowMode, Seconds: 0})
		sse.await(protocol.TypeSlowMode, func(ev sseEvent) bool { return ev.msg.Seconds == 0 })
		status, reply, e := s.edge.post("sam", chatfleet.RoleViewer, `{"type":"chat","text":"by post","clientId":"p1"}`)
		if status != 202 || e != nil || reply.Type != protocol.TypeAck || reply.ClientID != "p1" || reply.Seq == 0 {
			t.Fatalf("POST /send at the edge: %d %+v %+v", status, reply, e)
		}
		if ev := sse.await(protocol.TypeChat, func(ev sseEvent) bool { return ev.msg.Text == "by post" }); ev.id != fmt.Sprint(reply.Seq) {
			t.Fatalf("SSE chat id %q, ack seq %d", ev.id, reply.Seq)
		}
		status, reply, _ = s.edge.post("sam", chatfleet.RoleViewer, `{"type":"viewers"}`)
		if status != 202 || reply.Type != protocol.TypeViewers {
			t.Fatalf("viewers by POST: %d %+v", status, reply)
		}
	})
}

func TestEdgeRecovery(t *testing.T) {
	s := newSpread(t, nil, func(c *Config) { c.Settings.HistorySize = 2 }) // 16 events at the edge
	olga := s.origin.dial("olga", chatfleet.RoleViewer)
	ed := s.edge.dial("ed", chatfleet.RoleViewer)
	olga.chat("before")
	ed.await(protocol.TypeChat, nil)
	lastSeen := s.waitSeq()
	ed.ws.Close()

	for _, txt := range texts(5, "missed %d") {
		olga.chat(txt)
	}
	s.waitSeq()
	back := s.edge.dial("ed", chatfleet.RoleViewer, "lastSeq", fmt.Sprint(lastSeen))
	hist := historyOf(t, back.welcome)
	if back.welcome.Missed || strings.Join(chats(hist), "|") != strings.Join(texts(5, "missed %d"), "|") {
		t.Fatalf("recovery: missed %v, history %q", back.welcome.Missed, chats(hist))
	}
	checkSeqs(t, hist, lastSeen+1)

	// hello with a lastSeq on the open connection, answered by the edge.
	back.send(protocol.ClientMsg{Type: protocol.TypeHello, LastSeq: lastSeen + 3, HasLastSeq: true})
	w := back.await(protocol.TypeWelcome, nil)
	checkSeqs(t, historyOf(t, w), lastSeen+4)

	// Beyond what the edge holds: missed, and what it still has.
	for _, txt := range texts(20, "more %d") {
		olga.chat(txt)
	}
	s.waitSeq()
	late := s.edge.dial("late", chatfleet.RoleViewer, "lastSeq", fmt.Sprint(lastSeen))
	if !late.welcome.Missed || late.welcome.FirstSeq <= lastSeen+1 {
		t.Fatalf("old lastSeq at the edge: missed %v firstSeq %d", late.welcome.Missed, late.welcome.FirstSeq)
	}
	if got := s.relays.Load(); got != 0 {
		t.Fatalf("%d messages relayed; hello and recovery are the edge's", got)
	}
}

func TestEdgeModeration(t *testing.T) {
	s := newSpread(t, func(c *Config) { c.Owner = "prod" }, nil)
	mod := s.origin.dial("mod", chatfleet.RoleModerator)
	olga := s.origin.dial("olga", chatfleet.RoleViewer)
	ed := s.edge.dial("ed", chatfleet.RoleViewer)
	zed := s.edge.dial("zed", chatfleet.RoleViewer) // never sends: the origin knows it only by the edge's audience
	ed.chat("hi")                                   // the origin knows ed
	ed.await(protocol.TypeChat, nil)

	t.Run("kick", func(t *testing.T) {
		mod.send(protocol.ClientMsg{Type: protocol.TypeKick, UserID: "ed", Reason: "spam"})
		if m := ed.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindKicked }); m.Text != "spam" {
			t.Fatalf("kick notice %+v", m)
		}
		if reason := ed.expectClose(protocol.CloseKicked); reason != "spam" {
			t.Fatalf("kick reason %q", reason)
		}
		ed = s.edge.dial("ed", chatfleet.RoleViewer) // a kicked user may come back
	})
	t.Run("kick of a user only on edges", func(t *testing.T) {
		if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeKick, UserID: "zed"}); code != protocol.CodeNotFound {
			t.Fatalf("kick with no edge audience: %q", code)
		}
		s.origin.room.SetRemoteAudience(s.edge.room.Stats().Viewers)
		testutil.Eventually(t, waitFor, func() error {
			if v := s.origin.room.Stats().Viewers; v != 4 {
				return fmt.Errorf("origin viewers %d", v)
			}
			return nil
		})
		mod.send(protocol.ClientMsg{Type: protocol.TypeKick, UserID: "zed"})
		zed.expectClose(protocol.CloseKicked)
	})
	t.Run("delete", func(t *testing.T) {
		seq := ed.chat("regrettable")
		mod.send(protocol.ClientMsg{Type: protocol.TypeDelete, Seq: seq})
		ed.await(protocol.TypeDeleted, func(m protocol.ServerMsg) bool { return m.Target == seq })
		if got := chats(historyOf(t, s.edge.dial("dora", chatfleet.RoleViewer).welcome)); strings.Join(got, "|") != "hi" {
			t.Fatalf("edge history after a delete: %q", got)
		}
		// An operator's global message comes once, through the origin.
		s.edge.room.Global("edge's own: ignored")
		s.origin.room.Global("to everyone")
		if m := ed.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindGlobal }); m.Text != "to everyone" || m.Seq == 0 {
			t.Fatalf("global at the edge %+v", m)
		}
	})
	t.Run("mute", func(t *testing.T) {
		mod.send(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "ed", Seconds: 600})
		ed.await(protocol.TypeMuted, func(m protocol.ServerMsg) bool { return m.UserID == "ed" })
		if code := ed.errorCode(protocol.ClientMsg{Type: protocol.TypeChat, Text: "can I?"}); code != protocol.CodeMuted {
			t.Fatalf("muted edge user chats: %q", code)
		}
		again := s.edge.dial("ed", chatfleet.RoleViewer)
		if !again.welcome.Muted || again.welcome.Until == 0 {
			t.Fatalf("edge welcome of a muted user %+v", again.welcome)
		}
		again.ws.Close()
		mod.send(protocol.ClientMsg{Type: protocol.TypeUnmute, UserID: "ed"})
		ed.await(protocol.TypeUnmuted, nil)
		ed.chat("free again")
	})
	t.Run("remote moderator", func(t *testing.T) {
		emod := s.edge.dial("emod", chatfleet.RoleModerator)
		if code := emod.errorCode(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "prod"}); code != protocol.CodeForbidden {
			t.Fatalf("ban of the owner: %q", code)
		}
		if code := emod.errorCode(protocol.ClientMsg{Type: protocol.TypeKick, UserID: "mod"}); code != protocol.CodeForbidden {
			t.Fatalf("kick of a moderator: %q", code)
		}
		emod.send(protocol.ClientMsg{Type: protocol.TypeKick, UserID: "olga"})
		olga.expectClose(protocol.CloseKicked)
		// The edge moderator is remembered as one: a moderator cannot act on it.
		if code := mod.errorCode(protocol.ClientMsg{Type: protocol.TypeMute, UserID: "emod"}); code != protocol.CodeForbidden {
			t.Fatalf("mute of an edge moderator: %q", code)
		}
	})
	t.Run("ban", func(t *testing.T) {
		mod.send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "ed", Reason: "abuse", Minutes: 60})
		if m := ed.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindBanned }); !strings.Contains(m.Text, "abuse") {
			t.Fatalf("ban notice %+v", m)
		}
		ed.expectClose(protocol.CloseBanned)
		_, resp, err := s.edge.dialURL(s.edge.wsURL(url.Values{"token": {s.edge.token("ed", chatfleet.RoleViewer)}}), nil)
		if err == nil || resp == nil || resp.StatusCode != 403 {
			t.Fatalf("banned user's handshake at the edge: %v %v", err, resp)
		}
		// The origin refuses what an edge relays for a banned user.
		var m protocol.ServerMsg
		json.Unmarshal(s.origin.room.Remote(context.Background(), protocol.User{UserID: "ed", Name: "Ed", Role: chatfleet.RoleViewer},
			protocol.ClientMsg{Type: protocol.TypeChat, Text: "sneaky", ClientID: "x"}), &m)
		if m.Type != protocol.TypeError || m.Code != protocol.CodeForbidden || m.Ref != "x" {
			t.Fatalf("relayed message of a banned user: %+v", m)
		}
	})
}

func TestEdgeEnds(t *testing.T) {
	t.Run("origin closed", func(t *testing.T) {
		s := newSpread(t, nil, nil)
		prod := s.origin.dial("prod", chatfleet.RoleProducer)
		ed := s.edge.dial("ed", chatfleet.RoleViewer)
		prod.send(protocol.ClientMsg{Type: protocol.TypeClose, Reason: "that's all"})
		if m := ed.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindClosing }); m.Seq == 0 || m.Text != "that's all" {
			t.Fatalf("closing at the edge %+v", m)
		}
		if reason := ed.expectClose(protocol.CloseGoingAway); reason != "that's all" {
			t.Fatalf("reason %q", reason)
		}
		select {
		case <-s.edge.room.Done():
		case <-time.After(waitFor):
			t.Fatal("edge still running")
		}
		if ev := s.edge.event(EventClosed, nil); ev.Cause != CauseOrigin {
			t.Fatalf("edge closed %+v", ev)
		}
	})
	t.Run("origin drained", func(t *testing.T) {
		s := newSpread(t, nil, nil)
		ed := s.edge.dial("ed", chatfleet.RoleViewer)
		s.origin.room.Drain("host restart", 1500*time.Millisecond)
		if m := ed.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindDrain }); m.Seconds != 2 {
			t.Fatalf("drain at the edge %+v", m)
		}
		ed.expectClose(protocol.CloseRestart)
		<-s.edge.room.Done()
		if ev := s.edge.event(EventClosed, nil); ev.Cause != CauseDrain {
			t.Fatalf("edge closed %+v", ev)
		}
	})
	t.Run("edge closed", func(t *testing.T) {
		s := newSpread(t, nil, nil)
		ed := s.edge.dial("ed", chatfleet.RoleViewer)
		s.edge.room.Close("edge going")
		if m := ed.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindClosing }); m.Seq != 0 {
			t.Fatalf("an edge's own closing is not sequenced: %+v", m)
		}
		ed.expectClose(protocol.CloseGoingAway)
		if st := s.origin.room.Stats(); st.Seq != 0 {
			t.Fatalf("origin sequenced %d events", st.Seq)
		}
	})
}

func TestEdgeStale(t *testing.T) {
	s := newSpread(t, nil, nil)
	ed := s.edge.dial("ed", chatfleet.RoleViewer)
	s.edge.room.SetCurrent(false, "the origin is silent")
	if reason := ed.expectClose(protocol.CloseRestart); reason != "the origin is silent" {
		t.Fatalf("reason %q", reason)
	}
	_, resp, err := s.edge.dialURL(s.edge.wsURL(url.Values{"token": {s.edge.token("ed", chatfleet.RoleViewer)}}), nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("handshake at a stale edge: %v %v", err, resp)
	}
	s.edge.room.SetCurrent(true, "")
	s.edge.dial("ed", chatfleet.RoleViewer).chat("back")
}

func TestEdgeRefusesProducer(t *testing.T) {
	s := newSpread(t, nil, nil)
	c, _, err := s.edge.dialURL(s.edge.wsURL(url.Values{"token": {s.edge.token("prod", chatfleet.RoleProducer)}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.name = "prod"
	if reason := c.expectClose(protocol.ClosePolicy); reason != textProducerAtEdge {
		t.Fatalf("reason %q", reason)
	}
	if st := s.edge.room.Stats(); st.Conns != 0 {
		t.Fatalf("edge stats %+v", st)
	}
}

func TestEdgeRelayFailures(t *testing.T) {
	s := newSpread(t, nil, func(c *Config) { c.Edge.RelayTimeout = 200 * time.Millisecond })
	ed := s.edge.dial("ed", chatfleet.RoleViewer)

	s.setRelay(func(context.Context) (json.RawMessage, error) { return nil, errors.New("no responders") })
	ed.send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "x", ClientID: "c1"})
	if m := ed.await(protocol.TypeError, nil); m.Code != chatfleet.EUNAVAILABLE || m.Ref != "c1" {
		t.Fatalf("relay error: %+v", m)
	}
	s.setRelay(func(ctx context.Context) (json.RawMessage, error) { <-ctx.Done(); return nil, ctx.Err() })
	if code := ed.errorCode(protocol.ClientMsg{Type: protocol.TypeChat, Text: "x"}); code != chatfleet.EUNAVAILABLE {
		t.Fatalf("relay timeout: %q", code)
	}
	for _, bad := range []string{"", "not json", `{"type":"chat","seq":1}`, "{\"type\":\"ack\"}\n{}"} {
		s.setRelay(func(context.Context) (json.RawMessage, error) { return json.RawMessage(bad), nil })
		if code := ed.errorCode(protocol.ClientMsg{Type: protocol.TypeViewers}); code != chatfleet.EUNAVAILABLE {
			t.Fatalf("reply %q: %q", bad, code)
		}
	}
	s.setRelay(func(context.Context) (json.RawMessage, error) { panic("relay bug") })
	if code := ed.errorCode(protocol.ClientMsg{Type: protocol.TypeViewers}); code != chatfleet.EUNAVAILABLE {
		t.Fatalf("panicking relay: %q", code)
	}
	// An ack whose event never comes is sent anyway.
	s.setRelay(func(context.Context) (json.RawMessage, error) {
		return json.RawMessage(`{"type":"ack","clientId":"lost","seq":99999}`), nil
	})
	ed.send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "x", ClientID: "lost"})
	if m := ed.await(protocol.TypeAck, nil); m.Seq != 99999 {
		t.Fatalf("held ack %+v", m)
	}
	// Locally checked: nothing relayed.
	s.setRelay(func(context.Context) (json.RawMessage, error) { panic("must not be relayed") })
	n := s.relays.Load()
	for msg, want := range map[string]string{
		`{"type":"chat","text":"  "}`:                               protocol.CodeInvalid,
		`{"type":"mute","userId":"x"}`:                              protocol.CodeForbidden,
		`{"type":"stream","live":false}`:                            protocol.CodeForbidden,
		`{"type":"chat","text":"x","bogus":1}`:                      protocol.CodeInvalidField,
		`{"type":"chat","text":"` + strings.Repeat("x", 501) + `"}`: protocol.CodeTooLarge,
	} {
		ed.sendRaw(1, []byte(msg))
		if m := ed.await(protocol.TypeError, nil); m.Code != want {
			t.Fatalf("%s: %+v, want %s", msg, m, want)
		}
	}
	ed.send(protocol.ClientMsg{Type: protocol.TypePing})
	ed.await(protocol.TypePong, nil)
	if got := s.relays.Load(); got != n {
		t.Fatalf("%d messages relayed", got-n)
	}
}

func TestEdgeInFlight(t *testing.T) {
	s := newSpread(t, nil, func(c *Config) { c.Edge.MaxInFlight = 2 })
	ed := s.edge.dial("ed", chatfleet.RoleViewer)
	gate := make(chan struct{})
	var entered sync.WaitGroup
	entered.Add(2)
	s.setRelay(func(ctx context.Context) (json.RawMessage, error) {
		entered.Done()
		select {
		case <-gate:
			return json.RawMessage(`{"type":"pong","ts":1}`), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	ed.send(protocol.ClientMsg{Type: protocol.TypeViewers})
	ed.send(protocol.ClientMsg{Type: protocol.TypeViewers})
	entered.Wait()
	if code := ed.errorCode(protocol.ClientMsg{Type: protocol.TypeViewers}); code != chatfleet.EUNAVAILABLE {
		t.Fatalf("beyond MaxInFlight: %q", code)
	}
	close(gate)
	ed.await(protocol.TypePong, nil)
	ed.await(protocol.TypePong, nil)
	s.relay.Store(nil)
	ed.chat("slots are free again")
}

func TestSpreadCount(t *testing.T) {
	s := newSpread(t, nil, nil)
	olga := s.origin.dial("olga", chatfleet.RoleViewer)
	s.origin.room.SetRemoteAudience(1000)
	// A small room, but spread: the count comes anyway.
	if m := olga.await(protocol.TypeCount, nil); m.ViewerCount != 1001 {
		t.Fatalf("origin count %+v", m)
	}
	if st := s.origin.room.Stats(); st.Viewers != 1001 || st.Conns != 1 {
		t.Fatalf("origin stats %+v", st)
	}
	s.origin.event(EventPresence, func(ev Event) bool { return ev.Viewers == 1001 })
	if w := s.origin.dial("oscar", chatfleet.RoleViewer).welcome; w.ViewerCount != 1002 {
		t.Fatalf("origin welcome viewerCount %d", w.ViewerCount)
	}

	ed := s.edge.dial("ed", chatfleet.RoleViewer)
	s.edge.room.SetCount(1234)
	if m := ed.await(protocol.TypeCount, nil); m.ViewerCount != 1234 {
		t.Fatalf("edge count %+v", m)
	}
	s.edge.room.SetCount(1234) // unchanged: no count
	s.edge.room.SetCount(1240)
	if m := ed.await(protocol.TypeCount, nil); m.ViewerCount != 1240 {
		t.Fatalf("edge count %+v", m)
	}
	if w := s.edge.dial("eve", chatfleet.RoleViewer).welcome; w.ViewerCount != 1240 {
		t.Fatalf("edge welcome viewerCount %d", w.ViewerCount)
	}
	if st := s.edge.room.Stats(); st.Viewers != 2 || st.Conns != 2 {
		t.Fatalf("edge stats (its own users) %+v", st)
	}
	s.waitSeq() // the edge sequences nothing: no join of its own users

}

func TestEdgeFlood(t *testing.T) {
	s := newSpread(t, nil, func(c *Config) { c.MsgRate = 0.001; c.MsgBurst = 3; c.AbuseStrikes = 5 })
	olga := s.origin.dial("olga", chatfleet.RoleViewer)
	ed := s.edge.dial("ed", chatfleet.RoleViewer)
	for range 200 {
		if err := ed.ws.WriteJSON(protocol.ClientMsg{Type: protocol.TypeChat, Text: "flood"}); err != nil {
			break
		}
	}
	ed.expectClose(protocol.ClosePolicy)
	if n := s.relays.Load(); n > 3 {
		t.Fatalf("%d flood messages relayed, want at most the burst", n)
	}
	if got := chats(append(olga.pending, drain(olga)...)); len(got) > 3 {
		t.Fatalf("origin got %d flood messages", len(got))
	}
	olga.chat("the room is fine")
}

// drain returns what c has read so far without waiting.
func drain(c *tclient) []protocol.ServerMsg {
	var out []protocol.ServerMsg
	for {
		select {
		case m := <-c.msgs:
			out = append(out, m)
		default:
			return out
		}
	}
}

func TestRemoteHostile(t *testing.T) {
	s := newSpread(t, func(c *Config) { c.Owner = "prod" }, nil)
	ctx := context.Background()
	viewer := protocol.User{UserID: "v", Name: "V", Role: chatfleet.RoleViewer}
	for _, tt := range []struct {
		name string
		who  protocol.User
		msg  protocol.ClientMsg
		code string
	}{
		{"no user id", protocol.User{Role: chatfleet.RoleViewer}, protocol.ClientMsg{Type: protocol.TypeChat, Text: "x"}, protocol.CodeInvalid},
		{"long user id", protocol.User{UserID: strings.Repeat("u", 200), Role: chatfleet.RoleViewer}, protocol.ClientMsg{Type: protocol.TypePing}, protocol.CodeInvalid},
		{"bad role", protocol.User{UserID: "v", Role: "admin"}, protocol.ClientMsg{Type: protocol.TypePing}, protocol.CodeInvalid},
		{"owner as viewer", protocol.User{UserID: "prod", Role: chatfleet.RoleViewer}, protocol.ClientMsg{Type: protocol.TypeChat, Text: "x"}, protocol.CodeForbidden},
		{"unknown type", viewer, protocol.ClientMsg{Type: "explode"}, protocol.CodeUnknownType},
		{"long reason", protocol.User{UserID: "m", Role: chatfleet.RoleModerator}, protocol.ClientMsg{Type: protocol.TypeKick, UserID: "v", Reason: strings.Repeat("r", 300)}, protocol.CodeInvalidField},
		{"viewer moderates", viewer, protocol.ClientMsg{Type: protocol.TypeSlowMode, Seconds: 5}, protocol.CodeForbidden},
		{"hello", viewer, protocol.ClientMsg{Type: protocol.TypeHello}, protocol.CodeUnsupported},
		{"empty chat", viewer, protocol.ClientMsg{Type: protocol.TypeChat, Text: " "}, protocol.CodeInvalid},
	} {
		var m protocol.ServerMsg
		if err := json.Unmarshal(s.origin.room.Remote(ctx, tt.who, tt.msg), &m); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if m.Type != protocol.TypeError || m.Code != tt.code {
			t.Errorf("%s: %+v, want error %q", tt.name, m, tt.code)
		}
	}
	// A context that ends while the hub is away: unavailable.
	block := make(chan struct{})
	s.origin.room.do(func() { <-block })
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	var m protocol.ServerMsg
	json.Unmarshal(s.origin.room.Remote(tctx, viewer, protocol.ClientMsg{Type: protocol.TypePing}), &m)
	cancel()
	close(block)
	if m.Code != chatfleet.EUNAVAILABLE {
		t.Fatalf("Remote past its context: %+v", m)
	}
	// Remote users are bounded.
	ru := newRemoteUsers(3)
	for i := range 10 {
		ru.touch(protocol.User{UserID: fmt.Sprint(i), Role: chatfleet.RoleViewer})
	}
	if ru.lru.Len() != 3 || len(ru.byID) != 3 || ru.find("9") == nil || ru.find("0") != nil {
		t.Fatalf("remote users: %d, %d", ru.lru.Len(), len(ru.byID))
	}
	// An edge's Deliver drops what is not one JSON message.
	for _, bad := range []string{"", "nope", "{\"type\":\"chat\"}\n{}", `{"seq":5}`, `[1]`} {
		if _, err := decodeDelivery(5, []byte(bad)); err == nil {
			t.Errorf("delivery %q accepted", bad)
		}
	}
	if _, err := decodeDelivery(0, []byte(`{"type":"chat"}`)); err == nil {
		t.Error("delivery with seq 0 accepted")
	}
	if d, err := decodeDelivery(5, []byte(`{"type":"banned","seq":5,"userId":"x"}`)); err != nil || d.typ != protocol.TypeBanned || d.m == nil || d.m.UserID != "x" {
		t.Errorf("banned delivery: %+v %v", d, err)
	}
}

// BenchmarkEdgeDeliver measures the edge's side of one origin chat event
// to n clients, as BenchmarkBroadcast does the origin's: checks and type
// (Deliver's part, on the caller's goroutine), history, queue on every client.
func BenchmarkEdgeDeliver(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			relay := func(context.Context, protocol.User, protocol.ClientMsg) (json.RawMessage, error) {
				return nil, errors.New("none")
			}
			h := benchHub(b, n, &Edge{Relay: relay})
			data := []byte(`{"type":"chat","seq":1,"ts":1764495600300,"from":{"userId":"prod","name":"Producer","role":"producer"},"text":"hello everyone, how is the stream today?","sendTs":1764495600123}`)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				d, err := decodeDelivery(int64(i), data)
				if err != nil {
					b.Fatal(err)
				}
				h.deliver(&d)
				if i%128 == 0 { // the writers' part: empty the queues
					for _, c := range h.clients {
						c.take(false)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*n), "ns/delivery")
		})
	}
}

func TestEdgeIgnoresOldEnd(t *testing.T) {
	s := newSpread(t, nil, nil)
	ed := s.edge.dial("ed", chatfleet.RoleViewer)
	// The stream's past: an earlier room of this name closed an hour ago.
	old := time.Now().Add(-time.Hour).UnixMilli()
	s.edge.room.Deliver(1000, fmt.Appendf(nil, `{"type":"system","seq":1000,"ts":%d,"kind":"closing","text":"long ago"}`, old))
	s.edge.room.Deliver(1001, fmt.Appendf(nil, `{"type":"system","seq":1001,"ts":%d,"kind":"drain","text":"long ago"}`, old))
	s.edge.room.Deliver(1001, []byte(`{"type":"chat","seq":1001,"text":"a duplicate seq: dropped"}`))
	s.edge.room.Deliver(1002, []byte(`{"type":"chat","seq":1002,"text":"still here"}`))
	if m := ed.await(protocol.TypeChat, nil); m.Text != "still here" {
		t.Fatalf("got %+v", m)
	}
	if st := s.edge.room.Stats(); st.Seq != 1002 || st.Conns != 1 {
		t.Fatalf("edge stats %+v", st)
	}
	if _, err := New(Config{Name: testRoom, Tokens: s.edge.tokens, Edge: &Edge{}}); chatfleet.ErrorCode(err) != chatfleet.EINVALID {
		t.Fatalf("an edge without Relay: %v", err)
	}
}

// TestEdgeWelcomeWaitsForLastSeq: a client recovering at an edge from a
// lastSeq the edge has not reached yet (it saw it on a faster endpoint of the
// room) gets its welcome once the edge has that seq: what followed, nothing
// missed. Before, it got missed and the whole history.
func TestEdgeWelcomeWaitsForLastSeq(t *testing.T) {
	s := newSpread(t, nil, nil)
	olga := s.origin.dial("olga", chatfleet.RoleViewer)
	s.waitSeq()
	s.delay.Store(int64(150 * time.Millisecond))
	for _, txt := range texts(4, "m %d") {
		olga.chat(txt)
	}
	ahead := s.origin.room.Stats().Seq - 1
	if got := s.edge.room.Stats().Seq; got >= ahead {
		t.Fatalf("the edge is at %d already; the test needs it behind %d", got, ahead)
	}
	c := s.edge.dial("ed", chatfleet.RoleViewer, "lastSeq", fmt.Sprint(ahead))
	if c.welcome.Missed || c.welcome.Seq < ahead {
		t.Fatalf("welcome at seq %d, missed %v; want it once the edge has %d", c.welcome.Seq, c.welcome.Missed, ahead)
	}
	checkSeqs(t, historyOf(t, c.welcome), ahead+1)

	// A lastSeq the room never reaches: the welcome comes after the hold,
	// with missed, as a room answers a lastSeq beyond its seq.
	s.delay.Store(0)
	seq := s.waitSeq()
	far := s.edge.dial("far", chatfleet.RoleViewer, "lastSeq", fmt.Sprint(seq+100))
	if !far.welcome.Missed {
		t.Fatalf("lastSeq beyond the room: missed %v", far.welcome.Missed)
	}
}
