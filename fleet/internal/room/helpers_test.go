package room

import (
	"context"
	"errors"
	"fmt"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

const (
	testRoom   = "lobby"
	testSecret = "test-secret-0123456789"
	waitFor    = 10 * time.Second // how long a test waits for what must happen
)

// env is one room served over real loopback sockets.
type env struct {
	t      *testing.T
	room   *Room
	url    string // http://127.0.0.1:port
	tokens *token.Issuer
	runErr chan error

	mu     sync.Mutex
	events []Event
}

type envOpts struct {
	smallSocketBuffers bool // server sockets with tiny kernel send buffers
}

// newEnv starts a room configured by mod (may be nil) and serves it.
func newEnv(t *testing.T, mod func(*Config), opts ...envOpts) *env {
	t.Helper()
	var o envOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	iss, err := token.NewIssuer(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, tokens: iss, runErr: make(chan error, 1)}
	cfg := Config{
		Name:      testRoom,
		Tokens:    iss,
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnEvent:   e.record,
		CloseWait: 500 * time.Millisecond,
		MsgRate:   1000, MsgBurst: 1000, // tests that flood set their own
	}
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.room = r
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.smallSocketBuffers {
		ln = smallBufListener{ln.(*net.TCPListener)}
	}
	srv := httpx.NewServer(r.Handler())
	go srv.Serve(ln)
	e.url = "http://" + ln.Addr().String()
	go func() { e.runErr <- r.Run(context.Background()) }()
	t.Cleanup(func() {
		r.Close("test over")
		select {
		case <-r.Done():
		case <-time.After(waitFor):
			t.Errorf("room did not end")
		}
		srv.Close()
	})
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// smallBufListener gives accepted connections tiny kernel send buffers, so
// that a client that stops reading fills them fast.
type smallBufListener struct{ *net.TCPListener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.AcceptTCP()
	if err != nil {
		return nil, err
	}
	c.SetWriteBuffer(4096)
	return c, nil
}

func (e *env) record(ev Event) {
	e.mu.Lock()
	e.events = append(e.events, ev)
	e.mu.Unlock()
}

// event waits for an event of type typ matching ok (nil: any) and returns it.
func (e *env) event(typ string, ok func(Event) bool) Event {
	e.t.Helper()
	var got Event
	testutil.Eventually(e.t, waitFor, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, ev := range e.events {
			if ev.Type == typ && (ok == nil || ok(ev)) {
				got = ev
				return nil
			}
		}
		return fmt.Errorf("no %s event among %d", typ, len(e.events))
	})
	return got
}

func (e *env) token(user string, role chatfleet.Role) string {
	e.t.Helper()
	tok, err := e.tokens.Issue(testRoom, "", user, strings.ToUpper(user[:1])+user[1:], role, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) wsURL(query url.Values) string {
	return "ws" + strings.TrimPrefix(e.url, "http") + "/ws?" + query.Encode()
}

// tclient is a WebSocket test client; a goroutine reads every message into msgs.
type tclient struct {
	t    *testing.T
	name string
	ws   *websocket.Conn
	msgs chan protocol.ServerMsg
	done chan struct{} // closed when reading ended; err is set then
	err  error

	welcome protocol.ServerMsg
	pending []protocol.ServerMsg // read but not yet awaited
	nextID  int
}

// dial connects user with role (role "" : no token) and waits for the welcome.
func (e *env) dial(user string, role chatfleet.Role, query ...string) *tclient {
	e.t.Helper()
	q := url.Values{}
	if role != "" {
		q.Set("token", e.token(user, role))
	}
	for i := 0; i+1 < len(query); i += 2 {
		q.Set(query[i], query[i+1])
	}
	c, resp, err := e.dialURL(e.wsURL(q), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial %s: %v (status %d)", user, err, status)
	}
	c.name = user
	c.welcome = c.await(protocol.TypeWelcome, nil)
	return c
}

// dialUnread connects user as a viewer with a 4 KiB receive buffer and
// never reads: a client that stops reading.
func (e *env) dialUnread(user string) *websocket.Conn {
	e.t.Helper()
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	ws, _, err := d.Dial(e.wsURL(url.Values{"token": {e.token(user, chatfleet.RoleViewer)}}), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { ws.Close() })
	return ws
}

// dialURL connects without waiting for anything.
func (e *env) dialURL(u string, h http.Header) (*tclient, *http.Response, error) {
	ws, resp, err := websocket.DefaultDialer.Dial(u, h)
	if err != nil {
		return nil, resp, err
	}
	c := &tclient{t: e.t, ws: ws, msgs: make(chan protocol.ServerMsg, 20000), done: make(chan struct{})}
	go c.read()
	e.t.Cleanup(func() { ws.Close() })
	return c, resp, nil
}

func (c *tclient) read() {
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		protocol.Split(data, func(b []byte) {
			m, err := protocol.DecodeServer(b)
			if err != nil {
				c.t.Errorf("%s: undecodable server message %q: %v", c.name, b, err)
				return
			}
			c.msgs <- m
		})
	}
}

func (c *tclient) send(m protocol.ClientMsg) {
	c.t.Helper()
	if err := c.ws.WriteJSON(m); err != nil {
		c.t.Fatalf("%s: send %s: %v", c.name, m.Type, err)
	}
}

func (c *tclient) sendRaw(typ int, b []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(typ, b); err != nil {
		c.t.Fatalf("%s: send: %v", c.name, err)
	}
}

// await returns the first message not yet awaited of type typ ("": any)
// matching ok (nil: any), waiting for it if needed. Messages it passes over
// stay for later awaits.
func (c *tclient) await(typ string, ok func(protocol.ServerMsg) bool) protocol.ServerMsg {
	c.t.Helper()
	match := func(m protocol.ServerMsg) bool { return (typ == "" || m.Type == typ) && (ok == nil || ok(m)) }
	for i, m := range c.pending {
		if match(m) {
			c.pending = slices.Delete(c.pending, i, i+1)
			return m
		}
	}
	timeout := time.After(waitFor)
	for {
		select {
		case m := <-c.msgs:
			if match(m) {
				return m
			}
			c.pending = append(c.pending, m)
		case <-c.done:
			// Look at what was read before the end.
			for {
				select {
				case m := <-c.msgs:
					if match(m) {
						return m
					}
					c.pending = append(c.pending, m)
				default:
					c.t.Fatalf("%s: connection ended (%v) while waiting for %s", c.name, c.err, typ)
				}
			}
		case <-timeout:
			c.t.Fatalf("%s: no %s message within %v", c.name, typ, waitFor)
		}
	}
}

// errorCode sends m and returns the code of the error it gets.
func (c *tclient) errorCode(m protocol.ClientMsg) string {
	c.t.Helper()
	c.send(m)
	return c.await(protocol.TypeError, nil).Code
}

// chat sends text and returns the seq of its ack.
func (c *tclient) chat(text string) int64 {
	c.t.Helper()
	c.nextID++
	id := fmt.Sprintf("%s-%d", c.name, c.nextID)
	c.send(protocol.ClientMsg{Type: protocol.TypeChat, Text: text, ClientID: id})
	m := c.await("", func(m protocol.ServerMsg) bool {
		return (m.Type == protocol.TypeAck && m.ClientID == id) || (m.Type == protocol.TypeError && m.Ref == id)
	})
	if m.Type == protocol.TypeError {
		c.t.Fatalf("%s: chat %q refused: %s %s", c.name, text, m.Code, m.Message)
	}
	return m.Seq
}

// closed waits for the connection to end and returns its close code and
// reason (code 0 if it ended without a close frame).
func (c *tclient) closed() (int, string) {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitFor):
		c.t.Fatalf("%s: connection still open", c.name)
	}
	var ce *websocket.CloseError
	if errors.As(c.err, &ce) {
		return ce.Code, ce.Text
	}
	return 0, fmt.Sprint(c.err)
}

func (c *tclient) expectClose(code int) string {
	c.t.Helper()
	got, reason := c.closed()
	if got != code {
		c.t.Fatalf("%s: closed with %d %q, want %d", c.name, got, reason, code)
	}
	return reason
}

// chats returns the texts of chat messages among ms.
func chats(ms []protocol.ServerMsg) []string {
	var out []string
	for _, m := range ms {
		if m.Type == protocol.TypeChat {
			out = append(out, m.Text)
		}
	}
	return out
}

// historyOf decodes a welcome's history.
func historyOf(t *testing.T, w protocol.ServerMsg) []protocol.ServerMsg {
	t.Helper()
	var out []protocol.ServerMsg
	for _, raw := range w.History {
		m, err := protocol.DecodeServer(raw)
		if err != nil {
			t.Fatalf("history entry %s: %v", raw, err)
		}
		out = append(out, m)
	}
	return out
}

// checkSeqs fails unless ms's seqs run from first, one by one.
func checkSeqs(t *testing.T, ms []protocol.ServerMsg, first int64) {
	t.Helper()
	for i, m := range ms {
		if m.Seq != first+int64(i) {
			seqs := make([]int64, len(ms))
			for j := range ms {
				seqs[j] = ms[j].Seq
			}
			t.Fatalf("seqs %v, want consecutive from %d", seqs, first)
		}
	}
}

func texts(n int, format string) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf(format, i))
	}
	return out
}
