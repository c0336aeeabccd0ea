package faults

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// TestHeartbeatThroughFaults puts a Toxiproxy between a chatserver and a real
// load balancer (LOADBALANCERS points at the proxy). With 500 ms of latency
// each way the host stays registered; when the link resets every connection
// (reset_peer) or swallows everything (timeout) the load balancer marks the
// host down after HOST_DOWN_AFTER; when the toxic goes the host is back. The
// chatserver serves its rooms, old and new, all along.
func TestHeartbeatThroughFaults(t *testing.T) {
	t.Parallel()
	lb, _ := startLB(t, "HOST_DOWN_AFTER=8s") // generous: a loaded CI machine delays heartbeats
	px := newProxy(t, "heartbeats", strings.TrimPrefix(lb, "http://"))
	h := startHost(t, "LOADBALANCERS=http://"+px.Addr, "HEARTBEAT_EVERY=200ms", "HOST_ID=hb-host")

	state := func(want string) func() error {
		return func() error {
			got, err := lbHost(lb, "hb-host")
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("load balancer sees the host %s, want %s", got, want)
			}
			return nil
		}
	}
	testutil.Eventually(t, 10*time.Second, state("accepting"))

	port := h.create("steady")
	prod := join(t, port, "steady", "pat", chatfleet.RoleProducer)
	view := join(t, port, "steady", "val", chatfleet.RoleViewer)
	serving := func(phase string) {
		t.Helper()
		chatRoundTrip(t, prod, "during "+phase, view)
		p := h.create("during-" + phase)
		join(t, p, "during-"+phase, "vic", chatfleet.RoleViewer)
		h.alive()
	}

	// Latency: every heartbeat takes about a second (500 ms each way), well
	// under the registrar's 2 s request timeout and HOST_DOWN_AFTER. The
	// host must stay registered: it is never seen down over more than a
	// HOST_DOWN_AFTER, and the heartbeat counter keeps rising.
	px.Add("lag-up", "latency", "upstream", map[string]any{"latency": 500})
	px.Add("lag-down", "latency", "downstream", map[string]any{"latency": 500})
	before := heartbeatsOK(t, lb)
	start := time.Now()
	polls := 0
	for time.Since(start) < 9*time.Second { // bounded: 9 s of polling, more than HOST_DOWN_AFTER
		if err := state("accepting")(); err != nil {
			t.Fatalf("with 500 ms latency after %d polls: %v", polls, err)
		}
		polls++
		time.Sleep(100 * time.Millisecond)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := heartbeatsOK(t, lb); n < before+2 {
			return fmt.Errorf("heartbeats ok %v, want at least %v", n, before+2)
		}
		return nil
	})
	t.Logf("latency: host stayed accepting over %d polls; heartbeats ok %v -> %v", polls, before, heartbeatsOK(t, lb))
	serving("latency")
	px.Remove("lag-up")
	px.Remove("lag-down")

	// outage adds a toxic that stops every heartbeat: the host goes down
	// while its rooms serve, and comes back once the toxic is removed.
	outage := func(name, typ string) {
		t.Helper()
		px.Add(name, typ, "upstream", map[string]any{"timeout": 0})
		mark := time.Now()
		testutil.Eventually(t, 25*time.Second, state("down"))
		t.Logf("%s: host down after %v", typ, time.Since(mark).Round(100*time.Millisecond))
		serving(name)
		px.Remove(name)
		mark = time.Now()
		testutil.Eventually(t, 25*time.Second, state("accepting"))
		t.Logf("%s removed: host accepting again after %v", typ, time.Since(mark).Round(100*time.Millisecond))
	}
	// reset_peer: every connection is reset at its first request.
	outage("reset", "reset_peer")
	// timeout 0: the link swallows every byte and never closes; heartbeats
	// hit the registrar's request timeout.
	outage("blackhole", "timeout")

	serving("after")
	h.noPanic()
}

// heartbeatsOK reads chatfleet_lb_heartbeats_total{result="ok"} from the
// load balancer's metrics.
func heartbeatsOK(t *testing.T, lb string) float64 {
	t.Helper()
	_, body := testutil.Do(t, "GET", lb+"/metrics", "", "")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, `chatfleet_lb_heartbeats_total{result="ok"}`) {
			var v float64
			fmt.Sscan(strings.Fields(line)[1], &v)
			return v
		}
	}
	return 0
}
