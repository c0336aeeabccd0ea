package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// call sends one request with an optional key and body; chunked sends the
// body without a Content-Length.
func call(method, url, key, body string, chunked bool) (int, string, http.Header, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
		if chunked {
			rd = struct{ io.Reader }{rd} // unknown length: Transfer-Encoding: chunked
		}
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", nil, err
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

// envelope checks that body is the project's error envelope with code, in
// valid UTF-8 JSON.
func envelope(body, code string) error {
	if !utf8.ValidString(body) {
		return fmt.Errorf("body is not valid UTF-8: %q", body)
	}
	var env struct {
		Error *struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil || env.Error == nil {
		return fmt.Errorf("body %q is not the error envelope", body)
	}
	if env.Error.Code != code || env.Error.Message == "" {
		return fmt.Errorf("error %+v, want code %s and a message", env.Error, code)
	}
	return nil
}

// rawRequest writes req on a new connection to addr and reads one response.
func rawRequest(addr, req string) (int, string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// endpoint is one route of a server, with the key it needs.
type endpoint struct {
	server, method, url, key string
}

// TestHTTPBadInput sends every HTTP endpoint of a chatserver (API and admin
// ports), of a room and of a load balancer what a careless or hostile
// client would: missing and wrong keys, bodies that are too large, not
// JSON, of the wrong types, with unknown fields or invalid UTF-8; room
// names that are not names; oversized headers; headers that never end.
// Every answer is the right status in the error envelope, and every server
// keeps serving.
func TestHTTPBadInput(t *testing.T) {
	t.Parallel()
	lb, _ := startLB(t)
	h := startHost(t)
	port := h.create("target")
	view := join(t, port, "target", "val", chatfleet.RoleViewer)
	hostURL := lb + "/api/v1/hosts/bad-host"

	eps := []endpoint{
		{"api", "POST", h.API + "/api/v1/room/x", userKey},
		{"api", "GET", h.API + "/api/v1/room/target", userKey},
		{"api", "DELETE", h.API + "/api/v1/room/x", userKey},
		{"api", "GET", h.API + "/api/v1/rooms", userKey},
		{"admin", "GET", h.Admin + "/api/v1/", adminKey},
		{"admin", "GET", h.Admin + "/api/v1/rooms", adminKey},
		{"admin", "GET", h.Admin + "/api/v1/rooms/target", adminKey},
		{"admin", "DELETE", h.Admin + "/api/v1/rooms/target", adminKey},
		{"admin", "POST", h.Admin + "/api/v1/messages", adminKey},
		{"admin", "POST", h.Admin + "/api/v1/drain", adminKey},
		{"admin", "POST", h.Admin + "/api/v1/resume", adminKey},
		{"admin", "POST", h.Admin + "/api/v1/restart", adminKey},
		{"admin", "POST", h.Admin + "/api/v1/shutdown", adminKey},
		{"admin", "GET", h.Admin + "/api/v1/stats", adminKey},
		{"admin", "GET", h.Admin + "/metrics", adminKey},
		{"lb", "GET", lb + "/api/v1/hosts", lbKey},
		{"lb", "GET", hostURL, lbKey},
		{"lb", "PUT", hostURL, lbKey},
		{"lb", "DELETE", hostURL, lbKey},
		{"lb", "POST", lb + "/api/v1/pick", lbKey},
	}
	t.Run("keys", func(t *testing.T) {
		for _, ep := range eps {
			others := map[string]string{"api": adminKey, "admin": userKey, "lb": userKey}
			for _, k := range []struct{ name, key, code string }{
				{"none", "", chatfleet.EUNAUTHORIZED},
				{"wrong", "nope", chatfleet.EFORBIDDEN},
				{"another port's", others[ep.server], chatfleet.EFORBIDDEN},
				{"prefix of the right one", ep.key[:len(ep.key)-1], chatfleet.EFORBIDDEN},
				{"right one plus a byte", ep.key + "x", chatfleet.EFORBIDDEN},
				{"8 KiB", strings.Repeat("k", 8<<10), chatfleet.EFORBIDDEN},
				{"invalid UTF-8", "\xff\xfe", chatfleet.EFORBIDDEN},
			} {
				status, body, _, err := call(ep.method, ep.url, k.key, `{"text":"x"}`, false)
				if err != nil {
					t.Fatalf("%s %s: %v", ep.method, ep.url, err)
				}
				want := map[string]int{chatfleet.EUNAUTHORIZED: 401, chatfleet.EFORBIDDEN: 403}[k.code]
				if err := envelope(body, k.code); status != want || err != nil {
					t.Errorf("%s %s with %s key: %d %v", ep.method, ep.url, k.name, status, err)
				}
			}
		}
		// None of the refused calls did anything.
		if st := h.room("target"); st.PID == 0 {
			t.Errorf("room target gone: %+v", st)
		}
		if status, _ := testutil.Do(t, "GET", h.API+"/readyz", "", ""); status != 200 {
			t.Errorf("host not ready after refused drain/shutdown calls: %d", status)
		}
		h.alive()
	})

	big := func(n int) string { return `{"text":"` + strings.Repeat("x", n) + `"}` }
	bodies := []struct {
		name, method, url, key, body string
		chunked                      bool
		status                       int
		code                         string
		mention                      string // the message names this
	}{
		{"create: invalid JSON", "POST", h.API + "/api/v1/room/b1", userKey, `{"options":`, false, 400, "invalid", ""},
		{"create: not an object", "POST", h.API + "/api/v1/room/b1", userKey, `[1,2]`, false, 400, "invalid", ""},
		{"create: a string", "POST", h.API + "/api/v1/room/b1", userKey, `"room"`, false, 400, "invalid", ""},
		{"create: wrong type", "POST", h.API + "/api/v1/room/b1", userKey, `{"options":{"historySize":"ten"}}`, false, 400, "invalid", "options.historySize"},
		{"create: bool as string", "POST", h.API + "/api/v1/room/b1", userKey, `{"options":{"allowAnonymous":"yes"}}`, false, 400, "invalid", "options.allowAnonymous"},
		{"create: options a list", "POST", h.API + "/api/v1/room/b1", userKey, `{"options":[]}`, false, 400, "invalid", "options"},
		{"create: fraction", "POST", h.API + "/api/v1/room/b1", userKey, `{"options":{"historySize":1.5}}`, false, 400, "invalid", "options.historySize"},
		{"create: overflow", "POST", h.API + "/api/v1/room/b1", userKey, `{"options":{"historySize":1e400}}`, false, 400, "invalid", ""},
		{"create: out of range", "POST", h.API + "/api/v1/room/b1", userKey, `{"options":{"historySize":-1}}`, false, 400, "invalid", "historySize"},
		{"create: unknown field", "POST", h.API + "/api/v1/room/b1", userKey, `{"color":"red"}`, false, 400, "invalid", "color"},
		{"create: unknown nested field", "POST", h.API + "/api/v1/room/b1", userKey, `{"options":{"colour":1}}`, false, 400, "invalid", "colour"},
		{"create: trailing data", "POST", h.API + "/api/v1/room/b1", userKey, `{"options":{}} {}`, false, 400, "invalid", "trailing"},
		{"create: invalid UTF-8 key", "POST", h.API + "/api/v1/room/b1", userKey, "{\"\xff\":1}", false, 400, "invalid", ""},
		{"create: 65 KiB body", "POST", h.API + "/api/v1/room/b1", userKey, big(65 << 10), false, 413, "too_large", ""},
		{"create: 65 KiB chunked", "POST", h.API + "/api/v1/room/b1", userKey, big(65 << 10), true, 413, "too_large", ""},
		{"create: 1 MiB body", "POST", h.API + "/api/v1/room/b1", userKey, big(1 << 20), false, 413, "too_large", ""},
		{"close: reason too long", "DELETE", h.Admin + "/api/v1/rooms/target", adminKey, `{"reason":"` + strings.Repeat("r", 201) + `"}`, false, 400, "invalid", "200"},
		{"close: reason a number", "DELETE", h.Admin + "/api/v1/rooms/target", adminKey, `{"reason":5}`, false, 400, "invalid", "reason"},
		{"close: 5 KiB body", "DELETE", h.Admin + "/api/v1/rooms/target", adminKey, big(5 << 10), false, 413, "too_large", ""},
		{"global: text a number", "POST", h.Admin + "/api/v1/messages", adminKey, `{"text":5}`, false, 400, "invalid", "text"},
		{"global: text null", "POST", h.Admin + "/api/v1/messages", adminKey, `{"text":null}`, false, 400, "invalid", ""},
		{"global: unknown field", "POST", h.Admin + "/api/v1/messages", adminKey, `{"text":"x","to":"all"}`, false, 400, "invalid", "to"},
		{"global: too long", "POST", h.Admin + "/api/v1/messages", adminKey, big(1001), false, 400, "invalid", ""},
		{"global: 9 KiB body", "POST", h.Admin + "/api/v1/messages", adminKey, big(9 << 10), true, 413, "too_large", ""},
		{"heartbeat: empty", "PUT", hostURL, lbKey, ``, false, 400, "invalid", "empty"},
		{"heartbeat: {}", "PUT", hostURL, lbKey, `{}`, false, 400, "invalid", "empty"},
		{"heartbeat: invalid JSON", "PUT", hostURL, lbKey, `{"id":`, false, 400, "invalid", ""},
		{"heartbeat: wrong type", "PUT", hostURL, lbKey, `{"capacity":{"maxRooms":"many"}}`, false, 400, "invalid", "capacity.maxRooms"},
		{"heartbeat: unknown field", "PUT", hostURL, lbKey, `{"cores":8}`, false, 400, "invalid", "cores"},
		{"heartbeat: id mismatch", "PUT", hostURL, lbKey, `{"id":"other"}`, false, 400, "invalid", "id"},
		{"heartbeat: invalid UTF-8 region", "PUT", hostURL, lbKey, heartbeat("eu\xff"), false, 400, "invalid", "region"},
		{"heartbeat: 65 KiB", "PUT", hostURL, lbKey, big(65 << 10), false, 413, "too_large", ""},
		{"heartbeat: 65 KiB chunked", "PUT", hostURL, lbKey, big(65 << 10), true, 413, "too_large", ""},
		{"heartbeat: bad path id", "PUT", lb + "/api/v1/hosts/-bad", lbKey, heartbeat("eu-west-1"), false, 400, "invalid", "id"},
		{"pick: exclude a string", "POST", lb + "/api/v1/pick", lbKey, `{"exclude":"h1"}`, false, 400, "invalid", "exclude"},
		{"pick: upper-case region", "POST", lb + "/api/v1/pick", lbKey, `{"region":"EU"}`, false, 400, "invalid", "region"},
		{"pick: unknown field", "POST", lb + "/api/v1/pick", lbKey, `{"zone":"a"}`, false, 400, "invalid", "zone"},
		{"pick: 65 KiB", "POST", lb + "/api/v1/pick", lbKey, big(65 << 10), false, 413, "too_large", ""},
	}
	t.Run("bodies", func(t *testing.T) {
		for _, b := range bodies {
			status, body, hdr, err := call(b.method, b.url, b.key, b.body, b.chunked)
			if err != nil {
				t.Errorf("%s: %v", b.name, err)
				continue
			}
			if err := envelope(body, b.code); status != b.status || err != nil {
				t.Errorf("%s: %d %v, want %d %s", b.name, status, err, b.status, b.code)
				continue
			}
			if !strings.Contains(body, b.mention) {
				t.Errorf("%s: %s does not mention %q", b.name, body, b.mention)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s: Content-Type %q", b.name, ct)
			}
		}
		if rs, err := h.rooms(); err != nil || len(rs) != 1 {
			t.Errorf("rooms after refused bodies: %+v %v", rs, err)
		}
	})

	// Invalid UTF-8 inside JSON strings is not refused by encoding/json: it
	// becomes U+FFFD. What reaches clients and the load balancer's listing
	// is valid UTF-8.
	t.Run("invalid UTF-8 in strings is replaced", func(t *testing.T) {
		status, body, _, err := call("POST", h.Admin+"/api/v1/messages", adminKey, "{\"text\":\"bad \xff\xfe bytes\"}", false)
		if err != nil || status != 200 {
			t.Fatalf("global with invalid UTF-8: %d %s %v", status, body, err)
		}
		m := view.Next(protocol.TypeSystem, 10*time.Second)
		if !utf8.ValidString(m.Text) || m.Text != "bad \uFFFD\uFFFD bytes" {
			t.Errorf("viewers got %q", m.Text)
		}
		hb := strings.Replace(heartbeat("eu-west-1"), `"version":"1.0.0"`, "\"version\":\"1.0\xff\"", 1)
		status, body, _, err = call("PUT", hostURL, lbKey, hb, false)
		if err != nil || (status != 201 && status != 200) || !utf8.ValidString(body) || !strings.Contains(body, "1.0\uFFFD") {
			t.Errorf("heartbeat with invalid UTF-8 version: %d %q %v", status, body, err)
		}
		testutil.Do(t, "DELETE", hostURL, lbKey, "")
	})

	t.Run("room names", func(t *testing.T) {
		for _, name := range []string{"%FF", "caf%C3%A9", "a%00b", "a%20b", "-lead", "a.b", "%2e%2e", strings.Repeat("n", 65), "a%0Ab", "%E2%80%AE"} {
			status, body, _, err := call("POST", h.API+"/api/v1/room/"+name, userKey, "", false)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if status != 400 && status != 404 {
				t.Errorf("room name %s: %d %s", name, status, body)
			} else if err := envelope(body, map[int]string{400: "invalid", 404: "not_found"}[status]); err != nil {
				t.Errorf("room name %s: %v", name, err)
			}
		}
		// Raw bytes the client would never percent-encode: the request line
		// itself is refused, or the name is.
		for _, raw := range []string{"\xff", "caf\xc3\xa9", "a\x01b"} {
			status, body, err := rawRequest(h.API[len("http://"):], "POST /api/v1/room/"+raw+" HTTP/1.1\r\nHost: x\r\nX-API-Key: "+userKey+"\r\nContent-Length: 0\r\n\r\n")
			if err != nil || status != 400 {
				t.Errorf("raw room name %q: %d %q %v", raw, status, body, err)
			}
		}
		if rs, err := h.rooms(); err != nil || len(rs) != 1 {
			t.Errorf("rooms after bad names: %+v %v", rs, err)
		}
	})

	servers := map[string]string{
		"api":   h.API[len("http://"):],
		"admin": h.Admin[len("http://"):],
		"lb":    lb[len("http://"):],
		"room":  fmt.Sprintf("127.0.0.1:%d", port),
	}
	t.Run("headers", func(t *testing.T) {
		for name, addr := range servers {
			for _, c := range []struct {
				what   string
				header string
				status int
			}{
				{"one 24 KiB header", "X-Big: " + strings.Repeat("b", 24<<10) + "\r\n", 431},
				{"2000 small headers", strings.Repeat("X-Many: 0123456789\r\n", 2000), 431},
				{"one 12 KiB header", "X-Fine: " + strings.Repeat("f", 12<<10) + "\r\n", 200},
			} {
				status, body, err := rawRequest(addr, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"+c.header+"Connection: close\r\n\r\n")
				if name == "room" && c.status == 200 {
					status, body, err = rawRequest(addr, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"+c.header+"Connection: close\r\n\r\n")
				}
				if err != nil || status != c.status {
					t.Errorf("%s, %s: %d %.80q %v, want %d", name, c.what, status, body, err, c.status)
				}
			}
		}
	})

	// A request line that never ends: ReadHeaderTimeout (5 s) must close
	// the connection. A byte every 300 ms does not keep it open.
	t.Run("slow headers", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		took := map[string]time.Duration{}
		for name, addr := range servers {
			for _, trickle := range []bool{false, true} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						t.Errorf("%s: %v", name, err)
						return
					}
					defer c.Close()
					start := time.Now()
					io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
					stop := make(chan struct{})
					defer close(stop)
					if trickle {
						go func() {
							for range 60 { // at most 18 s
								select {
								case <-stop:
									return
								case <-time.After(300 * time.Millisecond):
								}
								if _, err := c.Write([]byte("z")); err != nil {
									return
								}
							}
						}()
					}
					if err := closedBy(c); err != nil {
						t.Errorf("%s (trickle %v): %v", name, trickle, err)
					}
					mu.Lock()
					took[fmt.Sprintf("%s trickle=%v", name, trickle)] = time.Since(start).Round(100 * time.Millisecond)
					mu.Unlock()
				}()
			}
		}
		wg.Wait()
		t.Logf("slow-header connections closed after %v", took)
	})

	// Everything still serves.
	chatRoundTrip(t, join(t, port, "target", "pat", chatfleet.RoleProducer), "still serving", view)
	if status, body := testutil.Do(t, "GET", lb+"/api/v1/hosts", lbKey, ""); status != 200 {
		t.Errorf("load balancer after bad input: %d %s", status, body)
	}
	h.noPanic()
}

// heartbeat returns a valid heartbeat body for host bad-host in region.
func heartbeat(region string) string {
	return `{"id":"bad-host","apiUrl":"http://127.0.0.1:1","roomHost":"127.0.0.1","portMin":1,"portMax":2,` +
		`"region":"` + region + `","version":"1.0.0","capacity":{"maxRooms":1,"maxConns":1},"state":"accepting"}`
}
