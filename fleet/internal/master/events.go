package master

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatfleet/chatfleet"
)

// History kept per room by the master, to resume a restarted room at once.
const (
	minHistory = 100
	maxHistory = 10000
	// maxPendingEvents bounds the events waiting for the store; past it the
	// oldest are dropped, counted and logged.
	maxPendingEvents = 200000
	eventBatch       = 1000
)

// logEvents records events a room sequenced: in the room's ring (for a
// restart) and in the store's queue. An edge sequences nothing: what it
// would send is dropped, so that the origin's log stays the room's only one.
func (r *room) logEvents(evs []chatfleet.Event) {
	if r.opts.edge() {
		return
	}
	r.mu.Lock()
	capacity := r.historyCap()
	fresh := evs[:0:0]
	for _, ev := range evs {
		if ev.Seq > r.lastSeq {
			ev.Room = r.name
			fresh = append(fresh, ev)
			r.lastSeq = ev.Seq
		}
	}
	r.hist = append(r.hist, fresh...)
	if over := len(r.hist) - capacity; over > 0 {
		r.hist = append(r.hist[:0:0], r.hist[over:]...)
	}
	r.mu.Unlock()
	r.m.events.add(fresh)
	r.m.hooks.AddLog(r.hookRoom(), fresh)
}

// historyCap is how many events the master keeps for r; r.mu must be held.
func (r *room) historyCap() int {
	n := r.opts.HistorySize
	if d := r.m.cache.current().Defaults.HistorySize; d > n {
		n = d
	}
	// As the room's own ring: eight events per chat message of the history
	// size, so presence events do not push chat out.
	return min(max(n, minHistory), maxHistory) * 8
}

// resumeData returns what a newly started process of r resumes from: the
// master's ring, completed from the store when the ring is short (a first
// start, or a restart after the master itself was replaced), and the
// sequence to continue from.
func (r *room) resumeData() ([]chatfleet.Event, int64) {
	r.mu.Lock()
	capacity := r.historyCap()
	evs := append([]chatfleet.Event(nil), r.hist...)
	seq := r.lastSeq
	r.mu.Unlock()
	st := r.m.cfg.Store
	if st == nil {
		// Continue where a room of this name that ended here left off.
		if last := r.m.closedSeq(r.name); last > seq {
			seq = last
			r.mu.Lock()
			r.lastSeq = max(r.lastSeq, seq)
			r.mu.Unlock()
		}
		return evs, seq
	}
	if len(evs) >= capacity {
		return evs, seq
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.m.cfg.StoreTimeout)
	defer cancel()
	stored, err := st.LastEvents(ctx, r.name, capacity)
	if err != nil {
		r.m.metrics.storeErrors.Inc()
		r.log.Warn("load room history from the store", "err", err)
		if seq == 0 {
			// The sequence this room reached is unknown: continue far above
			// anything it can have used, so no client mistakes a new event for
			// one it has seen. Clients are told they missed messages.
			seq = time.Now().UnixMilli() * 1000
		}
		return evs, seq
	}
	var merged []chatfleet.Event
	for _, ev := range stored {
		if len(evs) == 0 || ev.Seq < evs[0].Seq {
			merged = append(merged, ev)
		}
	}
	merged = append(merged, evs...)
	if over := len(merged) - capacity; over > 0 {
		merged = merged[over:]
	}
	if n := len(merged); n > 0 && merged[n-1].Seq > seq {
		seq = merged[n-1].Seq
	}
	r.mu.Lock()
	if seq > r.lastSeq {
		r.lastSeq = seq
	}
	r.mu.Unlock()
	return merged, seq
}

// eventStore is the part of the store the event writer uses.
type eventStore interface {
	// AppendEvents stores evs; an event already stored is not stored twice.
	AppendEvents(ctx context.Context, evs []chatfleet.Event) error
	// TrimEvents deletes events stored before olderThan; it returns how many.
	TrimEvents(ctx context.Context, olderThan time.Time) (int, error)
}

// eventWriter writes the rooms' events to the store in batches, retrying
// while the store is down; it never blocks a room.
type eventWriter struct {
	store     eventStore    // nil: events are not stored
	timeout   time.Duration // per store call
	retention time.Duration // events older than this are trimmed
	now       func() time.Time
	log       *slog.Logger
	errs      prometheus.Counter // store calls that failed
	drops     prometheus.Counter // events dropped from a full queue
	kick      chan struct{}

	mu      sync.Mutex
	pending []chatfleet.Event
}

// newEventWriter returns a writer of events to st (nil: none are stored)
// with cfg's StoreTimeout, EventRetention, Now and Log (defaults set). It
// counts failed store calls in errs and events dropped from its queue in
// drops.
func newEventWriter(st eventStore, cfg *Config, errs, drops prometheus.Counter) *eventWriter {
	return &eventWriter{
		store: st, timeout: cfg.StoreTimeout, retention: cfg.EventRetention, now: cfg.Now, log: cfg.Log,
		errs: errs, drops: drops, kick: make(chan struct{}, 1),
	}
}

func (w *eventWriter) add(evs []chatfleet.Event) {
	if w.store == nil || len(evs) == 0 {
		return
	}
	w.mu.Lock()
	w.pending = append(w.pending, evs...)
	if over := len(w.pending) - maxPendingEvents; over > 0 {
		w.pending = append(w.pending[:0:0], w.pending[over:]...)
		w.drops.Add(float64(over))
		w.log.Error("store unreachable too long: oldest room events dropped from the write queue", "dropped", over)
	}
	full := len(w.pending) >= eventBatch
	w.mu.Unlock()
	if full {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// flush writes what is pending, a batch at a time; it stops at the first
// failure and reports whether everything was written.
func (w *eventWriter) flush(ctx context.Context) bool {
	for {
		w.mu.Lock()
		n := min(len(w.pending), eventBatch)
		batch := w.pending[:n:n]
		w.mu.Unlock()
		if n == 0 {
			return true
		}
		cctx, cancel := context.WithTimeout(ctx, w.timeout)
		err := w.store.AppendEvents(cctx, batch)
		cancel()
		if err != nil {
			w.errs.Inc()
			w.log.Warn("write room events (will retry)", "events", n, "err", err)
			return false
		}
		w.mu.Lock()
		w.pending = w.pending[n:]
		w.mu.Unlock()
	}
}

// run flushes every 500 ms (or when a batch is full) and trims events older
// than the retention every hour.
func (w *eventWriter) run(ctx context.Context) {
	if w.store == nil {
		return
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	trim := time.NewTicker(time.Hour)
	defer trim.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.kick:
		case <-trim.C:
			cctx, cancel := context.WithTimeout(ctx, w.timeout)
			if n, err := w.store.TrimEvents(cctx, w.now().Add(-w.retention)); err != nil {
				w.log.Warn("trim room events", "err", err)
			} else if n > 0 {
				w.log.Info("trimmed room events", "events", n)
			}
			cancel()
		}
		w.flush(ctx)
	}
}
