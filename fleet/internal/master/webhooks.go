package master

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/webhook"
)

// Webhook limits (docs/events.md).
const (
	hookBatch        = 100              // events in one delivery at most
	hookMaxDelay     = 60 * time.Second // the retry delay doubles up to this
	maxHookURLs      = 5                // per room
	maxHookURLLen    = 1024             // bytes
	minHookSecretLen = 16               // bytes
	maxHookSecretLen = 256              // bytes, of a room's webhookSecret
)

// validateWebhookURLs checks the operator's list of webhook URLs
// (WEBHOOK_URLS) as webhook.ValidateURLs does, private addresses allowed.
// It returns EINVALID naming the problem.
func validateWebhookURLs(what string, urls []string) error {
	if err := webhook.ValidateURLs(urls, true); err != nil {
		return chatfleet.Errorf(chatfleet.EINVALID, "%s: %v", what, err)
	}
	return nil
}

// redactURL returns scheme://host/path of s, for logs: a query may hold a
// credential.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// hooks delivers room events to webhooks: one sink per room and URL, each a
// bounded queue drained in order by its own goroutine in batches, retried
// with exponential backoff. Nothing here ever blocks a room's session: add
// only appends to a queue. Safe for concurrent use.
//
// Two kinds of destination, two clients, two secrets. The host's
// WEBHOOK_URLS are the operator's configuration: they may be private (a
// receiver next to the host) and are signed with WEBHOOK_SECRET. A room's
// own webhookUrls were handed to us by a caller: they are signed with the
// room's own secret and dialled only at public unicast addresses, checked
// on the address each connection uses (netguard.Control), so neither a
// literal nor a name that resolves (or re-resolves) to the host, its
// network or a cloud metadata address is ever called. WebhookAllowPrivate
// lifts that check, for development.
type hooks struct {
	m          *Master
	client     *http.Client    // WEBHOOK_URLS
	roomClient *http.Client    // rooms' own webhookUrls: public addresses only
	ctx        context.Context // cancelled by stop: in-flight deliveries end
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	dropLim    *rate.Limiter // drop log lines
	failLim    *rate.Limiter // failed-attempt log lines

	mu       sync.Mutex
	sinks    map[hookKey]*sink
	stopping bool
	lost     int64 // dropped since the last drop log line

	curMu   sync.Mutex
	cursors map[string]*hookCursor // by room (hookcursor.go)

	refMu     sync.Mutex
	refusedLs map[string]*rate.Limiter // by room: "destination refused" log lines, 1/s; forgotten with the room
}

// hookKey names a sink: a room's events for one URL, signed with secret.
// own marks the room's own webhookUrls (dialled at public addresses only)
// as against the host's WEBHOOK_URLS. The secret is part of the key so that
// a room recreated under its name with another secret never has its events
// signed with the previous one's.
type hookKey struct {
	room, url string
	own       bool
	secret    string
}

// newHookClient returns a client that never follows a redirect (a redirect
// is a failed attempt) and dials with d. Proxies from the environment are
// used only when the client may reach private addresses: through a proxy,
// the address checked would be the proxy's, not the receiver's.
func newHookClient(d *net.Dialer, proxy bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	tr.DialContext = d.DialContext
	if !proxy {
		tr.Proxy = nil
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

func newHooks(m *Master) *hooks {
	ctx, cancel := context.WithCancel(context.Background())
	allow := m.cfg.WebhookAllowPrivate
	return &hooks{
		m: m, ctx: ctx, cancel: cancel,
		client:     newHookClient(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}, true),
		roomClient: newHookClient(netguard.Dialer(30*time.Second, allow), allow),
		dropLim:    rate.NewLimiter(rate.Every(10*time.Second), 1),
		failLim:    rate.NewLimiter(rate.Every(10*time.Second), 3),
		sinks:      map[hookKey]*sink{},
		cursors:    map[string]*hookCursor{},
		refusedLs:  map[string]*rate.Limiter{},
	}
}

// targets returns the sinks that get r's events: the host's WEBHOOK_URLS,
// signed with WEBHOOK_SECRET, and the room's own, signed with its secret. A
// room without a secret of its own (recorded by a master older than
// per-room secrets) gets nothing at its own URLs: they must not be signed
// with the host's secret.
func (h *hooks) targets(r *room) []hookKey {
	var ks []hookKey
	add := func(k hookKey) {
		if !slices.Contains(ks, k) {
			ks = append(ks, k)
		}
	}
	if h.m.cfg.WebhookSecret != "" {
		for _, u := range h.m.cfg.WebhookURLs {
			add(hookKey{room: r.name, url: u, secret: h.m.cfg.WebhookSecret})
		}
	}
	if r.opts.WebhookSecret != "" {
		for _, u := range r.opts.WebhookURLs {
			add(hookKey{room: r.name, url: u, own: true, secret: r.opts.WebhookSecret})
		}
	}
	return ks
}

// enabled reports whether r's events go to webhooks.
func (h *hooks) enabled(r *room) bool {
	return len(h.targets(r)) > 0
}

// addLog queues events r's log just recorded, with their ids; lifecycle
// events also say where the room is.
func (h *hooks) addLog(r *room, evs []chatfleet.Event) {
	if len(evs) == 0 || !h.enabled(r) {
		return
	}
	h.add(r, h.events(r, evs))
}

// events returns r's log events as webhook events, with their ids;
// lifecycle events also say where the room is.
func (h *hooks) events(r *room, evs []chatfleet.Event) []webhook.Event {
	out := make([]webhook.Event, len(evs))
	for i, ev := range evs {
		out[i] = webhook.Event{ID: fmt.Sprintf("%s:%d", ev.Room, ev.Seq), Type: ev.Type, Room: ev.Room, Seq: ev.Seq, At: ev.At, Data: ev.Data}
		switch ev.Type {
		case webhook.TypeRoomOpened, webhook.TypeRoomClosed:
			r.describe(&out[i])
		}
	}
	return out
}

// add queues evs for every URL of r.
func (h *hooks) add(r *room, evs []webhook.Event) {
	if len(evs) == 0 || !h.enabled(r) {
		return
	}
	for _, k := range h.targets(r) {
		if s := h.sink(k); s != nil {
			s.push(evs)
		} else {
			h.dropped(len(evs), "host daemon stopping", k.room, k.url)
		}
	}
}

// sink returns the sink of k, starting it if needed; nil once the
// dispatcher stops.
func (h *hooks) sink(k hookKey) *sink {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopping {
		return nil
	}
	s := h.sinks[k]
	if s == nil {
		s = &sink{h: h, key: k, wake: make(chan struct{}, 1), log: h.m.log.With("room", k.room, "webhook", redactURL(k.url))}
		h.sinks[k] = s
		h.wg.Add(1)
		go s.run()
	}
	s.mu.Lock()
	s.ending = false // a room of this name runs (again)
	s.mu.Unlock()
	return s
}

// roomDone tells r's sinks that no more events come: they end once their
// queue is delivered (or given up).
func (h *hooks) roomDone(r *room) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, s := range h.sinks {
		if k.room == r.name {
			s.end()
		}
	}
}

// queued returns how many events wait in every queue.
func (h *hooks) queued() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.sinks {
		s.mu.Lock()
		n += len(s.q)
		s.mu.Unlock()
	}
	return n
}

// stop delivers what is queued for up to wait, then abandons the rest,
// counting it as dropped. No event is queued after stop begins.
func (h *hooks) stop(wait time.Duration) {
	h.mu.Lock()
	h.stopping = true
	for _, s := range h.sinks {
		s.end()
	}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
	}
	h.cancel()
	<-done
	h.mu.Lock()
	n := 0
	for _, s := range h.sinks {
		s.mu.Lock()
		n += len(s.q)
		s.q = nil
		s.mu.Unlock()
	}
	h.mu.Unlock()
	if n > 0 {
		h.m.metrics.hookDropped.Add(float64(n))
		h.m.log.Error("webhook events not delivered before exit", "dropped", n)
	}
}

// dropped counts n lost events and logs them, at most one line per 10
// seconds (with the count since the previous line).
func (h *hooks) dropped(n int, why, room, u string) {
	h.m.metrics.hookDropped.Add(float64(n))
	h.mu.Lock()
	h.lost += int64(n)
	if !h.dropLim.Allow() {
		h.mu.Unlock()
		return
	}
	lost := h.lost
	h.lost = 0
	h.mu.Unlock()
	h.m.log.Error("webhook events dropped", "dropped", lost, "reason", why, "room", room, "webhook", redactURL(u))
}

// refused drops n events of k whose destination resolved to an address that
// is not public, counting them (chatserver_webhook_refused_total, and in
// chatserver_webhook_dropped_total) and logging at most once a second per
// room.
func (h *hooks) refused(n int, k hookKey, err error) {
	h.m.metrics.hookDropped.Add(float64(n))
	h.m.metrics.hookRefused.Add(float64(n))
	h.refMu.Lock()
	lim := h.refusedLs[k.room]
	if lim == nil {
		lim = rate.NewLimiter(rate.Every(time.Second), 1)
		h.refusedLs[k.room] = lim
	}
	ok := lim.Allow()
	h.refMu.Unlock()
	if ok {
		h.m.log.Warn("webhook events dropped: the destination is not a public address (WEBHOOK_ALLOW_PRIVATE=1 allows it in development)",
			"room", k.room, "webhook", redactURL(k.url), "dropped", n, "err", err)
	}
}

// sink is the queue of one room's events for one URL.
type sink struct {
	h    *hooks
	key  hookKey
	log  *slog.Logger
	wake chan struct{}

	mu     sync.Mutex
	q      []webhook.Event
	since  time.Time // when the oldest queued event arrived
	ending bool      // no more events: end once the queue is empty
}

func (s *sink) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sink) end() {
	s.mu.Lock()
	s.ending = true
	s.mu.Unlock()
	s.poke()
}

// push queues evs; beyond the bound the oldest queued events are dropped,
// so that a receiver that comes back gets the room's latest state.
func (s *sink) push(evs []webhook.Event) {
	s.mu.Lock()
	if len(s.q) == 0 {
		s.since = time.Now()
	}
	s.q = append(s.q, evs...)
	over := len(s.q) - s.h.m.cfg.WebhookQueue
	if over > 0 {
		clear(s.q[:over])
		s.q = s.q[over:]
	}
	s.mu.Unlock()
	if over > 0 {
		s.h.dropped(over, "queue full", s.key.room, s.key.url)
	}
	s.poke()
}

func (s *sink) run() {
	defer s.h.wg.Done()
	for {
		batch, ok := s.next()
		if !ok {
			return
		}
		s.deliver(batch)
	}
}

// next waits for a batch: hookBatch events, or what arrived once the oldest
// waited WebhookWait (at once when the room is done). It returns false when
// the sink ends.
func (s *sink) next() ([]webhook.Event, bool) {
	wait := s.h.m.cfg.WebhookWait
	for {
		s.mu.Lock()
		n := len(s.q)
		if n > 0 && (n >= hookBatch || s.ending || time.Since(s.since) >= wait) {
			k := min(n, hookBatch)
			batch := slices.Clone(s.q[:k])
			clear(s.q[:k])
			s.q = s.q[k:]
			s.mu.Unlock()
			return batch, true
		}
		if n == 0 && s.ending {
			s.mu.Unlock()
			if s.retire() {
				return nil, false
			}
			continue
		}
		var timer <-chan time.Time
		if n > 0 {
			timer = time.After(wait - time.Since(s.since))
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-timer:
		case <-s.h.ctx.Done():
			return nil, false
		}
	}
}

// retire removes s from the dispatcher if it is still empty and ending.
func (s *sink) retire() bool {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.q) > 0 || !s.ending {
		return false
	}
	delete(s.h.sinks, s.key)
	return true
}

// deliver sends one batch until the receiver takes it (2xx) or WebhookMaxAge
// has passed since the first attempt: the retry delays are WebhookBackoff,
// doubling up to 60 s, plus up to 10% jitter. Every attempt of the batch has
// the same delivery id and a fresh timestamp and signature.
func (s *sink) deliver(batch []webhook.Event) {
	h, cfg := s.h, &s.h.m.cfg
	id := strings.ToLower(rand.Text())
	body, err := json.Marshal(webhook.Batch{DeliveryID: id, HostID: cfg.HostID, Events: batch})
	if err != nil {
		h.dropped(len(batch), "encode: "+err.Error(), s.key.room, s.key.url)
		return
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := s.post(body, id, attempt)
		if err == nil {
			h.m.metrics.hookDeliveries.Inc()
			h.recordDone(s.key, maxSeq(batch))
			return
		}
		h.m.metrics.hookFailures.Inc()
		if errors.Is(err, netguard.ErrNotPublic) {
			// The name resolved to an address we never call for a caller:
			// retrying would not change that, and would keep probing it.
			h.refused(len(batch), s.key, err)
			h.recordDone(s.key, maxSeq(batch))
			return
		}
		delay := retryDelay(cfg.WebhookBackoff, attempt)
		if time.Since(start)+delay > cfg.WebhookMaxAge {
			h.dropped(len(batch), fmt.Sprintf("gave up after %d attempts", attempt), s.key.room, s.key.url)
			h.recordDone(s.key, maxSeq(batch))
			return
		}
		if h.failLim.Allow() {
			s.log.Warn("webhook delivery failed; will retry", "attempt", attempt, "retryIn", delay.Round(time.Millisecond), "events", len(batch), "err", err)
		}
		select {
		case <-time.After(delay):
		case <-h.ctx.Done():
			h.dropped(len(batch), "host daemon stopped", s.key.room, s.key.url)
			return
		}
	}
}

// retryDelay is the wait after failed attempt n (from 1): base·2^(n-1),
// at most hookMaxDelay, plus up to 10% jitter.
func retryDelay(base time.Duration, n int) time.Duration {
	d := hookMaxDelay
	if n <= 20 {
		d = min(base<<(n-1), hookMaxDelay)
	}
	return d + mathrand.N(d/10+1)
}

// post makes one attempt.
func (s *sink) post(body []byte, id string, attempt int) error {
	cfg := &s.h.m.cfg
	ctx, cancel := context.WithTimeout(s.h.ctx, cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.key.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	ts := strconv.FormatInt(cfg.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "chatfleet-webhook/"+chatfleet.Version)
	req.Header.Set(webhook.HeaderTimestamp, ts)
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(s.key.secret, ts, body))
	req.Header.Set(webhook.HeaderDelivery, id)
	req.Header.Set(webhook.HeaderAttempt, strconv.Itoa(attempt))
	client := s.h.client
	if s.key.own {
		client = s.h.roomClient
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a credential
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return nil
}

// maxSeq returns the highest seq in batch (room.viewers events have none).
func maxSeq(batch []webhook.Event) int64 {
	var m int64
	for _, ev := range batch {
		m = max(m, ev.Seq)
	}
	return m
}
