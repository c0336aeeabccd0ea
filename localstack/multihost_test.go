package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

const testAdminAPIKey = "DEV_ADMIN_API_KEY"

// decodeData calls the control API and decodes the data of its answer,
// failing unless the status is want.
func decodeData(t *testing.T, method, url, key, body string, want int, out any) {
	t.Helper()
	status, ans := call(t, method, url, key, body)
	if status != want {
		t.Fatalf("%s %s: %d %s, want %d", method, url, status, ans, want)
	}
	env := struct{ Data any }{out}
	if err := json.Unmarshal([]byte(ans), &env); err != nil {
		t.Fatalf("%s %s: %v in %s", method, url, err, ans)
	}
}

// viewer is one connection to a room of the stack.
type viewer struct {
	room, host, user string
	ws               *testutil.WS
}

// joinRoom connects user to room as a viewer with a token of the control
// API and waits for the room's welcome.
func joinRoom(t *testing.T, s *stack, room, host, user string) *viewer {
	t.Helper()
	var tok struct{ Token, WSURL string }
	decodeData(t, "POST", s.URL("/api/v1/rooms/"+room+"/tokens"), testAPIKey,
		fmt.Sprintf(`{"userId":%q,"role":"viewer"}`, user), http.StatusCreated, &tok)
	ws := testutil.DialRoom(t, strings.TrimSuffix(tok.WSURL, "/ws"), tok.Token, -1)
	ws.Next(protocol.TypeWelcome, 5*time.Second)
	return &viewer{room, host, user, ws}
}

// watch starts f for every viewer at once, each on its own connection, so
// that each notes when it got what f waits for; wait returns the latest of
// those moments, or the first error.
func watch(vs []*viewer, f func(v *viewer) error) (wait func() (time.Time, error)) {
	type result struct {
		at  time.Time
		err error
	}
	done := make(chan result, 1)
	go func() {
		at, err := eachViewer(vs, f)
		done <- result{at, err}
	}()
	return func() (time.Time, error) {
		r := <-done
		return r.at, r.err
	}
}

// eachViewer runs f for every viewer at once, each on its own connection,
// and returns when each got what f waits for: the latest of those moments,
// or the first error.
func eachViewer(vs []*viewer, f func(v *viewer) error) (time.Time, error) {
	type result struct {
		at  time.Time
		err error
	}
	done := make(chan result, len(vs))
	for _, v := range vs {
		go func() {
			err := f(v)
			if err != nil {
				err = fmt.Errorf("%s in %s on %s: %w", v.user, v.room, v.host, err)
			}
			done <- result{time.Now(), err}
		}()
	}
	var last time.Time
	var first error
	for range vs {
		r := <-done
		if r.err != nil && first == nil {
			first = r.err
		}
		if r.at.After(last) {
			last = r.at
		}
	}
	return last, first
}

// globalMessage waits on v for the operator's message text.
func globalMessage(text string) func(v *viewer) error {
	return func(v *viewer) error {
		for {
			m, err := v.ws.TryNext(protocol.TypeSystem, 10*time.Second)
			if err != nil {
				return err
			}
			if m.Kind == protocol.KindGlobal && m.Text == text {
				return nil
			}
		}
	}
}

// closedBanned waits on v for the room to close the connection with
// CloseBanned.
func closedBanned(v *viewer) error {
	_, err := v.ws.TryNext("no such type: read until the close", 10*time.Second)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		return fmt.Errorf("want the connection closed with %d, got %v", protocol.CloseBanned, err)
	}
	if ce.Code != protocol.CloseBanned {
		return fmt.Errorf("closed with %d %q, want %d", ce.Code, ce.Text, protocol.CloseBanned)
	}
	return nil
}

// pushAnswer is the admin API's answer to a change pushed to the hosts.
type pushAnswer struct {
	Hosts, Rooms int
	Failed       []struct{ HostID, Error string }
	Down         []string
}

func (a pushAnswer) check(t *testing.T, what string, hosts, rooms int) {
	t.Helper()
	if a.Hosts != hosts || a.Rooms < rooms || len(a.Failed) != 0 || len(a.Down) != 0 {
		t.Errorf("%s answered %+v, want %d hosts, at least %d rooms, none failed or down", what, a, hosts, rooms)
	}
}

// TestMultiHostAdmin: the admin API's global message and fleet ban reach
// rooms on both hosts of the local stack. Rooms are created through the
// control API until each host holds one; every room gets a viewer who
// stays and one who is banned (the same user in every room).
func TestMultiHostAdmin(t *testing.T) {
	s := startStack(t)
	hostOf := map[string]string{} // room -> host
	hosts := map[string]bool{}
	var rooms []string
	for i := 0; len(hosts) < 2 && i < 8; i++ {
		var c struct{ Name, HostID string }
		decodeData(t, "POST", s.URL(fmt.Sprintf("/api/v1/rooms/multi-%d", i)), testAPIKey, "", http.StatusCreated, &c)
		rooms = append(rooms, c.Name)
		hostOf[c.Name] = c.HostID
		hosts[c.HostID] = true
	}
	if len(hosts) != 2 {
		t.Fatalf("%d rooms created, all on %v; want rooms on both hosts", len(rooms), hostOf)
	}
	t.Logf("rooms %v", hostOf)

	var stay, banned []*viewer
	for i, r := range rooms {
		stay = append(stay, joinRoom(t, s, r, hostOf[r], fmt.Sprintf("stays-%d", i)))
		banned = append(banned, joinRoom(t, s, r, hostOf[r], "banned-everywhere"))
	}
	all := append(slices.Clone(stay), banned...)

	t.Run("global message", func(t *testing.T) {
		const text = "maintenance at noon"
		wait := watch(all, globalMessage(text))
		start := time.Now()
		var ans pushAnswer
		decodeData(t, "POST", s.URL("/admin/v1/messages"), testAdminAPIKey, `{"text":"`+text+`"}`, http.StatusOK, &ans)
		answered := time.Since(start)
		ans.check(t, "the global message", 2, len(rooms))
		last, err := wait()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("global message: answered in %v; the last of %d connections in %d rooms on 2 hosts had it %v after the call",
			answered.Round(time.Microsecond), len(all), len(rooms), last.Sub(start).Round(time.Microsecond))
	})

	t.Run("fleet ban", func(t *testing.T) {
		wait := watch(banned, closedBanned)
		start := time.Now()
		var ans pushAnswer
		decodeData(t, "POST", s.URL("/admin/v1/bans"), testAdminAPIKey,
			`{"userId":"banned-everywhere","reason":"multi-host test"}`, http.StatusCreated, &ans)
		answered := time.Since(start)
		ans.check(t, "the fleet ban", 2, len(rooms))
		last, err := wait()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("fleet ban: answered in %v; the last of %d rooms on 2 hosts closed the user %v after the call",
			answered.Round(time.Microsecond), len(banned), last.Sub(start).Round(time.Microsecond))

		// The others stay: a second message reaches every one of them.
		var again pushAnswer
		decodeData(t, "POST", s.URL("/admin/v1/messages"), testAdminAPIKey, `{"text":"after the ban"}`, http.StatusOK, &again)
		if _, err := eachViewer(stay, globalMessage("after the ban")); err != nil {
			t.Fatalf("a viewer who was not banned: %v", err)
		}
		// And the banned user cannot come back to any of the rooms.
		for _, r := range rooms {
			var tok struct{ Token, WSURL string }
			decodeData(t, "POST", s.URL("/api/v1/rooms/"+r+"/tokens"), testAPIKey,
				`{"userId":"banned-everywhere","role":"viewer"}`, http.StatusCreated, &tok)
			ws, resp, err := testutil.TryDialRoom(strings.TrimSuffix(tok.WSURL, "/ws"), tok.Token, -1)
			if err == nil {
				ws.Conn.Close()
				t.Errorf("the banned user joined %s on %s again", r, hostOf[r])
			} else if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Errorf("the banned user's reconnect to %s: %v, want 403", r, err)
			}
		}
	})
}
