package master

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// startMaster runs a Master in the test process on loopback listeners; its
// rooms are real child processes of self. A StateDir and room ports left
// zero in cfg are made for it.
func startMaster(t *testing.T, cfg Config) *Master {
	t.Helper()
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.APIListener, cfg.AdminListener = api, admin
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	cfg.Key, cfg.AdminKey = "k", "a"
	if cfg.RoomPortMin == 0 {
		base := testutil.FreePortRange(t, 5)
		cfg.RoomPortMin, cfg.RoomPortMax = base, base+4
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return m
}

// TestCrashLoopMarksRoomFailed runs rooms with a binary that dies at every
// start: the room is tried CrashLimit times with growing pauses, then marked
// failed, its port freed, and the load balancers told.
func TestCrashLoopMarksRoomFailed(t *testing.T) {
	dir := t.TempDir()
	starts := filepath.Join(dir, "starts")
	script := filepath.Join(dir, "crash.sh")
	os.WriteFile(script, []byte("#!/bin/sh\ndate +%s%N >> "+starts+"\necho 'panic: boom' >&2\nexit 1\n"), 0o755)
	var notified atomic.Int32
	m := startMaster(t, Config{
		Self: script, CrashLimit: 4, CrashWindow: time.Minute, RestartBackoff: 50 * time.Millisecond,
		Notify: func() { notified.Add(1) },
	})
	_, err := m.CreateRoom(context.Background(), "doomed", RoomOptions{})
	if chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE {
		t.Fatalf("create = %v, want EUNAVAILABLE", err)
	}
	b, _ := os.ReadFile(starts)
	lines := strings.Fields(string(b))
	if len(lines) != 4 {
		t.Fatalf("room started %d times, want exactly the crash limit 4", len(lines))
	}
	// Backoff doubles: the pauses between starts are at least 50, 100, 200 ms.
	var prev int64
	for i, l := range lines {
		ns, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			if min := int64(50<<(i-1)) * int64(time.Millisecond); ns-prev < min {
				t.Errorf("start %d came %v after the previous, want at least %v", i+1, time.Duration(ns-prev), time.Duration(min))
			}
		}
		prev = ns
	}
	if len(m.Rooms()) != 0 {
		t.Fatalf("failed room still listed: %+v", m.Rooms())
	}
	if notified.Load() == 0 {
		t.Error("load balancers were not told")
	}
	// The port is free again.
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(m.cfg.RoomPortMin)))
	if err != nil {
		t.Fatalf("port not freed: %v", err)
	}
	ln.Close()
}
