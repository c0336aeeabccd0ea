package room

import (
	"slices"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// lifecycle is how the room ends: the idle timeout (no producer for too
// long), the drain (clients closed evenly over a window before a restart)
// and the end itself, whose code and reason late connections get too. It
// holds the timers and decides what is due; the hub closes the clients.
type lifecycle struct {
	idleTimeout int         // seconds without a producer; <=0: never
	idle        *time.Timer // nil until first armed
	idleC       <-chan time.Time

	draining    bool
	drainReason string
	drainList   []*client // the clients when the drain began, closed in this order
	drainDone   int       // how many of drainList were closed
	drainStart  time.Time
	drainWindow time.Duration
	drainTick   *time.Ticker
	drainC      <-chan time.Time

	ended     bool
	endCode   int
	endReason string
}

// armIdle starts the no-producer countdown, unless there is a producer.
func (l *lifecycle) armIdle(producer bool) {
	if producer || l.ended {
		return
	}
	if l.idleTimeout <= 0 {
		l.stopIdle()
		return
	}
	d := time.Duration(l.idleTimeout) * time.Second
	if l.idle == nil {
		l.idle = time.NewTimer(d)
		l.idleC = l.idle.C
		return
	}
	l.idle.Reset(d)
}

func (l *lifecycle) stopIdle() {
	if l.idle != nil {
		l.idle.Stop()
	}
}

// setIdleTimeout changes the idle timeout to sec seconds; a countdown
// running (no producer) starts over with it.
func (l *lifecycle) setIdleTimeout(sec int, producer bool) {
	if sec == l.idleTimeout {
		return
	}
	l.idleTimeout = sec
	if l.idle != nil && !producer {
		l.armIdle(producer)
	}
}

// startDrain begins closing clients over window from now, evenly, in at
// most one step a second.
func (l *lifecycle) startDrain(clients []*client, window time.Duration, now time.Time) {
	l.drainList = slices.Clone(clients)
	l.drainStart, l.drainWindow = now, window
	step := min(max(window/time.Duration(len(l.drainList)+1), 10*time.Millisecond), time.Second)
	l.drainTick = time.NewTicker(step)
	l.drainC = l.drainTick.C
}

// drainDue returns the clients of the drain to close by now (some may be gone
// already), or over when the window has passed and the room ends.
func (l *lifecycle) drainDue(now time.Time) (due []*client, over bool) {
	elapsed := now.Sub(l.drainStart)
	if elapsed >= l.drainWindow {
		return nil, true
	}
	target := int(float64(len(l.drainList)) * float64(elapsed) / float64(l.drainWindow))
	if target <= l.drainDone {
		return nil, false
	}
	due = l.drainList[l.drainDone:target]
	l.drainDone = target
	return due, false
}

// stopTimers stops the timers once the hub loop is over.
func (l *lifecycle) stopTimers() {
	l.stopIdle()
	if l.drainTick != nil {
		l.drainTick.Stop()
	}
}

// end closes the room: a closing notice (except after a drain, which warned
// already), every client closed with code and reason, EventClosed.
func (h *hub) end(code int, reason string, cause string) {
	if h.life.ended {
		return
	}
	r := h.r
	r.closing.Store(true)
	switch {
	case cause == CauseDrain || cause == CauseOrigin:
		// Warned already: by the drain, or by the origin's own closing event.
	case h.edge:
		h.fanout(h.private(protocol.KindClosing, reason))
	default:
		h.system(protocol.KindClosing, reason)
	}
	for _, c := range h.clients {
		c.shut(code, reason, false)
		c.idx = -1
		c.gone = true
	}
	h.clients, h.pres.users, h.producer = nil, map[string]*user{}, nil
	h.publishCounts()
	h.life.ended, h.life.endCode, h.life.endReason = true, code, reason
	h.flushLog()
	r.emit(Event{Type: EventClosed, Reason: reason, Cause: cause})
	close(r.ending)
}

// drain warns everyone, then closes the clients evenly over window.
func (h *hub) drain(reason string, window time.Duration) {
	h.drainRoom(reason, window, true)
}

// drainRoom drains the room; warn false is an edge's drain its origin's
// event (which its clients got) warned of. The warning of an origin gives
// its edges the window, in seconds.
func (h *hub) drainRoom(reason string, window time.Duration, warn bool) {
	if h.life.ended || h.life.draining {
		return
	}
	h.life.draining, h.life.drainReason = true, reason
	h.r.closing.Store(true)
	switch {
	case h.edge && warn:
		h.fanout(h.private(protocol.KindDrain, reason))
	case !h.edge:
		h.broadcast(&protocol.ServerMsg{Type: protocol.TypeSystem, Kind: protocol.KindDrain, Text: reason, Seconds: int((max(window, 0) + time.Second - 1) / time.Second)})
	}
	if window <= 0 || len(h.clients) == 0 {
		h.end(protocol.CloseRestart, reason, CauseDrain)
		return
	}
	h.life.startDrain(h.clients, window, time.Now())
}

// drainStep closes the clients due at this tick of the drain, or ends the
// room when its window is over.
func (h *hub) drainStep() {
	due, over := h.life.drainDue(time.Now())
	if over {
		h.end(protocol.CloseRestart, h.life.drainReason, CauseDrain)
		return
	}
	for _, c := range due {
		if c.idx >= 0 {
			h.drop(c, protocol.CloseRestart, h.life.drainReason, false)
		}
	}
}
