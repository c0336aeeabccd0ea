package faults

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

const (
	userKey  = "TESTING_KEY"
	adminKey = "ADMIN_TESTING_KEY"
	lbKey    = "LB_TESTING_KEY"
	secret   = "test-secret-0123456789"
)

// host is one chatserver process under test.
type host struct {
	*testutil.Chatserver
	t testing.TB
}

// startHost runs the real chatserver binary on free loopback ports with the
// test keys; extra environment entries override the defaults (the last of
// two equal names wins).
func startHost(t testing.TB, extra ...string) *host {
	t.Helper()
	h := &host{t: t, Chatserver: testutil.NewChatserver(t, 40, append([]string{
		"KEY=" + userKey, "ADMIN_KEY=" + adminKey, "LOADBALANCER_KEY=" + lbKey,
		"LOADBALANCERS=", "BIND_ADDR=127.0.0.1", "ROOM_BIND=127.0.0.1", "PUBLIC_HOST=127.0.0.1",
		"LOG_LEVEL=info", "TOKEN_SECRET=" + secret,
		"ORPHAN_GRACE=30s", "DRAIN_WINDOW=500ms", "STATS_EVERY=200ms", "ROOM_READY_TIMEOUT=12s",
		"GORACE=atexit_sleep_ms=0",
	}, extra...)...)}
	h.Start()
	return h
}

// create makes a room through the API port and returns its port.
func (h *host) create(name string) int { return h.Create(userKey, name, hostapi.RoomOptions{}) }

type roomInfo struct {
	Name     string
	Port     int
	PID      int
	Status   string
	Restarts int
	Stats    chatfleet.RoomStats
}

// rooms lists the host's rooms with their last stats (admin port).
func (h *host) rooms() ([]roomInfo, error) {
	status, body, err := testutil.TryDo("GET", h.Admin+"/api/v1/rooms", adminKey, "")
	if err != nil {
		return nil, err
	}
	if status != 200 {
		return nil, fmt.Errorf("list rooms: %d %s", status, body)
	}
	var resp struct{ Data struct{ Rooms []roomInfo } }
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return nil, err
	}
	return resp.Data.Rooms, nil
}

// room returns one room of the host, failing the test if it is not there.
func (h *host) room(name string) roomInfo {
	h.t.Helper()
	rs, err := h.rooms()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	h.t.Fatalf("room %s not listed: %+v", name, rs)
	return roomInfo{}
}

// alive fails the test if the chatserver has exited.
func (h *host) alive() {
	h.t.Helper()
	select {
	case <-h.Proc.Done():
		h.t.Fatalf("chatserver exited (code %d)", h.Proc.ExitCode())
	default:
	}
}

// noPanic fails the test if the master or a room process logged a panic or
// a data race, or a room had to be restarted.
func (h *host) noPanic() {
	h.t.Helper()
	out := h.Proc.Output()
	for _, bad := range []string{"panic", "DATA RACE", "room process crashed"} {
		if strings.Contains(out, bad) {
			h.t.Errorf("chatserver output holds %q", bad)
		}
	}
	files, _ := filepath.Glob(filepath.Join(h.StateDir, "rooms", "*.stderr"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "panic") || strings.Contains(string(b), "DATA RACE") {
			h.t.Errorf("%s: %s", filepath.Base(f), b)
		}
	}
}

// startLB runs a real load balancer on a free port and returns its URL.
func startLB(t testing.TB, extra ...string) (string, *testutil.Proc) {
	t.Helper()
	port := testutil.FreePort(t)
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := testutil.Start(t, testutil.Binary(t, "./fleet/cmd/loadbalancer"),
		append([]string{"PORT=" + strconv.Itoa(port), "LOADBALANCER_KEY=" + lbKey, "LOG_LEVEL=info", "GORACE=atexit_sleep_ms=0"}, extra...))
	testutil.Eventually(t, 30*time.Second, func() error {
		if s, _, err := testutil.TryDo("GET", u+"/healthz", "", ""); err != nil || s != 200 {
			return fmt.Errorf("lb %s: %d %v", u, s, err)
		}
		return nil
	})
	return u, p
}

// lbHost returns the load balancer's view of host id: its state, or
// "unknown" when the load balancer answers 404.
func lbHost(lb, id string) (string, error) {
	status, body, err := testutil.TryDo("GET", lb+"/api/v1/hosts/"+id, lbKey, "")
	if err != nil {
		return "", err
	}
	if status == 404 {
		return "unknown", nil
	}
	if status != 200 {
		return "", fmt.Errorf("get host %s: %d %s", id, status, body)
	}
	var resp struct{ Data struct{ Host chatfleet.Host } }
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return "", err
	}
	return string(resp.Data.Host.State), nil
}

// issue returns a join token valid for an hour.
func issue(t testing.TB, room, user string, role chatfleet.Role) string {
	t.Helper()
	return issueAt(t, time.Now(), time.Hour, room, user, role)
}

// issueAt returns a join token issued at now for ttl.
func issueAt(t testing.TB, now time.Time, ttl time.Duration, room, user string, role chatfleet.Role) string {
	t.Helper()
	iss, err := token.NewIssuer(secret)
	if err != nil {
		t.Fatal(err)
	}
	iss.Now = func() time.Time { return now }
	tok, err := iss.Issue(room, "", user, user, role, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func roomWS(port int) string { return fmt.Sprintf("ws://127.0.0.1:%d", port) }

// join opens a WebSocket to the room on 127.0.0.1:port as user and waits for
// its welcome.
func join(t testing.TB, port int, room, user string, role chatfleet.Role) *testutil.WS {
	t.Helper()
	return joinAt(t, roomWS(port), room, user, role)
}

// joinAt is join through base (ws://addr), e.g. a proxy.
func joinAt(t testing.TB, base, room, user string, role chatfleet.Role) *testutil.WS {
	t.Helper()
	ws := testutil.DialRoom(t, base, issue(t, room, user, role), -1)
	ws.Next(protocol.TypeWelcome, 10*time.Second)
	return ws
}

// chatRoundTrip has from send text and waits until every one of to has
// received it.
func chatRoundTrip(t testing.TB, from *testutil.WS, text string, to ...*testutil.WS) {
	t.Helper()
	from.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: text})
	for _, ws := range to {
		for {
			m := ws.Next(protocol.TypeChat, 15*time.Second)
			if m.Text == text {
				break
			}
		}
	}
}

// proxy is one Toxiproxy proxy in front of an upstream address.
type proxy = testutil.Proxy

// newProxy starts a proxy on a free loopback port in front of upstream.
func newProxy(t testing.TB, name, upstream string) *proxy {
	return testutil.NewProxy(t, name, upstream)
}

// procStat is what /proc says of one process.
type procStat struct {
	Threads int
	FDs     int
	RSS     int64 // bytes
}

func readProc(pid int) (procStat, error) {
	var s procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			s.Threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				s.RSS = kb << 10
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.FDs = len(fds)
	return s, nil
}

// closedBy reads from c until the peer closes it or 30 s pass, and
// reports whether it closed (EOF or reset) rather than timing out.
func closedBy(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return fmt.Errorf("connection still open after 30s")
		}
		return nil // EOF or reset: the server closed it
	}
}
