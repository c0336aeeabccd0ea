package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/functions/api"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/lbclient"
	"github.com/chatfleet/chatfleet/token"
	"github.com/chatfleet/chatfleet/webhook"
)

// Test credentials. The fleet's are the seed's example keys.
const (
	apiKey        = "test-room-api-key"
	adminAPIKey   = "test-admin-api-key"
	fleetKey      = "TESTING_KEY"
	fleetAdminKey = "ADMIN_TESTING_KEY"
	lbKey         = "LB_TESTING_KEY"
	tokenSecret   = "test-token-secret-0123456789"
	webhookSecret = "test-webhook-secret-0123456789"
	hostID        = "h1"
)

// startLB runs the real load-balancer binary on a free port and returns its URL.
func startLB(t *testing.T) string {
	t.Helper()
	port := testutil.FreePort(t)
	testutil.Start(t, testutil.Binary(t, "./fleet/cmd/loadbalancer"), []string{
		"PORT=" + strconv.Itoa(port), "LOADBALANCER_KEY=" + lbKey, "HOST_DOWN_AFTER=30s", "LOG_LEVEL=warn",
	})
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	testutil.Eventually(t, 10*time.Second, func() error {
		status, _, err := testutil.TryDo("GET", u+"/healthz", "", "")
		if err != nil || status != 200 {
			return fmt.Errorf("load balancer healthz: %d %v", status, err)
		}
		return nil
	})
	return u
}

// host is a real chatserver process registered with a load balancer.
type host struct{ *testutil.Chatserver }

// startHost runs the real chatserver binary as host h1, heartbeating to lb,
// with env added to its environment (WEBHOOK_SECRET=…, say), and waits until
// the load balancer lists it as accepting.
func startHost(t *testing.T, lb string, env ...string) *host {
	t.Helper()
	return startHostAs(t, lb, hostID, env...)
}

// startHostAs is startHost for a host named id.
func startHostAs(t *testing.T, lb, id string, env ...string) *host {
	t.Helper()
	h := &host{testutil.NewChatserver(t, 20, append([]string{
		"HOST_ID=" + id, "PUBLIC_HOST=127.0.0.1", "IMDS=0",
		"KEY=" + fleetKey, "ADMIN_KEY=" + fleetAdminKey, "TOKEN_SECRET=" + tokenSecret,
		"LOADBALANCERS=" + lb, "LOADBALANCER_KEY=" + lbKey, "HEARTBEAT_EVERY=500ms",
		"LOG_LEVEL=warn", "ORPHAN_GRACE=10s", "DRAIN_WINDOW=200ms", "MONGODB_URI=",
		// The test's webhook receivers are on loopback.
		"WEBHOOK_ALLOW_PRIVATE=1",
	}, env...)...)}
	h.Start()
	picker := newPicker(t, lb)
	waitHostAs(t, picker, id, chatfleet.HostAccepting)
	return h
}

// rooms returns the names of the rooms the host runs, from its admin port.
func (h *host) rooms(t *testing.T) []string {
	t.Helper()
	status, body := testutil.Do(t, "GET", h.Admin+"/api/v1/rooms", fleetAdminKey, "")
	if status != 200 {
		t.Fatalf("host rooms: %d %s", status, body)
	}
	var out struct {
		Data struct{ Rooms []struct{ Name string } }
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range out.Data.Rooms {
		names = append(names, r.Name)
	}
	return names
}

// waitGone waits until the host no longer runs room.
func (h *host) waitGone(t *testing.T, room string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		if slices.Contains(h.rooms(t), room) {
			return fmt.Errorf("the host still runs %s", room)
		}
		return nil
	})
}

// hookReceiver is a webhook receiver on loopback, at any path: it keeps
// every delivery whose signature verifies under webhookSecret or one of the
// rooms' secrets it was given (trust), and refuses the others.
type hookReceiver struct {
	URL string

	mu      sync.Mutex
	secrets []string
	got     []delivery
	nGot    int      // deliveries that arrived, verified or not
	bad     []string // why deliveries were refused
}

// delivery is a verified delivery and the request URI it was sent to.
type delivery struct {
	uri   string
	batch webhook.Batch
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{secrets: []string{webhookSecret}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		secrets := slices.Clone(rc.secrets)
		rc.mu.Unlock()
		var body []byte
		for _, secret := range secrets {
			r.Body = io.NopCloser(bytes.NewReader(raw))
			if body, err = webhook.VerifyRequest(r, secret, webhook.DefaultMaxSkew); err == nil {
				break
			}
		}
		var b webhook.Batch
		if err == nil {
			err = json.Unmarshal(body, &b)
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.nGot++
		if err != nil || r.Method != http.MethodPost {
			rc.bad = append(rc.bad, fmt.Sprintf("%s %s: %v", r.Method, r.URL.Path, err))
			http.Error(w, "refused", http.StatusUnauthorized)
			return
		}
		rc.got = append(rc.got, delivery{uri: r.URL.RequestURI(), batch: b})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL + "/hook"
	return rc
}

// trust makes rc accept deliveries signed with a room's secret.
func (rc *hookReceiver) trust(secret string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secrets = append(rc.secrets, secret)
}

// count returns how many deliveries arrived, verified or not.
func (rc *hookReceiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.nGot
}

// find returns the verified deliveries from host h1 holding an event of typ
// for room: the request URIs they were sent to, and the last such event.
func (rc *hookReceiver) find(room, typ string) (uris []string, last webhook.Event) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, d := range rc.got {
		for _, ev := range d.batch.Events {
			if ev.Room == room && ev.Type == typ && d.batch.HostID == hostID {
				uris, last = append(uris, d.uri), ev
			}
		}
	}
	return uris, last
}

// wait waits until a verified delivery from host h1 holds an event of typ
// for room, and returns that event.
func (rc *hookReceiver) wait(t *testing.T, room, typ string) webhook.Event {
	t.Helper()
	var found webhook.Event
	testutil.Eventually(t, 10*time.Second, func() error {
		uris, ev := rc.find(room, typ)
		if len(uris) == 0 {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			return fmt.Errorf("no %s event of %s among %d deliveries (refused: %v)", typ, room, len(rc.got), rc.bad)
		}
		found = ev
		return nil
	})
	return found
}

func newPicker(t *testing.T, lb string) *lbclient.Picker {
	t.Helper()
	p, err := lbclient.NewPicker([]string{lb}, lbKey, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitHost waits until the load balancers list host h1 in state.
func waitHost(t *testing.T, p api.HostPicker, state chatfleet.HostState) chatfleet.Host {
	t.Helper()
	return waitHostAs(t, p, hostID, state)
}

// waitHostAs waits until the load balancers list host id in state.
func waitHostAs(t *testing.T, p api.HostPicker, id string, state chatfleet.HostState) chatfleet.Host {
	t.Helper()
	var found chatfleet.Host
	testutil.Eventually(t, 15*time.Second, func() error {
		hosts, err := p.Hosts(t.Context())
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.ID == id {
				if h.State != state {
					return fmt.Errorf("host %s is %s, want %s", h.ID, h.State, state)
				}
				found = h
				return nil
			}
		}
		return fmt.Errorf("host %s not listed (%d hosts)", id, len(hosts))
	})
	return found
}

// apis are both APIs of one Config, served on loopback.
type apis struct {
	rooms  string // base URL of the room API
	admin  string // base URL of the admin API
	tokens *token.Issuer
	cfg    api.Config
}

// newAPIs serves NewRoomAPI and NewAdminAPI of a Config with the test keys,
// store and picker, and a test logger, changed by edits.
func newAPIs(t *testing.T, store chatfleet.Store, picker api.HostPicker, edits ...func(*api.Config)) *apis {
	t.Helper()
	tokens, err := token.NewIssuer(tokenSecret)
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{
		Store: store, Picker: picker, Tokens: tokens,
		APIKey: apiKey, AdminAPIKey: adminAPIKey, FleetKey: fleetKey, FleetAdminKey: fleetAdminKey,
		Log: slog.New(slog.NewJSONHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, edit := range edits {
		edit(&cfg)
	}
	room, err := api.NewRoomAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := api.NewAdminAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rs, as := httptest.NewServer(room), httptest.NewServer(admin)
	t.Cleanup(rs.Close)
	t.Cleanup(as.Close)
	return &apis{rooms: rs.URL, admin: as.URL, tokens: tokens, cfg: cfg}
}

// testWriter sends log lines to t.Log, so they show with a failing test only.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// answer is a decoded API answer.
type answer struct {
	Status int
	Body   string
	Data   json.RawMessage
	Error  *chatfleet.Error
	Header http.Header
}

// call sends one request and decodes the envelope; a transport error or an
// answer that is not an envelope fails t.
func call(t *testing.T, method, url, key, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, url, err)
	}
	a := answer{Status: resp.StatusCode, Body: string(b), Header: resp.Header}
	var env struct {
		Data  json.RawMessage  `json:"data"`
		Error *chatfleet.Error `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil || (env.Data == nil && env.Error == nil) {
		t.Fatalf("%s %s: %d %q is not an envelope", method, url, a.Status, a.Body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q", method, url, ct)
	}
	a.Data, a.Error = env.Data, env.Error
	return a
}

// want checks a's status and, for an error, its code.
func (a answer) want(t *testing.T, status int, code string) answer {
	t.Helper()
	if a.Status != status {
		t.Fatalf("status %d, want %d: %s", a.Status, status, a.Body)
	}
	if code != "" && (a.Error == nil || a.Error.Code != code) {
		t.Fatalf("answer %s, want error code %q", a.Body, code)
	}
	return a
}

// decode decodes a's data into v.
func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.Data, v); err != nil {
		t.Fatalf("decode %s: %v", a.Data, err)
	}
}

// allowPrivateHooks lets rooms' webhookUrls name loopback addresses, as the
// test receivers are (WEBHOOK_ALLOW_PRIVATE=1).
func allowPrivateHooks(c *api.Config) { c.WebhookAllowPrivate = true }

// fakeHost is a real listener registered with a load balancer as a host
// (as anyone holding the load-balancer key can): it records every request
// and answers with answer(method, path).
type fakeHost struct {
	URL string
	ID  string

	mu   sync.Mutex
	reqs []hostRequest
}

// hostRequest is one request a fakeHost got.
type hostRequest struct {
	Method, Path, Key string
	Body              []byte
}

// newFakeHost starts a fake host on 127.0.0.1 that answers answer's status and data.
func newFakeHost(t *testing.T, answer func(method, path string) (int, string)) *fakeHost {
	t.Helper()
	return newFakeHostOn(t, "127.0.0.1", answer)
}

// newFakeHostOn is newFakeHost listening on ip.
func newFakeHostOn(t *testing.T, ip string, answer func(method, path string) (int, string)) *fakeHost {
	t.Helper()
	f := &fakeHost{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		f.mu.Lock()
		f.reqs = append(f.reqs, hostRequest{r.Method, r.URL.Path, r.Header.Get("X-API-Key"), body})
		f.mu.Unlock()
		status, data := answer(r.Method, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if status < 300 {
			fmt.Fprintf(w, `{"data":%s}`, data)
		} else {
			fmt.Fprintf(w, `{"error":{"code":"unavailable","message":%q}}`, data)
		}
	}))
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// register registers f with lb as host id, its API and admin ports at
// baseURL (f.URL, or a name for it), accepting rooms.
func (f *fakeHost) register(t *testing.T, lb, id, baseURL string) {
	t.Helper()
	f.ID = id
	h := chatfleet.Host{ID: id, APIURL: baseURL, AdminURL: baseURL, RoomHost: "127.0.0.1", PortMin: 40000, PortMax: 40100, Region: "eu-west-1",
		Version: "fake", Capacity: chatfleet.Capacity{MaxRooms: 10, MaxConns: 100}, State: chatfleet.HostAccepting}
	b, _ := json.Marshal(h)
	status, body := testutil.Do(t, "PUT", lb+"/api/v1/hosts/"+id, lbKey, string(b))
	if status != 200 && status != 201 {
		t.Fatalf("register fake host: %d %s", status, body)
	}
}

// requests returns the requests f got.
func (f *fakeHost) requests() []hostRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// banPushes returns the bodies of the POST /api/v1/bans f got, checking each
// carried the fleet admin key.
func (f *fakeHost) banPushes(t *testing.T) []hostBans {
	t.Helper()
	var out []hostBans
	for _, r := range f.requests() {
		if r.Method != "POST" || r.Path != "/api/v1/bans" {
			continue
		}
		if r.Key != fleetAdminKey {
			t.Errorf("ban push with key %q, want the fleet admin key", r.Key)
		}
		var b hostBans
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Fatalf("ban push body %s: %v", r.Body, err)
		}
		out = append(out, b)
	}
	return out
}

// hostBans is the body of a host's POST /api/v1/bans.
type hostBans struct {
	Add    []chatfleet.Ban `json:"add"`
	Remove []chatfleet.Ban `json:"remove"`
}
