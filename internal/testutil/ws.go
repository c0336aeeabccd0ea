package testutil

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet/protocol"
)

// WS is a real WebSocket client of a room, for tests.
type WS struct {
	t       testing.TB
	Conn    *websocket.Conn
	pending []protocol.ServerMsg
	Closed  *websocket.CloseError // set once the room closed the connection
}

// DialRoom opens a WebSocket to the room at base (e.g. ws://127.0.0.1:34000)
// with a join token and, if lastSeq >= 0, a recovery point.
func DialRoom(t testing.TB, base, token string, lastSeq int64) *WS {
	t.Helper()
	ws, resp, err := TryDialRoom(base, token, lastSeq)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", base, err, status)
	}
	ws.t = t
	t.Cleanup(func() { ws.Conn.Close() })
	return ws
}

// TryDialRoom is DialRoom that returns the error and the handshake response.
func TryDialRoom(base, token string, lastSeq int64) (*WS, *http.Response, error) {
	q := url.Values{"token": {token}}
	if lastSeq >= 0 {
		q.Set("lastSeq", fmt.Sprint(lastSeq))
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(base+"/ws?"+q.Encode(), nil)
	if err != nil {
		return nil, resp, err
	}
	return &WS{Conn: c}, resp, nil
}

// Send writes one client message.
func (w *WS) Send(m protocol.ClientMsg) {
	w.t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		w.t.Fatal(err)
	}
	w.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := w.Conn.WriteMessage(websocket.TextMessage, b); err != nil {
		w.t.Fatalf("send %s: %v", m.Type, err)
	}
}

// Next returns the next server message of type typ, skipping others, within
// timeout. It fails the test if the connection ends first.
func (w *WS) Next(typ string, timeout time.Duration) protocol.ServerMsg {
	w.t.Helper()
	m, err := w.TryNext(typ, timeout)
	if err != nil {
		w.t.Fatalf("waiting for %q: %v", typ, err)
	}
	return m
}

// TryNext is Next that returns the error, a *websocket.CloseError when the
// room closed the connection.
func (w *WS) TryNext(typ string, timeout time.Duration) (protocol.ServerMsg, error) {
	deadline := time.Now().Add(timeout)
	for {
		for len(w.pending) > 0 {
			m := w.pending[0]
			w.pending = w.pending[1:]
			if m.Type == typ {
				return m, nil
			}
		}
		w.Conn.SetReadDeadline(deadline)
		_, frame, err := w.Conn.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				w.Closed = ce
				return protocol.ServerMsg{}, ce
			}
			return protocol.ServerMsg{}, err
		}
		var decodeErr error
		protocol.Split(frame, func(b []byte) {
			var m protocol.ServerMsg
			if err := json.Unmarshal(b, &m); err != nil && decodeErr == nil {
				decodeErr = fmt.Errorf("server sent %q: %v", b, err)
			}
			w.pending = append(w.pending, m)
		})
		if decodeErr != nil {
			return protocol.ServerMsg{}, decodeErr
		}
	}
}
