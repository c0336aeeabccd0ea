package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// dialFollow opens a WebSocket to base as user and follows it with a tally.
func dialFollow(t *testing.T, base, room, user string, role chatfleet.Role) *tally {
	t.Helper()
	ws, resp, err := testutil.TryDialRoom(base, issue(t, room, user, role), -1)
	if err != nil {
		t.Fatalf("dial %s as %s: %v (%v)", base, user, err, resp)
	}
	t.Cleanup(func() { ws.Conn.Close() })
	tl := follow(ws.Conn, 2*time.Minute)
	testutil.Eventually(t, 10*time.Second, func() error {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		if !tl.welcomed {
			return fmt.Errorf("%s: no welcome yet", user)
		}
		return nil
	})
	return tl
}

// TestStalledViewerIsDropped puts one viewer behind a Toxiproxy whose
// downstream trickles at 1 KB/s (bandwidth) while the producer sends about
// 2 MB/s of chat: the room drops that viewer (close 4008 when its send queue
// passes SendQueueBytes, or a cut at the write deadline) and never waits for
// it; the other viewers, two direct and one through a clean proxy, get every
// sequenced message with no gap; the dropped viewer never sees a message
// sent after its drop.
//
// Toxiproxy 2.5 notes: bandwidth rate 0 means unlimited and the timeout
// toxic discards data, so neither stalls a reader; a trickle does.
func TestStalledViewerIsDropped(t *testing.T) {
	// A send queue of 4 MiB (not 256 KiB): the producer's own reader, in this
	// test process, must not be dropped as too slow when the machine is busy
	// (2 MB/s of chat fills 256 KiB in 130 ms); the trickled viewer still
	// passes it within seconds.
	h := startHost(t, "SEND_QUEUE_BYTES=4194304")
	port := h.create("fanout")
	upstream := fmt.Sprintf("127.0.0.1:%d", port)
	stall := newProxy(t, "stalled-viewer", upstream)
	clean := newProxy(t, "clean-viewer", upstream)

	prod := dialFollow(t, roomWS(port), "fanout", "pat", chatfleet.RoleProducer)
	var markerSeq atomic.Int64
	prod.mu.Lock()
	prod.onText = func(b []byte) {
		if typ, seq := head(b); typ == protocol.TypeAck && bytes.Contains(b, []byte(`"clientId":"marker"`)) {
			markerSeq.Store(seq)
		}
	}
	prod.mu.Unlock()
	healthy := []*tally{
		dialFollow(t, roomWS(port), "fanout", "ann", chatfleet.RoleViewer),
		dialFollow(t, roomWS(port), "fanout", "bob", chatfleet.RoleViewer),
		dialFollow(t, "ws://"+clean.Addr, "fanout", "cyd", chatfleet.RoleViewer),
	}
	slow := dialFollow(t, "ws://"+stall.Addr, "fanout", "slo", chatfleet.RoleViewer)
	var sawAfterDrop atomic.Bool
	slow.mu.Lock()
	slow.onText = func(b []byte) {
		if bytes.Contains(b, []byte("after-drop")) {
			sawAfterDrop.Store(true)
		}
	}
	slow.mu.Unlock()
	testutil.Eventually(t, 10*time.Second, func() error {
		if c := h.room("fanout").Stats.Conns; c != 5 {
			return fmt.Errorf("room reports %d connections, want 5", c)
		}
		return nil
	})

	stall.Add("trickle", "bandwidth", "downstream", map[string]any{"rate": 1})
	// 500 four-byte characters: about 2 KB a message, under the 4 KiB read
	// limit. Producers are exempt from the per-user rate; the room's ceiling
	// (2000/s) is kept under by pacing 1000/s.
	text := strings.Repeat("\U0001F600", 500)
	sent, stop := 0, time.Now().Add(90*time.Second)
	var dropped bool
	for !dropped && time.Now().Before(stop) && sent < 200_000 {
		for range 10 {
			b, _ := json.Marshal(protocol.ClientMsg{Type: protocol.TypeChat, Text: text})
			prod.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := prod.c.WriteMessage(websocket.TextMessage, b); err != nil {
				t.Fatalf("producer write after %d: %v", sent, err)
			}
			sent++
		}
		time.Sleep(10 * time.Millisecond)
		if sent%500 == 0 {
			rs, err := h.rooms()
			dropped = err == nil && len(rs) == 1 && rs[0].Stats.Conns == 4
		}
	}
	if !dropped {
		t.Fatalf("the stalled viewer was not dropped after %d messages", sent)
	}
	st := h.room("fanout").Stats
	t.Logf("stalled viewer dropped after %d messages (~%d MB); room slowDrops=%d", sent, sent*2/1000, st.SlowDrops)

	b, _ := json.Marshal(protocol.ClientMsg{Type: protocol.TypeChat, Text: "after-drop", ClientID: "marker"})
	prod.c.WriteMessage(websocket.TextMessage, b)
	testutil.Eventually(t, 30*time.Second, func() error {
		if markerSeq.Load() == 0 {
			return fmt.Errorf("no ack of the marker")
		}
		return nil
	})
	for i, v := range healthy {
		testutil.Eventually(t, 60*time.Second, func() error {
			if err := v.reached(markerSeq.Load()); err != nil {
				return fmt.Errorf("healthy viewer %d: %w", i, err)
			}
			return nil
		})
		_, seqs, chats, _ := v.state()
		t.Logf("healthy viewer %d: %d sequenced messages, %d chats, no gap", i, seqs, chats)
	}

	// The trickle goes: the dropped viewer reads its backlog, then the end
	// of the connection; never the message sent after the drop.
	stall.Remove("trickle")
	select {
	case <-slow.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the dropped viewer's connection did not end")
	}
	if code := slow.closeCode(); code != protocol.CloseTooSlow && code != -1 {
		t.Errorf("dropped viewer closed with %d (%v), want 4008 or a cut", code, slow.end)
	}
	if sawAfterDrop.Load() {
		t.Error("the dropped viewer received a message sent after its drop")
	}
	_, seqs, _, _ := slow.state()
	t.Logf("dropped viewer: ended with code %d after %d sequenced messages: %v", slow.closeCode(), seqs, slow.end)
	h.noPanic()
}

// TestDeadPeerFoundByPing blackholes both directions of one viewer's
// connection (Toxiproxy timeout toxics with no timeout: bytes vanish, the
// connection stays open): only the room's ping/pong can tell. The room
// cuts the connection once PongWait passes without a pong or a message,
// and serves the others meanwhile. The host runs with PONG_WAIT=6s.
func TestDeadPeerFoundByPing(t *testing.T) {
	t.Parallel()
	h := startHost(t, "PONG_WAIT=6s")
	port := h.create("ghosts")
	px := newProxy(t, "dead-peer", fmt.Sprintf("127.0.0.1:%d", port))
	// The live clients read all the time, as real ones do, so they answer
	// the room's pings.
	live := dialFollow(t, roomWS(port), "ghosts", "liv", chatfleet.RoleProducer)
	other := dialFollow(t, roomWS(port), "ghosts", "oth", chatfleet.RoleViewer)
	dead := joinAt(t, "ws://"+px.Addr, "ghosts", "ded", chatfleet.RoleViewer)
	conns := func(want int) func() error {
		return func() error {
			if c := h.room("ghosts").Stats.Conns; c != want {
				return fmt.Errorf("room reports %d connections, want %d", c, want)
			}
			return nil
		}
	}
	testutil.Eventually(t, 10*time.Second, conns(3))
	say := func(text string) {
		t.Helper()
		_, _, before, _ := other.state()
		b, _ := json.Marshal(protocol.ClientMsg{Type: protocol.TypeChat, Text: text})
		live.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := live.c.WriteMessage(websocket.TextMessage, b); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() error {
			if _, _, n, gaps := other.state(); n <= before || gaps > 0 {
				return fmt.Errorf("the other viewer has %d chats (%d before), %d gaps", n, before, gaps)
			}
			return nil
		})
	}

	px.Add("void-up", "timeout", "upstream", map[string]any{"timeout": 0})
	px.Add("void-down", "timeout", "downstream", map[string]any{"timeout": 0})
	start := time.Now()
	say("still here")
	testutil.Eventually(t, 30*time.Second, conns(2))
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("dead peer cut after %v: before PONG_WAIT (6s) minus a ping period could pass", d)
	}
	t.Logf("dead peer cut after %v (PONG_WAIT 6s)", time.Since(start).Round(time.Second))
	say("after the cut")
	if code := other.closeCode(); code != 0 {
		t.Fatalf("the live viewer was closed too: %d", code)
	}
	// The room closed its side; the proxy passes the end on.
	if _, err := dead.TryNext(protocol.TypeChat, 30*time.Second); err == nil {
		t.Error("the dead peer received a message")
	} else if ce, ok := err.(*websocket.CloseError); ok && ce.Code != websocket.CloseAbnormalClosure {
		t.Errorf("dead peer got close code %d, want none (cut)", ce.Code)
	}
	h.noPanic()
}
