package room

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/protocol"
)

// sseEvent is one event of an SSE stream.
type sseEvent struct {
	id  string
	msg protocol.ServerMsg
}

// sseClient reads GET /events into events.
type sseClient struct {
	t      *testing.T
	resp   *http.Response
	events chan sseEvent
	done   chan struct{}
	cancel context.CancelFunc
}

func (e *env) openSSE(user string, role chatfleet.Role, header http.Header) *sseClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/events?token="+url.QueryEscape(e.token(user, role)), nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("GET /events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseClient{t: e.t, resp: resp, events: make(chan sseEvent, 1000), done: make(chan struct{}), cancel: cancel}
	e.t.Cleanup(func() { cancel(); resp.Body.Close() })
	go s.read()
	return s
}

func (s *sseClient) read() {
	defer close(s.done)
	sc := bufio.NewScanner(s.resp.Body)
	sc.Buffer(nil, 1<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
			continue
		case strings.HasPrefix(line, "data: "):
			m, err := protocol.DecodeServer([]byte(line[6:]))
			if err != nil {
				s.t.Errorf("bad SSE data %q: %v", line, err)
				return
			}
			ev.msg = m
			continue
		default: // comments, retry
			continue
		}
		if ev.msg.Type != "" {
			s.events <- ev
		}
		ev = sseEvent{}
	}
}

func (s *sseClient) await(typ string, ok func(sseEvent) bool) sseEvent {
	s.t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case ev := <-s.events:
			if ev.msg.Type == typ && (ok == nil || ok(ev)) {
				return ev
			}
		case <-s.done:
			for { // what was read before the end
				select {
				case ev := <-s.events:
					if ev.msg.Type == typ && (ok == nil || ok(ev)) {
						return ev
					}
				default:
					s.t.Fatalf("SSE stream ended while waiting for %s", typ)
				}
			}
		case <-timeout:
			s.t.Fatalf("no SSE %s within %v", typ, waitFor)
		}
	}
}

// post sends one client message to /send and returns the status and either
// the reply or the error.
func (e *env) post(user string, role chatfleet.Role, body string) (int, protocol.ServerMsg, *chatfleet.Error) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/send", strings.NewReader(body))
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+e.token(user, role))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data  protocol.ServerMsg `json:"data"`
		Error *chatfleet.Error   `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		e.t.Fatalf("POST /send: %d, undecodable body: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, out.Data, out.Error
}

func TestSSEFallback(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example.com"} })
	ws := e.dial("wendy", chatfleet.RoleViewer)
	ws.chat("before sse")

	sse := e.openSSE("sam", chatfleet.RoleViewer, nil)
	w := sse.await(protocol.TypeWelcome, nil)
	if w.msg.You.UserID != "sam" || w.id != strconv.FormatInt(w.msg.Seq, 10) || len(chats(historyOf(t, w.msg))) != 1 {
		t.Fatalf("SSE welcome id %q %+v", w.id, w.msg)
	}
	ws.await(protocol.TypeJoin, func(m protocol.ServerMsg) bool { return m.UserID == "sam" })

	// SSE user -> WebSocket user.
	status, reply, perr := e.post("sam", chatfleet.RoleViewer, `{"type":"chat","text":"hi from sse","clientId":"s1"}`)
	if status != 202 || perr != nil || reply.Type != protocol.TypeAck || reply.ClientID != "s1" || reply.Seq == 0 {
		t.Fatalf("POST chat: %d %+v %+v", status, reply, perr)
	}
	if m := ws.await(protocol.TypeChat, func(m protocol.ServerMsg) bool { return m.Seq == reply.Seq }); m.Text != "hi from sse" || m.From.UserID != "sam" {
		t.Fatalf("ws got %+v", m)
	}
	// WebSocket user -> SSE user, with the seq as the event id.
	seq := ws.chat("hi from ws")
	ev := sse.await(protocol.TypeChat, func(ev sseEvent) bool { return ev.msg.Text == "hi from ws" })
	if ev.id != strconv.FormatInt(seq, 10) || ev.msg.Seq != seq {
		t.Fatalf("SSE chat id %q %+v, want seq %d", ev.id, ev.msg, seq)
	}

	t.Run("post errors", func(t *testing.T) {
		for _, tt := range []struct {
			user   string
			role   chatfleet.Role
			body   string
			status int
			code   string
		}{
			{"sam", chatfleet.RoleViewer, `{"type":"chat"`, 400, protocol.CodeInvalidJSON},
			{"sam", chatfleet.RoleViewer, `{"type":"nope"}`, 400, protocol.CodeUnknownType},
			{"sam", chatfleet.RoleViewer, `{"type":"kick","userId":"wendy"}`, 403, protocol.CodeForbidden},
			{"sam", chatfleet.RoleViewer, `{"type":"resume","lastSeq":1}`, 400, protocol.CodeUnsupported},
			{"sam", chatfleet.RoleViewer, `{"type":"chat","text":"` + strings.Repeat("a", 5000) + `"}`, 413, protocol.CodeTooLarge},
			{"sam", "", `{"type":"chat","text":"hi"}`, 401, chatfleet.EUNAUTHORIZED},
			{"stranger", chatfleet.RoleViewer, `{"type":"chat","text":"hi"}`, 409, chatfleet.ECONFLICT},
		} {
			status, _, perr := e.post(tt.user, tt.role, tt.body)
			if status != tt.status || perr == nil || perr.Code != tt.code {
				t.Errorf("POST %.40s: %d %+v, want %d %s", tt.body, status, perr, tt.status, tt.code)
			}
		}
		status, reply, _ := e.post("sam", chatfleet.RoleViewer, `{"type":"viewers"}`)
		if status != 202 || reply.Type != protocol.TypeViewers || reply.Total != 2 {
			t.Errorf("POST viewers: %d %+v", status, reply)
		}
	})

	t.Run("Last-Event-ID", func(t *testing.T) {
		sse.cancel()
		<-sse.done
		missed := []string{ws.chatText("m1"), ws.chatText("m2"), ws.chatText("m3")}
		again := e.openSSE("sam", chatfleet.RoleViewer, http.Header{"Last-Event-ID": {strconv.FormatInt(seq, 10)}})
		again.t = t
		w := again.await(protocol.TypeWelcome, nil)
		if got := chats(historyOf(t, w.msg)); strings.Join(got, ",") != strings.Join(missed, ",") || w.msg.Missed {
			t.Fatalf("after Last-Event-ID %d: %q missed=%v", seq, got, w.msg.Missed)
		}
	})

	t.Run("cors", func(t *testing.T) {
		req, _ := http.NewRequest("OPTIONS", e.url+"/send", nil)
		req.Header.Set("Origin", "https://app.example.com")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
		req.Header.Set("Origin", "https://evil.example.com")
		resp, _ = http.DefaultClient.Do(req)
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("preflight from a bad origin: %d", resp.StatusCode)
		}
		req, _ = http.NewRequest("GET", e.url+"/events?token="+e.token("sam", chatfleet.RoleViewer), nil)
		req.Header.Set("Origin", "https://evil.example.com")
		resp, _ = http.DefaultClient.Do(req)
		var env httpx.Envelope
		json.NewDecoder(resp.Body).Decode(&env)
		resp.Body.Close()
		if resp.StatusCode != 403 || env.Error == nil {
			t.Fatalf("SSE from a bad origin: %d %+v", resp.StatusCode, env.Error)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("a bad origin may read the refusal: Access-Control-Allow-Origin %q", got)
		}
		// A refusal to an allowed origin is readable: the page of a banned
		// or expired client learns why.
		req, _ = http.NewRequest("POST", e.url+"/send", strings.NewReader(`{"type":"ping"}`))
		req.Header.Set("Origin", "https://app.example.com")
		req.Header.Set("Authorization", "Bearer not-a-token")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Fatalf("refused send from an allowed origin: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("closed by the room", func(t *testing.T) {
		s := e.openSSE("kim", chatfleet.RoleViewer, nil)
		s.t = t
		s.await(protocol.TypeWelcome, nil)
		e.post("wendy", chatfleet.RoleViewer, `{"type":"ping"}`)
		e.room.Close("bye")
		s.await(protocol.TypeSystem, func(ev sseEvent) bool { return ev.msg.Kind == protocol.KindClosing })
		if ev := s.await(protocol.TypeClose, nil); ev.msg.CloseCode != protocol.CloseGoingAway || ev.msg.Reason != "bye" {
			t.Fatalf("close event %+v", ev.msg)
		}
		select {
		case <-s.done:
		case <-time.After(waitFor):
			t.Fatal("SSE stream still open")
		}
	})
}

// chatText sends text and returns it, for building expectations.
func (c *tclient) chatText(text string) string {
	c.t.Helper()
	c.chat(text)
	return text
}
