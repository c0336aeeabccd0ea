package hostapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
)

// A call carries the port's key and its JSON body to the contract's path,
// and decodes the data envelope; the master's own test
// (fleet/internal/master, TestHostAPIClient) runs the client against the
// real handlers.
func TestClientRequests(t *testing.T) {
	type seen struct{ method, path, key, ctype, body string }
	var got seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = seen{r.Method, r.URL.EscapedPath(), r.Header.Get("X-API-Key"), r.Header.Get("Content-Type"), string(b)}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasPrefix(r.URL.Path, hostapi.RoomPath) && r.Method == http.MethodPost:
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"data":{"port":34001,"message":"Room created","webhookSecret":"whsec_x"}}`)
		case r.URL.Path == hostapi.RoomsPath:
			io.WriteString(w, `{"data":{"rooms":[{"name":"a","port":34001,"pid":7,"status":"live"}]}}`)
		case r.URL.Path == hostapi.Drain.Path():
			io.WriteString(w, `{"data":{"state":"draining"}}`)
		default:
			io.WriteString(w, `{"data":{"rooms":3}}`)
		}
	}))
	defer srv.Close()
	c := &hostapi.Client{API: srv.URL + "/", Key: "api-key", Admin: srv.URL, AdminKey: "admin-key"}
	ctx := context.Background()

	opts := hostapi.RoomOptions{OwnerID: "o", WebhookURLs: []string{"https://h.example.com/x"}, Title: "T"}
	created, err := c.CreateRoom(ctx, "a b", opts)
	if err != nil || created != (hostapi.Created{Port: 34001, Message: "Room created", WebhookSecret: "whsec_x"}) {
		t.Fatalf("create: %+v, %v", created, err)
	}
	var body hostapi.CreateRequest
	if json.Unmarshal([]byte(got.body), &body) != nil || !reflect.DeepEqual(body.Options, opts) {
		t.Errorf("create sent %s, want the options %+v", got.body, opts)
	}
	if want := (seen{"POST", "/api/v1/room/a%20b", "api-key", "application/json", got.body}); got != want {
		t.Errorf("create: %+v, want %+v", got, want)
	}

	rooms, err := c.AdminRooms(ctx)
	if err != nil || len(rooms) != 1 || rooms[0].PID != 7 || rooms[0].Status != chatfleet.RoomLive {
		t.Errorf("rooms: %+v, %v", rooms, err)
	}
	if got.key != "admin-key" || got.body != "" || got.ctype != "" {
		t.Errorf("admin list: %+v, want the admin key and no body", got)
	}

	if err := c.AdminCloseRoom(ctx, "a", "bye"); err != nil || got.method != "DELETE" || got.path != "/api/v1/rooms/a" || got.body != `{"reason":"bye"}` {
		t.Errorf("close: %+v, %v", got, err)
	}
	if n, err := c.ApplyBans(ctx, hostapi.BanChanges{Remove: []chatfleet.Ban{{ID: "b"}}}); err != nil || n != 3 ||
		got.path != hostapi.BansPath || strings.Contains(got.body, `"add"`) {
		t.Errorf("bans: %d, %v; sent %+v", n, err, got)
	}
	if n, err := c.Global(ctx, "hi"); err != nil || n != 3 || got.body != `{"text":"hi"}` {
		t.Errorf("global: %d, %v; sent %+v", n, err, got)
	}
	if a, err := c.Do(ctx, hostapi.Drain); err != nil || a.State != chatfleet.HostDraining || got.path != "/api/v1/drain" {
		t.Errorf("drain: %+v, %v; sent %+v", a, err, got)
	}
}

// An error answer is a *hostapi.Error with the host's status and envelope,
// or, without an envelope, the code of the status; a create answered
// without a port is an error.
func TestClientErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case hostapi.RoomPath + "taken":
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error":{"code":"conflict","message":"room \"taken\" exists","host":"10.0.0.5","port":34002}}`)
		case hostapi.RoomPath + "portless":
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"data":{"message":"Room created"}}`)
		case hostapi.StatsPath:
			io.WriteString(w, `{"data":`) // cut short
		default:
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>proxy error</html>")
		}
	}))
	defer srv.Close()
	c := &hostapi.Client{API: srv.URL, Key: "k", Admin: srv.URL, AdminKey: "a"}
	ctx := context.Background()

	_, err := c.CreateRoom(ctx, "taken", hostapi.RoomOptions{})
	var he *hostapi.Error
	if !errors.As(err, &he) || he.Status != http.StatusConflict || he.Err.Code != chatfleet.ECONFLICT || he.Err.Port != 34002 {
		t.Errorf("conflict: %v", err)
	}
	// The host's refusal is not the caller's: no code of its own.
	if code := chatfleet.ErrorCode(err); code != chatfleet.EINTERNAL {
		t.Errorf("conflict carries code %q to the caller", code)
	}
	_, err = c.Rooms(ctx)
	if !errors.As(err, &he) || he.Status != http.StatusBadGateway || he.Err.Code != chatfleet.EUNAVAILABLE {
		t.Errorf("502 without an envelope: %v", err)
	}
	if _, err := c.CreateRoom(ctx, "portless", hostapi.RoomOptions{}); err == nil || errors.As(err, &he) {
		t.Errorf("create without a port: %v", err)
	}
	if _, err := c.Stats(ctx); err == nil || errors.Is(err, hostapi.ErrNoAnswer) {
		t.Errorf("a bad answer: %v, want a decode error", err)
	}
	if _, err := (&hostapi.Client{API: srv.URL}).AdminRooms(ctx); err == nil || errors.As(err, &he) {
		t.Errorf("no admin address: %v", err)
	}

	srv.Close()
	if err := c.CloseRoom(ctx, "a", ""); !errors.Is(err, hostapi.ErrNoAnswer) {
		t.Errorf("a closed server: %v, want ErrNoAnswer", err)
	}
}

// A key never reaches an error, even one that names the URL.
func TestClientErrorsHoldNoKey(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":{"code":"forbidden","message":"invalid API key"}}`)
	}))
	c := &hostapi.Client{API: srv.URL, Key: "secret-key-123"}
	_, err := c.Rooms(context.Background())
	srv.Close()
	_, err2 := c.Rooms(context.Background())
	for _, e := range []error{err, err2} {
		if e == nil || strings.Contains(e.Error(), "secret-key-123") {
			t.Errorf("error %v", e)
		}
	}
}
