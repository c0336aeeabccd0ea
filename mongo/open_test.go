package mongo_test

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/mongo"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("ClosedPortFailsFast", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		s, err := mongo.Open(ctx, mongo.Config{URI: "mongodb://127.0.0.1:" + strings.Split(closedPort(t), ":")[1] + "/"})
		took := time.Since(start)
		if err == nil {
			s.Close(ctx)
			t.Fatal("Open on a closed port succeeded")
		}
		wantCode(t, err, chatfleet.EUNAVAILABLE)
		if msg := err.Error(); !strings.Contains(msg, "MONGODB_URI") || strings.Contains(msg, "\n") {
			t.Fatalf("error %q: want one line naming MONGODB_URI", msg)
		}
		if took > 3*time.Second {
			t.Fatalf("Open took %s to fail, want under 3s", took)
		}
		t.Logf("after %s: %v", took.Round(time.Millisecond), err)
	})

	t.Run("WrongCredentials", func(t *testing.T) {
		t.Parallel()
		u, err := url.Parse(storetest.URI(t))
		must(t, err)
		u.User = url.UserPassword("nobody", "s3cret")
		_, err = mongo.Open(ctx, mongo.Config{URI: u.String(), Database: storetest.Config(t).Database})
		wantCode(t, err, chatfleet.EUNAVAILABLE)
		msg := err.Error()
		if !strings.Contains(msg, "MONGODB_URI: authentication failed") || strings.Contains(msg, "\n") || strings.Contains(msg, "s3cret") {
			t.Fatalf("error %q: want one line naming MONGODB_URI and the failed authentication, without the password", msg)
		}
		t.Log(msg)
	})

	t.Run("BadURI", func(t *testing.T) {
		t.Parallel()
		for _, uri := range []string{
			"",
			"postgres://user:s3cret@db.example.com/",
			"mongodb://user:s3cret@db.example.com:notaport/",
			"mongodb://user:s3cret@db.example.com/?connectTimeoutMS=soon",
		} {
			_, err := mongo.Open(ctx, mongo.Config{URI: uri})
			wantCode(t, err, chatfleet.EINVALID)
			msg := err.Error()
			if !strings.Contains(msg, "MONGODB_URI") || strings.Contains(msg, "\n") || strings.Contains(msg, "s3cret") {
				t.Fatalf("URI %q: error %q: want one line naming MONGODB_URI without the password", uri, msg)
			}
			if m := chatfleet.ErrorMessage(err); strings.Contains(m, "s3cret") {
				t.Fatalf("URI %q: message %q shows the password", uri, m)
			}
		}
	})
}

func TestOpenIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := storetest.Config(t)
	a := storetest.Open(t, cfg)
	must(t, a.CreateRoom(ctx, room("lobby", "h1", 1)))
	b := storetest.Open(t, cfg) // the indexes exist: creating them again is a no-op
	wantCode(t, b.CreateRoom(ctx, room("lobby", "h2", 2)), chatfleet.ECONFLICT)
	must(t, b.Ping(ctx))
}

// TestOutage stops the server under a store and starts it again: calls fail
// with EUNAVAILABLE within the store's timeout while it is down, and succeed
// on the same data once it is back.
func TestOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	srv, err := devstore.Start(ctx, devstore.Config{Dir: dir, Log: quiet})
	must(t, err)
	t.Cleanup(func() { srv.Stop() })

	// Generous for a loaded machine; the point is that no call waits out the
	// driver's 30 s server selection.
	const timeout = 2 * time.Second
	s, err := mongo.Open(ctx, mongo.Config{URI: srv.URI(), Database: "outage", Timeout: timeout})
	must(t, err)
	t.Cleanup(func() { s.Close(ctx) })

	lobby := room("lobby", "h1", 34001)
	must(t, s.CreateRoom(ctx, lobby))
	must(t, s.AppendEvents(ctx, events("lobby", 1, 3, time.Now())))

	srv.Stop()
	calls := map[string]func() error{
		"Room":         func() error { _, err := s.Room(ctx, "lobby"); return err },
		"ListRooms":    func() error { _, _, err := s.ListRooms(ctx, chatfleet.RoomFilter{}); return err },
		"CreateRoom":   func() error { return s.CreateRoom(ctx, room("other", "h1", 34002)) },
		"UpdateRoom":   func() error { return s.UpdateRoom(ctx, "lobby", chatfleet.RoomUpdate{Viewers: ptr(3)}) },
		"SyncHost":     func() error { return s.SyncHost(ctx, "h1", []*chatfleet.Room{lobby}, always) },
		"AppendEvents": func() error { return s.AppendEvents(ctx, events("lobby", 4, 4, time.Now())) },
		"Bans":         func() error { _, err := s.Bans(ctx, chatfleet.BanFilter{}); return err },
		"Ping":         func() error { return s.Ping(ctx) },
	}
	var wg sync.WaitGroup
	for name, call := range calls {
		wg.Go(func() {
			start := time.Now()
			err := call()
			took := time.Since(start)
			if code := chatfleet.ErrorCode(err); code != chatfleet.EUNAVAILABLE {
				t.Errorf("%s: error code %q (%v), want %q", name, code, err, chatfleet.EUNAVAILABLE)
			}
			if msg := chatfleet.ErrorMessage(err); msg != "store unavailable" {
				t.Errorf("%s: message %q, want %q", name, msg, "store unavailable")
			}
			if took > timeout+8*time.Second {
				t.Errorf("%s: failed after %s, want within the %s timeout", name, took, timeout)
			}
		})
	}
	wg.Wait()

	// A caller's shorter deadline wins.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	wantCode(t, s.Ping(short), chatfleet.EUNAVAILABLE)
	if took := time.Since(start); took > 100*time.Millisecond+8*time.Second {
		t.Errorf("Ping with a 100ms deadline failed after %s", took)
	}

	srv, err = devstore.Start(ctx, devstore.Config{Dir: dir, Addr: srv.Addr(), Log: quiet})
	must(t, err)
	eventually(t, 10*time.Second, func() error { return s.Ping(ctx) })
	got, err := s.Room(ctx, "lobby")
	must(t, err)
	if !reflect.DeepEqual(*got, *lobby) {
		t.Fatalf("after restart: %+v, want %+v", got, lobby)
	}
	evs, err := s.LastEvents(ctx, "lobby", 10)
	must(t, err)
	if len(evs) != 3 {
		t.Fatalf("after restart: %d events, want 3", len(evs))
	}
	must(t, s.CreateRoom(ctx, room("other", "h1", 34002)))
}
