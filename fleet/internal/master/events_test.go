package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// downStore is a store that fails while down is set, as one that cannot be
// reached.
type downStore struct {
	eventStore
	down atomic.Bool
}

func (s *downStore) AppendEvents(ctx context.Context, evs []chatfleet.Event) error {
	if s.down.Load() {
		return errors.New("store unreachable")
	}
	return s.eventStore.AppendEvents(ctx, evs)
}

// testEventWriter returns an event writer on st and the counters of its
// failed store calls and dropped events.
func testEventWriter(st eventStore) (w *eventWriter, errs, drops prometheus.Counter) {
	errs = prometheus.NewCounter(prometheus.CounterOpts{Name: "store_errors"})
	drops = prometheus.NewCounter(prometheus.CounterOpts{Name: "events_dropped"})
	cfg := &Config{StoreTimeout: 10 * time.Second, EventRetention: time.Hour, Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	return newEventWriter(st, cfg, errs, drops), errs, drops
}

func roomEvents(room string, from, n int) []chatfleet.Event {
	var evs []chatfleet.Event
	for i := from; i < from+n; i++ {
		evs = append(evs, chatfleet.Event{Room: room, Seq: int64(i), Type: "chat", At: time.Now(), Data: []byte(fmt.Sprintf(`{"seq":%d}`, i))})
	}
	return evs
}

// storedSeqs returns the seqs of room's events in st, oldest first.
func storedSeqs(t *testing.T, st *downStore, room string) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var seqs []int64
	for {
		after := int64(0)
		if len(seqs) > 0 {
			after = seqs[len(seqs)-1]
		}
		evs, err := st.eventStore.(chatfleet.EventStore).Events(ctx, room, after, 1000) // a page at most
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return seqs
		}
		for _, ev := range evs {
			seqs = append(seqs, ev.Seq)
		}
	}
}

// wantSeqs checks that seqs is 1..n.
func wantSeqs(t *testing.T, what string, seqs []int64, n int) {
	t.Helper()
	if len(seqs) != n {
		t.Fatalf("%s: %d events stored, want %d", what, len(seqs), n)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("%s: event %d has seq %d, want %d", what, i, s, i+1)
		}
	}
}

// TestEventWriter: events are written to the store in batches, in order;
// while the store is down they wait (each failed call counted), then go in
// once it is back; past maxPendingEvents the oldest are dropped and
// counted.
func TestEventWriter(t *testing.T) {
	// A generous timeout: the embedded store scans its collections, and a
	// busy machine (CI running other tests) makes that slow.
	cfg := storetest.Config(t)
	cfg.Timeout = 60 * time.Second
	st := &downStore{eventStore: storetest.Open(t, cfg)}
	w, errs, drops := testEventWriter(st)
	ctx := context.Background()

	w.add(roomEvents("a", 1, eventBatch+500))
	w.add(roomEvents("b", 1, 3))
	if !w.flush(ctx) {
		t.Fatal("flush failed with the store up")
	}
	wantSeqs(t, "room a", storedSeqs(t, st, "a"), eventBatch+500)
	wantSeqs(t, "room b", storedSeqs(t, st, "b"), 3)

	st.down.Store(true)
	w.add(roomEvents("c", 1, 5))
	if w.flush(ctx) {
		t.Fatal("flush succeeded with the store down")
	}
	if got := counterValue(t, errs); got != 1 {
		t.Fatalf("store errors %v, want 1", got)
	}
	st.down.Store(false)
	if !w.flush(ctx) {
		t.Fatal("flush failed once the store is back")
	}
	wantSeqs(t, "room c after the outage", storedSeqs(t, st, "c"), 5)

	st.down.Store(true)
	w.add(roomEvents("d", 1, maxPendingEvents+5))
	w.mu.Lock()
	n, first := len(w.pending), w.pending[0].Seq
	w.mu.Unlock()
	if got := counterValue(t, drops); got != 5 || n != maxPendingEvents || first != 6 {
		t.Fatalf("dropped %v, %d pending from seq %d: want the 5 oldest dropped", got, n, first)
	}
}

// TestEventWriterRun: the running writer stores what rooms add without
// being asked; without a store it stores nothing and returns at once.
func TestEventWriterRun(t *testing.T) {
	st := &downStore{eventStore: storetest.NewStore(t)}
	w, _, _ := testEventWriter(st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	w.add(roomEvents("a", 1, 3))
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := len(storedSeqs(t, st, "a")); n != 3 {
			return fmt.Errorf("%d events stored", n)
		}
		return nil
	})
	cancel()
	<-done

	none, _, _ := testEventWriter(nil)
	none.add(roomEvents("a", 1, 3))
	none.run(context.Background()) // returns: nothing to write to
	if len(none.pending) != 0 {
		t.Fatalf("%d events queued without a store", len(none.pending))
	}
}
