package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

const (
	userKey  = "TESTING_KEY"
	adminKey = "ADMIN_TESTING_KEY"
)

// host is one chatserver process under test.
type host struct {
	*testutil.Chatserver
	t *testing.T
}

// startHost runs the real chatserver binary with the seed's keys on free ports.
func startHost(t *testing.T, extra ...string) *host {
	t.Helper()
	h := &host{t: t, Chatserver: testutil.NewChatserver(t, 40, append([]string{
		"KEY=" + userKey, "ADMIN_KEY=" + adminKey, "LOADBALANCER_KEY=LB_TESTING_KEY",
		"LOADBALANCERS=", // registration is tested with the load balancer
		"LOG_LEVEL=info", "TOKEN_SECRET=test-secret-0123456789",
		"ORPHAN_GRACE=30s", "DRAIN_WINDOW=500ms", "ROOM_READY_TIMEOUT=12s",
	}, extra...)...)}
	h.Start()
	return h
}

func (h *host) create(name string) int { return h.Create(userKey, name, hostapi.RoomOptions{}) }

type roomInfo struct {
	Name   string
	Port   int
	PID    int
	Status string
}

func (h *host) rooms() []roomInfo {
	h.t.Helper()
	status, body := testutil.Do(h.t, "GET", h.Admin+"/api/v1/rooms", adminKey, "")
	if status != 200 {
		h.t.Fatalf("list rooms: %d %s", status, body)
	}
	var resp struct{ Data struct{ Rooms []roomInfo } }
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		h.t.Fatal(err)
	}
	return resp.Data.Rooms
}

func roomAnswers(port int, name string) error {
	status, body, err := testutil.TryDo("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), "", "")
	if err != nil {
		return err
	}
	if status != 200 || body != name {
		return fmt.Errorf("room on %d answered %d %q, want %q", port, status, body, name)
	}
	return nil
}

func listening(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestSeedContract replays the original system's README transcript byte for byte.
func TestSeedContract(t *testing.T) {
	h := startHost(t)
	steps := []struct {
		method, url, key string
		want             string
	}{
		{"GET", h.API + "/api/v1/", "", `{"data":{"app":"chatserver","version":"` + chatfleet.Version + `"}}`},
		{"GET", h.Admin + "/api/v1/", adminKey, `{"data":{"app":"Admin chatserver","version":"` + chatfleet.Version + `"}}`},
		{"POST", h.API + "/api/v1/room/testroom", userKey, fmt.Sprintf(`{"data":{"port":%d,"message":"Room created"}}`, h.RoomMin)},
		{"GET", fmt.Sprintf("http://127.0.0.1:%d", h.RoomMin), "", "testroom"},
	}
	for _, s := range steps {
		_, body := testutil.Do(t, s.method, s.url, s.key, "")
		if body != s.want {
			t.Errorf("%s %s = %q, want %q", s.method, s.url, body, s.want)
		}
	}
}

func TestConcurrentCreatesGetDistinctPorts(t *testing.T) {
	h := startHost(t)
	const n = 20
	ports := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ports[i] = h.create(fmt.Sprintf("room-%02d", i))
		}()
	}
	wg.Wait()
	seen := map[int]bool{}
	for i, p := range ports {
		if seen[p] {
			t.Fatalf("port %d given twice", p)
		}
		seen[p] = true
		if err := roomAnswers(p, fmt.Sprintf("room-%02d", i)); err != nil {
			t.Error(err)
		}
	}
	if got := len(h.rooms()); got != n {
		t.Fatalf("admin lists %d rooms, want %d", got, n)
	}
}

func TestKilledRoomRestartsOnItsPort(t *testing.T) {
	h := startHost(t)
	port := h.create("phoenix")
	before := h.rooms()[0]
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		rs := h.rooms()
		if len(rs) != 1 || rs[0].PID == before.PID || rs[0].PID == 0 || rs[0].Port != port {
			return fmt.Errorf("rooms = %+v", rs)
		}
		return roomAnswers(port, "phoenix")
	})
	if !strings.Contains(h.Proc.Output(), "room process crashed") {
		t.Error("the crash was not logged")
	}
}

func TestSIGTERMStopsEveryRoom(t *testing.T) {
	h := startHost(t)
	ports := []int{h.create("a"), h.create("b"), h.create("c")}
	h.Proc.Signal(syscall.SIGTERM)
	h.Proc.Wait(t, 20*time.Second)
	if code := h.Proc.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	for _, p := range ports {
		if listening(p) {
			t.Errorf("port %d still listening after shutdown", p)
		}
	}
}

func TestKilledMasterRoomsKeepServingAndAreReadopted(t *testing.T) {
	h := startHost(t)
	ports := map[string]int{"one": h.create("one"), "two": h.create("two")}
	pids := map[string]int{}
	for _, r := range h.rooms() {
		pids[r.Name] = r.PID
	}
	h.Proc.Signal(syscall.SIGKILL)
	h.Proc.Wait(t, 5*time.Second)
	for name, p := range ports {
		if err := roomAnswers(p, name); err != nil {
			t.Fatalf("room %s stopped with its master: %v", name, err)
		}
	}
	h.Start()
	testutil.Eventually(t, 2*time.Second, func() error {
		return h.sameRooms(pids, ports)
	})
	// The adopted rooms obey admin commands again.
	if status, body := testutil.Do(t, "DELETE", h.Admin+"/api/v1/rooms/one", adminKey, ""); status != 200 {
		t.Fatalf("close adopted room: %d %s", status, body)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if listening(ports["one"]) {
			return fmt.Errorf("port %d still listening", ports["one"])
		}
		return nil
	})
}

func TestRestartInPlaceKeepsRooms(t *testing.T) {
	h := startHost(t)
	port := h.create("stay")
	pid := h.rooms()[0].PID
	masterPID := h.Proc.Cmd.Process.Pid
	h.Proc.Signal(syscall.SIGHUP)
	testutil.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(h.Proc.Output(), "restarting in place") {
			return fmt.Errorf("no restart logged")
		}
		return nil
	})
	testutil.Eventually(t, 5*time.Second, func() error {
		status, body, err := testutil.TryDo("GET", h.Admin+"/api/v1/rooms", adminKey, "")
		if err != nil || status != 200 || !strings.Contains(body, fmt.Sprintf(`"pid":%d`, pid)) {
			return fmt.Errorf("rooms after restart: %d %s %v", status, body, err)
		}
		return nil
	})
	if h.Proc.Cmd.Process.Pid != masterPID {
		t.Fatal("master PID changed")
	}
	if err := roomAnswers(port, "stay"); err != nil {
		t.Fatal(err)
	}
}

func TestBadRequests(t *testing.T) {
	h := startHost(t)
	port := h.create("taken")
	h.create("toclose")
	long := strings.Repeat("a", 200)
	tests := []struct {
		name, method, url, key, body string
		status                       int
		code                         string
	}{
		{"no key", "POST", h.API + "/api/v1/room/x", "", "", 401, "unauthorized"},
		{"wrong key", "POST", h.API + "/api/v1/room/x", "nope", "", 403, "forbidden"},
		{"admin key on API port", "POST", h.API + "/api/v1/room/x", adminKey, "", 403, "forbidden"},
		{"user key on admin port", "GET", h.Admin + "/api/v1/rooms", userKey, "", 403, "forbidden"},
		{"no key on admin port", "GET", h.Admin + "/api/v1/", "", "", 401, "unauthorized"},
		{"200-character name", "POST", h.API + "/api/v1/room/" + long, userKey, "", 400, "invalid"},
		{"control character", "POST", h.API + "/api/v1/room/a%01b", userKey, "", 400, "invalid"},
		{"path separator", "POST", h.API + "/api/v1/room/a%2Fb", userKey, "", 400, "invalid"},
		{"empty name", "POST", h.API + "/api/v1/room/", userKey, "", 404, "not_found"},
		{"existing room", "POST", h.API + "/api/v1/room/taken", userKey, "", 409, "conflict"},
		{"unknown route", "GET", h.API + "/api/v1/nope", "", "", 404, "not_found"},
		{"wrong method", "PUT", h.API + "/api/v1/room/x", userKey, "", 405, "method_not_allowed"},
		{"unknown room", "GET", h.API + "/api/v1/room/ghost", userKey, "", 404, "not_found"},
		{"body too large", "POST", h.API + "/api/v1/room/big", userKey, `{"options":{"x":"` + strings.Repeat("x", 32<<10) + `"}}`, 413, "too_large"},
		{"invalid JSON", "POST", h.API + "/api/v1/room/bad", userKey, `{"options":`, 400, "invalid"},
		{"unknown field", "POST", h.API + "/api/v1/room/bad", userKey, `{"color":"red"}`, 400, "invalid"},
		{"empty global message", "POST", h.Admin + "/api/v1/messages", adminKey, `{"text":""}`, 400, "invalid"},
		{"close unknown room", "DELETE", h.Admin + "/api/v1/rooms/ghost", adminKey, "", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := testutil.Do(t, tt.method, tt.url, tt.key, tt.body)
			var env struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal([]byte(body), &env); err != nil {
				t.Fatalf("body %q is not the error envelope: %v", body, err)
			}
			if status != tt.status || env.Error.Code != tt.code || env.Error.Message == "" {
				t.Fatalf("got %d %s, want %d %s", status, body, tt.status, tt.code)
			}
		})
	}
	t.Run("conflict names the port", func(t *testing.T) {
		_, body := testutil.Do(t, "POST", h.API+"/api/v1/room/taken", userKey, "")
		if !strings.Contains(body, fmt.Sprintf(`"port":%d`, port)) {
			t.Fatalf("409 body %s lacks the port %d", body, port)
		}
	})
	t.Run("draining refuses rooms with 503", func(t *testing.T) {
		if status, body := testutil.Do(t, "POST", h.Admin+"/api/v1/drain", adminKey, ""); status != 200 {
			t.Fatalf("drain: %d %s", status, body)
		}
		status, body := testutil.Do(t, "POST", h.API+"/api/v1/room/late", userKey, "")
		if status != 503 || !strings.Contains(body, `"code":"unavailable"`) {
			t.Fatalf("create while draining: %d %s", status, body)
		}
		if status, _ := testutil.Do(t, "GET", h.API+"/readyz", "", ""); status != 503 {
			t.Fatalf("readyz while draining: %d", status)
		}
		testutil.Do(t, "POST", h.Admin+"/api/v1/resume", adminKey, "")
		if status, body := testutil.Do(t, "POST", h.API+"/api/v1/room/late", userKey, ""); status != 201 {
			t.Fatalf("create after resume: %d %s", status, body)
		}
	})
	if !strings.Contains(h.Proc.Output(), `"msg":"chatserver started"`) {
		t.Error("no start log line")
	}
	for _, key := range []string{userKey, adminKey} {
		if strings.Contains(h.Proc.Output(), key) {
			t.Errorf("key %s appears in the logs", key)
		}
	}
}

func TestAdminCloseFreesThePort(t *testing.T) {
	h := startHost(t)
	port := h.create("closing")
	if status, body := testutil.Do(t, "DELETE", h.Admin+"/api/v1/rooms/closing", adminKey, `{"reason":"maintenance"}`); status != 200 {
		t.Fatalf("close: %d %s", status, body)
	}
	if listening(port) {
		t.Fatalf("port %d still listening after close", port)
	}
	if rs := h.rooms(); len(rs) != 0 {
		t.Fatalf("rooms after close: %+v", rs)
	}
	// The name and the port can be used again.
	if p := h.create("closing"); p != port {
		t.Fatalf("re-created room got port %d, want the freed %d", p, port)
	}
}

func TestHostStatsAndMetrics(t *testing.T) {
	h := startHost(t)
	h.create("measured")
	status, body := testutil.Do(t, "GET", h.Admin+"/api/v1/stats", adminKey, "")
	if status != 200 || !strings.Contains(body, `"rooms":1`) {
		t.Fatalf("stats: %d %s", status, body)
	}
	status, body = testutil.Do(t, "GET", h.Admin+"/metrics", adminKey, "")
	build := fmt.Sprintf(`chatserver_build_info{protocol="%d",version="%s"} 1`, ipc.Version, chatfleet.Version)
	if status != 200 || !strings.Contains(body, "chatserver_rooms 1") || !strings.Contains(body, "chatserver_rooms_created_total 1") || !strings.Contains(body, build) {
		t.Fatalf("metrics: %d %.300s", status, body)
	}
	if status, _ := testutil.Do(t, "GET", h.API+"/metrics", "", ""); status != 404 {
		t.Fatalf("metrics on the API port: %d, want 404", status)
	}
}

// TestBadConfiguration: a setting out of range stops the daemon at start
// with an error naming the variable, before any port is bound.
func TestBadConfiguration(t *testing.T) {
	bin := testutil.Binary(t, "./fleet/cmd/chatserver")
	for _, tc := range []struct {
		env  []string // the last names the case
		want string
	}{
		{[]string{"PONG_WAIT=1s"}, "PONG_WAIT=1s: want 2s to 10m"},
		{[]string{"PONG_WAIT=soon"}, "PONG_WAIT=\"soon\": want a duration"},
		{[]string{"CACHE_REFRESH=-1s"}, "CACHE_REFRESH=\"-1s\": want a duration of 0 or more"}, // a negative ticker panicked
		{[]string{"WRITE_WAIT=10m"}, "WRITE_WAIT=10m0s: want 1s to 5m"},
		{[]string{"SEND_QUEUE_BYTES=100"}, "SEND_QUEUE_BYTES=100: want 16384 to 67108864"},
		{[]string{"ROOM_SPARES=two"}, "ROOM_SPARES=\"two\": want a whole number"},
		{[]string{"MAX_ROOM_BANS=200000"}, "MAX_ROOM_BANS=200000: want 1 to 100000"},
		{[]string{"ADMIN_KEY=" + userKey}, "KEY and ADMIN_KEY must differ"},
		// Room limits (issue 15), checked by the master for its rooms.
		{[]string{"MAX_CONNS_PER_IP=-1"}, "MAX_CONNS_PER_IP=\"-1\""},
		{[]string{"MAX_ROOM_CONNS=0"}, "MAX_ROOM_CONNS=\"0\""},
		{[]string{"ROOM_IDLE_TIMEOUT=forever"}, "ROOM_IDLE_TIMEOUT=\"forever\""},
		{[]string{"TRUSTED_PROXIES=nginx"}, "TRUSTED_PROXIES"},
		{[]string{"ROOM_MOD_RATE=0"}, "ROOM_MOD_RATE=\"0\""},
		{[]string{"MAX_ROOM_BANS=lots"}, "MAX_ROOM_BANS=\"lots\""},
		// Secrets per purpose (issue 15).
		{[]string{"ENTITLEMENT_URL=http://127.0.0.1:9/ent", "WEBHOOK_SECRET=" + hookSecret}, "ENTITLEMENT_SECRET is required with ENTITLEMENT_URL"},
		{[]string{"ENTITLEMENT_URL=http://127.0.0.1:9/ent", "ENTITLEMENT_SECRET=short"}, "ENTITLEMENT_SECRET must be at least 16 bytes"},
		{[]string{"WEBHOOK_ALLOW_PRIVATE=yes"}, `WEBHOOK_ALLOW_PRIVATE="yes": want 0 or 1`},
	} {
		t.Run(tc.env[len(tc.env)-1], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = append(append(os.Environ(), "KEY="+userKey, "ADMIN_KEY="+adminKey, "LOADBALANCERS=", "IMDS=0",
				"PORT="+strconv.Itoa(testutil.FreePort(t)), "ADMIN_PORT="+strconv.Itoa(testutil.FreePort(t)),
				"STATE_DIR="+t.TempDir(), "ENTITLEMENT_URL=", "ENTITLEMENT_SECRET=", "WEBHOOK_ALLOW_PRIVATE="), tc.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || cmd.ProcessState.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q does not say %q", out, tc.want)
			}
		})
	}
}

// sameRooms reports how h's rooms differ from pids and ports (room name to
// process and port): nil when it lists those rooms, each the same process on
// its port, and no other.
func (h *host) sameRooms(pids, ports map[string]int) error {
	rs := h.rooms()
	if len(rs) != len(pids) {
		return fmt.Errorf("rooms = %+v", rs)
	}
	for _, r := range rs {
		if r.PID != pids[r.Name] || r.Port != ports[r.Name] {
			return fmt.Errorf("room %s: pid %d port %d, want the same process %d on %d", r.Name, r.PID, r.Port, pids[r.Name], ports[r.Name])
		}
	}
	return nil
}
