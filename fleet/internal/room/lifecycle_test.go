package room

import (
	"context"
	"errors"
	"fmt"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

func TestSecondProducerTakesOver(t *testing.T) {
	e := newEnv(t, nil)
	first := e.dial("prod", chatfleet.RoleProducer)
	vic := e.dial("vic", chatfleet.RoleViewer)
	second := e.dial("prod", chatfleet.RoleProducer)
	if reason := first.expectClose(protocol.CloseReplaced); reason != "replaced by a new producer connection" {
		t.Fatalf("reason %q", reason)
	}
	second.send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: "https://cdn.example.com/x.m3u8"})
	vic.await(protocol.TypeStream, nil)
	// Same user: neither a leave nor a join.
	testutil.Eventually(t, waitFor, func() error {
		if st := e.room.Stats(); st.Conns != 2 || st.Viewers != 2 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	// Another producer user takes over too.
	third := e.dial("prod2", chatfleet.RoleProducer)
	second.expectClose(protocol.CloseReplaced)
	third.chat("mine now")
	if ev := e.event(EventPresence, func(ev Event) bool { return ev.Producer }); ev.Viewers == 0 {
		t.Fatalf("presence %+v", ev)
	}
}

func TestIdleRoomCloses(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Settings.IdleTimeoutSec = 1 })
	vic := e.dial("vic", chatfleet.RoleViewer)
	if m := vic.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindClosing }); m.Seq == 0 {
		t.Fatalf("closing %+v", m)
	}
	vic.expectClose(protocol.CloseGoingAway)
	select {
	case <-e.room.Done():
	case <-time.After(waitFor):
		t.Fatal("room still running")
	}
	if err := <-e.runErr; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if ev := e.event(EventClosed, nil); ev.Cause != CauseIdle {
		t.Fatalf("closed %+v", ev)
	}
	// A closed room refuses.
	if _, resp, err := e.dialURL(e.wsURL(url.Values{"token": {e.token("vic", chatfleet.RoleViewer)}}), nil); err == nil || resp.StatusCode != 503 {
		t.Fatalf("handshake to a closed room: %v %v", err, resp)
	}
}

func TestIdleAfterProducerLeft(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Settings.IdleTimeoutSec = 1 })
	prod := e.dial("prod", chatfleet.RoleProducer)
	vic := e.dial("vic", chatfleet.RoleViewer)
	prod.ws.Close()
	vic.await(protocol.TypeLeave, func(m protocol.ServerMsg) bool { return m.UserID == "prod" })
	vic.expectClose(protocol.CloseGoingAway)
	<-e.room.Done()
	if ev := e.event(EventClosed, nil); ev.Cause != CauseIdle {
		t.Fatalf("closed %+v", ev)
	}
	e.event(EventPresence, func(ev Event) bool { return ev.Producer })
}

func TestProducerCloses(t *testing.T) {
	e := newEnv(t, nil)
	prod := e.dial("prod", chatfleet.RoleProducer)
	vic := e.dial("vic", chatfleet.RoleViewer)
	prod.send(protocol.ClientMsg{Type: protocol.TypeClose, Reason: "show's over"})
	if m := vic.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindClosing }); m.Text != "show's over" {
		t.Fatalf("closing %+v", m)
	}
	if reason := vic.expectClose(protocol.CloseGoingAway); reason != "show's over" {
		t.Fatalf("reason %q", reason)
	}
	prod.expectClose(protocol.CloseGoingAway)
	if ev := e.event(EventClosed, nil); ev.Cause != CauseProducer || ev.Reason != "show's over" {
		t.Fatalf("closed %+v", ev)
	}
	<-e.room.Done()
}

func TestClose(t *testing.T) {
	e := newEnv(t, nil)
	cs := []*tclient{e.dial("prod", chatfleet.RoleProducer), e.dial("vic", chatfleet.RoleViewer), e.dial("mod", chatfleet.RoleModerator)}
	e.room.Close("maintenance")
	for _, c := range cs {
		if m := c.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindClosing }); m.Text != "maintenance" {
			t.Fatalf("%s: %+v", c.name, m)
		}
		if reason := c.expectClose(protocol.CloseGoingAway); reason != "maintenance" {
			t.Fatalf("%s: reason %q", c.name, reason)
		}
	}
	<-e.room.Done()
	if ev := e.event(EventClosed, nil); ev.Cause != CauseClose {
		t.Fatalf("closed %+v", ev)
	}
	e.room.Close("again") // no-op, does not block
	e.room.Global("late")
	e.room.ApplyCache(&chatfleet.Cache{})
}

func TestDrain(t *testing.T) {
	e := newEnv(t, nil)
	var cs []*tclient
	for i := range 6 {
		cs = append(cs, e.dial(fmt.Sprintf("user%d", i), chatfleet.RoleViewer))
	}
	start := time.Now()
	e.room.Drain("host restart", 600*time.Millisecond)
	for _, c := range cs {
		if m := c.await(protocol.TypeSystem, func(m protocol.ServerMsg) bool { return m.Kind == protocol.KindDrain }); m.Text != "host restart" || m.Seq == 0 {
			t.Fatalf("%s: %+v", c.name, m)
		}
	}
	// New clients are refused meanwhile.
	if _, resp, err := e.dialURL(e.wsURL(url.Values{"token": {e.token("late", chatfleet.RoleViewer)}}), nil); err == nil || resp.StatusCode != 503 {
		t.Fatalf("handshake while draining: %v %v", err, resp)
	}
	for _, c := range cs {
		if reason := c.expectClose(protocol.CloseRestart); reason != "host restart" {
			t.Fatalf("%s: reason %q", c.name, reason)
		}
	}
	<-e.room.Done()
	if ev := e.event(EventClosed, nil); ev.Cause != CauseDrain {
		t.Fatalf("closed %+v", ev)
	}
	t.Logf("drained 6 clients in %v", time.Since(start))
}

func TestGlobal(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.dial("ann", chatfleet.RoleViewer), e.dial("bob", chatfleet.RoleProducer)
	e.room.Global("welcome to the fleet")
	for _, c := range []*tclient{a, b} {
		if m := c.await(protocol.TypeSystem, nil); m.Kind != protocol.KindGlobal || m.Text != "welcome to the fleet" || m.Seq == 0 {
			t.Fatalf("%s: %+v", c.name, m)
		}
	}
}

func TestRunContext(t *testing.T) {
	iss, _ := token.NewIssuer(testSecret)
	r, err := New(Config{Name: testRoom, Tokens: iss, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	r.Global("before")
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not return")
	}
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

// The drain's schedule alone: the clients due at each moment of the window,
// each once, in order.
func TestDrainDue(t *testing.T) {
	cs := make([]*client, 4)
	for i := range cs {
		cs[i] = &client{id: uint64(i)}
	}
	var l lifecycle
	start := time.Unix(1_700_000_000, 0)
	l.startDrain(cs, 4*time.Second, start)
	defer l.stopTimers()
	for _, tt := range []struct {
		at   time.Duration
		due  []uint64
		over bool
	}{
		{0, nil, false},
		{999 * time.Millisecond, nil, false},
		{time.Second, []uint64{0}, false},
		{time.Second + time.Millisecond, nil, false},
		{3500 * time.Millisecond, []uint64{1, 2}, false},
		{4 * time.Second, nil, true},
	} {
		due, over := l.drainDue(start.Add(tt.at))
		var ids []uint64
		for _, c := range due {
			ids = append(ids, c.id)
		}
		if !slices.Equal(ids, tt.due) || over != tt.over {
			t.Errorf("at %v: due %v over %v, want %v %v", tt.at, ids, over, tt.due, tt.over)
		}
	}
}
