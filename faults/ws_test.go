package faults

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

const allowedOrigin = "https://app.example.com"

// handshake dials the room at port with token and header and returns the
// HTTP status and error envelope of a refusal (101 and "" on success).
func handshake(port int, tok string, hdr http.Header) (int, string) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	u := fmt.Sprintf("ws://127.0.0.1:%d/ws", port)
	if tok != "" {
		u += "?token=" + url.QueryEscape(tok)
	}
	c, resp, err := d.Dial(u, hdr)
	if err == nil {
		c.Close()
		return 101, ""
	}
	if resp == nil {
		return 0, err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWebSocketBadInput attacks one room's WebSocket: bad, forged, expired,
// replayed and foreign tokens; origins that look like the allowed one;
// frames that break RFC 6455, written by hand on a plain connection; and a
// flood. Each is refused (before the upgrade) or answered with the right
// close code, and the room process keeps serving everyone else: same PID,
// no restart, no panic in its log.
func TestWebSocketBadInput(t *testing.T) {
	t.Parallel()
	h := startHost(t, "ALLOWED_ORIGINS="+allowedOrigin)
	port := h.create("gate")
	h.create("elsewhere")
	pid := h.room("gate").PID
	prod := join(t, port, "gate", "pat", chatfleet.RoleProducer)
	witness := join(t, port, "gate", "wit", chatfleet.RoleViewer)
	stillServing := func(t *testing.T, what string) {
		t.Helper()
		chatRoundTrip(t, prod, "after "+what, witness)
		if r := h.room("gate"); r.PID != pid || r.Restarts != 0 {
			t.Fatalf("after %s the room is %+v, want pid %d and no restart", what, r, pid)
		}
	}

	t.Run("tokens", func(t *testing.T) {
		other, _ := token.NewIssuer("another-secret-0123456789")
		forged, _ := other.Issue("gate", "", "mal", "mal", chatfleet.RoleProducer, time.Hour)
		good := issue(t, "gate", "vic", chatfleet.RoleViewer)
		parts := strings.Split(good, ".")
		claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
		promoted := strings.Replace(string(claims), `"role":"viewer"`, `"role":"producer"`, 1)
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(promoted)) + "." + parts[2]
		none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
			"room": "gate", "sub": "mal", "role": "producer", "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString(jwt.UnsafeAllowNoneSignatureType)
		hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{
			"room": "gate", "sub": "mal", "role": "producer", "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString([]byte(secret))
		noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"room": "gate", "sub": "mal", "role": "viewer",
		}).SignedString([]byte(secret))
		badRole, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"room": "gate", "sub": "mal", "role": "admin", "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString([]byte(secret))
		expired := issueAt(t, time.Now().Add(-2*time.Hour), time.Hour, "gate", "old", chatfleet.RoleViewer)
		for _, c := range []struct {
			name, tok string
			hdr       http.Header
			status    int
			msg       string
		}{
			{"no token", "", nil, 401, "missing join token"},
			{"garbage", "not.a.jwt", nil, 403, "invalid join token"},
			{"forged (another secret)", forged, nil, 403, "invalid join token"},
			{"tampered claims", tampered, nil, 403, "invalid join token"},
			{"alg none", none, nil, 403, "invalid join token"},
			{"alg HS512", hs512, nil, 403, "invalid join token"},
			{"no expiry", noExp, nil, 403, "invalid join token"},
			{"unknown role", badRole, nil, 403, "lacks a user or a valid role"},
			{"expired an hour ago", expired, nil, 403, "join token expired"},
			{"another room's", issue(t, "elsewhere", "vic", chatfleet.RoleViewer), nil, 403, "another room"},
			{"8 KiB token", strings.Repeat("a", 8<<10), nil, 403, "invalid join token"},
			{"garbage bearer", "", http.Header{"Authorization": {"Bearer x.y.z"}}, 403, "invalid join token"},
			{"valid bearer", "", http.Header{"Authorization": {"Bearer " + good}}, 101, ""},
			{"valid", good, nil, 101, ""},
		} {
			status, body := handshake(port, c.tok, c.hdr)
			if status != c.status || !strings.Contains(body, c.msg) {
				t.Errorf("%s: %d %s, want %d %q", c.name, status, body, c.status, c.msg)
			}
		}
		// lastSeq and the upgrade itself.
		for _, c := range []struct{ name, query string }{{"negative lastSeq", "&lastSeq=-1"}, {"lastSeq not a number", "&lastSeq=1e3"}} {
			status, body, _, _ := call("GET", fmt.Sprintf("http://127.0.0.1:%d/ws?token=%s%s", port, good, c.query), "", "", false)
			if status != 400 || envelope(body, "invalid") != nil {
				t.Errorf("%s: %d %s", c.name, status, body)
			}
		}
		status, body, _, _ := call("GET", fmt.Sprintf("http://127.0.0.1:%d/ws?token=%s", port, good), "", "", false)
		if status != 400 || envelope(body, "invalid") != nil {
			t.Errorf("plain GET /ws: %d %s", status, body)
		}
		stillServing(t, "bad tokens")
	})

	// A token is a bearer credential valid until it expires (exp), by
	// design: it carries no nonce and the room keeps no list of used ones,
	// so it may be used again, for a re-created room of the same name too.
	// What bounds a replay: the expiry, the room name, and MaxConnsPerUser
	// (16) open connections per user.
	t.Run("replay", func(t *testing.T) {
		tok := issue(t, "phoenix", "rep", chatfleet.RoleViewer)
		expired := issueAt(t, time.Now().Add(-time.Hour), time.Hour-time.Second, "phoenix", "rep", chatfleet.RoleViewer)
		p := h.create("phoenix")
		if status, body := handshake(p, tok, nil); status != 101 {
			t.Fatalf("first use: %d %s", status, body)
		}
		if status, body := testutil.Do(t, "DELETE", h.Admin+"/api/v1/rooms/phoenix", adminKey, ""); status != 200 {
			t.Fatalf("close: %d %s", status, body)
		}
		p2 := h.create("phoenix")
		if status, body := handshake(p2, tok, nil); status != 101 {
			t.Errorf("reuse on the re-created room, within expiry: %d %s (by design it joins)", status, body)
		}
		if status, body := handshake(p2, expired, nil); status != 403 || !strings.Contains(body, "expired") {
			t.Errorf("expired token on the re-created room: %d %s", status, body)
		}
		// One token, many sockets at once: the 17th is closed with 1008.
		var conns []*testutil.WS
		for i := range 17 {
			ws, _, err := testutil.TryDialRoom(roomWS(p2), tok, -1)
			if err != nil {
				t.Fatalf("connection %d: %v", i+1, err)
			}
			defer ws.Conn.Close()
			conns = append(conns, ws)
		}
		// Registration order, not dial order, decides which one: exactly one
		// of the 17 is refused, the others are welcomed.
		welcomed, refused := 0, 0
		for i, ws := range conns {
			_, err := ws.TryNext(protocol.TypeWelcome, 10*time.Second)
			var ce *websocket.CloseError
			switch {
			case err == nil:
				welcomed++
			case errors.As(err, &ce) && ce.Code == protocol.ClosePolicy:
				refused++
			default:
				t.Errorf("connection %d: %v", i+1, err)
			}
		}
		if welcomed != 16 || refused != 1 {
			t.Errorf("17 connections with one token: %d welcomed, %d closed 1008; want 16 and 1", welcomed, refused)
		}
	})

	t.Run("origins", func(t *testing.T) {
		tok := issue(t, "gate", "ori", chatfleet.RoleViewer)
		for _, c := range []struct {
			origin string
			status int
		}{
			{"https://app.example.com.evil.com", 403},
			{"https://evil.com/app.example.com", 403},
			{"https://app.example.com@evil.com", 403},
			{"http://app.example.com", 403},
			{"https://app.example.com:8443", 403},
			{"https://sub.app.example.com", 403},
			{"null", 403},
			{fmt.Sprintf("http://127.0.0.1:%d", port), 403}, // same origin does not count once a list is set
			{"https://app.example.com", 101},
			{"HTTPS://APP.EXAMPLE.COM", 101},
		} {
			status, body := handshake(port, tok, http.Header{"Origin": {c.origin}})
			if status != c.status {
				t.Errorf("Origin %s: %d %s, want %d", c.origin, status, body, c.status)
			} else if status == 403 && envelope(body, "forbidden") != nil {
				t.Errorf("Origin %s: body %s", c.origin, body)
			}
		}
	})

	t.Run("frames", func(t *testing.T) {
		long := make([]byte, 200)
		for _, c := range []struct {
			name   string
			frames [][]byte
			code   int // 0: the connection must stay open
		}{
			{"RSV1 set", [][]byte{frame(0x80|0x40|0x1, []byte(`{"type":"ping"}`), true)}, 1002},
			{"RSV2 set", [][]byte{frame(0x80|0x20|0x1, []byte(`{"type":"ping"}`), true)}, 1002},
			{"RSV3 set", [][]byte{frame(0x80|0x10|0x1, []byte(`{"type":"ping"}`), true)}, 1002},
			{"opcode 3 (reserved data)", [][]byte{frame(0x80|0x3, []byte("x"), true)}, 1002},
			{"opcode 11 (reserved control)", [][]byte{frame(0x80|0xB, nil, true)}, 1002},
			{"unmasked client frame", [][]byte{frame(0x80|0x1, []byte(`{"type":"ping"}`), false)}, 1002},
			{"fragmented ping", [][]byte{frame(0x9, []byte("p"), true)}, 1002},
			{"fragmented close", [][]byte{frame(0x8, []byte{3, 232}, true)}, 1002},
			{"ping of 200 bytes", [][]byte{frame(0x80|0x9, long, true)}, 1002},
			{"continuation without a start", [][]byte{frame(0x80|0x0, []byte("x"), true)}, 1002},
			{"new message inside a fragmented one", [][]byte{frame(0x1, []byte(`{"ty`), true), frame(0x80|0x1, []byte(`{"type":"ping"}`), true)}, 1002},
			{"close code 999", [][]byte{frame(0x80|0x8, []byte{3, 231}, true)}, 1002},
			{"close code 1005 (reserved)", [][]byte{frame(0x80|0x8, []byte{3, 237}, true)}, 1002},
			// RFC 6455 makes a 1-byte close payload a protocol error;
			// gorilla/websocket reads it as "no status" and answers with an
			// empty close frame (1005 here). The connection still ends.
			{"close with a 1-byte payload", [][]byte{frame(0x80|0x8, []byte{3}, true)}, 1005},
			{"close reason not UTF-8", [][]byte{frame(0x80|0x8, []byte{3, 232, 0xff}, true)}, 1002},
			{"one 8 KiB message", [][]byte{frame(0x80|0x1, make([]byte, 8<<10), true)}, 1009},
			{"3 fragments of 2 KB over the 4 KiB limit", [][]byte{
				frame(0x1, []byte(`{"type":"chat","text":"`+strings.Repeat("a", 2000)), true),
				frame(0x0, []byte(strings.Repeat("a", 2000)), true),
				frame(0x80|0x0, []byte(strings.Repeat("a", 2000)+`"}`), true),
			}, 1009},
			{"binary frame", [][]byte{frame(0x80|0x2, []byte{1, 2, 3}, true)}, protocol.CloseUnsupported},
			{"text not UTF-8", [][]byte{frame(0x80|0x1, []byte("{\"type\":\"chat\",\"text\":\"\xff\"}"), true)}, 0},
			{"text not JSON", [][]byte{frame(0x80|0x1, []byte("hello"), true)}, 0},
			{"fragmented message within the limit", [][]byte{
				frame(0x1, []byte(`{"type":`), true), frame(0x80|0x9, nil, true), frame(0x80|0x0, []byte(`"ping"}`), true),
			}, 0},
		} {
			t.Run(c.name, func(t *testing.T) {
				rc := rawWS(t, port, issue(t, "gate", "raw", chatfleet.RoleViewer))
				for _, f := range c.frames {
					rc.c.Write(f)
				}
				if c.code == 0 {
					// Answered with an error or a pong, and still open.
					rc.waitFor(t, protocol.TypeError, protocol.TypePong)
					rc.c.Write(frame(0x80|0x1, []byte(`{"type":"ping"}`), true))
					rc.waitFor(t, protocol.TypePong)
					return
				}
				code, err := rc.closeCode()
				if err != nil || code != c.code {
					t.Fatalf("close code %d (%v), want %d", code, err, c.code)
				}
				if err := closedBy(rc.c); err != nil {
					t.Fatal(err)
				}
			})
		}
		// A 64-bit length with the top bit set: gorilla/websocket answers
		// with no close frame (ErrReadLimit) and the room cuts the
		// connection; the room must survive it.
		rc := rawWS(t, port, issue(t, "gate", "raw", chatfleet.RoleViewer))
		hdr := []byte{0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}
		rc.c.Write(hdr)
		if code, _ := rc.closeCode(); code != 0 && code != 1002 && code != 1009 {
			t.Errorf("negative length: close code %d", code)
		}
		if err := closedBy(rc.c); err != nil {
			t.Error(err)
		}
		stillServing(t, "protocol violations")
	})

	// A flood: more than AbuseStrikes (20) refused messages within 10 s
	// close the connection with 1008. Sent at 50 a second (ten times the
	// rate), the refusals reach the flooder as rate_limited errors first.
	// Sent in one burst, the room may refuse and close before its writer
	// has written the errors (they are dropped with the queue): the close
	// comes all the same.
	for _, c := range []struct {
		name  string
		pause time.Duration
	}{{"paced", 20 * time.Millisecond}, {"burst", 0}} {
		t.Run("flood "+c.name, func(t *testing.T) {
			ws := testutil.DialRoom(t, roomWS(port), issue(t, "gate", "flo-"+c.name, chatfleet.RoleViewer), -1)
			ws.Next(protocol.TypeWelcome, 10*time.Second)
			for i := range 100 {
				b, _ := json.Marshal(protocol.ClientMsg{Type: protocol.TypeChat, Text: fmt.Sprint("flood ", i), ClientID: fmt.Sprint(i)})
				ws.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if err := ws.Conn.WriteMessage(websocket.TextMessage, b); err != nil {
					break // the room closed it
				}
				time.Sleep(c.pause)
			}
			limited := 0
			var err error
			for {
				var m protocol.ServerMsg
				m, err = ws.TryNext(protocol.TypeError, 15*time.Second)
				if err != nil {
					break
				}
				if m.Code == protocol.CodeRateLimited {
					limited++
				}
			}
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != protocol.ClosePolicy {
				t.Fatalf("flood ended with %v, want close 1008", err)
			}
			if c.pause > 0 && limited == 0 {
				t.Error("no rate_limited error before the close")
			}
			t.Logf("%s flooder: %d rate_limited errors, then close %d %q", c.name, limited, ce.Code, ce.Text)
			stillServing(t, "a flood")
		})
	}
	h.noPanic()
}

// frame builds one client frame: b0 is FIN, RSV and opcode; masked says
// whether to mask the payload, as clients must.
func frame(b0 byte, payload []byte, masked bool) []byte {
	out := []byte{b0}
	mbit := byte(0)
	if masked {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n < 1<<16:
		out = append(out, mbit|126, byte(n>>8), byte(n))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	var key [4]byte
	rand.Read(key[:])
	out = append(out, key[:]...)
	for i, b := range payload {
		out = append(out, b^key[i%4])
	}
	return out
}

// rawConn is a WebSocket whose handshake and frames are written by hand.
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

// rawWS opens a WebSocket to the room by hand and reads its welcome.
func rawWS(t *testing.T, port int, tok string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET /ws?token=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", url.QueryEscape(tok), port)
	rc := &rawConn{c: c, br: bufio.NewReader(c)}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	if types := rc.nextText(t); types[0] != protocol.TypeWelcome {
		t.Fatalf("first messages %q, want a welcome", types)
	}
	return rc
}

// read returns the next server frame: its opcode and payload.
func (rc *rawConn) read() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(rc.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(rc.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(rc.br, p); err != nil {
		return 0, nil, err
	}
	return h[0] & 0xf, p, nil
}

// nextText returns the types of the messages of the next text frame (a
// frame may hold several), skipping control frames.
func (rc *rawConn) nextText(t *testing.T) []string {
	t.Helper()
	for {
		op, p, err := rc.read()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if op == 0x8 {
			t.Fatalf("closed: %v", p)
		}
		if op == 0x1 {
			var types []string
			protocol.Split(p, func(m []byte) {
				typ, _ := head(m)
				types = append(types, typ)
			})
			return types
		}
	}
}

// waitFor reads text frames until a message of one of types arrives, and
// returns its type.
func (rc *rawConn) waitFor(t *testing.T, types ...string) string {
	t.Helper()
	for {
		for _, typ := range rc.nextText(t) {
			if slices.Contains(types, typ) {
				return typ
			}
		}
	}
}

// closeCode reads frames until a close frame, answers it, and returns its
// code; 0 and an error if the connection ends without one.
func (rc *rawConn) closeCode() (int, error) {
	for {
		op, p, err := rc.read()
		if err != nil {
			return 0, err
		}
		if op == 0x8 {
			rc.c.Write(frame(0x80|0x8, p, true)) // answer it, as a client should; the room may have gone already
			if len(p) < 2 {
				return 1005, nil
			}
			return int(binary.BigEndian.Uint16(p)), nil
		}
	}
}
