package main

// These tests run the real binary: TestMain builds it once, each test starts
// its own instances on free loopback ports and drives them with real
// lbclient.Registrar and lbclient.Picker instances.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/lbclient"
)

const testKey = "LB_TESTING_KEY_never_logged"

// lbBin is the binary TestMain built.
var lbBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "loadbalancer-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lbBin = filepath.Join(dir, "loadbalancer")
	args := []string{"build", "-o", lbBin}
	if raceEnabled {
		args = append(args, "-race") // the server's own concurrency is under test too
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build loadbalancer: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lbProc is one running load-balancer process.
type lbProc struct {
	t      *testing.T
	URL    string
	port   int
	env    []string
	client *http.Client // trusts the instance's certificate, if any
	cmd    *exec.Cmd
	out    *testutil.SyncBuffer
	exited chan struct{} // closed when the process has exited
}

// lbOpts are per-instance settings.
type lbOpts struct {
	downAfter         string // HOST_DOWN_AFTER
	certFile, keyFile string
}

// startLB starts an instance on a free port and waits until it serves.
// Cleanup stops it with SIGTERM, expects a clean exit, and checks that the
// key never reached its output (it logs at debug level).
func startLB(t *testing.T, o lbOpts) *lbProc {
	t.Helper()
	p := &lbProc{t: t, client: &http.Client{Timeout: 5 * time.Second}}
	scheme := "http"
	if o.certFile != "" {
		scheme = "https"
		p.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certPool(t, o.certFile)}}
		p.env = append(p.env, "TLS_CERT_FILE="+o.certFile, "TLS_KEY_FILE="+o.keyFile)
	}
	if o.downAfter != "" {
		p.env = append(p.env, "HOST_DOWN_AFTER="+o.downAfter)
	}
	// GORACE: the race runtime otherwise sleeps a second at every exit.
	p.env = append(p.env, "LOADBALANCER_KEY="+testKey, "LOG_LEVEL=debug", "GORACE=atexit_sleep_ms=0")
	var err error
	for range 3 { // a free port may be taken before the process binds it
		p.port = freePort(t)
		p.URL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, p.port)
		if err = p.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs the process on p.port and waits for /healthz.
func (p *lbProc) start() error {
	p.out = &testutil.SyncBuffer{}
	p.cmd = exec.Command(lbBin)
	p.cmd.Env = append([]string{"PORT=" + strconv.Itoa(p.port)}, p.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start loadbalancer: %w", err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("loadbalancer exited: %v\n%s", p.cmd.ProcessState, p.out)
		default:
		}
		if resp, err := p.client.Get(p.URL + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.cmd.Process.Kill()
	<-p.exited
	return fmt.Errorf("loadbalancer not healthy after 15s:\n%s", p.out)
}

// kill ends the process with SIGKILL, as a crash would.
func (p *lbProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// restart starts a new process on the same port.
func (p *lbProc) restart() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *lbProc) stop() {
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				p.t.Errorf("loadbalancer exited %d after SIGTERM:\n%s", code, p.out)
			}
		case <-time.After(10 * time.Second):
			p.t.Errorf("loadbalancer did not stop within 10s of SIGTERM")
			p.kill()
		}
	}
	if strings.Contains(p.out.String(), testKey) {
		p.t.Errorf("the key reached the load balancer's output")
	}
	if strings.Contains(p.out.String(), "DATA RACE") {
		p.t.Errorf("data race in the load balancer:\n%s", p.out)
	}
}

// do sends a request to the instance and returns the status and body.
func (p *lbProc) do(method, path, key string, body []byte) (int, http.Header, []byte) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.URL+path, bytes.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// hosts returns the hosts the instance lists, by id.
func (p *lbProc) hosts() (map[string]chatfleet.Host, error) {
	status, _, body := p.do(http.MethodGet, "/api/v1/hosts", testKey, nil)
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET hosts: %d %s", status, body)
	}
	var out struct {
		Data struct {
			Hosts []chatfleet.Host `json:"hosts"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, err
	}
	m := map[string]chatfleet.Host{}
	for _, h := range out.Data.Hosts {
		m[h.ID] = h
	}
	return m, nil
}

// hostStates returns "id=state ..." of an instance's hosts, ordered by id.
func (p *lbProc) hostStates() string {
	p.t.Helper()
	hosts, err := p.hosts()
	if err != nil {
		return err.Error()
	}
	var s []string
	for id, h := range hosts {
		s = append(s, id+"="+string(h.State))
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// waitStates waits until every instance lists exactly want ("a=accepting b=down").
func waitStates(t *testing.T, want string, lbs ...*lbProc) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, p := range lbs {
			if got := p.hostStates(); got != want {
				return fmt.Errorf("%s lists %q, want %q", p.URL, got, want)
			}
		}
		return nil
	})
}

// fakeHost is a chatserver as the load balancers see it: a real Registrar
// reporting a Host whose state and rooms the test sets.
type fakeHost struct {
	id     string
	state  atomic.Value // chatfleet.HostState
	rooms  atomic.Int64
	cut    atomic.Bool // its network is cut: every request fails
	reg    *lbclient.Registrar
	cancel context.CancelFunc
	done   chan struct{}
}

// startHost runs a host registering with urls every every. With caFile set it
// trusts that CA; otherwise its requests go through a transport the test can cut.
func startHost(t *testing.T, id string, urls []string, caFile string, every time.Duration) *fakeHost {
	t.Helper()
	h := &fakeHost{id: id, done: make(chan struct{})}
	h.state.Store(chatfleet.HostAccepting)
	cfg := lbclient.RegistrarConfig{URLs: urls, Key: testKey, CAFile: caFile, Every: every, Report: h.report}
	if caFile == "" {
		cfg.HTTPClient = &http.Client{Transport: cuttable{base: http.DefaultTransport.(*http.Transport).Clone(), cut: &h.cut}}
	}
	var err error
	if h.reg, err = lbclient.NewRegistrar(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.reg.Run(ctx); close(h.done) }()
	t.Cleanup(h.stop)
	return h
}

func (h *fakeHost) report() chatfleet.Host {
	return chatfleet.Host{
		ID:       h.id,
		APIURL:   "http://127.0.0.1:8080",
		RoomHost: h.id + ".test",
		PortMin:  34000,
		PortMax:  34999,
		Region:   "local",
		Version:  chatfleet.Version,
		Capacity: chatfleet.Capacity{MaxRooms: 1000, MaxConns: 100000},
		Load:     chatfleet.Load{Rooms: int(h.rooms.Load())},
		State:    h.state.Load().(chatfleet.HostState),
	}
}

// setState changes what the host reports and nudges the registrar, as the
// admin drain and resume endpoints do.
func (h *fakeHost) setState(s chatfleet.HostState) {
	h.state.Store(s)
	h.reg.Nudge()
}

// stop cancels the registrar (which deregisters) and waits for it.
func (h *fakeHost) stop() {
	h.cancel()
	<-h.done
}

// cuttable fails every request while cut is set, like a partitioned network.
type cuttable struct {
	base http.RoundTripper
	cut  *atomic.Bool
}

func (c cuttable) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.cut.Load() {
		return nil, errors.New("network cut by the test")
	}
	return c.base.RoundTrip(r)
}

func newPicker(t *testing.T, caFile string, lbs ...*lbProc) *lbclient.Picker {
	t.Helper()
	pk, err := lbclient.NewPicker(urlsOf(lbs...), testKey, caFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func urlsOf(lbs ...*lbProc) []string {
	var urls []string
	for _, p := range lbs {
		urls = append(urls, p.URL)
	}
	return urls
}

// pickN runs n picks, concurrency at a time, and counts them by host id.
func pickN(t *testing.T, pk *lbclient.Picker, n, concurrency int, req chatfleet.PickRequest) map[string]int {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	for range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			h, err := pk.Pick(t.Context(), req)
			if err != nil {
				t.Errorf("Pick: %v", err)
				return
			}
			mu.Lock()
			got[h.ID]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

func TestRegisterAndPick(t *testing.T) {
	lb1, lb2 := startLB(t, lbOpts{}), startLB(t, lbOpts{})
	urls := urlsOf(lb1, lb2)
	a := startHost(t, "a", urls, "", 200*time.Millisecond)
	b := startHost(t, "b", urls, "", 200*time.Millisecond)
	c := startHost(t, "c", urls, "", 200*time.Millisecond)
	pk := newPicker(t, "", lb1, lb2)

	t.Run("hosts registered on both load balancers", func(t *testing.T) {
		waitStates(t, "a=accepting b=accepting c=accepting", lb1, lb2)
		hosts, err := pk.Hosts(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(hosts) != 3 || hosts[0].ID != "a" || hosts[0].LastSeen.IsZero() || hosts[0].Capacity.MaxRooms != 1000 {
			t.Errorf("Hosts = %+v", hosts)
		}
	})

	// Three equal hosts: the power of two choices plus pending rooms keeps
	// each load balancer's picks within a few of even, so no host should get
	// more than 40% (120) of 300 picks, nor fewer than 25% (75).
	t.Run("300 concurrent picks spread over equal hosts", func(t *testing.T) {
		got := pickN(t, pk, 300, 300, chatfleet.PickRequest{})
		t.Logf("picks: %v", got)
		for _, id := range []string{"a", "b", "c"} {
			if got[id] > 120 || got[id] < 75 {
				t.Errorf("host %s got %d of 300 picks, want 75..120 (%v)", id, got[id], got)
			}
		}
	})

	t.Run("a loaded host is not picked while emptier ones are", func(t *testing.T) {
		c.rooms.Store(800) // 80% full; a and b are about 10% with their pending rooms
		c.reg.Nudge()
		testutil.Eventually(t, 5*time.Second, func() error {
			for _, p := range []*lbProc{lb1, lb2} {
				if hosts, err := p.hosts(); err != nil || hosts["c"].Load.Rooms != 800 {
					return fmt.Errorf("%s: c not yet at 800 rooms (%v)", p.URL, err)
				}
			}
			return nil
		})
		got := pickN(t, pk, 100, 20, chatfleet.PickRequest{})
		if got["c"] != 0 {
			t.Errorf("picks %v: c got %d, want 0", got, got["c"])
		}
	})

	t.Run("a draining host is never picked, and is again after resume", func(t *testing.T) {
		b.setState(chatfleet.HostDraining)
		waitStates(t, "a=accepting b=draining c=accepting", lb1, lb2)
		got := pickN(t, pk, 60, 10, chatfleet.PickRequest{})
		if got["b"] != 0 {
			t.Errorf("draining b picked %d times (%v)", got["b"], got)
		}
		_, err := pk.Pick(t.Context(), chatfleet.PickRequest{Exclude: []string{"a", "c"}})
		if chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE {
			t.Errorf("pick with only draining b left: err %v, want unavailable", err)
		}

		b.setState(chatfleet.HostAccepting)
		testutil.Eventually(t, 5*time.Second, func() error {
			h, err := pk.Pick(t.Context(), chatfleet.PickRequest{Exclude: []string{"a", "c"}})
			if err != nil || h.ID != "b" {
				return fmt.Errorf("pick = %q, %v; want b", h.ID, err)
			}
			return nil
		})
	})

	t.Run("a host that shuts down deregisters at once", func(t *testing.T) {
		a.stop()
		for _, p := range []*lbProc{lb1, lb2} {
			if got := p.hostStates(); got != "b=accepting c=accepting" {
				t.Errorf("%s lists %q after a's shutdown", p.URL, got)
			}
		}
	})
}

func TestHostDown(t *testing.T) {
	lb1, lb2 := startLB(t, lbOpts{downAfter: "1s"}), startLB(t, lbOpts{downAfter: "1s"})
	urls := urlsOf(lb1, lb2)
	x := startHost(t, "x", urls, "", 100*time.Millisecond)
	startHost(t, "y", urls, "", 100*time.Millisecond)
	pk := newPicker(t, "", lb1, lb2)
	waitStates(t, "x=accepting y=accepting", lb1, lb2)

	x.cut.Store(true) // heartbeats stop, no deregistration
	waitStates(t, "x=down y=accepting", lb1, lb2)
	if got := pickN(t, pk, 30, 5, chatfleet.PickRequest{}); got["x"] != 0 {
		t.Errorf("down x picked: %v", got)
	}
	if _, err := pk.Pick(t.Context(), chatfleet.PickRequest{Exclude: []string{"y"}}); chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE {
		t.Errorf("pick with only down x left: err %v, want unavailable", err)
	}

	x.cut.Store(false) // back after its backoff
	waitStates(t, "x=accepting y=accepting", lb1, lb2)
}

func TestLoadBalancerKilled(t *testing.T) {
	lb1, lb2 := startLB(t, lbOpts{}), startLB(t, lbOpts{})
	urls := urlsOf(lb1, lb2)
	for _, id := range []string{"a", "b", "c"} {
		startHost(t, id, urls, "", 100*time.Millisecond)
	}
	pk := newPicker(t, "", lb1, lb2)
	waitStates(t, "a=accepting b=accepting c=accepting", lb1, lb2)

	lb1.kill()
	got := pickN(t, pk, 30, 5, chatfleet.PickRequest{})
	if len(got) != 3 {
		t.Errorf("picks with lb1 dead: %v, want all three hosts", got)
	}
	hosts, err := pk.Hosts(t.Context())
	if err != nil || len(hosts) != 3 {
		t.Errorf("Hosts with lb1 dead = %v, %v", hosts, err)
	}

	t.Run("hosts register again with a restarted load balancer", func(t *testing.T) {
		lb1.restart()
		waitStates(t, "a=accepting b=accepting c=accepting", lb1)
	})

	t.Run("all load balancers dead is unavailable", func(t *testing.T) {
		lb1.kill()
		lb2.kill()
		_, err := pk.Pick(t.Context(), chatfleet.PickRequest{})
		if chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE {
			t.Errorf("Pick err = %v, want unavailable", err)
		}
	})
}

func TestAPI(t *testing.T) {
	p := startLB(t, lbOpts{})
	valid := func() map[string]any {
		return map[string]any{
			"id": "h1", "apiUrl": "http://10.0.0.5:8080", "roomHost": "h1.example.com",
			"portMin": 34000, "portMax": 34999, "version": "1.0.0", "state": "accepting",
			"capacity": map[string]any{"maxRooms": 10, "maxConns": 1000},
			"load":     map[string]any{"rooms": 0, "conns": 0},
		}
	}
	body := func(m map[string]any) []byte {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	envelope := func(t *testing.T, b []byte) httpx.Envelope {
		t.Helper()
		var env httpx.Envelope
		if err := json.Unmarshal(b, &env); err != nil || env.Error == nil {
			t.Fatalf("not an error envelope: %s", b)
		}
		return env
	}

	t.Run("no host: pick is unavailable", func(t *testing.T) {
		status, _, b := p.do(http.MethodPost, "/api/v1/pick", testKey, nil)
		if status != http.StatusServiceUnavailable || envelope(t, b).Error.Code != chatfleet.EUNAVAILABLE {
			t.Errorf("%d %s", status, b)
		}
	})

	t.Run("register, heartbeat, list, deregister", func(t *testing.T) {
		status, _, b := p.do(http.MethodPut, "/api/v1/hosts/h1", testKey, body(valid()))
		if status != http.StatusCreated {
			t.Fatalf("first heartbeat: %d %s", status, b)
		}
		m := valid()
		delete(m, "id") // the path names it
		if status, _, b = p.do(http.MethodPut, "/api/v1/hosts/h1", testKey, body(m)); status != http.StatusOK {
			t.Fatalf("second heartbeat: %d %s", status, b)
		}
		var out struct {
			Data struct{ Host chatfleet.Host } `json:"data"`
		}
		if status, _, b = p.do(http.MethodGet, "/api/v1/hosts/h1", testKey, nil); status != http.StatusOK || json.Unmarshal(b, &out) != nil {
			t.Fatalf("get: %d %s", status, b)
		}
		if out.Data.Host.State != chatfleet.HostAccepting || out.Data.Host.LastSeen.IsZero() {
			t.Errorf("get: %+v", out.Data.Host)
		}
		if status, _, b = p.do(http.MethodPost, "/api/v1/pick", testKey, []byte(`{"region":"local","exclude":[]}`)); status != http.StatusOK {
			t.Errorf("pick: %d %s", status, b)
		}
		if status, _, _ = p.do(http.MethodDelete, "/api/v1/hosts/h1", testKey, nil); status != http.StatusNoContent {
			t.Errorf("delete: %d", status)
		}
		if status, _, _ = p.do(http.MethodDelete, "/api/v1/hosts/h1", testKey, nil); status != http.StatusNotFound {
			t.Errorf("second delete: %d, want 404", status)
		}
	})

	t.Run("malformed heartbeats are refused naming the field", func(t *testing.T) {
		tests := []struct {
			name   string
			path   string
			change func(m map[string]any)
			raw    string // sent instead of the map if change is nil
			field  string // the message must contain this
		}{
			{"bad api url", "h1", func(m map[string]any) { m["apiUrl"] = "not a url" }, "", `field "apiUrl"`},
			{"port min above max", "h1", func(m map[string]any) { m["portMin"] = 35000 }, "", `field "portMax"`},
			{"negative load", "h1", func(m map[string]any) { m["load"] = map[string]any{"rooms": -1} }, "", `field "load.rooms"`},
			{"unknown state", "h1", func(m map[string]any) { m["state"] = "sleeping" }, "", `field "state"`},
			{"down is not reported by hosts", "h1", func(m map[string]any) { m["state"] = "down" }, "", `field "state"`},
			{"zero capacity", "h1", func(m map[string]any) { m["capacity"] = map[string]any{"maxRooms": 0, "maxConns": 10} }, "", `field "capacity.maxRooms"`},
			{"no version", "h1", func(m map[string]any) { delete(m, "version") }, "", `field "version"`},
			{"unknown field", "h1", func(m map[string]any) { m["color"] = "blue" }, "", `unknown field "color"`},
			{"wrong type", "h1", func(m map[string]any) { m["portMin"] = "34000" }, "", `field "portMin"`},
			{"id mismatch", "h2", func(m map[string]any) {}, "", `field "id"`},
			{"bad path id", "bad%20id", func(m map[string]any) { delete(m, "id") }, "", `field "id"`},
			{"empty body", "h1", nil, "", "body is empty"},
			{"not json", "h1", nil, "{", "invalid JSON"},
			{"two objects", "h1", nil, "{} {}", "trailing data"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				b := []byte(tt.raw)
				if tt.change != nil {
					m := valid()
					tt.change(m)
					b = body(m)
				}
				status, _, resp := p.do(http.MethodPut, "/api/v1/hosts/"+tt.path, testKey, b)
				if status != http.StatusBadRequest {
					t.Fatalf("status %d, want 400: %s", status, resp)
				}
				env := envelope(t, resp)
				if env.Error.Code != chatfleet.EINVALID || !strings.Contains(env.Error.Message, tt.field) {
					t.Errorf("error %+v, want code invalid and a message with %s", env.Error, tt.field)
				}
			})
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name         string
			method, path string
			key          string
			body         []byte
			status       int
			code         string
		}{
			{"missing key", http.MethodGet, "/api/v1/hosts", "", nil, 401, chatfleet.EUNAUTHORIZED},
			{"wrong key", http.MethodGet, "/api/v1/hosts", "wrong", nil, 403, chatfleet.EFORBIDDEN},
			{"wrong key on pick", http.MethodPost, "/api/v1/pick", "wrong", nil, 403, chatfleet.EFORBIDDEN},
			{"missing key on heartbeat", http.MethodPut, "/api/v1/hosts/h1", "", body(valid()), 401, chatfleet.EUNAUTHORIZED},
			{"unknown route", http.MethodGet, "/api/v1/nope", testKey, nil, 404, chatfleet.ENOTFOUND},
			{"unknown host", http.MethodGet, "/api/v1/hosts/nope", testKey, nil, 404, chatfleet.ENOTFOUND},
			{"wrong method", http.MethodGet, "/api/v1/pick", testKey, nil, 405, chatfleet.EMETHOD},
			{"wrong method on hosts", http.MethodPost, "/api/v1/hosts", testKey, nil, 405, chatfleet.EMETHOD},
			{"oversized heartbeat", http.MethodPut, "/api/v1/hosts/h1", testKey, bytes.Repeat([]byte(" "), httpx.MaxBody+1), 413, chatfleet.ETOOLARGE},
			{"oversized pick", http.MethodPost, "/api/v1/pick", testKey, []byte(`{"exclude":["` + strings.Repeat("x", httpx.MaxBody) + `"]}`), 413, chatfleet.ETOOLARGE},
			{"bad pick region", http.MethodPost, "/api/v1/pick", testKey, []byte(`{"region":"Mars!"}`), 400, chatfleet.EINVALID},
			{"unknown pick field", http.MethodPost, "/api/v1/pick", testKey, []byte(`{"size":"big"}`), 400, chatfleet.EINVALID},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				status, hdr, resp := p.do(tt.method, tt.path, tt.key, tt.body)
				if status != tt.status {
					t.Fatalf("status %d, want %d: %s", status, tt.status, resp)
				}
				if env := envelope(t, resp); env.Error.Code != tt.code {
					t.Errorf("code %q, want %q", env.Error.Code, tt.code)
				}
				if status == 405 && hdr.Get("Allow") == "" {
					t.Error("405 without Allow header")
				}
			})
		}
	})

	t.Run("health, readiness and metrics need no key", func(t *testing.T) {
		for path, want := range map[string]string{"/healthz": `"ok"`, "/readyz": `"ready"`, "/metrics": "chatfleet_lb_hosts{state=\"accepting\"}"} {
			status, _, b := p.do(http.MethodGet, path, "", nil)
			if status != http.StatusOK || !bytes.Contains(b, []byte(want)) {
				t.Errorf("GET %s: %d, want 200 with %s", path, status, want)
			}
		}
	})
}

func TestHTTPS(t *testing.T) {
	certFile, keyFile := selfSignedCert(t)
	lb1 := startLB(t, lbOpts{certFile: certFile, keyFile: keyFile})
	lb2 := startLB(t, lbOpts{certFile: certFile, keyFile: keyFile})
	urls := urlsOf(lb1, lb2)
	startHost(t, "a", urls, certFile, 100*time.Millisecond)
	startHost(t, "b", urls, certFile, 100*time.Millisecond)
	waitStates(t, "a=accepting b=accepting", lb1, lb2)

	pk := newPicker(t, certFile, lb1, lb2)
	if got := pickN(t, pk, 20, 5, chatfleet.PickRequest{}); got["a"]+got["b"] != 20 {
		t.Errorf("picks over HTTPS: %v", got)
	}

	t.Run("a client without the CA is refused", func(t *testing.T) {
		untrusting, err := lbclient.NewPicker(urls, testKey, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = untrusting.Pick(t.Context(), chatfleet.PickRequest{})
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("Pick without the CA: %v, want a certificate error", err)
		}
	})
}

// selfSignedCert writes a self-signed certificate for 127.0.0.1 and
// localhost and its key, and returns their paths.
func selfSignedCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "chatfleet test load balancer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func certPool(t *testing.T, certFile string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatal("no certificate in", certFile)
	}
	return pool
}

func TestStartupErrors(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"no key", []string{"PORT=0"}, "LOADBALANCER_KEY is required"},
		{"bad port", []string{"LOADBALANCER_KEY=" + testKey, "PORT=http"}, "PORT"},
		{"bad down window", []string{"LOADBALANCER_KEY=" + testKey, "PORT=0", "HOST_DOWN_AFTER=soon"}, "HOST_DOWN_AFTER"},
		{"bad log level", []string{"LOADBALANCER_KEY=" + testKey, "PORT=0", "LOG_LEVEL=loud"}, "LOG_LEVEL"},
		{"cert without key", []string{"LOADBALANCER_KEY=" + testKey, "PORT=0", "TLS_CERT_FILE=/nonexistent"}, "TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(lbBin)
			cmd.Env = tt.env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("run: %v, want a non-zero exit", err)
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tt.want) {
				t.Errorf("stderr %q, want one line with %q", msg, tt.want)
			}
			if strings.Contains(msg+stdout.String(), testKey) {
				t.Error("the key reached the output")
			}
		})
	}
}
