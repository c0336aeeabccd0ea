package main

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/lbclient"
)

const lbKey = "LB_TESTING_KEY"

// TestRegistrationWithLoadBalancers runs two real load balancers and three
// real chatservers: every host registers with both, drain and death take a
// host out of the pick set, and one load balancer's death loses nothing.
func TestRegistrationWithLoadBalancers(t *testing.T) {
	lbBin := testutil.Binary(t, "./fleet/cmd/loadbalancer")
	var urls []string
	var lbs []*testutil.Proc
	for range 2 {
		port := testutil.FreePort(t)
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", port))
		lbs = append(lbs, testutil.Start(t, lbBin, []string{"PORT=" + strconv.Itoa(port), "LOADBALANCER_KEY=" + lbKey, "HOST_DOWN_AFTER=1s"}))
	}
	for _, u := range urls {
		testutil.Eventually(t, 10*time.Second, func() error {
			if s, _, err := testutil.TryDo("GET", u+"/healthz", "", ""); err != nil || s != 200 {
				return fmt.Errorf("lb %s: %d %v", u, s, err)
			}
			return nil
		})
	}
	lbEnv := "LOADBALANCERS=" + urls[0] + "," + urls[1]
	var hosts []*host
	for i := range 3 {
		hosts = append(hosts, startHost(t, lbEnv, "HEARTBEAT_EVERY=200ms", "STATS_EVERY=200ms", fmt.Sprintf("HOST_ID=h%d", i)))
	}
	picker, err := lbclient.NewPicker(urls, lbKey, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	states := func(pk *lbclient.Picker) (map[string]chatfleet.HostState, error) {
		hs, err := pk.Hosts(ctx)
		if err != nil {
			return nil, err
		}
		m := map[string]chatfleet.HostState{}
		for _, h := range hs {
			m[h.ID] = h.State
		}
		return m, nil
	}
	for _, u := range urls {
		one, _ := lbclient.NewPicker([]string{u}, lbKey, "", nil)
		testutil.Eventually(t, 5*time.Second, func() error {
			m, err := states(one)
			if err != nil {
				return err
			}
			for i := range 3 {
				if m[fmt.Sprintf("h%d", i)] != chatfleet.HostAccepting {
					return fmt.Errorf("lb %s sees %v", u, m)
				}
			}
			return nil
		})
	}
	picked := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			h, err := picker.Pick(ctx, chatfleet.PickRequest{})
			if err != nil {
				t.Fatalf("pick: %v", err)
			}
			got[h.ID]++
		}
		return got
	}

	// Drain: reported at once (the host nudges its registrar), never picked.
	testutil.Do(t, "POST", hosts[1].Admin+"/api/v1/drain", adminKey, "")
	for _, u := range urls {
		one, _ := lbclient.NewPicker([]string{u}, lbKey, "", nil)
		testutil.Eventually(t, 2*time.Second, func() error {
			m, err := states(one)
			if err != nil || m["h1"] != chatfleet.HostDraining {
				return fmt.Errorf("lb %s: h1 not draining: %v %v", u, m, err)
			}
			return nil
		})
	}
	if got := picked(10); got["h1"] > 0 {
		t.Fatalf("draining host picked: %v", got)
	}
	testutil.Do(t, "POST", hosts[1].Admin+"/api/v1/resume", adminKey, "")

	// Death: a host killed with SIGKILL leaves the pick set within the window.
	hosts[2].Proc.Signal(syscall.SIGKILL)
	for _, u := range urls { // each load balancer finds it down on its own clock
		one, _ := lbclient.NewPicker([]string{u}, lbKey, "", nil)
		testutil.Eventually(t, 5*time.Second, func() error {
			m, err := states(one)
			if err != nil || m["h2"] != chatfleet.HostDown || m["h1"] != chatfleet.HostAccepting {
				return fmt.Errorf("lb %s states %v %v", u, m, err)
			}
			return nil
		})
	}
	if got := picked(10); got["h2"] > 0 || got["h0"] == 0 || got["h1"] == 0 {
		t.Fatalf("picks after h2 died: %v", got)
	}

	// One load balancer dies: the other answers with every live host.
	lbs[0].Signal(syscall.SIGKILL)
	if got := picked(10); got["h2"] > 0 || got["h0"]+got["h1"] != 10 {
		t.Fatalf("picks with one load balancer: %v", got)
	}
}
