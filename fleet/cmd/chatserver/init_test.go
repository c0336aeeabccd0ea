package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/testutil"
)

// procStat returns the parent PID and the state letter of process pid
// from /proc.
func procStat(pid int) (ppid int, state string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", err
	}
	// pid (comm) state ppid ...; comm may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0], err
}

// masterOf returns the PID of the chatserver master under init: init's
// child that holds the admin port.
func masterOf(h *testutil.Chatserver) (int, error) {
	initPID := h.Proc.Cmd.Process.Pid
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if ppid, _, err := procStat(pid); err == nil && ppid == initPID && testutil.ListensOn(pid, h.AdminPort) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no child of init %d listens on %d", initPID, h.AdminPort)
}

// TestInitRestartsAKilledMaster runs `chatserver init` as a process: the
// master it starts serves; SIGKILL of the master leaves the rooms serving,
// re-parented to init, and init starts a new master that re-adopts them; a
// room killed afterwards is reaped by init (no zombie) and restarted by the
// new master; SIGTERM to init drains the rooms and init exits 0.
// infra/docker_test.go does the same with init as PID 1 of a container.
func TestInitRestartsAKilledMaster(t *testing.T) {
	h := &host{t: t, Chatserver: testutil.NewChatserver(t, 10,
		"KEY="+userKey, "ADMIN_KEY="+adminKey, "LOADBALANCERS=", "LOG_LEVEL=info",
		"TOKEN_SECRET=test-secret-0123456789", "ORPHAN_GRACE=30s", "DRAIN_WINDOW=200ms")}
	h.Proc = testutil.Start(t, testutil.Binary(t, "./fleet/cmd/chatserver"), h.Env, "init")
	testutil.Eventually(t, 30*time.Second, func() error {
		status, _, err := testutil.TryDo("GET", h.API+"/healthz", "", "")
		if err != nil || status != 200 {
			return fmt.Errorf("healthz: %d %v", status, err)
		}
		return nil
	})
	initPID := h.Proc.Cmd.Process.Pid
	ports := map[string]int{"one": h.create("one"), "two": h.create("two")}
	pids := map[string]int{}
	for _, r := range h.rooms() {
		pids[r.Name] = r.PID
	}
	master, err := masterOf(h.Chatserver)
	if err != nil {
		t.Fatal(err)
	}
	if master == initPID {
		t.Fatal("init is the master")
	}

	killed := time.Now()
	if err := syscall.Kill(master, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for name, p := range ports {
		if err := roomAnswers(p, name); err != nil {
			t.Fatalf("room %s stopped with its master: %v", name, err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		for name, pid := range pids {
			if ppid, _, err := procStat(pid); err != nil || ppid != initPID {
				return fmt.Errorf("room %s (pid %d): parent %d (%v), want init %d", name, pid, ppid, err, initPID)
			}
		}
		m, err := masterOf(h.Chatserver)
		if err != nil || m == master {
			return fmt.Errorf("no new master yet (%d, %v)", m, err)
		}
		return h.sameRooms(pids, ports)
	})
	t.Logf("master SIGKILL to rooms re-adopted by the new master: %v", time.Since(killed).Round(time.Millisecond))

	// An adopted room that dies is init's child: init reaps it, the new
	// master starts it again on its port.
	if err := syscall.Kill(pids["one"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, state, err := procStat(pids["one"]); err == nil {
			return fmt.Errorf("killed room %d still in the process table (state %s)", pids["one"], state)
		}
		return roomAnswers(ports["one"], "one")
	})

	h.Proc.Signal(syscall.SIGTERM)
	if err := h.Proc.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("init after SIGTERM: %v, want exit 0\n%s", err, h.Proc.Output())
	}
	for name, p := range ports {
		if listening(p) {
			t.Errorf("room %s: port %d still listening after the drain", name, p)
		}
	}
	if out := h.Proc.Output(); !strings.Contains(out, "the master crashed") {
		t.Errorf("init did not log the crash:\n%s", out)
	}
}
