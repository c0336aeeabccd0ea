package main

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
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
