package room

import (
	"encoding/json"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

func TestRoomName(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Get(e.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != testRoom || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("GET / = %d %q %q, want 200 %q text/plain", resp.StatusCode, resp.Header.Get("Content-Type"), b, testRoom)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example.com", "http://localhost:3000"} })
	forger, _ := token.NewIssuer("another-secret-0123456789")
	forged, _ := forger.Issue(testRoom, "", "eve", "Eve", chatfleet.RoleProducer, time.Hour)
	past, _ := token.NewIssuer(testSecret)
	past.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expired, _ := past.Issue(testRoom, "", "ann", "Ann", chatfleet.RoleViewer, time.Hour)
	otherRoom, _ := e.tokens.Issue("other-room", "", "ann", "Ann", chatfleet.RoleViewer, time.Hour)
	valid := e.token("ann", chatfleet.RoleViewer)

	// A fleet ban (in the snapshot), one for this room, and one of another
	// room (ignored).
	e.room.ApplyBans(BanStep{Reset: true, Snapshot: snapshotOf(map[string]int64{"troll": 0})}, BanStep{Add: []chatfleet.Ban{
		{ID: "b2", UserID: "pest", Room: testRoom, Until: time.Now().Add(time.Hour)},
		{ID: "b3", UserID: "ann", Room: "other-room"},
	}})
	testutil.Eventually(t, waitFor, func() error {
		if all, own := e.room.bans.Len(); all != 2 || own != 1 {
			return io.EOF
		}
		return nil
	})

	tests := []struct {
		name   string
		token  string
		header http.Header
		status int
		code   string
	}{
		{"missing token", "", nil, 401, chatfleet.EUNAUTHORIZED},
		{"forged token", forged, nil, 403, chatfleet.EFORBIDDEN},
		{"expired token", expired, nil, 403, chatfleet.EFORBIDDEN},
		{"other room token", otherRoom, nil, 403, chatfleet.EFORBIDDEN},
		{"garbage token", "not-a-jwt", nil, 403, chatfleet.EFORBIDDEN},
		{"fleet ban", e.token("troll", chatfleet.RoleViewer), nil, 403, chatfleet.EFORBIDDEN},
		{"room ban", e.token("pest", chatfleet.RoleModerator), nil, 403, chatfleet.EFORBIDDEN},
		{"bad origin", valid, http.Header{"Origin": {"https://app.example.com.evil.com"}}, 403, chatfleet.EFORBIDDEN},
		{"other scheme", valid, http.Header{"Origin": {"http://app.example.com"}}, 403, chatfleet.EFORBIDDEN},
		{"null origin", valid, http.Header{"Origin": {"null"}}, 403, chatfleet.EFORBIDDEN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := url.Values{}
			if tt.token != "" {
				q.Set("token", tt.token)
			}
			_, resp, err := e.dialURL(e.wsURL(q), tt.header)
			if err == nil {
				t.Fatal("handshake succeeded")
			}
			if resp == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			defer resp.Body.Close()
			var env httpx.Envelope
			json.NewDecoder(resp.Body).Decode(&env)
			if resp.StatusCode != tt.status || env.Error == nil || env.Error.Code != tt.code {
				t.Fatalf("status %d, body %+v; want %d %s", resp.StatusCode, env.Error, tt.status, tt.code)
			}
		})
	}
	// Refusals spent nothing of the room.
	if st := e.room.Stats(); st.Conns != 0 || e.room.live.Load() != 0 {
		t.Fatalf("after refusals: %d conns, %d connection goroutines", st.Conns, e.room.live.Load())
	}

	t.Run("allowed", func(t *testing.T) {
		for _, h := range []http.Header{
			nil, // non-browser clients send no Origin
			{"Origin": {"https://app.example.com"}},
			{"Origin": {"http://LOCALHOST:3000"}},
		} {
			c, resp, err := e.dialURL(e.wsURL(url.Values{"token": {valid}}), h)
			if err != nil {
				t.Fatalf("origin %v: %v (%v)", h, err, resp)
			}
			c.name = "ann"
			c.await(protocol.TypeWelcome, nil)
			c.ws.Close()
		}
	})
	t.Run("bearer header", func(t *testing.T) {
		c, _, err := e.dialURL(e.wsURL(nil), http.Header{"Authorization": {"Bearer " + valid}})
		if err != nil {
			t.Fatal(err)
		}
		c.name = "ann"
		if w := c.await(protocol.TypeWelcome, nil); w.You.UserID != "ann" || w.You.Role != chatfleet.RoleViewer || w.You.Name != "Ann" {
			t.Fatalf("welcome.you = %+v", w.You)
		}
	})
	t.Run("not a websocket", func(t *testing.T) {
		resp, err := http.Get(e.url + "/ws?token=" + valid)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})
	t.Run("bad lastSeq", func(t *testing.T) {
		_, resp, err := e.dialURL(e.wsURL(url.Values{"token": {valid}, "lastSeq": {"-3"}}), nil)
		if err == nil || resp == nil || resp.StatusCode != 400 {
			t.Fatalf("lastSeq -3: %v %v", err, resp)
		}
	})
}

func TestSameOriginByDefault(t *testing.T) {
	e := newEnv(t, nil)
	q := url.Values{"token": {e.token("ann", chatfleet.RoleViewer)}}
	if _, resp, err := e.dialURL(e.wsURL(q), http.Header{"Origin": {"https://elsewhere.example.com"}}); err == nil || resp.StatusCode != 403 {
		t.Fatalf("foreign origin: %v %v", err, resp)
	}
	if _, _, err := e.dialURL(e.wsURL(q), http.Header{"Origin": {e.url}}); err != nil {
		t.Fatalf("same origin refused: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	iss, _ := token.NewIssuer(testSecret)
	for name, cfg := range map[string]Config{
		"bad name":   {Name: "no spaces", Tokens: iss},
		"no tokens":  {Name: testRoom},
		"bad origin": {Name: testRoom, Tokens: iss, AllowedOrigins: []string{"app.example.com"}},
		"path":       {Name: testRoom, Tokens: iss, AllowedOrigins: []string{"https://app.example.com/x"}},
	} {
		if _, err := New(cfg); chatfleet.ErrorCode(err) != chatfleet.EINVALID {
			t.Errorf("%s: New = %v, want EINVALID", name, err)
		}
	}
}

func TestAnonymous(t *testing.T) {
	t.Run("allowed", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Settings.AllowAnonymous = true })
		g := e.dial("guest", "")
		if you := g.welcome.You; you.Role != chatfleet.RoleViewer || you.UserID == "" || you.Name == "" {
			t.Fatalf("guest = %+v", you)
		}
		if code := g.errorCode(protocol.ClientMsg{Type: protocol.TypeChat, Text: "hi"}); code != protocol.CodeForbidden {
			t.Fatalf("guest chat: %s, want forbidden", code)
		}
		// A bad token is still refused.
		if _, resp, err := e.dialURL(e.wsURL(url.Values{"token": {"junk"}}), nil); err == nil || resp.StatusCode != 403 {
			t.Fatalf("bad token with anonymous allowed: %v", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		e := newEnv(t, nil)
		if _, resp, err := e.dialURL(e.wsURL(nil), nil); err == nil || resp.StatusCode != 401 {
			t.Fatalf("no token: %v %v", err, resp)
		}
	})
}
