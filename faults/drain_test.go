package faults

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/lbclient"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestDrainEndToEnd takes a host out of a real load balancer's pick set and
// stops it under load. Heartbeats are 30 s apart, so the load balancer can
// only learn of the drain from the nudge the admin drain sends: it must stop
// picking the host at once. Its rooms keep serving until SIGTERM; then every
// client is warned (system message, kind drain) and closed with 1012 and a
// reason, spread over DRAIN_WINDOW; a room frozen with SIGSTOP is killed at
// STOP_DEADLINE; the process exits 0, and the load balancer forgets the host
// (deregistration).
func TestDrainEndToEnd(t *testing.T) {
	t.Parallel()
	const window, deadline = 2 * time.Second, 6 * time.Second
	lb, _ := startLB(t, "HOST_DOWN_AFTER=90s")
	common := []string{"LOADBALANCERS=" + lb, "HEARTBEAT_EVERY=30s", "DRAIN_WINDOW=" + window.String(), "STOP_DEADLINE=" + deadline.String()}
	a := startHost(t, append(common, "HOST_ID=drain-a")...)
	startHost(t, append(common, "HOST_ID=drain-b")...)
	for _, id := range []string{"drain-a", "drain-b"} {
		testutil.Eventually(t, 10*time.Second, func() error {
			if s, err := lbHost(lb, id); err != nil || s != "accepting" {
				return fmt.Errorf("%s: %s %v", id, s, err)
			}
			return nil
		})
	}
	picker, err := lbclient.NewPicker([]string{lb}, lbKey, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	picks := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			hst, err := picker.Pick(context.Background(), chatfleet.PickRequest{})
			if err != nil {
				t.Fatalf("pick: %v", err)
			}
			got[hst.ID]++
		}
		return got
	}

	// Load: two rooms of a producer and five viewers each, and a third
	// room that will be frozen.
	type client struct {
		name string
		ws   *testutil.WS
	}
	var clients []client
	var prods []*testutil.WS
	var ports []int
	for _, room := range []string{"north", "south"} {
		port := a.create(room)
		ports = append(ports, port)
		p := join(t, port, room, room+"-prod", chatfleet.RoleProducer)
		prods = append(prods, p)
		clients = append(clients, client{room + "-prod", p})
		for i := range 5 {
			name := fmt.Sprintf("%s-v%d", room, i)
			clients = append(clients, client{name, join(t, port, room, name, chatfleet.RoleViewer)})
		}
	}
	frozenPort := a.create("frozen")
	frozenWS := join(t, frozenPort, "frozen", "ice", chatfleet.RoleViewer)
	frozenPID := a.room("frozen").PID

	// Admin drain: the load balancer hears it with the nudge, long before
	// the next heartbeat (30 s).
	if status, body := testutil.Do(t, "POST", a.Admin+"/api/v1/drain", adminKey, ""); status != 200 {
		t.Fatalf("drain: %d %s", status, body)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if s, err := lbHost(lb, "drain-a"); err != nil || s != "draining" {
			return fmt.Errorf("drain-a: %s %v", s, err)
		}
		return nil
	})
	if got := picks(20); got["drain-a"] != 0 || got["drain-b"] != 20 {
		t.Fatalf("picks after the drain: %v", got)
	}
	if status, body := testutil.Do(t, "POST", a.API+"/api/v1/room/late", userKey, ""); status != 503 {
		t.Fatalf("create on a draining host: %d %s", status, body)
	}
	// Rooms keep serving while the host drains.
	chatRoundTrip(t, prods[0], "still open", clients[1].ws)

	// Freeze one room: it cannot drain, so the deadline must end it.
	if err := syscall.Kill(frozenPID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	sigterm := time.Now()
	a.Proc.Signal(syscall.SIGTERM)

	type result struct {
		name   string
		warned bool
		code   int
		reason string
		at     time.Duration
		err    error
	}
	results := make([]result, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := result{name: c.name}
			for {
				m, err := c.ws.TryNext(protocol.TypeSystem, 20*time.Second)
				if err != nil {
					r.err = err
					break
				}
				if m.Kind == protocol.KindDrain {
					r.warned = true
					break
				}
			}
			if r.err == nil {
				_, r.err = c.ws.TryNext("never", 20*time.Second)
			}
			r.at = time.Since(sigterm)
			var ce *websocket.CloseError
			if errors.As(r.err, &ce) {
				r.code, r.reason = ce.Code, ce.Text
			}
			results[i] = r
		}()
	}
	wg.Wait()
	var at []time.Duration
	for _, r := range results {
		if !r.warned || r.code != protocol.CloseRestart || r.reason == "" {
			t.Errorf("%s: warned %v, closed %d %q (%v); want a drain message, then 1012 with a reason", r.name, r.warned, r.code, r.reason, r.err)
		}
		at = append(at, r.at)
	}
	sort.Slice(at, func(i, j int) bool { return at[i] < at[j] })
	t.Logf("%d clients closed 1012 between %v and %v after SIGTERM (DRAIN_WINDOW %v)", len(at),
		at[0].Round(10*time.Millisecond), at[len(at)-1].Round(10*time.Millisecond), window)

	// The frozen room is killed at the deadline; the master exits 0.
	if err := a.Proc.Wait(t, deadline+15*time.Second); err != nil {
		t.Fatalf("chatserver exit: %v", err)
	}
	t.Logf("chatserver exited %v after SIGTERM (STOP_DEADLINE %v)", time.Since(sigterm).Round(10*time.Millisecond), deadline)
	if !strings.Contains(a.Proc.Output(), "rooms did not stop by the deadline") {
		t.Error("the frozen room was not reported killed at the deadline")
	}
	if err := syscall.Kill(frozenPID, 0); err == nil {
		t.Errorf("frozen room %d still exists", frozenPID)
	}
	if _, err := frozenWS.TryNext("never", 10*time.Second); err == nil {
		t.Error("the frozen room's client is still connected")
	}
	for _, p := range append(ports, frozenPort) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			c.Close()
			t.Errorf("room port %d still listening", p)
		}
	}
	// Deregistered: the load balancer no longer knows the host.
	testutil.Eventually(t, 5*time.Second, func() error {
		if s, err := lbHost(lb, "drain-a"); err != nil || s != "unknown" {
			return fmt.Errorf("drain-a: %s %v", s, err)
		}
		return nil
	})
	if got := picks(5); got["drain-b"] != 5 {
		t.Fatalf("picks after the host left: %v", got)
	}
}
