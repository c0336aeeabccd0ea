package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/mongo"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestKilledRoomResumesHistoryAndSequence kills a room process with SIGKILL
// after some chat: the restarted process continues the sequence, and a
// client that reconnects with the last seq it saw gets exactly what it
// missed, in order, with no duplicate and no gap.
func TestKilledRoomResumesHistoryAndSequence(t *testing.T) {
	h := startHost(t)
	port := h.create("durable")
	prod := join(t, port, "durable", "pia", chatfleet.RoleProducer)
	viewer := join(t, port, "durable", "vin", chatfleet.RoleViewer)
	var seqs []int64
	for i := range 10 {
		prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: fmt.Sprintf("m%d", i), ClientID: fmt.Sprint(i)})
		seqs = append(seqs, viewer.Next(protocol.TypeChat, 5*time.Second).Seq)
	}
	// The viewer saw the first five only.
	lastSeen := seqs[4]
	before := h.rooms()[0]
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		rs := h.rooms()
		if len(rs) != 1 || rs[0].PID == before.PID || rs[0].PID == 0 || rs[0].Status == string(chatfleet.RoomStarting) {
			return fmt.Errorf("rooms = %+v", rs)
		}
		return nil
	})
	ws := testutil.DialRoom(t, fmt.Sprintf("ws://127.0.0.1:%d", port), issue(t, "durable", "vin", chatfleet.RoleViewer), lastSeen)
	w := ws.Next(protocol.TypeWelcome, 5*time.Second)
	if w.Missed {
		t.Fatal("recovery after a room restart reported missed messages")
	}
	var got []int64
	var texts []string
	for _, raw := range w.History {
		var m protocol.ServerMsg
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type == protocol.TypeChat {
			got = append(got, m.Seq)
			texts = append(texts, m.Text)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(seqs[5:]) {
		t.Fatalf("recovered seqs %v (%v), want exactly %v", got, texts, seqs[5:])
	}
	// The sequence continues: the next message follows the last one.
	prod2 := join(t, port, "durable", "pia", chatfleet.RoleProducer)
	prod2.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "after", ClientID: "a"})
	if m := ws.Next(protocol.TypeChat, 5*time.Second); m.Text != "after" || m.Seq <= seqs[9] {
		t.Fatalf("after restart got %+v, want a seq above %d", m, seqs[9])
	}
}

// startStore runs an embedded store for one test and returns a client of a
// fresh database in it, and the host environment that points at it.
func startStore(t *testing.T, prefix string) (*mongo.Store, []string) {
	t.Helper()
	srv, err := devstore.Start(context.Background(), devstore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	db := prefix + "_" + fmt.Sprint(time.Now().UnixNano())
	st, err := mongo.Open(context.Background(), mongo.Config{URI: srv.URI(), Database: db, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	return st, []string{"MONGODB_URI=" + srv.URI(), "MONGODB_DATABASE=" + db}
}

// TestKilledMasterThenRoomResumeFromStore runs a host on a store, kills its
// master with SIGKILL and then its room: the next master finds the room dead
// and starts it again from the events the store holds (its own ring is
// empty), so a client that reconnects with the last seq it saw gets exactly
// what it missed, and the sequence goes on without a gap or a duplicate.
func TestKilledMasterThenRoomResumeFromStore(t *testing.T) {
	ctx := context.Background()
	st, storeEnv := startStore(t, "recovery")
	h := startHost(t, append(storeEnv, "STATS_EVERY=200ms", "SYNC_EVERY=200ms")...)
	port := h.create("ledger")
	prod := join(t, port, "ledger", "pia", chatfleet.RoleProducer)
	viewer := join(t, port, "ledger", "vin", chatfleet.RoleViewer)
	var seqs []int64
	for i := range 10 {
		prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: fmt.Sprintf("m%d", i), ClientID: fmt.Sprint(i)})
		seqs = append(seqs, viewer.Next(protocol.TypeChat, 5*time.Second).Seq)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		evs, err := st.LastEvents(ctx, "ledger", 1)
		if err != nil || len(evs) == 0 || evs[0].Seq < seqs[9] {
			return fmt.Errorf("store's last event %v %v, want seq %d", evs, err, seqs[9])
		}
		return nil
	})
	lastSeen := seqs[4]
	roomPID := h.rooms()[0].PID
	h.Proc.Signal(syscall.SIGKILL)
	h.Proc.Wait(t, 5*time.Second)
	if err := syscall.Kill(roomPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.Start()
	testutil.Eventually(t, 15*time.Second, func() error {
		rs := h.rooms()
		if len(rs) != 1 || rs[0].PID == roomPID || rs[0].PID == 0 || rs[0].Status == string(chatfleet.RoomStarting) {
			return fmt.Errorf("rooms = %+v", rs)
		}
		return nil
	})
	if !strings.Contains(h.Proc.Output(), "room not adoptable; starting it again") {
		t.Fatal("the new master did not start the dead room again")
	}

	// Every message the reconnecting viewer gets, in order.
	ws := testutil.DialRoom(t, fmt.Sprintf("ws://127.0.0.1:%d", port), issue(t, "ledger", "vin", chatfleet.RoleViewer), lastSeen)
	var pending []protocol.ServerMsg
	read := func() protocol.ServerMsg {
		t.Helper()
		for len(pending) == 0 {
			ws.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, frame, err := ws.Conn.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			protocol.Split(frame, func(b []byte) {
				m, err := protocol.DecodeServer(b)
				if err != nil {
					t.Fatal(err)
				}
				pending = append(pending, m)
			})
		}
		m := pending[0]
		pending = pending[1:]
		return m
	}
	w := read()
	if w.Type != protocol.TypeWelcome || w.Missed {
		t.Fatalf("first message %+v: want a welcome without missed messages", w)
	}
	// Everything after lastSeen, each seq once, in order; the chat is the
	// five messages the viewer missed.
	next := lastSeen + 1
	var chats []int64
	for _, raw := range w.History {
		var m protocol.ServerMsg
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if m.Seq != next {
			t.Fatalf("history seq %d (%s), want %d: a gap or a duplicate", m.Seq, m.Type, next)
		}
		next++
		if m.Type == protocol.TypeChat {
			chats = append(chats, m.Seq)
		}
	}
	if fmt.Sprint(chats) != fmt.Sprint(seqs[5:]) {
		t.Fatalf("recovered chat seqs %v, want exactly %v", chats, seqs[5:])
	}
	if w.Seq != next-1 {
		t.Fatalf("welcome seq %d, want %d (the last in its history)", w.Seq, next-1)
	}
	// Live events continue the same sequence: the viewer's own join, the
	// producer's, then the chat.
	prod2 := join(t, port, "ledger", "pia", chatfleet.RoleProducer)
	prod2.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "after", ClientID: "a"})
	for {
		m := read()
		if m.Seq == 0 {
			continue
		}
		if m.Seq != next {
			t.Fatalf("live %s seq %d, want %d", m.Type, m.Seq, next)
		}
		next++
		if m.Type == protocol.TypeChat && m.Text == "after" {
			break
		}
	}
}

// viewer is a test client that reconnects like the web client does: with
// exponential backoff and jitter, asking for what it missed with lastSeq.
type viewer struct {
	url, token string
	chats      []int64 // seqs of the chat messages it received, in order
	last       int64
	reconnects int
}

// run reads until it has want chat messages or the deadline passes.
func (v *viewer) run(want int, deadline time.Time, ready func()) error {
	first := true
	backoff := 50 * time.Millisecond
	for len(v.chats) < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("got %d of %d messages", len(v.chats), want)
		}
		last := int64(-1)
		if !first {
			last = v.last
		}
		ws, _, err := testutil.TryDialRoom(v.url, v.token, last)
		if err != nil {
			// Backoff with full jitter, capped: no reconnect storm.
			time.Sleep(backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1)))
			backoff = min(backoff*2, time.Second)
			continue
		}
		if !first {
			v.reconnects++
		}
		backoff = 50 * time.Millisecond
		ws.Conn.SetReadDeadline(deadline)
		for len(v.chats) < want {
			_, frame, err := ws.Conn.ReadMessage()
			if err != nil {
				break
			}
			protocol.Split(frame, func(b []byte) {
				var m protocol.ServerMsg
				if json.Unmarshal(b, &m) != nil {
					return
				}
				if m.Type != protocol.TypeWelcome {
					v.take(m)
				} else {
					for _, raw := range m.History {
						var h protocol.ServerMsg
						if json.Unmarshal(raw, &h) == nil {
							v.take(h)
						}
					}
					if first {
						ready()
					}
				}
			})
		}
		ws.Conn.Close()
		first = false
	}
	return nil
}

func (v *viewer) take(m protocol.ServerMsg) {
	if m.Seq == 0 || m.Seq <= v.last {
		return
	}
	v.last = m.Seq
	if m.Type == protocol.TypeChat {
		v.chats = append(v.chats, m.Seq)
	}
}

// TestKilledRoomWithManyViewers kills a room with 200 viewers: they
// reconnect with backoff and recover every message; a neighbour room on the
// same host sees no gap.
func TestKilledRoomWithManyViewers(t *testing.T) {
	const viewers, perPhase = 200, 10
	h := startHost(t)
	port := h.create("crowded")
	quietPort := h.create("quiet")
	url := fmt.Sprintf("ws://127.0.0.1:%d", port)

	// The neighbour: a producer and one viewer, chatting all along.
	quietProd := join(t, quietPort, "quiet", "qp", chatfleet.RoleProducer)
	neighbour := &viewer{url: fmt.Sprintf("ws://127.0.0.1:%d", quietPort), token: issue(t, "quiet", "qv", chatfleet.RoleViewer)}

	vs := make([]*viewer, viewers)
	var joined sync.WaitGroup
	joined.Add(viewers)
	errs := make(chan error, viewers+1)
	deadline := time.Now().Add(60 * time.Second)
	for i := range vs {
		vs[i] = &viewer{url: url, token: issue(t, "crowded", fmt.Sprintf("v%03d", i), chatfleet.RoleViewer)}
		go func() { errs <- vs[i].run(2*perPhase, deadline, joined.Done) }()
	}
	joined.Wait()
	quietDone := make(chan error, 1)
	go func() { quietDone <- neighbour.run(2*perPhase, deadline, func() {}) }()

	send := func(ws *testutil.WS, text string) int64 {
		ws.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: text, ClientID: text})
		return ws.Next(protocol.TypeAck, 20*time.Second).Seq
	}
	var want []int64
	prod := join(t, port, "crowded", "boss", chatfleet.RoleProducer)
	for i := range perPhase {
		want = append(want, send(prod, fmt.Sprintf("before-%d", i)))
		send(quietProd, fmt.Sprintf("q-before-%d", i))
	}
	pid := h.rooms()[0].PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The producer comes back as soon as the room does and goes on.
	testutil.Eventually(t, 10*time.Second, func() error {
		rs := h.rooms()
		if rs[0].PID == pid || rs[0].Status == string(chatfleet.RoomStarting) {
			return fmt.Errorf("room not back: %+v", rs[0])
		}
		return nil
	})
	prod2 := testutil.DialRoom(t, url, issue(t, "crowded", "boss", chatfleet.RoleProducer), -1)
	for i := range perPhase {
		want = append(want, send(prod2, fmt.Sprintf("after-%d", i)))
		send(quietProd, fmt.Sprintf("q-after-%d", i))
	}
	for range viewers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	reconnected := 0
	for i, v := range vs {
		if fmt.Sprint(v.chats) != fmt.Sprint(want) {
			t.Fatalf("viewer %d got %v, want exactly %v", i, v.chats, want)
		}
		if v.reconnects > 0 {
			reconnected++
		}
	}
	if reconnected != viewers {
		t.Fatalf("%d of %d viewers reconnected; the room was killed under all of them", reconnected, viewers)
	}
	if err := <-quietDone; err != nil {
		t.Fatal(err)
	}
	if neighbour.reconnects != 0 {
		t.Fatalf("the neighbour room's viewer was disconnected %d times", neighbour.reconnects)
	}
	for i := 1; i < len(neighbour.chats); i++ {
		if neighbour.chats[i] != neighbour.chats[i-1]+1 {
			t.Fatalf("gap in the neighbour room: %v", neighbour.chats)
		}
	}
}

// TestRoomCreatedAgainGetsItsHistory: a new room starts with an empty
// history; created again after it closed, it starts with the chats of its
// last life, read from the store.
func TestRoomCreatedAgainGetsItsHistory(t *testing.T) {
	ctx := context.Background()
	st, storeEnv := startStore(t, "history")
	h := startHost(t, append(storeEnv, "STATS_EVERY=200ms", "SYNC_EVERY=200ms")...)
	welcome := func() []string {
		t.Helper()
		port := h.create("again")
		ws := testutil.DialRoom(t, fmt.Sprintf("ws://127.0.0.1:%d", port), issue(t, "again", "vic", chatfleet.RoleViewer), -1)
		var texts []string
		for _, raw := range ws.Next(protocol.TypeWelcome, 5*time.Second).History {
			var m protocol.ServerMsg
			if json.Unmarshal(raw, &m) == nil && m.Type == protocol.TypeChat {
				texts = append(texts, m.Text)
			}
		}
		return texts
	}
	closed := func() {
		t.Helper()
		if status, body := testutil.Do(t, "DELETE", h.Admin+"/api/v1/rooms/again", adminKey, ""); status != 200 {
			t.Fatalf("close: %d %s", status, body)
		}
		testutil.Eventually(t, 10*time.Second, func() error {
			if r, err := st.Room(ctx, "again"); err != nil || r.Status != chatfleet.RoomClosed {
				return fmt.Errorf("stored %+v, %v; want closed", r, err)
			}
			return nil
		})
	}

	if got := welcome(); len(got) != 0 {
		t.Fatalf("a new room's history: %v", got)
	}
	port := h.rooms()[0].Port
	prod := join(t, port, "again", "pia", chatfleet.RoleProducer)
	viewer := join(t, port, "again", "val", chatfleet.RoleViewer)
	for i := range 3 {
		prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: fmt.Sprintf("a%d", i), ClientID: fmt.Sprint(i)})
		viewer.Next(protocol.TypeChat, 5*time.Second)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if evs, err := st.LastEvents(ctx, "again", 100); err != nil || len(evs) < 3 {
			return fmt.Errorf("stored events %d, %v", len(evs), err)
		}
		return nil
	})
	closed()
	if got := welcome(); strings.Join(got, " ") != "a0 a1 a2" {
		t.Fatalf("created again: history %v, want a0 a1 a2", got)
	}
}
