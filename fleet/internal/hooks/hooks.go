// Package hooks delivers room events to webhooks: one queue per room and
// URL, drained in order by its own goroutine in signed batches, retried
// with exponential backoff and given up after a maximum age. Deliveries
// survive the host daemon: after every batch a queue records how far it
// got in the room's cursor file, and a daemon that adopts a running room
// replays the rest from the store (cursor.go).
//
// The master builds one Dispatcher from its configuration and hands it the
// events of its rooms; the dispatcher knows nothing of the master: it sees
// a room as a Room, the store as Store, and counts in the Metrics it is
// given. The wire format (payload, headers, signatures) is package webhook's.
package hooks

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

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/webhook"
)

// Delivery limits (docs/events.md).
const (
	maxBatch = 100              // events in one delivery at most
	maxDelay = 60 * time.Second // the retry delay doubles up to this
)

// Store is the part of the event store the dispatcher reads: a room's
// events after a seq, to replay them after adoption.
type Store interface {
	// Events returns at most limit events of room with Seq > afterSeq, oldest first.
	Events(ctx context.Context, room string, afterSeq int64, limit int) ([]chatfleet.Event, error)
}

// Metrics are the counters the dispatcher adds to; a nil one counts into
// nothing.
type Metrics struct {
	Deliveries prometheus.Counter // batches a receiver took (2xx)
	Failures   prometheus.Counter // attempts that failed
	Dropped    prometheus.Counter // events never delivered, Refused included
	Refused    prometheus.Counter // events whose destination was not a public address
}

// Config configures a Dispatcher. Zero values mean the defaults in comments.
type Config struct {
	HostID string   // sent in every batch
	URLs   []string // WEBHOOK_URLS: every room's events go there (may be private addresses)
	Secret string   // WEBHOOK_SECRET: signs the URLs' deliveries; without it they get nothing
	// AllowPrivate lets rooms' own URLs reach loopback, private and other
	// non-public addresses (development only).
	AllowPrivate bool
	Queue        int           // events queued per room and URL; beyond it the oldest are dropped; default 10000
	Wait         time.Duration // a batch waits this long to fill up to 100 events; default 1s
	Backoff      time.Duration // first retry delay, doubling up to 60s; default 1s
	MaxAge       time.Duration // a batch is given up this long after its first attempt; default 1h
	Timeout      time.Duration // per delivery attempt; default 10s

	Store        Store         // nil: no replay after adoption
	StoreTimeout time.Duration // per store call; default 3s
	// CursorFile returns where a room's deliveries are recorded, or "" once
	// the room is gone (nothing is recorded then: nothing will adopt it).
	// Nil: nothing is recorded or replayed.
	CursorFile func(room string) string

	Metrics Metrics
	Log     *slog.Logger
	Now     func() time.Time // the signatures' timestamps; default time.Now
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Wait, time.Second)
	def(&c.Backoff, time.Second)
	def(&c.MaxAge, time.Hour)
	def(&c.Timeout, 10*time.Second)
	def(&c.StoreTimeout, 3*time.Second)
	if c.Queue <= 0 {
		c.Queue = 10000
	}
	for _, p := range []*prometheus.Counter{&c.Metrics.Deliveries, &c.Metrics.Failures, &c.Metrics.Dropped, &c.Metrics.Refused} {
		if *p == nil {
			*p = prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"})
		}
	}
	if c.CursorFile == nil {
		c.CursorFile = func(string) string { return "" }
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Room is a room as its webhooks see it.
type Room struct {
	Name string
	// URLs are the room's own webhookUrls, signed with Secret and dialled
	// at public addresses only. A room without a secret of its own
	// (recorded by a master older than per-room secrets) gets nothing
	// there: they must not be signed with the host's secret.
	URLs   []string
	Secret string
	// Describe fills a lifecycle event (room.opened, room.closed) with
	// where the room is, for a listing fed by webhooks; nil: left as is.
	// AddLog and Replay call it on their caller's goroutine.
	Describe func(*webhook.Event)
}

// Dispatcher delivers room events to webhooks: one sink per room and URL,
// each a bounded queue drained in order by its own goroutine in batches,
// retried with exponential backoff. Nothing here ever blocks a room's
// session: adding only appends to a queue. Safe for concurrent use.
//
// Two kinds of destination, two clients, two secrets. The host's URLs are
// the operator's configuration: they may be private (a receiver next to
// the host) and are signed with the host's secret. A room's own URLs were
// handed to the master by a caller: they are signed with the room's own
// secret and dialled only at public unicast addresses, checked on the
// address each connection uses (netguard.Control), so neither a literal
// nor a name that resolves (or re-resolves) to the host, its network or a
// cloud metadata address is ever called. AllowPrivate lifts that check,
// for development.
type Dispatcher struct {
	cfg        Config
	client     *http.Client    // the host's URLs
	roomClient *http.Client    // rooms' own URLs: public addresses only
	ctx        context.Context // cancelled by Stop: in-flight deliveries end
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	dropLim    *rate.Limiter // drop log lines
	failLim    *rate.Limiter // failed-attempt log lines

	mu       sync.Mutex
	sinks    map[target]*sink
	stopping bool
	lost     int64 // dropped since the last drop log line

	curMu   sync.Mutex
	cursors map[string]*cursor // by room (cursor.go)

	refMu     sync.Mutex
	refusedLs map[string]*rate.Limiter // by room: "destination refused" log lines, 1/s; forgotten with the room
}

// target names a sink: a room's events for one URL, signed with secret.
// own marks the room's own URLs (dialled at public addresses only) as
// against the host's. The secret is part of the key so that a room
// recreated under its name with another secret never has its events
// signed with the previous one's.
type target struct {
	room, url string
	own       bool
	secret    string
}

// newClient returns a client that never follows a redirect (a redirect is
// a failed attempt) and dials with d. Proxies from the environment are used
// only when the client may reach private addresses: through a proxy, the
// address checked would be the proxy's, not the receiver's.
func newClient(d *net.Dialer, proxy bool) *http.Client {
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

// New returns a Dispatcher for cfg; Stop ends its deliveries.
func New(cfg Config) *Dispatcher {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	allow := cfg.AllowPrivate
	return &Dispatcher{
		cfg: cfg, ctx: ctx, cancel: cancel,
		client:     newClient(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}, true),
		roomClient: newClient(netguard.Dialer(30*time.Second, allow), allow),
		dropLim:    rate.NewLimiter(rate.Every(10*time.Second), 1),
		failLim:    rate.NewLimiter(rate.Every(10*time.Second), 3),
		sinks:      map[target]*sink{},
		cursors:    map[string]*cursor{},
		refusedLs:  map[string]*rate.Limiter{},
	}
}

// targets returns the sinks that get r's events: the host's URLs, signed
// with the host's secret, and the room's own, signed with its secret.
func (d *Dispatcher) targets(r Room) []target {
	var ts []target
	add := func(t target) {
		if !slices.Contains(ts, t) {
			ts = append(ts, t)
		}
	}
	if d.cfg.Secret != "" {
		for _, u := range d.cfg.URLs {
			add(target{room: r.Name, url: u, secret: d.cfg.Secret})
		}
	}
	if r.Secret != "" {
		for _, u := range r.URLs {
			add(target{room: r.Name, url: u, own: true, secret: r.Secret})
		}
	}
	return ts
}

// Enabled reports whether r's events go to webhooks.
func (d *Dispatcher) Enabled(r Room) bool {
	return len(d.targets(r)) > 0
}

// AddLog queues events of r's numbered log, as they were just recorded.
func (d *Dispatcher) AddLog(r Room, evs []chatfleet.Event) {
	if len(evs) == 0 || !d.Enabled(r) {
		return
	}
	d.Add(r, events(r, evs))
}

// events returns r's log events as webhook events, with their ids;
// lifecycle events also say where the room is.
func events(r Room, evs []chatfleet.Event) []webhook.Event {
	out := make([]webhook.Event, len(evs))
	for i, ev := range evs {
		out[i] = webhook.Event{ID: fmt.Sprintf("%s:%d", ev.Room, ev.Seq), Type: ev.Type, Room: ev.Room, Seq: ev.Seq, At: ev.At, Data: ev.Data}
		switch ev.Type {
		case webhook.TypeRoomOpened, webhook.TypeRoomClosed:
			if r.Describe != nil {
				r.Describe(&out[i])
			}
		}
	}
	return out
}

// Add queues evs, ready as they are (room.viewers), for every URL of r.
func (d *Dispatcher) Add(r Room, evs []webhook.Event) {
	if len(evs) == 0 {
		return
	}
	for _, t := range d.targets(r) {
		if s := d.sink(t); s != nil {
			s.push(evs)
		} else {
			d.dropped(len(evs), "host daemon stopping", t.room, t.url)
		}
	}
}

// sink returns the sink of t, starting it if needed; nil once the
// dispatcher stops.
func (d *Dispatcher) sink(t target) *sink {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		return nil
	}
	s := d.sinks[t]
	if s == nil {
		s = &sink{d: d, key: t, wake: make(chan struct{}, 1), log: d.cfg.Log.With("room", t.room, "webhook", webhook.RedactURL(t.url))}
		d.sinks[t] = s
		d.wg.Add(1)
		go s.run()
	}
	s.mu.Lock()
	s.ending = false // a room of this name runs (again)
	s.mu.Unlock()
	return s
}

// RoomDone tells the room's sinks that no more events come: they end once
// their queue is delivered (or given up).
func (d *Dispatcher) RoomDone(room string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for t, s := range d.sinks {
		if t.room == room {
			s.end()
		}
	}
}

// Queued returns how many events wait in every queue.
func (d *Dispatcher) Queued() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, s := range d.sinks {
		s.mu.Lock()
		n += len(s.q)
		s.mu.Unlock()
	}
	return n
}

// Stop delivers what is queued for up to wait, then abandons the rest,
// counting it as dropped. No event is queued after Stop begins.
func (d *Dispatcher) Stop(wait time.Duration) {
	d.mu.Lock()
	d.stopping = true
	for _, s := range d.sinks {
		s.end()
	}
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
	}
	d.cancel()
	<-done
	d.mu.Lock()
	n := 0
	for _, s := range d.sinks {
		s.mu.Lock()
		n += len(s.q)
		s.q = nil
		s.mu.Unlock()
	}
	d.mu.Unlock()
	if n > 0 {
		d.cfg.Metrics.Dropped.Add(float64(n))
		d.cfg.Log.Error("webhook events not delivered before exit", "dropped", n)
	}
}

// dropped counts n lost events and logs them, at most one line per 10
// seconds (with the count since the previous line).
func (d *Dispatcher) dropped(n int, why, room, u string) {
	d.cfg.Metrics.Dropped.Add(float64(n))
	d.mu.Lock()
	d.lost += int64(n)
	if !d.dropLim.Allow() {
		d.mu.Unlock()
		return
	}
	lost := d.lost
	d.lost = 0
	d.mu.Unlock()
	d.cfg.Log.Error("webhook events dropped", "dropped", lost, "reason", why, "room", room, "webhook", webhook.RedactURL(u))
}

// refused drops n events of t whose destination resolved to an address
// that is not public, counting them (Refused, and in Dropped) and logging
// at most once a second per room.
func (d *Dispatcher) refused(n int, t target, err error) {
	d.cfg.Metrics.Dropped.Add(float64(n))
	d.cfg.Metrics.Refused.Add(float64(n))
	d.refMu.Lock()
	lim := d.refusedLs[t.room]
	if lim == nil {
		lim = rate.NewLimiter(rate.Every(time.Second), 1)
		d.refusedLs[t.room] = lim
	}
	ok := lim.Allow()
	d.refMu.Unlock()
	if ok {
		d.cfg.Log.Warn("webhook events dropped: the destination is not a public address (WEBHOOK_ALLOW_PRIVATE=1 allows it in development)",
			"room", t.room, "webhook", webhook.RedactURL(t.url), "dropped", n, "err", err)
	}
}

// sink is the queue of one room's events for one URL.
type sink struct {
	d    *Dispatcher
	key  target
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
	over := len(s.q) - s.d.cfg.Queue
	if over > 0 {
		clear(s.q[:over])
		s.q = s.q[over:]
	}
	s.mu.Unlock()
	if over > 0 {
		s.d.dropped(over, "queue full", s.key.room, s.key.url)
	}
	s.poke()
}

func (s *sink) run() {
	defer s.d.wg.Done()
	for {
		batch, ok := s.next()
		if !ok {
			return
		}
		s.deliver(batch)
	}
}

// next waits for a batch: maxBatch events, or what arrived once the oldest
// waited Wait (at once when the room is done). It returns false when the
// sink ends.
func (s *sink) next() ([]webhook.Event, bool) {
	wait := s.d.cfg.Wait
	for {
		s.mu.Lock()
		n := len(s.q)
		if n > 0 && (n >= maxBatch || s.ending || time.Since(s.since) >= wait) {
			k := min(n, maxBatch)
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
		case <-s.d.ctx.Done():
			return nil, false
		}
	}
}

// retire removes s from the dispatcher if it is still empty and ending.
func (s *sink) retire() bool {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.q) > 0 || !s.ending {
		return false
	}
	delete(s.d.sinks, s.key)
	return true
}

// deliver sends one batch until the receiver takes it (2xx) or MaxAge has
// passed since the first attempt: the retry delays are Backoff, doubling
// up to 60 s, plus up to 10% jitter. Every attempt of the batch has the
// same delivery id and a fresh timestamp and signature.
func (s *sink) deliver(batch []webhook.Event) {
	d, cfg := s.d, &s.d.cfg
	id := strings.ToLower(rand.Text())
	body, err := json.Marshal(webhook.Batch{DeliveryID: id, HostID: cfg.HostID, Events: batch})
	if err != nil {
		d.dropped(len(batch), "encode: "+err.Error(), s.key.room, s.key.url)
		return
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := s.post(body, id, attempt)
		if err == nil {
			cfg.Metrics.Deliveries.Inc()
			d.recordDone(s.key, maxSeq(batch))
			return
		}
		cfg.Metrics.Failures.Inc()
		if errors.Is(err, netguard.ErrNotPublic) {
			// The name resolved to an address we never call for a caller:
			// retrying would not change that, and would keep probing it.
			d.refused(len(batch), s.key, err)
			d.recordDone(s.key, maxSeq(batch))
			return
		}
		delay := retryDelay(cfg.Backoff, attempt)
		if time.Since(start)+delay > cfg.MaxAge {
			d.dropped(len(batch), fmt.Sprintf("gave up after %d attempts", attempt), s.key.room, s.key.url)
			d.recordDone(s.key, maxSeq(batch))
			return
		}
		if d.failLim.Allow() {
			s.log.Warn("webhook delivery failed; will retry", "attempt", attempt, "retryIn", delay.Round(time.Millisecond), "events", len(batch), "err", err)
		}
		select {
		case <-time.After(delay):
		case <-d.ctx.Done():
			d.dropped(len(batch), "host daemon stopped", s.key.room, s.key.url)
			return
		}
	}
}

// retryDelay is the wait after failed attempt n (from 1): base·2^(n-1),
// at most maxDelay, plus up to 10% jitter.
func retryDelay(base time.Duration, n int) time.Duration {
	d := maxDelay
	if n <= 20 {
		d = min(base<<(n-1), maxDelay)
	}
	return d + mathrand.N(d/10+1)
}

// post makes one attempt.
func (s *sink) post(body []byte, id string, attempt int) error {
	cfg := &s.d.cfg
	ctx, cancel := context.WithTimeout(s.d.ctx, cfg.Timeout)
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
	client := s.d.client
	if s.key.own {
		client = s.d.roomClient
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
