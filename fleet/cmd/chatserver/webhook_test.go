package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/webhook"
)

const hookSecret = "whsec-integration-0123456789"

// hookReq is one request the receiver got.
type hookReq struct {
	at       time.Time
	status   int // what the receiver answered (0: the sender went away first)
	delivery string
	attempt  int
	ts, sig  string
	body     []byte
	batch    webhook.Batch
}

// receiver is a real webhook endpoint, an HTTP server of the test process
// (the external service). It refuses the first failFirst requests with 500,
// answers 503 while down, holds requests while a hang is set, and keeps
// the events of the deliveries it took, deduplicated by id.
type receiver struct {
	t         *testing.T
	url       string
	failFirst atomic.Int32
	down      atomic.Bool

	mu      sync.Mutex
	hang    chan struct{} // non-nil: requests wait for it to close (30 s at most)
	hanging int           // requests waiting now
	reqs    []hookReq
	byID    map[string]webhook.Event
	dups    int // events taken again (at-least-once), after dedupe
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, byID: map[string]webhook.Event{}}
	srv := httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(func() {
		rc.release()
		srv.Close()
	})
	rc.url = srv.URL + "/hooks/chat"
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := hookReq{at: time.Now(), delivery: r.Header.Get(webhook.HeaderDelivery), ts: r.Header.Get(webhook.HeaderTimestamp),
		sig: r.Header.Get(webhook.HeaderSignature), body: body}
	req.attempt, _ = strconv.Atoi(r.Header.Get(webhook.HeaderAttempt))
	if err := json.Unmarshal(body, &req.batch); err != nil {
		rc.t.Errorf("webhook body is not a batch: %v: %.200s", err, body)
	}
	req.status = http.StatusOK
	switch {
	case rc.failFirst.Add(-1) >= 0:
		req.status = http.StatusInternalServerError
	case rc.down.Load():
		req.status = http.StatusServiceUnavailable
	}
	if req.status == http.StatusOK {
		rc.mu.Lock()
		hang := rc.hang
		if hang != nil {
			rc.hanging++
		}
		rc.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-time.After(30 * time.Second):
			case <-r.Context().Done():
				req.status = 0
			}
			rc.mu.Lock()
			rc.hanging--
			rc.mu.Unlock()
		}
	}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, req)
	if req.status == http.StatusOK {
		for _, ev := range req.batch.Events {
			if _, seen := rc.byID[ev.ID]; seen {
				rc.dups++
				continue
			}
			rc.byID[ev.ID] = ev
		}
	}
	rc.mu.Unlock()
	if req.status != 0 {
		w.WriteHeader(req.status)
	}
}

// stall makes requests wait until release.
func (rc *receiver) stall() {
	rc.mu.Lock()
	rc.hang = make(chan struct{})
	rc.mu.Unlock()
}

func (rc *receiver) release() {
	rc.mu.Lock()
	if rc.hang != nil {
		close(rc.hang)
		rc.hang = nil
	}
	rc.mu.Unlock()
}

func (rc *receiver) requests() []hookReq {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs)
}

// events returns the events taken, deduplicated, in seq order (room.viewers
// last, in time order).
func (rc *receiver) events() []webhook.Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []webhook.Event
	for _, ev := range rc.byID {
		out = append(out, ev)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Seq == 0) != (b.Seq == 0) {
			return b.Seq == 0
		}
		if a.Seq != b.Seq {
			return a.Seq < b.Seq
		}
		return a.At.Before(b.At)
	})
	return out
}

func (rc *receiver) has(id string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	_, ok := rc.byID[id]
	return ok
}

// hookEnv is the host environment for webhooks to rc.
func hookEnv(rc *receiver, extra ...string) []string {
	return append([]string{"WEBHOOK_URLS=" + rc.url, "WEBHOOK_SECRET=" + hookSecret, "STATS_EVERY=200ms"}, extra...)
}

// createWith creates a room with opts.
func (h *host) createWith(name string, opts hostapi.RoomOptions) int {
	return h.Create(userKey, name, opts)
}

// metric reads a counter or gauge from the admin /metrics.
func (h *host) metric(name string) float64 {
	h.t.Helper()
	status, body := testutil.Do(h.t, "GET", h.Admin+"/metrics", adminKey, "")
	if status != 200 {
		h.t.Fatalf("metrics: %d", status)
	}
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		h.t.Fatalf("metric %s not exported", name)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestWebhooksCarryEveryEventType drives a room through every kind of event
// while the receiver refuses the first deliveries: after dedupe by id, each
// event arrives once, the room's sequence has no gap from room.opened to
// room.closed, and every delivery verifies with the receiver's helper.
func TestWebhooksCarryEveryEventType(t *testing.T) {
	rc := newReceiver(t)
	rc.failFirst.Store(2)
	h := startHost(t, hookEnv(rc, "WEBHOOK_BACKOFF=100ms")...)
	port := h.create("hooked")
	prod := join(t, port, "hooked", "pia", chatfleet.RoleProducer)
	join(t, port, "hooked", "vin", chatfleet.RoleViewer)
	join(t, port, "hooked", "troll", chatfleet.RoleViewer)

	prod.Send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: "https://video.example.com/hooked.m3u8"})
	prod.Next(protocol.TypeStream, 5*time.Second)
	prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "welcome", ClientID: "c1"})
	first := prod.Next(protocol.TypeChat, 5*time.Second).Seq
	for _, m := range []protocol.ClientMsg{
		{Type: protocol.TypeDelete, Seq: first},
		{Type: protocol.TypeSlowMode, Seconds: 5},
		{Type: protocol.TypeMute, UserID: "troll", Seconds: 60},
		{Type: protocol.TypeUnmute, UserID: "troll"},
		{Type: protocol.TypeKick, UserID: "troll", Reason: "spam"},
		{Type: protocol.TypeBan, UserID: "spammer", Reason: "abuse"},
		{Type: protocol.TypeStream, Live: false},
	} {
		prod.Send(m)
	}
	prod.Next(protocol.TypeStream, 5*time.Second) // the offline one: everything before is sequenced
	if status, body := testutil.Do(t, "POST", h.Admin+"/api/v1/messages", adminKey, `{"text":"maintenance at noon"}`); status != 200 {
		t.Fatalf("global: %d %s", status, body)
	}
	prod.Next(protocol.TypeSystem, 5*time.Second)
	// The viewer count changed; wait for its event before the room ends.
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, ev := range rc.events() {
			if ev.Type == webhook.TypeRoomViewers && ev.Viewers != nil && *ev.Viewers > 0 {
				return nil
			}
		}
		return errors.New("no room.viewers event with viewers yet")
	})
	if status, body := testutil.Do(t, "DELETE", h.Admin+"/api/v1/rooms/hooked", adminKey, `{"reason":"show is over"}`); status != 200 {
		t.Fatalf("close: %d %s", status, body)
	}

	var closed webhook.Event
	testutil.Eventually(t, 15*time.Second, func() error {
		for _, ev := range rc.events() {
			if ev.Type == webhook.TypeRoomClosed {
				closed = ev
				return nil
			}
		}
		return errors.New("no room.closed yet")
	})
	evs := rc.events()
	types := map[string]bool{}
	var seqs []int64
	for _, ev := range evs {
		kind := ev.Type
		if ev.Data != nil {
			m, err := protocol.DecodeServer(ev.Data)
			if err != nil {
				t.Fatalf("event %s data %s: %v", ev.ID, ev.Data, err)
			}
			if m.Seq != ev.Seq {
				t.Errorf("event %s: data seq %d", ev.ID, m.Seq)
			}
			switch {
			case ev.Type == protocol.TypeStream && m.Live:
				kind = "stream.live"
			case ev.Type == protocol.TypeStream:
				kind = "stream.offline"
			case ev.Type == protocol.TypeSystem:
				kind = "system." + m.Kind
			}
		}
		types[kind] = true
		if ev.Room != "hooked" {
			t.Errorf("event %s of room %q", ev.ID, ev.Room)
		}
		if ev.Seq > 0 {
			seqs = append(seqs, ev.Seq)
			if ev.ID != fmt.Sprintf("hooked:%d", ev.Seq) {
				t.Errorf("sequenced event id %q, want hooked:%d", ev.ID, ev.Seq)
			}
		} else if ev.Type != webhook.TypeRoomViewers || !strings.HasPrefix(ev.ID, "hooked:viewers:") {
			t.Errorf("event without seq: %+v", ev)
		}
	}
	for _, want := range []string{
		webhook.TypeRoomOpened, "join", "stream.live", "chat", "deleted", "slowmode", "muted", "unmuted",
		"kicked", "leave", "banned", "stream.offline", "system.global", webhook.TypeRoomViewers, webhook.TypeRoomClosed,
	} {
		if !types[want] {
			t.Errorf("no %s event arrived (got %v)", want, types)
		}
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("seqs after dedupe %v: want 1, 2, 3, … without gap", seqs)
		}
	}
	if evs[0].Type != webhook.TypeRoomOpened || evs[0].Port != port || evs[0].Host != "127.0.0.1" || evs[0].HostID == "" || evs[0].CreatedAt.IsZero() {
		t.Errorf("room.opened %+v: want seq 1 with host and port", evs[0])
	}
	if closed.Seq != seqs[len(seqs)-1] || closed.Status != "closed" || closed.Reason != "show is over" || closed.Port != port {
		t.Errorf("room.closed %+v: want the last seq, status closed, the reason", closed)
	}

	reqs := rc.requests()
	if reqs[0].status != 500 || reqs[1].status != 500 {
		t.Fatalf("the first two deliveries were not refused: %d %d", reqs[0].status, reqs[1].status)
	}
	retried := false
	for _, r := range reqs[2:] {
		retried = retried || (r.delivery == reqs[0].delivery && r.attempt > 1 && r.status == 200)
	}
	if !retried {
		t.Error("the refused delivery was not retried under its id")
	}
	for _, r := range reqs {
		if err := webhook.Verify(hookSecret, r.ts, r.body, r.sig, webhook.DefaultMaxSkew); err != nil {
			t.Fatalf("delivery %s attempt %d does not verify: %v", r.delivery, r.attempt, err)
		}
	}
	tampered := []byte(strings.Replace(string(reqs[0].body), `"hooked"`, `"hijack"`, 1))
	if err := webhook.Verify(hookSecret, reqs[0].ts, tampered, reqs[0].sig, webhook.DefaultMaxSkew); !errors.Is(err, webhook.ErrBadSignature) {
		t.Fatalf("a tampered body verified: %v", err)
	}
}

// TestStalledWebhookDelaysNoChat holds every delivery (the receiver hangs
// the request, up to 30 s): chat flows in the room meanwhile, and once the
// receiver answers, everything said is delivered.
func TestStalledWebhookDelaysNoChat(t *testing.T) {
	rc := newReceiver(t)
	rc.stall()
	h := startHost(t, hookEnv(rc)...)
	port := h.create("patient")
	prod := join(t, port, "patient", "pia", chatfleet.RoleProducer)
	viewer := join(t, port, "patient", "vin", chatfleet.RoleViewer)
	testutil.Eventually(t, 10*time.Second, func() error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.hanging == 0 {
			return errors.New("no delivery is hanging yet")
		}
		return nil
	})
	var last int64
	for i := range 10 {
		prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: fmt.Sprintf("during the stall %d", i), ClientID: fmt.Sprint(i)})
		m := viewer.Next(protocol.TypeChat, 5*time.Second)
		if m.Text != fmt.Sprintf("during the stall %d", i) {
			t.Fatalf("viewer got %+v", m)
		}
		last = m.Seq
	}
	if n := len(rc.events()); n != 0 {
		t.Fatalf("the receiver took %d events: it was not stalled while the room chatted", n)
	}
	rc.release()
	testutil.Eventually(t, 15*time.Second, func() error {
		if !rc.has(fmt.Sprintf("patient:%d", last)) {
			return fmt.Errorf("patient:%d not delivered", last)
		}
		return nil
	})
	if d := h.metric("chatserver_webhook_dropped_total"); d != 0 {
		t.Errorf("dropped %v events, within the queue bound", d)
	}
}

// TestWebhookRetryScheduleAndDropCounter keeps the receiver down with a
// queue of 5 events: attempts of one delivery come after growing delays, the
// overflow is counted in chatserver_webhook_dropped_total and logged, and
// the newest events are delivered once the receiver is back.
func TestWebhookRetryScheduleAndDropCounter(t *testing.T) {
	rc := newReceiver(t)
	rc.down.Store(true)
	h := startHost(t, hookEnv(rc, "WEBHOOK_QUEUE=5", "WEBHOOK_BACKOFF=200ms")...)
	port := h.create("flooded")
	prod := join(t, port, "flooded", "pia", chatfleet.RoleProducer)
	var last int64
	for i := range 30 {
		prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: fmt.Sprintf("m%d", i), ClientID: fmt.Sprint(i)})
		last = prod.Next(protocol.TypeChat, 5*time.Second).Seq
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if d := h.metric("chatserver_webhook_dropped_total"); d < 1 {
			return fmt.Errorf("dropped_total %v", d)
		}
		if !strings.Contains(h.Proc.Output(), "webhook events dropped") {
			return errors.New("the drop is not logged")
		}
		return nil
	})
	// Four attempts of the first delivery: 200, 400, 800 ms apart at least.
	var tries []hookReq
	testutil.Eventually(t, 10*time.Second, func() error {
		tries = tries[:0]
		reqs := rc.requests()
		for _, r := range reqs {
			if r.delivery == reqs[0].delivery {
				tries = append(tries, r)
			}
		}
		if len(tries) < 4 {
			return fmt.Errorf("%d attempts of the first delivery", len(tries))
		}
		return nil
	})
	for i := 1; i < len(tries); i++ {
		if tries[i].attempt != i+1 {
			t.Fatalf("attempt header %d, want %d", tries[i].attempt, i+1)
		}
		if gap, least := tries[i].at.Sub(tries[i-1].at), 200*time.Millisecond<<(i-1); gap < least {
			t.Errorf("attempt %d came %v after the previous, want at least %v", i+1, gap, least)
		}
	}
	rc.down.Store(false)
	testutil.Eventually(t, 15*time.Second, func() error {
		if !rc.has(fmt.Sprintf("flooded:%d", last)) {
			return fmt.Errorf("the newest event flooded:%d was not delivered", last)
		}
		return nil
	})
}

// TestRecreatedRoomKeepsIdsUnique closes a room and creates it again with
// the same name (no store): the new room continues the sequence, so no
// event id repeats, and its history starts with its opening.
func TestRecreatedRoomKeepsIdsUnique(t *testing.T) {
	rc := newReceiver(t)
	h := startHost(t, hookEnv(rc)...)
	port := h.create("again")
	join(t, port, "again", "pia", chatfleet.RoleProducer)
	if status, body := testutil.Do(t, "DELETE", h.Admin+"/api/v1/rooms/again", adminKey, `{"reason":"first show over"}`); status != 200 {
		t.Fatalf("close: %d %s", status, body)
	}
	port = h.create("again")
	join(t, port, "again", "pia", chatfleet.RoleProducer)
	var opened []webhook.Event
	testutil.Eventually(t, 10*time.Second, func() error {
		opened = opened[:0]
		for _, ev := range rc.events() {
			if ev.Type == webhook.TypeRoomOpened {
				opened = append(opened, ev)
			}
		}
		if len(opened) < 2 {
			return fmt.Errorf("%d room.opened events", len(opened))
		}
		return nil
	})
	if !opened[1].CreatedAt.After(opened[0].CreatedAt) || opened[1].Seq <= opened[0].Seq {
		t.Fatalf("second room.opened %+v does not continue after the first %+v", opened[1], opened[0])
	}
	rc.mu.Lock()
	dups := rc.dups
	rc.mu.Unlock()
	if dups != 0 {
		t.Fatalf("%d event ids were delivered twice", dups)
	}
	// The new room's log shows its start to a client recovering from seq 0.
	w := testutil.DialRoom(t, fmt.Sprintf("ws://127.0.0.1:%d", port), issue(t, "again", "vin", chatfleet.RoleViewer), 0).Next(protocol.TypeWelcome, 5*time.Second)
	var kinds []string
	for _, raw := range w.History {
		if m, err := protocol.DecodeServer(raw); err == nil && m.Type == protocol.TypeSystem {
			kinds = append(kinds, m.Kind)
		}
	}
	if !slices.Contains(kinds, protocol.KindOpened) {
		t.Fatalf("history system kinds %v: want the room's opening", kinds)
	}
}

// TestRoomWebhookURLsSurviveReadoption gives a room its own webhook URL at
// creation (the host has none of its own): the room's events reach it,
// signed with the secret the create answer gave, and still do after the
// master is killed and a new one re-adopts the room from its state file.
// Bad URL lists are refused at creation. (The receiver is on loopback:
// WEBHOOK_ALLOW_PRIVATE=1.)
func TestRoomWebhookURLsSurviveReadoption(t *testing.T) {
	rc := newReceiver(t)
	h := startHost(t, "WEBHOOK_ALLOW_PRIVATE=1", "STATS_EVERY=200ms")
	for _, bad := range []string{
		`{"options":{"webhookUrls":["ftp://example.com/x"]}}`,
		`{"options":{"webhookUrls":["https://u:p@example.com/x"]}}`,
		`{"options":{"webhookUrls":["http://a/1","http://a/2","http://a/3","http://a/4","http://a/5","http://a/6"]}}`,
		`{"options":{"webhookUrls":["https://example.com/` + strings.Repeat("x", 1100) + `"]}}`,
	} {
		if status, body := testutil.Do(t, "POST", h.API+"/api/v1/room/refused", userKey, bad); status != 400 || !strings.Contains(body, "webhookUrls") {
			t.Errorf("create with %.80s: %d %s, want 400 naming options.webhookUrls", bad, status, body)
		}
	}
	port, roomSecret := h.createHooked("owned", `{"options":{"webhookUrls":["`+rc.url+`"]}}`)
	if roomSecret == "" {
		t.Fatal("the create answer gave no webhookSecret")
	}
	prod := join(t, port, "owned", "pia", chatfleet.RoleProducer)
	chat := func(text string) string {
		prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: text, ClientID: text})
		return fmt.Sprintf("owned:%d", prod.Next(protocol.TypeChat, 5*time.Second).Seq)
	}
	before := chat("before")
	testutil.Eventually(t, 10*time.Second, func() error {
		if !rc.has(before) {
			return fmt.Errorf("%s not delivered", before)
		}
		return nil
	})
	pid := h.rooms()[0].PID
	h.Proc.Signal(syscall.SIGKILL)
	h.Proc.Wait(t, 5*time.Second)
	h.Start()
	testutil.Eventually(t, 5*time.Second, func() error {
		if rs := h.rooms(); len(rs) != 1 || rs[0].PID != pid {
			return fmt.Errorf("rooms = %+v, want the same process %d", rs, pid)
		}
		return nil
	})
	after := chat("after")
	testutil.Eventually(t, 10*time.Second, func() error {
		if !rc.has(after) {
			return fmt.Errorf("%s not delivered after re-adoption", after)
		}
		return nil
	})
	for _, r := range rc.requests() {
		if err := webhook.Verify(roomSecret, r.ts, r.body, r.sig, webhook.DefaultMaxSkew); err != nil {
			t.Fatalf("delivery %s does not verify with the room's secret: %v", r.delivery, err)
		}
	}
}

// TestWebhooksSurviveMasterKill: events the receiver has not taken when the
// master is SIGKILLed are delivered by the next master, which re-adopts the
// room and queues them again from the store, after what was delivered.
func TestWebhooksSurviveMasterKill(t *testing.T) {
	ctx := context.Background()
	st, storeEnv := startStore(t, "hooks")
	rc := newReceiver(t)
	h := startHost(t, hookEnv(rc, append(storeEnv, "WEBHOOK_BACKOFF=200ms")...)...)
	port := h.create("durable")
	prod := join(t, port, "durable", "pia", chatfleet.RoleProducer)
	say := func(text string) int64 {
		prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: text, ClientID: text})
		return prod.Next(protocol.TypeAck, 5*time.Second).Seq
	}
	first := say("delivered")
	testutil.Eventually(t, 10*time.Second, func() error {
		if !rc.has(fmt.Sprintf("durable:%d", first)) {
			return fmt.Errorf("durable:%d not delivered", first)
		}
		return nil
	})

	// The receiver goes down; the room goes on; its events reach the store
	// but not the receiver before the master dies.
	rc.down.Store(true)
	var last int64
	for i := range 5 {
		last = say(fmt.Sprintf("queued %d", i))
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		evs, err := st.Events(ctx, "durable", last-1, 10)
		if err != nil || len(evs) == 0 {
			return fmt.Errorf("durable:%d not in the store yet (%v)", last, err)
		}
		return nil
	})
	h.Proc.Signal(syscall.SIGKILL)
	h.Proc.Wait(t, 5*time.Second)
	if rc.has(fmt.Sprintf("durable:%d", last)) {
		t.Fatal("the receiver took the events while down")
	}

	rc.down.Store(false)
	h.Start()
	testutil.Eventually(t, 20*time.Second, func() error {
		for seq := int64(1); seq <= last; seq++ {
			if !rc.has(fmt.Sprintf("durable:%d", seq)) {
				return fmt.Errorf("durable:%d never delivered", seq)
			}
		}
		return nil
	})
	if !strings.Contains(h.Proc.Output(), "webhook events queued again after a restart") {
		t.Error("the replay was not logged")
	}
}
