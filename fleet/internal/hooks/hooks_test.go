package hooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/chatfleet/chatfleet"
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

// newDispatcher returns a Dispatcher for cfg, signing the host's URLs with
// hookSecret as host h1, its cursor files in a temporary folder; it is
// stopped when the test ends.
func newDispatcher(t *testing.T, cfg Config) *Dispatcher {
	t.Helper()
	cfg.Secret = hookSecret
	cfg.HostID = "h1"
	if cfg.CursorFile == nil {
		dir := t.TempDir()
		cfg.CursorFile = func(room string) string { return filepath.Join(dir, room+".hooks") }
	}
	d := New(cfg)
	t.Cleanup(func() { d.Stop(time.Second) })
	return d
}

// lobby is the room of these tests, with no webhooks of its own.
var lobby = Room{Name: "lobby"}

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

func TestWebmaxBatchesInOrder(t *testing.T) {
	rc := newReceiver(t, nil)
	d := newDispatcher(t, Config{URLs: []string{rc.url}, Wait: 50 * time.Millisecond})
	d.AddLog(lobby, chatEvents(1, 250))
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
		if len(a.batch.Events) > maxBatch || deliveries[a.delivery] || a.delivery != a.batch.DeliveryID || a.batch.HostID != "h1" {
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
		if got := counterValue(t, d.cfg.Metrics.Deliveries); got != float64(len(deliveries)) {
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
	d := newDispatcher(t, Config{URLs: []string{rc.url}, Wait: 10 * time.Millisecond, Backoff: 100 * time.Millisecond})
	d.AddLog(lobby, chatEvents(1, 3))
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
		if got := counterValue(t, d.cfg.Metrics.Failures); got != 3 {
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
	d := newDispatcher(t, Config{URLs: []string{rc.url}, Queue: 10, Wait: 10 * time.Millisecond,
		Backoff: 50 * time.Millisecond, MaxAge: time.Second})
	d.AddLog(lobby, chatEvents(1, 5))
	testutil.Eventually(t, 5*time.Second, func() error {
		if len(rc.got()) == 0 {
			return fmt.Errorf("no attempt yet")
		}
		return nil
	})
	// The first batch (5 events) is in flight; 25 more overflow a queue of 10.
	d.AddLog(lobby, chatEvents(6, 25))
	if got := counterValue(t, d.cfg.Metrics.Dropped); got != 15 {
		t.Fatalf("dropped %v, want the 15 beyond the queue", got)
	}
	// Every batch is given up in turn: all 30 events end up counted.
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := counterValue(t, d.cfg.Metrics.Dropped); got != 30 {
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
	d := newDispatcher(t, Config{URLs: []string{srv.URL}, Wait: 10 * time.Millisecond,
		Backoff: 10 * time.Millisecond, Timeout: 100 * time.Millisecond})
	d.AddLog(lobby, chatEvents(1, 1))
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := counterValue(t, d.cfg.Metrics.Deliveries); got != 1 {
			return fmt.Errorf("deliveries %v, want 1 after a timed-out attempt", got)
		}
		return nil
	})
	if got := counterValue(t, d.cfg.Metrics.Failures); got != 1 {
		t.Fatalf("failures %v, want the one timeout", got)
	}
}

// TestRoomWebhookNameResolvingToLoopback: a room's own webhook URL whose
// name resolves to loopback is never called (checked at dial time): its
// events are dropped at the first attempt and counted; with
// AllowPrivate they are delivered, signed with the room's secret.
func TestRoomWebhookNameResolvingToLoopback(t *testing.T) {
	const roomSecret = "room-secret-0123456789"
	name := testutil.LoopbackName(t)
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
			d := newDispatcher(t, Config{Wait: 10 * time.Millisecond, Backoff: 10 * time.Millisecond, AllowPrivate: allow})
			d.AddLog(Room{Name: "lobby", URLs: []string{u}, Secret: roomSecret}, chatEvents(1, 5))
			testutil.Eventually(t, 5*time.Second, func() error {
				mu.Lock()
				n := len(sigErrs)
				mu.Unlock()
				switch {
				case allow && n == 0:
					return errors.New("not delivered")
				case !allow && counterValue(t, d.cfg.Metrics.Refused) != 5:
					return fmt.Errorf("refused counter %v, want 5", counterValue(t, d.cfg.Metrics.Refused))
				}
				return nil
			})
			mu.Lock()
			defer mu.Unlock()
			if !allow {
				if len(sigErrs) != 0 || counterValue(t, d.cfg.Metrics.Dropped) != 5 || counterValue(t, d.cfg.Metrics.Failures) != 1 {
					t.Fatalf("receiver got %d requests, dropped %v, failures %v: want none, 5, one attempt only",
						len(sigErrs), counterValue(t, d.cfg.Metrics.Dropped), counterValue(t, d.cfg.Metrics.Failures))
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
