package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestPublishConsume: events published through a Publisher reach a consumer
// started before, exactly once and in order, and one started after gets them
// all from the stream.
func TestPublishConsume(t *testing.T) {
	s := startNATS(t)
	origin := connect(t, s.URL(), "origin")
	edge := connect(t, s.URL(), "edge")
	early := consume(t, edge, "r1")
	p := origin.NewPublisher("r1", "inst", 10_000)
	defer p.Close()
	const n = 2000
	for seq := int64(1); seq <= n; seq++ {
		if !p.Publish(seq, event(seq)) {
			t.Fatalf("Publish(%d) refused", seq)
		}
	}
	waitSeqs(t, early, seqRange(1, n), 20*time.Second)
	late := consume(t, connect(t, s.URL(), "edge2"), "r1")
	waitSeqs(t, late, seqRange(1, n), 20*time.Second)
	if got, want := late.data[n-1], event(n); !bytes.Equal(got, want) {
		t.Errorf("data %s, want %s", got, want)
	}
	if p.Dropped() != 0 {
		t.Errorf("Dropped = %d", p.Dropped())
	}
	// Another room's events stay in their own subject.
	other := consume(t, edge, "r2")
	p2 := origin.NewPublisher("r2", "inst2", 10)
	defer p2.Close()
	p2.Publish(1, event(1))
	waitSeqs(t, other, []int64{1}, 10*time.Second)

	// Rooms without an instance do not take each other's ids.
	for _, room := range []string{"r3", "r4"} {
		col := consume(t, edge, room)
		p := origin.NewPublisher(room, "", 10)
		p.Publish(1, event(1))
		waitSeqs(t, col, []int64{1}, 10*time.Second)
		p.Close()
	}
}

// TestPublisherBounded: Publish never blocks; beyond maxQueue events not yet
// stored it refuses and counts.
func TestPublisherBounded(t *testing.T) {
	s := startNATS(t)
	c := connect(t, s.URL(), "origin")
	var stopped bool
	s.restart(func() {
		// NATS is down: nothing is stored, the queue fills.
		p := c.NewPublisher("r", "inst", 5)
		for seq := int64(1); seq <= 8; seq++ {
			p.Publish(seq, event(seq))
		}
		if p.Dropped() != 3 {
			t.Errorf("Dropped = %d, want 3", p.Dropped())
		}
		p.Close()
		if p.Publish(9, event(9)) {
			t.Error("Publish after Close accepted")
		}
		stopped = true
	})
	if !stopped {
		t.Fatal("restart did not run")
	}
}

// TestRepublishDeduplicated: an origin restarted under the same instance
// publishes the seqs stored already again; the stream keeps them once.
func TestRepublishDeduplicated(t *testing.T) {
	s := startNATS(t)
	c := connect(t, s.URL(), "origin")
	p := c.NewPublisher("r", "inst", 100)
	for seq := int64(1); seq <= 10; seq++ {
		p.Publish(seq, event(seq))
	}
	p.Close()
	p = c.NewPublisher("r", "inst", 100)
	defer p.Close()
	for seq := int64(1); seq <= 15; seq++ {
		p.Publish(seq, event(seq))
	}
	col := consume(t, c, "r")
	waitSeqs(t, col, seqRange(1, 15), 10*time.Second)
	testutil.Eventually(t, 10*time.Second, func() error {
		st, err := c.js.Stream(context.Background(), StreamName)
		if err != nil {
			return err
		}
		if n := st.CachedInfo().State.Msgs; n != 15 {
			return fmt.Errorf("the stream holds %d messages, want 15", n)
		}
		return nil
	})
}

// TestConsumeHoldsGaps: an event published before its predecessor waits for
// it; a seq never published is skipped after the hold.
func TestConsumeHoldsGaps(t *testing.T) {
	s := startNATS(t)
	c := connect(t, s.URL(), "origin")
	col := consume(t, c, "r")
	for _, seq := range []int64{1, 3, 2, 2, 5, 6} {
		publishDirect(t, c, "r", fmt.Sprint("x", seq), seq) // distinct ids: the 2 twice reaches the edge
	}
	// 1, 2, 3 in order, then 5 and 6 after the hold: 4 was lost.
	waitSeqs(t, col, []int64{1, 2, 3, 5, 6}, 10*time.Second)
	publishDirect(t, c, "r", "x", 4) // too late: dropped
	publishDirect(t, c, "r", "x", 7)
	waitSeqs(t, col, []int64{1, 2, 3, 5, 6, 7}, 10*time.Second)
}

// TestOrderer: the ordering rules, with a clock of its own.
func TestOrderer(t *testing.T) {
	var got []int64
	o := newOrderer(func(seq int64, _ []byte) { got = append(got, seq) })
	t0 := time.Unix(1000, 0)
	o.add(10, nil, t0) // the first sets the start
	o.add(12, nil, t0)
	o.add(12, nil, t0)
	o.add(9, nil, t0)
	if !slices.Equal(got, []int64{10}) {
		t.Fatalf("got %v", got)
	}
	if d := o.deadline(); !d.Equal(t0.Add(holdFor)) {
		t.Fatalf("deadline %v", d)
	}
	o.expire(t0.Add(holdFor - time.Millisecond))
	if !slices.Equal(got, []int64{10}) {
		t.Fatalf("expired early: %v", got)
	}
	o.add(11, nil, t0.Add(time.Second))
	if !slices.Equal(got, []int64{10, 11, 12}) || len(o.held) != 0 {
		t.Fatalf("got %v, held %d", got, len(o.held))
	}
	o.add(15, nil, t0.Add(2*time.Second))
	o.expire(t0.Add(4 * time.Second))
	if !slices.Equal(got, []int64{10, 11, 12, 15}) || !o.deadline().IsZero() {
		t.Fatalf("got %v", got)
	}
	// The hold is bounded: one more than holdMax gives up the gap.
	got = nil
	for seq := int64(17); seq < 17+holdMax; seq++ {
		o.add(seq, nil, t0.Add(5*time.Second))
	}
	if len(got) != 0 || len(o.held) != holdMax {
		t.Fatalf("delivered %d, held %d", len(got), len(o.held))
	}
	o.add(17+holdMax+1, nil, t0.Add(5*time.Second)) // 17+holdMax itself is missing
	if len(got) != holdMax || got[0] != 17 || len(o.held) != 1 {
		t.Fatalf("delivered %d (first %v), held %d", len(got), got[:1], len(o.held))
	}
}

// TestServerRestart: NATS restarted mid-stream (same data, same port); the
// publisher keeps taking events during the outage, and the consumer ends with
// every seq once, in order.
func TestServerRestart(t *testing.T) {
	s := startNATS(t)
	origin := connect(t, s.URL(), "origin")
	edge := connect(t, s.URL(), "edge")
	col := consume(t, edge, "r")
	p := origin.NewPublisher("r", "inst", 10_000)
	defer p.Close()
	seq := int64(0)
	publish := func(n int) {
		for range n {
			seq++
			if !p.Publish(seq, event(seq)) {
				t.Fatalf("Publish(%d) refused", seq)
			}
		}
	}
	publish(300)
	waitSeqs(t, col, seqRange(1, 300), 10*time.Second)
	publish(200) // some of them in flight when the server stops
	s.restart(func() {
		testutil.Eventually(t, 10*time.Second, func() error {
			if origin.Connected() || edge.Connected() {
				return errors.New("still connected")
			}
			return nil
		})
		publish(300)
	})
	publish(200)
	waitSeqs(t, col, seqRange(1, seq), 60*time.Second)
	if p.Dropped() != 0 {
		t.Errorf("Dropped = %d", p.Dropped())
	}
}

// TestRelay: request/reply between an edge and the origin.
func TestRelay(t *testing.T) {
	s := startNATS(t)
	origin := connect(t, s.URL(), "origin")
	edge := connect(t, s.URL(), "edge")
	var release chan struct{} // when set, handlers wait for it
	var inFlight atomic.Int64
	var mu sync.Mutex
	stop, err := origin.ServeRelay("r", func(ctx context.Context, r Relay) json.RawMessage {
		if r.Msg.Text == "nil" {
			return nil // a handler's bug
		}
		mu.Lock()
		wait := release
		mu.Unlock()
		if wait != nil {
			inFlight.Add(1)
			<-wait
		}
		b, _ := json.Marshal(protocol.ServerMsg{Type: protocol.TypeAck, ClientID: r.Msg.ClientID, Text: r.Who.UserID + ":" + r.Msg.Text + ":" + r.Edge})
		return b
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	chat := Relay{Edge: "e1", Who: protocol.User{UserID: "u1", Name: "U"}, Msg: protocol.ClientMsg{Type: protocol.TypeChat, Text: "hi", ClientID: "c1"}}

	t.Run("round trip", func(t *testing.T) {
		b, err := edge.Relay(t.Context(), "r", chat)
		if err != nil {
			t.Fatal(err)
		}
		m := decodeServer(t, b)
		if m.Type != protocol.TypeAck || m.ClientID != "c1" || m.Text != "u1:hi:e1" {
			t.Errorf("got %s", b)
		}
	})
	t.Run("no origin", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		_, err := edge.Relay(ctx, "elsewhere", chat)
		if !errors.Is(err, nats.ErrNoResponders) {
			t.Errorf("err = %v, want no responders", err)
		}
	})
	t.Run("bad payloads", func(t *testing.T) {
		for _, tt := range []struct {
			name, body, code string
		}{
			{"not JSON", `{"who":`, protocol.CodeInvalidJSON},
			{"no sender", `{"edge":"e","msg":{"type":"chat","text":"x"}}`, protocol.CodeMissingField},
			{"bad message", `{"who":{"userId":"u"},"msg":{"type":"nope"}}`, protocol.CodeUnknownType},
			{"no message", `{"who":{"userId":"u"}}`, protocol.CodeInvalidJSON},
			{"unknown field", `{"who":{"userId":"u"},"msg":{"type":"chat","text":"x","evil":1}}`, protocol.CodeInvalidField},
			{"too large", `{"who":{"userId":"u"},"msg":{"type":"chat","text":"` + strings.Repeat("x", MaxPayload) + `"}}`, protocol.CodeTooLarge},
		} {
			t.Run(tt.name, func(t *testing.T) {
				m, err := edge.nc.Request(RelaySubject("r"), []byte(tt.body), 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				var rep RelayReply
				if err := json.Unmarshal(m.Data, &rep); err != nil {
					t.Fatalf("reply %s: %v", m.Data, err)
				}
				if got := decodeServer(t, rep.Msg); got.Type != protocol.TypeError || got.Code != tt.code {
					t.Errorf("got %s, want an error %s", rep.Msg, tt.code)
				}
			})
		}
		// The origin still serves.
		if _, err := edge.Relay(t.Context(), "r", chat); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("handler without answer", func(t *testing.T) {
		r := chat
		r.Msg.Text = "nil"
		b, err := edge.Relay(t.Context(), "r", r)
		if err != nil {
			t.Fatal(err)
		}
		if m := decodeServer(t, b); m.Type != protocol.TypeError || m.Code != chatfleet.EINTERNAL {
			t.Errorf("got %s", b)
		}
	})
	t.Run("unsendable", func(t *testing.T) {
		if _, err := edge.Relay(t.Context(), "r", Relay{Who: chat.Who, Msg: protocol.ClientMsg{Type: "nope"}}); err == nil {
			t.Error("an unknown message type was sent")
		}
	})
	t.Run("bounded", func(t *testing.T) {
		mu.Lock()
		release = make(chan struct{})
		wait := release
		mu.Unlock()
		var wg sync.WaitGroup
		errs := make(chan error, relayMaxInFlight)
		for range relayMaxInFlight {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				b, err := edge.Relay(ctx, "r", chat)
				if err == nil && decodeServer(t, b).Type != protocol.TypeAck {
					err = fmt.Errorf("got %s", b)
				}
				if err != nil {
					errs <- err
				}
			})
		}
		testutil.Eventually(t, 30*time.Second, func() error {
			if n := inFlight.Load(); n < relayMaxInFlight {
				return fmt.Errorf("%d in flight", n)
			}
			return nil
		})
		b, err := edge.Relay(t.Context(), "r", chat)
		if err != nil {
			t.Fatal(err)
		}
		if m := decodeServer(t, b); m.Type != protocol.TypeError || m.Code != chatfleet.EUNAVAILABLE {
			t.Errorf("beyond the bound: got %s", b)
		}
		mu.Lock()
		release = nil
		mu.Unlock()
		close(wait)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		stop()
		stop()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if _, err := edge.Relay(ctx, "r", chat); !errors.Is(err, nats.ErrNoResponders) {
			t.Errorf("after stop: %v", err)
		}
	})
}

func decodeServer(t testing.TB, b []byte) protocol.ServerMsg {
	t.Helper()
	m, err := protocol.DecodeServer(b)
	if err != nil {
		t.Errorf("decode %s: %v", b, err)
	}
	return m
}

// TestAudience: the sum of the edges' last reports, forgetting the silent
// ones, bounded in edges.
func TestAudience(t *testing.T) {
	a := NewAudience()
	t0 := time.Unix(1000, 0)
	a.Add(EdgeReport{Edge: "h1/1", Viewers: 10, Conns: 12}, t0)
	a.Add(EdgeReport{Edge: "h2/1", Viewers: 5, Conns: 5}, t0)
	a.Add(EdgeReport{Edge: "h1/1", Viewers: 7, Conns: 8}, t0.Add(time.Second)) // replaces
	if v, e := a.Total(t0.Add(time.Second)); v != 12 || e != 2 {
		t.Errorf("Total = %d, %d; want 12, 2", v, e)
	}
	if v, e := a.Total(t0.Add(3*AudienceEvery + 500*time.Millisecond)); v != 7 || e != 1 {
		t.Errorf("after h2 went silent: %d, %d; want 7, 1", v, e)
	}
	a.Add(EdgeReport{Edge: "", Viewers: 1}, t0)
	a.Add(EdgeReport{Edge: "h3/1", Viewers: -1}, t0)
	a.Add(EdgeReport{Edge: strings.Repeat("x", 300), Viewers: 1}, t0)
	a.Add(EdgeReport{Edge: "h4/1", Viewers: 1 << 40}, t0)
	if a.Ignored() != 4 {
		t.Errorf("Ignored = %d, want 4", a.Ignored())
	}

	b := NewAudience()
	for i := range audienceMaxEdges {
		b.Add(EdgeReport{Edge: fmt.Sprint("e", i), Viewers: 1}, t0)
	}
	b.Add(EdgeReport{Edge: "one too many", Viewers: 1000}, t0)
	b.Add(EdgeReport{Edge: "e0", Viewers: 2}, t0) // a known edge still reports
	if v, e := b.Total(t0); v != audienceMaxEdges+1 || e != audienceMaxEdges || b.Ignored() != 1 {
		t.Errorf("Total = %d, %d, ignored %d", v, e, b.Ignored())
	}
	later := t0.Add(4 * AudienceEvery)
	b.Add(EdgeReport{Edge: "new", Viewers: 3}, later) // the silent ones made room
	if v, e := b.Total(later); v != 3 || e != 1 {
		t.Errorf("after expiry: %d, %d", v, e)
	}
}

// TestAudienceAndCount: reports and counts through NATS; bad payloads are
// ignored.
func TestAudienceAndCount(t *testing.T) {
	s := startNATS(t)
	origin := connect(t, s.URL(), "origin")
	edge := connect(t, s.URL(), "edge")
	a := NewAudience()
	stopA, err := origin.SubscribeAudience("r", a)
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	var mu sync.Mutex
	var counts []Count
	stopC, err := edge.SubscribeCount("r", func(c Count) {
		mu.Lock()
		counts = append(counts, c)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stopC()
	edge.nc.Publish(AudienceSubject("r"), []byte("garbage"))
	origin.nc.Publish(CountSubject("r"), []byte("{"))
	if err := edge.ReportAudience("r", EdgeReport{Edge: "h/1", Viewers: 4, Conns: 5}); err != nil {
		t.Fatal(err)
	}
	if err := origin.PublishCount("r", Count{Viewers: 9, Seq: 42, Edges: 1}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if v, e := a.Total(time.Now()); v != 4 || e != 1 {
			return fmt.Errorf("Total = %d, %d", v, e)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(counts) != 1 || counts[0] != (Count{Viewers: 9, Seq: 42, Edges: 1}) {
			return fmt.Errorf("counts %v", counts)
		}
		return nil
	})
	if a.Ignored() != 1 {
		t.Errorf("Ignored = %d, want 1", a.Ignored())
	}
}

// TestPartition: a silent partition between an edge and NATS (Toxiproxy
// passes nothing either way) is noticed by the pings; when it heals, the
// edge reconnects and its consumer goes on without a gap.
func TestPartition(t *testing.T) {
	s := startNATS(t)
	px := testutil.NewProxy(t, "nats-"+t.Name(), strings.TrimPrefix(s.URL(), "nats://"))
	p := px.P
	origin := connect(t, s.URL(), "origin")
	edge := connect(t, "nats://"+p.Listen, "edge")
	col := consume(t, edge, "r")
	pub := origin.NewPublisher("r", "inst", 10_000)
	defer pub.Close()
	seq := int64(0)
	publish := func(n int) {
		for range n {
			seq++
			pub.Publish(seq, event(seq))
		}
	}
	publish(100)
	waitSeqs(t, col, seqRange(1, 100), 10*time.Second)

	px.Add("up", "timeout", "upstream", map[string]any{"timeout": 0})
	px.Add("down", "timeout", "downstream", map[string]any{"timeout": 0})
	publish(100)
	waitConnected(t, edge, false)
	publish(100)
	px.Remove("up")
	px.Remove("down")
	waitConnected(t, edge, true)
	publish(100)
	waitSeqs(t, col, seqRange(1, seq), 60*time.Second)

	// The proxy disabled: connections refused and closed.
	p.Stop()
	waitConnected(t, edge, false)
	publish(100)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, edge, true)
	publish(100)
	waitSeqs(t, col, seqRange(1, seq), 60*time.Second)
}

// waitConnected waits up to 15 s for c to say it is connected to NATS (want)
// or that it is not.
func waitConnected(t *testing.T, c *Conn, want bool) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, func() error {
		if c.Connected() != want {
			return fmt.Errorf("connected is %v, want %v", !want, want)
		}
		return nil
	})
}
