package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/webhook"
)

// Keys the stack runs with: the seed's example keys, set explicitly so
// that the environment of the test cannot change them.
const (
	testKey      = "TESTING_KEY"
	testAdminKey = "ADMIN_TESTING_KEY"
	testAPIKey   = "DEV_API_KEY"
)

// stack is the local stack running as `make run` runs it: the localstack
// binary with the chatserver and loadbalancer binaries next to it.
type stack struct {
	HTTPPort    int
	LBPorts     []int
	HostPorts   []int
	AdminPorts  []int
	RoomPortMin int
	StorePort   int
	DataDir     string
	proc        *testutil.Proc
}

// URL returns the address of the web client and control API.
func (s *stack) URL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.HTTPPort, path)
}

// freePorts returns n distinct free loopback ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p := testutil.FreePort(t)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

func joinPorts(ps []int) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// startStack builds the three binaries into one folder, starts the stack on
// free ports with a data folder of its own, and waits for its banner. At
// cleanup it stops the stack with SIGTERM, as Ctrl-C does, so that the
// stack stops its children (they run in process groups of their own and
// would outlive a SIGKILL).
func startStack(t *testing.T) *stack {
	t.Helper()
	start := time.Now()
	bin := testutil.Binary(t, "./localstack")
	for _, pkg := range []string{"./fleet/cmd/chatserver", "./fleet/cmd/loadbalancer"} {
		if dir := filepath.Dir(testutil.Binary(t, pkg)); dir != filepath.Dir(bin) {
			t.Fatalf("%s built into %s, not next to localstack in %s", pkg, dir, filepath.Dir(bin))
		}
	}
	t.Logf("binaries built in %v", time.Since(start).Round(time.Millisecond))

	// Ports chosen free a moment ago can be taken meanwhile (by another test
	// process, or by a port the kernel hands the stack's embedded NATS): a
	// stack that exits because a port is busy is started again on new ports,
	// up to three times.
	for attempt := 1; ; attempt++ {
		s, busy := tryStartStack(t, bin)
		if s != nil {
			return s
		}
		if !busy || attempt == 3 {
			t.Fatalf("the stack did not start")
		}
		t.Logf("a port was taken meanwhile; starting again on new ports")
	}
}

// tryStartStack starts the stack on new free ports and waits for its banner;
// it returns nil and whether a port was busy if the stack exited first.
func tryStartStack(t *testing.T, bin string) (*stack, bool) {
	t.Helper()
	ports := freePorts(t, 8)
	s := &stack{
		HTTPPort:    ports[0],
		LBPorts:     ports[1:3],
		HostPorts:   ports[3:5],
		AdminPorts:  ports[5:7],
		StorePort:   ports[7],
		RoomPortMin: testutil.FreePortRange(t, 1000),
		DataDir:     t.TempDir(),
	}
	env := []string{
		"CHATFLEET_BIN=" + filepath.Dir(bin),
		"CHATFLEET_DATA=" + s.DataDir,
		"CHATFLEET_RESET=",
		"HTTP_PORT=" + strconv.Itoa(s.HTTPPort),
		"LB_PORTS=" + joinPorts(s.LBPorts),
		"HOST_PORTS=" + joinPorts(s.HostPorts),
		"HOST_ADMIN_PORTS=" + joinPorts(s.AdminPorts),
		"ROOM_PORT_MIN=" + strconv.Itoa(s.RoomPortMin),
		"STORE_PORT=" + strconv.Itoa(s.StorePort),
		"MONGODB_URI=",
		"NATS_URL=",
		"TOKEN_SECRET=",
		"KEY=" + testKey,
		"ADMIN_KEY=" + testAdminKey,
		"LOADBALANCER_KEY=LB_TESTING_KEY",
		"API_KEY=" + testAPIKey,
		"ADMIN_API_KEY=DEV_ADMIN_API_KEY",
		"LOG_LEVEL=info",
		"STORE_LOG_LEVEL=",
		"BIND_ADDR=", "PUBLIC_HOST=", // loopback
	}
	start := time.Now()
	s.proc = testutil.Start(t, bin, env)
	t.Cleanup(func() { // runs before testutil.Start's kill
		s.proc.Signal(syscall.SIGTERM)
		select {
		case <-s.proc.Done():
		case <-time.After(45 * time.Second):
			t.Errorf("the stack did not stop within 45s of SIGTERM")
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(s.proc.Output(), "chatfleet is running") {
		select {
		case <-s.proc.Done():
			if strings.Contains(s.proc.Output(), "is busy; set") {
				return nil, true
			}
			t.Errorf("the stack exited before its banner:\n%s", s.proc.Output())
			return nil, false
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner after 3m:\n%s", s.proc.Output())
		}
	}
	t.Logf("stack up in %v: %s", time.Since(start).Round(time.Millisecond), s.URL("/"))
	return s, false
}

// call sends one request and returns the status and body.
func call(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	status, out, err := testutil.TryDo(method, url, key, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return status, out
}

// TestQuickStart runs the seed README's curl calls, and the control API's
// room creation, against the local stack.
func TestQuickStart(t *testing.T) {
	s := startStack(t)
	host := fmt.Sprintf("http://127.0.0.1:%d", s.HostPorts[0])
	admin := fmt.Sprintf("http://127.0.0.1:%d", s.AdminPorts[0])

	t.Run("api info", func(t *testing.T) {
		status, body := call(t, "GET", host+"/api/v1/", "", "")
		if want := `{"data":{"app":"chatserver","version":"` + chatfleet.Version + `"}}`; status != 200 || strings.TrimSpace(body) != want {
			t.Fatalf("GET /api/v1/: %d %s, want 200 %s", status, body, want)
		}
	})
	t.Run("admin info", func(t *testing.T) {
		status, body := call(t, "GET", admin+"/api/v1/", testAdminKey, "")
		if want := `{"data":{"app":"Admin chatserver","version":"` + chatfleet.Version + `"}}`; status != 200 || strings.TrimSpace(body) != want {
			t.Fatalf("admin GET /api/v1/: %d %s, want 200 %s", status, body, want)
		}
		if status, _ := call(t, "GET", admin+"/api/v1/", "", ""); status != http.StatusUnauthorized {
			t.Errorf("admin GET without a key: %d, want 401", status)
		}
	})
	t.Run("create room on a host", func(t *testing.T) {
		status, body := call(t, "POST", host+"/api/v1/room/testroom", testKey, "")
		var out struct {
			Data struct {
				Port    int    `json:"port"`
				Message string `json:"message"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil || status/100 != 2 {
			t.Fatalf("POST /api/v1/room/testroom: %d %s (%v)", status, body, err)
		}
		if p := out.Data.Port; p < s.RoomPortMin || p >= s.RoomPortMin+500 || out.Data.Message != "Room created" {
			t.Fatalf("POST /api/v1/room/testroom: %s; want a port of host-1's range %d-%d and \"Room created\"", body, s.RoomPortMin, s.RoomPortMin+499)
		}
		status, body = call(t, "GET", fmt.Sprintf("http://127.0.0.1:%d", out.Data.Port), "", "")
		if status != 200 || body != "testroom" {
			t.Fatalf("GET the room's port: %d %q, want 200 \"testroom\"", status, body)
		}
	})
	t.Run("control API creates a room", func(t *testing.T) {
		status, body := call(t, "POST", s.URL("/api/v1/rooms/quickstart"), testAPIKey, "")
		var out struct {
			Data struct {
				Name  string `json:"name"`
				Port  int    `json:"port"`
				Token string `json:"token"`
				WSURL string `json:"wsUrl"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil || status != http.StatusCreated {
			t.Fatalf("POST /api/v1/rooms/quickstart: %d %s (%v), want 201", status, body, err)
		}
		d := out.Data
		if d.Name != "quickstart" || d.Port == 0 || d.Token == "" || d.WSURL == "" {
			t.Fatalf("POST /api/v1/rooms/quickstart: %s; want name, port, token and wsUrl", body)
		}
		status, body = call(t, "GET", fmt.Sprintf("http://127.0.0.1:%d", d.Port), "", "")
		if status != 200 || body != "quickstart" {
			t.Fatalf("GET the room's port: %d %q, want 200 \"quickstart\"", status, body)
		}
		if status, _ := call(t, "POST", s.URL("/api/v1/rooms/nokey"), "", ""); status != http.StatusUnauthorized {
			t.Errorf("POST /api/v1/rooms/nokey without a key: %d, want 401", status)
		}
	})
	// Both hosts have the stack's embedded NATS: a room with an edge
	// spans them.
	t.Run("room with an edge", func(t *testing.T) {
		if !strings.Contains(s.proc.Output(), "NATS            nats://127.0.0.1:") {
			t.Error("the banner does not give the NATS server's URL")
		}
		status, body := call(t, "POST", s.URL("/api/v1/rooms/spread"), testAPIKey, `{"edges":3}`)
		var out struct {
			Data struct {
				HostID string `json:"hostId"`
				Edges  []struct {
					HostID string `json:"hostId"`
					Port   int    `json:"port"`
				} `json:"edges"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil || status != http.StatusCreated {
			t.Fatalf("POST /api/v1/rooms/spread: %d %s (%v), want 201", status, body, err)
		}
		if e := out.Data.Edges; len(e) != 1 || e[0].HostID == out.Data.HostID || e[0].Port == 0 {
			t.Fatalf("POST /api/v1/rooms/spread: %s; want one edge, on the other host", body)
		}
	})
	t.Run("quiet terminal at start", func(t *testing.T) { checkQuietTerminal(t, s) })
	t.Run("web client", func(t *testing.T) {
		status, body := call(t, "GET", s.URL("/"), "", "")
		if status != 200 || !strings.Contains(body, "chatfleet") {
			t.Fatalf("GET /: %d %.200s", status, body)
		}
	})
	// The local stack runs its hosts with WEBHOOK_ALLOW_PRIVATE=1 and says
	// so: a room's webhooks reach a receiver on this machine, signed with
	// the secret the create answer gave.
	t.Run("webhooks to a local receiver", func(t *testing.T) {
		if !strings.Contains(s.proc.Output(), "WEBHOOK_ALLOW_PRIVATE=1") {
			t.Error("the banner does not say rooms' webhooks may reach private addresses")
		}
		type delivery struct {
			ts, sig string
			body    []byte
		}
		got := make(chan delivery, 16)
		rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			select {
			case got <- delivery{r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body}:
			default:
			}
		}))
		defer rc.Close()
		status, body := call(t, "POST", host+"/api/v1/room/hooked", testKey, `{"options":{"webhookUrls":["`+rc.URL+`"]}}`)
		var out struct {
			Data struct {
				WebhookSecret string `json:"webhookSecret"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil || status != http.StatusCreated || out.Data.WebhookSecret == "" {
			t.Fatalf("create with a local webhook: %d %s, want 201 with a webhookSecret", status, body)
		}
		select {
		case d := <-got:
			if err := webhook.Verify(out.Data.WebhookSecret, d.ts, d.body, d.sig, webhook.DefaultMaxSkew); err != nil {
				t.Fatalf("the delivery does not verify with the room's secret: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the local receiver got no delivery")
		}
	})
	// After rooms were made and used, the terminal is still the
	// platform's own.
	t.Run("quiet terminal after use", func(t *testing.T) { checkQuietTerminal(t, s) })
}

// platformLine is a line of the platform's own log as the stack prints it:
// a process's name, then a level and a message.
var platformLine = regexp.MustCompile(`^(lb-\d+|host-\d+|api|store) +\| (DEBUG|INFO|WARN|ERROR) `)

// checkQuietTerminal fails unless the stack's output so far is its banner
// and the platform's own log lines, none from the embedded store (which
// logs errors only, and a fresh start has none), and the store's whole log
// is in the data folder's store.log instead.
func checkQuietTerminal(t *testing.T, s *stack) {
	t.Helper()
	out := s.proc.Output()
	start := strings.Index(out, "\nchatfleet is running\n")
	end := strings.Index(out, "Ctrl-C stops everything.\n")
	if start < 0 || end < start {
		t.Fatalf("no banner in the output:\n%s", out)
	}
	if !strings.Contains(out[start:end], "its log: "+filepath.Join(s.DataDir, "store.log")) {
		t.Errorf("the banner does not say where the store's log is:\n%s", out[start:end])
	}
	logs := out[:start] + out[end+len("Ctrl-C stops everything.\n"):]
	for _, line := range strings.Split(logs, "\n") {
		switch {
		case line == "":
		case strings.HasPrefix(line, "store "):
			t.Errorf("the embedded store wrote to the terminal: %.300s", line)
		case !platformLine.MatchString(line):
			t.Errorf("a line that is not the platform's own log: %.300s", line)
		}
	}
	if t.Failed() {
		t.Logf("the whole output:\n%s", out)
	}

	b, err := os.ReadFile(filepath.Join(s.DataDir, "store.log"))
	if err != nil {
		t.Fatalf("the store's log: %v", err)
	}
	for _, want := range []string{"component=ferretdb", "level=WARN", "ns does not exist: chatfleet."} {
		if !strings.Contains(string(b), want) {
			t.Errorf("store.log does not hold %q:\n%.2000s", want, b)
		}
	}
}
