package master

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/webhook"
)

const hookSecret = "whsec-test-0123456789"

// attempt is one request a receiver got.
type attempt struct {
	at       time.Time
	delivery string
	n        int
	batch    webhook.Batch
	sigErr   error
}

// receiver is a real HTTP webhook endpoint; fail decides, per request
// (counted from 1), the status to answer.
type receiver struct {
	url  string
	fail func(n int) int

	mu       sync.Mutex
	attempts []attempt
}

func newReceiver(t *testing.T, fail func(n int) int) *receiver {
	rc := &receiver{fail: fail}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a := attempt{at: time.Now(), delivery: r.Header.Get(webhook.HeaderDelivery)}
		a.n, _ = strconv.Atoi(r.Header.Get(webhook.HeaderAttempt))
		a.sigErr = webhook.Verify(hookSecret, r.Header.Get(webhook.HeaderTimestamp), body, r.Header.Get(webhook.HeaderSignature), webhook.DefaultMaxSkew)
		json.Unmarshal(body, &a.batch)
		rc.mu.Lock()
		rc.attempts = append(rc.attempts, a)
		n := len(rc.attempts)
		rc.mu.Unlock()
		status := 200
		if rc.fail != nil {
			status = rc.fail(n)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	rc.url = srv.URL
	return rc
}

func (rc *receiver) got() []attempt {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]attempt(nil), rc.attempts...)
}

// hookMaster is a Master that is not run: enough to drive its webhooks.
func hookMaster(t *testing.T, cfg Config) (*Master, *room) {
	t.Helper()
	cfg.StateDir = t.TempDir()
	cfg.WebhookSecret = hookSecret
	cfg.HostID = "h1"
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.hooks.stop(time.Second) })
	return m, m.newRoom("lobby", 34000, RoomOptions{}, time.Now())
}

func chatEvents(from, n int) []chatfleet.Event {
	var evs []chatfleet.Event
	for i := from; i < from+n; i++ {
		evs = append(evs, chatfleet.Event{Room: "lobby", Seq: int64(i), Type: "chat", At: time.Now(), Data: []byte(fmt.Sprintf(`{"type":"chat","seq":%d}`, i))})
	}
	return evs
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestWebhookBatchesInOrder(t *testing.T) {
	rc := newReceiver(t, nil)
	m, r := hookMaster(t, Config{WebhookURLs: []string{rc.url}, WebhookWait: 50 * time.Millisecond})
	r.logEvents(chatEvents(1, 250))
	testutil.Eventually(t, 5*time.Second, func() error {
		n := 0
		for _, a := range rc.got() {
			n += len(a.batch.Events)
		}
		if n < 250 {
			return fmt.Errorf("%d events delivered", n)
		}
		return nil
	})
	next := int64(1)
	deliveries := map[string]bool{}
	for _, a := range rc.got() {
		if a.sigErr != nil {
			t.Fatalf("signature: %v", a.sigErr)
		}
		if len(a.batch.Events) > hookBatch || deliveries[a.delivery] || a.delivery != a.batch.DeliveryID || a.batch.HostID != "h1" {
			t.Fatalf("batch %s: %d events, host %q (delivery ids must be unique per batch)", a.delivery, len(a.batch.Events), a.batch.HostID)
		}
		deliveries[a.delivery] = true
		for _, ev := range a.batch.Events {
			if ev.Seq != next || ev.ID != fmt.Sprintf("lobby:%d", next) || ev.Type != "chat" || string(ev.Data) != fmt.Sprintf(`{"type":"chat","seq":%d}`, next) {
				t.Fatalf("event %+v, want seq %d", ev, next)
			}
			next++
		}
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := counterValue(t, m.metrics.hookDeliveries); got != float64(len(deliveries)) {
			return fmt.Errorf("deliveries counter %v, want %d", got, len(deliveries))
		}
		return nil
	})
}

// TestWebhookRetriesWithBackoff: a batch refused three times is sent again
// after growing delays, under the same delivery id, then taken.
func TestWebhookRetriesWithBackoff(t *testing.T) {
	rc := newReceiver(t, func(n int) int {
		if n <= 3 {
			return 500
		}
		return 204
	})
	m, r := hookMaster(t, Config{WebhookURLs: []string{rc.url}, WebhookWait: 10 * time.Millisecond, WebhookBackoff: 100 * time.Millisecond})
	r.logEvents(chatEvents(1, 3))
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := len(rc.got()); n < 4 {
			return fmt.Errorf("%d attempts", n)
		}
		return nil
	})
	as := rc.got()
	for i, a := range as {
		if a.delivery != as[0].delivery || a.n != i+1 || len(a.batch.Events) != 3 {
			t.Fatalf("attempt %d: delivery %s attempt header %d, %d events", i+1, a.delivery, a.n, len(a.batch.Events))
		}
		// The delays double: at least 100, 200, 400 ms (a timer never fires early).
		if i > 0 {
			if gap, least := a.at.Sub(as[i-1].at), 100*time.Millisecond<<(i-1); gap < least {
				t.Errorf("retry %d came %v after the previous attempt, want at least %v", i, gap, least)
			}
		}
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := counterValue(t, m.metrics.hookFailures); got != 3 {
			return fmt.Errorf("failures counter %v, want 3", got)
		}
		return nil
	})
}

// TestWebhookQueueBoundAndGiveUp: with the receiver down, a full queue drops
// its oldest events and a batch retried past WebhookMaxAge is given up;
// every drop is counted.
func TestWebhookQueueBoundAndGiveUp(t *testing.T) {
	rc := newReceiver(t, func(int) int { return 503 })
	m, r := hookMaster(t, Config{WebhookURLs: []string{rc.url}, WebhookQueue: 10, WebhookWait: 10 * time.Millisecond,
		WebhookBackoff: 50 * time.Millisecond, WebhookMaxAge: time.Second})
	r.logEvents(chatEvents(1, 5))
	testutil.Eventually(t, 5*time.Second, func() error {
		if len(rc.got()) == 0 {
			return fmt.Errorf("no attempt yet")
		}
		return nil
	})
	// The first batch (5 events) is in flight; 25 more overflow a queue of 10.
	r.logEvents(chatEvents(6, 25))
	if got := counterValue(t, m.metrics.hookDropped); got != 15 {
		t.Fatalf("dropped %v, want the 15 beyond the queue", got)
	}
	// Every batch is given up in turn: all 30 events end up counted.
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := counterValue(t, m.metrics.hookDropped); got != 30 {
			return fmt.Errorf("dropped %v, want 30", got)
		}
		return nil
	})
	// The newest events were kept: the last batch attempted holds 21..30.
	as := rc.got()
	if last := as[len(as)-1].batch.Events; len(last) != 10 || last[0].Seq != 21 || last[9].Seq != 30 {
		t.Fatalf("last batch %+v, want seqs 21-30", last)
	}
}

func TestWebhookURLValidation(t *testing.T) {
	long := "https://example.com/" + string(make([]byte, maxHookURLLen))
	tests := []struct {
		name    string
		urls    []string
		ok      bool
		private bool // ok with WebhookAllowPrivate
	}{
		{"none", nil, true, true},
		{"https and http", []string{"https://hooks.example.com/chat?k=1", "http://93.184.215.14:8080/in"}, true, true},
		{"six", []string{"http://a/1", "http://a/2", "http://a/3", "http://a/4", "http://a/5", "http://a/6"}, false, false},
		{"ftp", []string{"ftp://example.com/x"}, false, false},
		{"relative", []string{"/hook"}, false, false},
		{"credentials", []string{"https://user:pw@example.com/"}, false, false},
		{"too long", []string{long}, false, false},
		{"loopback", []string{"http://127.0.0.1:9999/x"}, false, true},
		{"private", []string{"http://10.0.0.1:8080/in"}, false, true},
		{"link-local metadata", []string{"http://169.254.169.254/latest/meta-data/"}, false, true},
		{"IPv4-mapped loopback", []string{"http://[::ffff:127.0.0.1]:8090/"}, false, true},
		{"IPv6 loopback", []string{"http://[::1]/"}, false, true},
		{"numeric loopback", []string{"http://2130706433/"}, false, true},
		{"localhost", []string{"http://localhost:8090/api/v1/rooms"}, false, true},
		{"public then private", []string{"https://hooks.example.com/", "http://192.168.1.1/"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, private := range []bool{false, true} {
				want := tt.ok || private && tt.private
				err := RoomOptions{WebhookURLs: tt.urls}.validate(&Config{WebhookAllowPrivate: private})
				if (err == nil) != want || (err != nil && chatfleet.ErrorCode(err) != chatfleet.EINVALID) {
					t.Fatalf("validate (allow private %v) = %v, want ok=%v", private, err, want)
				}
			}
		})
	}
	for _, secret := range []string{"short", strings.Repeat("s", maxHookSecretLen+1)} {
		if err := (RoomOptions{WebhookURLs: []string{"https://example.com/"}, WebhookSecret: secret}).validate(&Config{}); chatfleet.ErrorCode(err) != chatfleet.EINVALID {
			t.Errorf("webhookSecret of %d bytes: %v, want invalid", len(secret), err)
		}
	}
}

// TestRoomWebhookSecret: a room with webhookUrls and no secret gets a new
// one (told once), one given is kept, and one without URLs is dropped.
func TestRoomWebhookSecret(t *testing.T) {
	o, made := RoomOptions{WebhookURLs: []string{"https://example.com/"}}.withWebhookSecret()
	if made == "" || o.WebhookSecret != made || len(made) < minHookSecretLen {
		t.Fatalf("made %q, options %+v: want a new secret of %d bytes or more", made, o, minHookSecretLen)
	}
	if _, again := (RoomOptions{WebhookURLs: []string{"https://example.com/"}}).withWebhookSecret(); again == made {
		t.Fatal("two rooms got the same secret")
	}
	o, made = RoomOptions{WebhookURLs: []string{"https://example.com/"}, WebhookSecret: "given-0123456789abc"}.withWebhookSecret()
	if made != "" || o.WebhookSecret != "given-0123456789abc" {
		t.Fatalf("a given secret: made %q, options %+v", made, o)
	}
	if o, made = (RoomOptions{WebhookSecret: "given-0123456789abc"}).withWebhookSecret(); made != "" || o.WebhookSecret != "" {
		t.Fatalf("a secret without URLs: made %q, kept %q", made, o.WebhookSecret)
	}
}

// TestRoomEnviron: a room process gets only the variables a room needs.
func TestRoomEnviron(t *testing.T) {
	got := roomEnviron([]string{
		"KEY=k", "ADMIN_KEY=a", "LOADBALANCER_KEY=l", "MONGODB_URI=mongodb://u:p@db/", "WEBHOOK_SECRET=w",
		"AWS_SECRET_ACCESS_KEY=s", "FLEET_KEY=f", "HOME=/root", "PATH=/bin",
		"TOKEN_SECRET=t", "ROOM_IDLE_TIMEOUT=30s", "ENTITLEMENT_URL=https://pay/", "ENTITLEMENT_SECRET=e",
		"MAX_CONNS_PER_IP=50", "GOMAXPROCS=8", "TZ=UTC", "LOG_LEVEL=info",
	}, []string{"GOMAXPROCS=1"})
	want := []string{"TOKEN_SECRET=t", "ROOM_IDLE_TIMEOUT=30s", "ENTITLEMENT_URL=https://pay/", "ENTITLEMENT_SECRET=e",
		"MAX_CONNS_PER_IP=50", "GOMAXPROCS=8", "TZ=UTC", "LOG_LEVEL=info", "GOMAXPROCS=1"}
	if !slices.Equal(got, want) {
		t.Fatalf("roomEnviron =\n%q\nwant\n%q", got, want)
	}
}

func TestWebhookConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"none", Config{}, true},
		{"urls and secret", Config{WebhookURLs: []string{"https://h.example.com/in"}, WebhookSecret: hookSecret}, true},
		{"urls without secret", Config{WebhookURLs: []string{"https://h.example.com/in"}}, false},
		{"private operator urls", Config{WebhookURLs: []string{"http://127.0.0.1:9000/in"}, WebhookSecret: hookSecret}, true},
		{"short secret", Config{WebhookSecret: "short"}, false},
		{"bad url", Config{WebhookURLs: []string{"h.example.com/in"}, WebhookSecret: hookSecret}, false},
		{"negative queue", Config{WebhookQueue: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.StateDir = t.TempDir()
			_, err := New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestWebhookAttemptTimeout: a receiver that hangs is given up on after
// WebhookTimeout and the batch is sent again.
func TestWebhookAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if first {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	m, r := hookMaster(t, Config{WebhookURLs: []string{srv.URL}, WebhookWait: 10 * time.Millisecond,
		WebhookBackoff: 10 * time.Millisecond, WebhookTimeout: 100 * time.Millisecond})
	r.logEvents(chatEvents(1, 1))
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := counterValue(t, m.metrics.hookDeliveries); got != 1 {
			return fmt.Errorf("deliveries %v, want 1 after a timed-out attempt", got)
		}
		return nil
	})
	if got := counterValue(t, m.metrics.hookFailures); got != 1 {
		t.Fatalf("failures %v, want the one timeout", got)
	}
}

// loopbackName returns a host name other than localhost that resolves to a
// loopback address here (the machine's name, or one in /etc/hosts), or
// skips the test.
func loopbackName(t *testing.T) string {
	t.Helper()
	var names []string
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	if b, err := os.ReadFile("/etc/hosts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[0], "127.") {
				names = append(names, f[1:]...)
			}
		}
	}
	for _, n := range names {
		if strings.HasPrefix(n, "#") || netguard.CheckURLHost("http://"+n+"/") != nil {
			continue // localhost and its kin are refused by name
		}
		addrs, err := net.LookupHost(n)
		if err == nil && len(addrs) > 0 && !slices.ContainsFunc(addrs, func(a string) bool { return !strings.HasPrefix(a, "127.") }) {
			return n
		}
	}
	t.Skip("no host name other than localhost resolves to loopback here")
	return ""
}

// TestRoomWebhookNameResolvingToLoopback: a room's own webhook URL whose
// name resolves to loopback is never called (checked at dial time): its
// events are dropped at the first attempt and counted; with
// WebhookAllowPrivate they are delivered, signed with the room's secret.
func TestRoomWebhookNameResolvingToLoopback(t *testing.T) {
	const roomSecret = "room-secret-0123456789"
	name := loopbackName(t)
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow private %v", allow), func(t *testing.T) {
			var mu sync.Mutex
			var sigErrs []error
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, err := webhook.VerifyRequest(r, roomSecret, webhook.DefaultMaxSkew)
				mu.Lock()
				sigErrs = append(sigErrs, err)
				mu.Unlock()
			}))
			t.Cleanup(srv.Close)
			u := "http://" + net.JoinHostPort(name, strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)) + "/hook"
			m, _ := hookMaster(t, Config{WebhookWait: 10 * time.Millisecond, WebhookBackoff: 10 * time.Millisecond, WebhookAllowPrivate: allow})
			opts := RoomOptions{WebhookURLs: []string{u}, WebhookSecret: roomSecret}
			if err := opts.validate(&m.cfg); err != nil {
				t.Fatalf("a name passes validation (it is checked when dialled): %v", err)
			}
			r := m.newRoom("lobby", 34000, opts, time.Now())
			r.logEvents(chatEvents(1, 5))
			testutil.Eventually(t, 5*time.Second, func() error {
				mu.Lock()
				n := len(sigErrs)
				mu.Unlock()
				switch {
				case allow && n == 0:
					return errors.New("not delivered")
				case !allow && counterValue(t, m.metrics.hookRefused) != 5:
					return fmt.Errorf("refused counter %v, want 5", counterValue(t, m.metrics.hookRefused))
				}
				return nil
			})
			mu.Lock()
			defer mu.Unlock()
			if !allow {
				if len(sigErrs) != 0 || counterValue(t, m.metrics.hookDropped) != 5 || counterValue(t, m.metrics.hookFailures) != 1 {
					t.Fatalf("receiver got %d requests, dropped %v, failures %v: want none, 5, one attempt only",
						len(sigErrs), counterValue(t, m.metrics.hookDropped), counterValue(t, m.metrics.hookFailures))
				}
				return
			}
			for _, err := range sigErrs {
				if err != nil {
					t.Fatalf("delivery does not verify with the room's secret: %v", err)
				}
			}
		})
	}
}
