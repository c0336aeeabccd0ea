package devstore_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore"
	"github.com/chatfleet/chatfleet/mongo"
)

var quiet = slog.New(slog.DiscardHandler)

func start(t *testing.T, cfg devstore.Config) *devstore.Server {
	t.Helper()
	srv, err := devstore.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

func TestStartStopRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv := start(t, devstore.Config{Dir: dir, Log: quiet})
	if want := "mongodb://" + srv.Addr() + "/"; srv.URI() != want || !strings.HasPrefix(srv.Addr(), "127.0.0.1:") {
		t.Fatalf("URI %q, Addr %q: want %q on 127.0.0.1", srv.URI(), srv.Addr(), want)
	}

	s, err := mongo.Open(ctx, mongo.Config{URI: srv.URI(), Database: "devstore", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.CreateRoom(ctx, &chatfleet.Room{Name: "lobby", Port: 34001}); err != nil {
		t.Fatal(err)
	}

	// Stop cuts connections at once and frees the address.
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv.Stop()
	srv.Stop()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read from a connection after Stop: %v, want it closed", err)
	}
	if c, err := net.Dial("tcp", srv.Addr()); err == nil {
		c.Close()
		t.Fatal("the address still accepts connections after Stop")
	}

	// The same Dir and Addr again: the same URI, the same data.
	again := start(t, devstore.Config{Dir: dir, Addr: srv.Addr(), Log: quiet})
	if again.URI() != srv.URI() {
		t.Fatalf("restarted on %s, want %s", again.URI(), srv.URI())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := s.Room(ctx, "lobby")
		if err == nil {
			if r.Port != 34001 {
				t.Fatalf("after restart: %+v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not back within 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStartRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	busy := start(t, devstore.Config{Dir: t.TempDir(), Log: quiet})
	for _, tc := range []struct {
		name string
		cfg  devstore.Config
		want string
	}{
		{"NotLoopback", devstore.Config{Dir: t.TempDir(), Addr: "0.0.0.0:0"}, "not a loopback address"},
		{"BadAddr", devstore.Config{Dir: t.TempDir(), Addr: "nowhere"}, "nowhere"},
		{"BusyAddr", devstore.Config{Dir: t.TempDir(), Addr: busy.Addr()}, "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Log = quiet
			srv, err := devstore.Start(ctx, tc.cfg)
			if err == nil {
				srv.Stop()
				t.Fatalf("Start succeeded, want an error saying %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}
