package main

// Regression tests of issue 15 (trust), the room process's side: real
// chatserver, real room processes, real WebSocket, SSE and TCP clients.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

func issueInst(t *testing.T, room, inst, user string, role chatfleet.Role) string {
	t.Helper()
	iss, err := token.NewIssuer(secret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Issue(room, inst, user, user, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// nextError waits for ws's next error answer.
func nextError(t *testing.T, ws *testutil.WS) protocol.ServerMsg {
	t.Helper()
	return ws.Next(protocol.TypeError, 5*time.Second)
}

// handshakeStatus dials the room's WebSocket and returns the HTTP status of
// a refused handshake, or 101 after a welcome.
func handshakeStatus(t *testing.T, port int, tok string) int {
	t.Helper()
	ws, resp, err := testutil.TryDialRoom(fmt.Sprintf("ws://127.0.0.1:%d", port), tok, -1)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		return resp.StatusCode
	}
	defer ws.Conn.Close()
	ws.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.Conn.ReadMessage(); err != nil {
		t.Fatalf("no welcome: %v", err)
	}
	return http.StatusSwitchingProtocols
}

// Finding 1: a moderator of any room banned every producer of the fleet
// with fleet:true on the shared id "producer".
func TestTrustFleetBanFromRoomRefused(t *testing.T) {
	h := startHost(t)
	a := h.Create(userKey, "alpha", hostapi.RoomOptions{OwnerID: "owner-alpha"})
	b := h.create("beta")
	prodB := join(t, b, "beta", "producer", chatfleet.RoleProducer)
	mod := join(t, a, "alpha", "mod", chatfleet.RoleModerator)

	mod.Send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "producer", Reason: "all of them", Fleet: true})
	if m := nextError(t, mod); m.Code != protocol.CodeForbidden || !strings.Contains(m.Message, "admin API") {
		t.Fatalf("fleet ban from a room: %+v", m)
	}
	// The owner of alpha cannot be made bannable: a viewer token with its
	// id is refused, and moderation never acts on it, present or not.
	if st := handshakeStatus(t, a, issue(t, "alpha", "owner-alpha", chatfleet.RoleViewer)); st != http.StatusForbidden {
		t.Fatalf("viewer token with the owner's id: %d, want 403", st)
	}
	for _, typ := range []string{protocol.TypeBan, protocol.TypeMute, protocol.TypeKick} {
		mod.Send(protocol.ClientMsg{Type: typ, UserID: "owner-alpha"})
		if m := nextError(t, mod); m.Code != protocol.CodeForbidden {
			t.Fatalf("%s of the absent owner: %+v", typ, m)
		}
	}
	owner := join(t, a, "alpha", "owner-alpha", chatfleet.RoleProducer)
	mod.Send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "owner-alpha"})
	if m := nextError(t, mod); m.Code != protocol.CodeForbidden {
		t.Fatalf("ban of the present owner: %+v", m)
	}

	// A room ban of the id "producer" (not alpha's owner) is alpha's alone.
	mod.Send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "producer", Reason: "room only"})
	if m := mod.Next(protocol.TypeBanned, 5*time.Second); m.Fleet || m.UserID != "producer" {
		t.Fatalf("banned %+v", m)
	}
	if st := handshakeStatus(t, a, issue(t, "alpha", "producer", chatfleet.RoleViewer)); st != http.StatusForbidden {
		t.Fatalf("room-banned user entering alpha: %d, want 403", st)
	}
	// Beta's producer is untouched: a global message (after the ban, through
	// the same master) reaches it, it still chats, and its id enters beta.
	if status, body := testutil.Do(t, "POST", h.Admin+"/api/v1/messages", adminKey, `{"text":"after the ban"}`); status != 200 {
		t.Fatalf("global: %d %s", status, body)
	}
	if m := prodB.Next(protocol.TypeSystem, 5*time.Second); m.Text != "after the ban" {
		t.Fatalf("system %+v", m)
	}
	prodB.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "still live", ClientID: "c1"})
	prodB.Next(protocol.TypeAck, 5*time.Second)
	join(t, b, "beta", "producer", chatfleet.RoleViewer)
	if _, err := prodB.TryNext("never", time.Second); prodB.Closed != nil {
		t.Fatalf("beta's producer closed: %v", err)
	}
	owner.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "owner still here", ClientID: "c1"})
	owner.Next(protocol.TypeAck, 5*time.Second)
}

// Finding 1 and 4 (room side, a room without an owner): moderation ranks a
// user by the highest role seen in the room, so an absent producer stays
// protected even after a viewer token with its id joined.
func TestTrustAbsentProducerNotBannable(t *testing.T) {
	h := startHost(t)
	port := h.create("gamma")
	mod := join(t, port, "gamma", "mod", chatfleet.RoleModerator)
	prod := join(t, port, "gamma", "producer", chatfleet.RoleProducer)
	prod.Conn.Close()
	mod.Next(protocol.TypeLeave, 5*time.Second)
	join(t, port, "gamma", "producer", chatfleet.RoleViewer)
	mod.Send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "producer"})
	if m := nextError(t, mod); m.Code != protocol.CodeForbidden {
		t.Fatalf("ban of the absent producer: %+v", m)
	}
}

// Finding 3 (room side): a token of an earlier instance of the same name is
// refused 403 at the WebSocket and SSE handshakes, for rooms started with
// flags and rooms given to a spare.
func TestTrustTokenOfEarlierInstanceRefused(t *testing.T) {
	for _, spares := range []string{"0", "2"} {
		t.Run("spares="+spares, func(t *testing.T) {
			h := startHost(t, "ROOM_SPARES="+spares)
			port := h.Create(userKey, "show", hostapi.RoomOptions{Instance: "inst-2", OwnerID: "show-owner"})
			old := issueInst(t, "show", "inst-1", "show-owner", chatfleet.RoleProducer)
			none := issueInst(t, "show", "", "fan", chatfleet.RoleViewer)
			cur := issueInst(t, "show", "inst-2", "fan", chatfleet.RoleViewer)
			for name, tok := range map[string]string{"earlier instance": old, "no instance": none} {
				if st := handshakeStatus(t, port, tok); st != http.StatusForbidden {
					t.Errorf("WebSocket, %s: %d, want 403", name, st)
				}
				if st, body := sseStatus(t, port, tok); st != http.StatusForbidden || !strings.Contains(body, `"code":"forbidden"`) {
					t.Errorf("SSE, %s: %d %s, want 403", name, st, body)
				}
			}
			if st := handshakeStatus(t, port, cur); st != http.StatusSwitchingProtocols {
				t.Fatalf("WebSocket, this instance: %d", st)
			}
			if st, _ := sseStatus(t, port, cur); st != http.StatusOK {
				t.Fatalf("SSE, this instance: %d", st)
			}
			if st := handshakeStatus(t, port, issueInst(t, "show", "inst-2", "show-owner", chatfleet.RoleProducer)); st != http.StatusSwitchingProtocols {
				t.Fatalf("the owner's producer token of this instance: %d", st)
			}
		})
	}
}

// sseStatus opens the room's SSE stream and returns the status and, for a
// refusal, the body.
func sseStatus(t *testing.T, port int, tok string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/events?token=%s", port, url.QueryEscape(tok)), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("SSE: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	return resp.StatusCode, ""
}

// Finding 7: room ports held idle connections forever, and nothing capped
// the connections of one address (guests have a fresh id each).
func TestTrustIdleKeepAliveClosed(t *testing.T) {
	h := startHost(t, "ROOM_IDLE_TIMEOUT=1s")
	port := h.create("idle")
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: room\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle keep-alive connection: %v, want closed by the room", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("closed after %v", d)
	}

	// A POST /send body that stops coming is cut too (its deadline is at
	// most ROOM_IDLE_TIMEOUT).
	tok := issue(t, "idle", "poster", chatfleet.RoleViewer)
	c2, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "POST /send HTTP/1.1\r\nHost: room\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\":", tok)
	start = time.Now()
	c2.SetReadDeadline(time.Now().Add(15 * time.Second))
	b, err := io.ReadAll(c2)
	if d := time.Since(start); err != nil || d > 10*time.Second {
		t.Fatalf("stalled body: read %q, %v after %v", b, err, d)
	}
}

// dialFrom opens a WebSocket to the room from local address src (any
// 127.0.0.0/8 address works on loopback) with header h; it returns the
// handshake's status (101 when it opened, and the connection).
func dialFrom(t *testing.T, port int, src string, h http.Header, query string) (int, *websocket.Conn) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDial: func(network, addr string) (net.Conn, error) {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return nd.Dial(network, addr)
	}}
	ws, resp, err := d.Dial(fmt.Sprintf("ws://127.0.0.1:%d/ws?%s", port, query), h)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial from %s: %v", src, err)
		}
		var env struct{ Error *chatfleet.Error }
		b, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(b, &env) != nil || env.Error == nil || env.Error.Message == "" {
			t.Fatalf("refusal from %s not in the envelope: %d %s", src, resp.StatusCode, b)
		}
		return resp.StatusCode, nil
	}
	t.Cleanup(func() { ws.Close() })
	return http.StatusSwitchingProtocols, ws
}

func TestTrustConnsPerIPCap(t *testing.T) {
	h := startHost(t, "MAX_CONNS_PER_IP=3", "MAX_ROOM_CONNS=9", "TRUSTED_PROXIES=127.0.0.9")
	port := h.Create(userKey, "crowd", hostapi.RoomOptions{AllowAnonymous: true})
	guest := ""
	// Guests (no token: a fresh id each) count per address.
	var first *websocket.Conn
	for i := range 3 {
		st, ws := dialFrom(t, port, "127.0.0.1", nil, guest)
		if st != 101 {
			t.Fatalf("guest %d: %d", i, st)
		}
		if first == nil {
			first = ws
		}
	}
	if st, _ := dialFrom(t, port, "127.0.0.1", nil, guest); st != http.StatusTooManyRequests {
		t.Fatalf("4th guest from one address: %d, want 429", st)
	}
	// A signed-in user from the same address too; X-Forwarded-For from an
	// untrusted peer changes nothing.
	tok := "token=" + url.QueryEscape(issue(t, "crowd", "ann", chatfleet.RoleViewer))
	if st, _ := dialFrom(t, port, "127.0.0.1", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, tok); st != http.StatusTooManyRequests {
		t.Fatalf("4th connection with a forged X-Forwarded-For: %d, want 429", st)
	}
	// Another address has its own count.
	if st, _ := dialFrom(t, port, "127.0.0.2", nil, tok); st != 101 {
		t.Fatalf("another address: %d", st)
	}
	// Behind the trusted proxy, the forwarded address counts.
	for i := range 3 {
		if st, _ := dialFrom(t, port, "127.0.0.9", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, guest); st != 101 {
			t.Fatalf("forwarded guest %d: %d", i, st)
		}
	}
	if st, _ := dialFrom(t, port, "127.0.0.9", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, guest); st != http.StatusTooManyRequests {
		t.Fatalf("4th forwarded guest of one client: %d, want 429", st)
	}
	// The room holds 3+1+3 = 7; two more fill MAX_ROOM_CONNS=9.
	for _, xff := range []string{"198.51.100.8", "198.51.100.9"} {
		if st, _ := dialFrom(t, port, "127.0.0.9", http.Header{"X-Forwarded-For": {xff}}, guest); st != 101 {
			t.Fatalf("forwarded guest %s: %d", xff, st)
		}
	}
	if st, _ := dialFrom(t, port, "127.0.0.3", nil, guest); st != http.StatusServiceUnavailable {
		t.Fatalf("10th connection of the room: %d, want 503", st)
	}
	// A connection that ends frees its slot.
	first.Close()
	testutil.Eventually(t, 10*time.Second, func() error {
		st, ws := dialFrom(t, port, "127.0.0.1", nil, guest)
		if st != 101 {
			return fmt.Errorf("after one left: %d", st)
		}
		ws.Close()
		return nil
	})
}

// Finding 8: moderators and producers flooded unchecked (5,000 mutes in
// 89 ms, each a sequenced event sent to everyone and stored).
func TestTrustModerationFloodRateLimited(t *testing.T) {
	h := startHost(t)
	port := h.create("flood")
	viewer := join(t, port, "flood", "watcher", chatfleet.RoleViewer)
	var events atomic.Int64
	go func() {
		for {
			viewer.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, b, err := viewer.Conn.ReadMessage()
			if err != nil {
				return
			}
			protocol.Split(b, func(line []byte) {
				var m protocol.ServerMsg
				if json.Unmarshal(line, &m) == nil && (m.Type == protocol.TypeMuted || m.Type == protocol.TypeBanned) {
					events.Add(1)
				}
			})
		}
	}()
	start := time.Now()
	var refused, closed int
	for round, typ := range []string{protocol.TypeMute, protocol.TypeBan} {
		mod := join(t, port, "flood", "mod", chatfleet.RoleModerator)
		go func() {
			for i := range 2000 {
				b, _ := json.Marshal(protocol.ClientMsg{Type: typ, UserID: fmt.Sprintf("u%d-%d", round, i), Seconds: 0})
				mod.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if mod.Conn.WriteMessage(websocket.TextMessage, b) != nil {
					return
				}
			}
		}()
		// Refusals come as rate_limited; sustained, the connection is closed
		// 1008 (what is queued for it, refusals included, is discarded).
		for {
			m, err := mod.TryNext(protocol.TypeError, 10*time.Second)
			if err != nil {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
					t.Fatalf("flooding moderator: %v", err)
				}
				closed++
				break
			}
			if m.Code != protocol.CodeRateLimited {
				t.Fatalf("refusal %+v", m)
			}
			refused++
		}
	}
	elapsed := time.Since(start)
	if closed != 2 {
		t.Fatalf("%d of 2 flooding connections closed 1008", closed)
	}
	// At most the burst (50) and 10/s went through, for both connections
	// together: reconnecting does not refill the limiter.
	limit := int64(50 + 10*elapsed.Seconds() + 5)
	// A fresh join's welcome says how many events the room sequenced.
	late := testutil.DialRoom(t, fmt.Sprintf("ws://127.0.0.1:%d", port), issue(t, "flood", "late", chatfleet.RoleViewer), -1)
	seq := late.Next(protocol.TypeWelcome, 5*time.Second).Seq
	if n := events.Load(); n > limit || n < 50 {
		t.Fatalf("%d mutes and bans broadcast in %v, want 50 to %d", n, elapsed, limit)
	}
	if seq > limit+10 { // joins and leaves besides
		t.Fatalf("room sequenced %d events in %v, want at most %d", seq, elapsed, limit+10)
	}
	t.Logf("4000 moderation messages in %v: %d went through, %d rate_limited answers read before the 1008 closes; room seq %d", elapsed, events.Load(), refused, seq)
}
