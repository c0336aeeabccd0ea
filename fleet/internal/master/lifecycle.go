package master

import (
	"fmt"
	"strings"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/webhook"
)

// The master adds a room's lifecycle to its numbered event log, where a room
// process cannot: room.opened before the room's first process starts serving
// and room.closed once its last process is gone. It sequences them itself
// (the next seq of the log), at moments when no room process sequences
// anything, so the log has no gap and no duplicate. Their Data is a system
// message (kind "opened" or "closed"), so clients see them in the history
// like every sequenced event. room.viewers is not in the log: it is sent to
// webhooks only, from the rooms' stats reports.

// told is what a room's lifecycle and presence events told the webhooks,
// under the room's mu.
type told struct {
	openPending  bool   // created: room.opened is due when the first process resumes
	closeReason  string // the first reason given for the room's end
	viewersKnown bool   // viewersSent is what the webhooks were last told
	viewersSent  int
	viewersAt    time.Time
}

// maxClosedSeqs bounds the sequences the master remembers of rooms it
// closed without a store.
const maxClosedSeqs = 100000

// systemData is a room system message of kind with text, as the log keeps it.
func systemData(ev chatfleet.Event, kind, text string) []byte {
	b, _ := (&protocol.ServerMsg{Type: protocol.TypeSystem, Seq: ev.Seq, TS: ev.At.UnixMilli(), Kind: kind, Text: text}).Marshal()
	return b
}

// takeOpenPending reports, once, that r was created and has not yet
// announced itself.
func (r *room) takeOpenPending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.told.openPending
	r.told.openPending = false
	if p {
		r.told.viewersKnown = true // a new room has no one
	}
	return p
}

// logOpened sequences room.opened after seq, for the first process of a
// created room, before it resumes; the process resumes from it.
func (r *room) logOpened(seq int64) chatfleet.Event {
	ev := chatfleet.Event{Room: r.name, Seq: seq + 1, Type: webhook.TypeRoomOpened, At: r.m.cfg.Now()}
	ev.Data = systemData(ev, protocol.KindOpened, "room opened")
	r.logEvents([]chatfleet.Event{ev})
	return ev
}

// logClosed sequences room.closed after the room's last event, once its
// process is gone for good, and lets its webhooks finish.
func (r *room) logClosed(status chatfleet.RoomStatus) {
	r.mu.Lock()
	seq := max(r.lastSeq, r.stats.Seq) + 1
	if status == chatfleet.RoomFailed {
		r.told.closeReason = fmt.Sprintf("the room crashed %d times within %v", r.m.cfg.CrashLimit, r.m.cfg.CrashWindow)
	}
	reason := r.told.closeReason
	r.mu.Unlock()
	if reason == "" {
		reason = "room closed"
	}
	ev := chatfleet.Event{Room: r.name, Seq: seq, Type: webhook.TypeRoomClosed, At: r.m.cfg.Now()}
	ev.Data = systemData(ev, protocol.KindClosed, reason)
	r.logEvents([]chatfleet.Event{ev})
	r.m.hooks.RoomDone(r.name)
	r.m.rememberSeq(r.name, seq)
}

// noteCloseReason keeps the first reason given for the room's end.
func (r *room) noteCloseReason(reason string) {
	r.mu.Lock()
	if r.told.closeReason == "" {
		r.told.closeReason = reason
	}
	r.mu.Unlock()
}

// describe fills ev with where r is, for a listing fed by webhooks.
func (r *room) describe(ev *webhook.Event) {
	cfg := &r.m.cfg
	ev.HostID, ev.Host, ev.Port, ev.Paid, ev.CreatedAt = cfg.HostID, cfg.PublicHost, r.port, r.opts.Paid, r.createdAt
	if cfg.RoomURL != "" {
		ev.URL = strings.ReplaceAll(cfg.RoomURL, "{port}", fmt.Sprint(r.port))
	}
	if ev.Type == webhook.TypeRoomClosed {
		r.mu.Lock()
		ev.Status, ev.Reason = string(r.status), r.told.closeReason
		r.mu.Unlock()
		if ev.Reason == "" {
			ev.Reason = "room closed"
		}
	}
}

// reportViewers sends room.viewers to r's webhooks when its number of
// distinct users changed, at most once per ViewersEvery; called with every
// stats report, so the last change goes out within ViewersEvery+StatsEvery.
func (r *room) reportViewers(n int) {
	// An edge's audience reaches the webhooks through its origin's count.
	if r.opts.edge() || !r.m.hooks.Enabled(r.hookRoom()) {
		return
	}
	now := r.m.cfg.Now()
	r.mu.Lock()
	if (r.told.viewersKnown && n == r.told.viewersSent) || now.Sub(r.told.viewersAt) < r.m.cfg.ViewersEvery {
		r.mu.Unlock()
		return
	}
	r.told.viewersKnown, r.told.viewersSent, r.told.viewersAt = true, n, now
	r.mu.Unlock()
	ev := webhook.Event{ID: fmt.Sprintf("%s:viewers:%d", r.name, now.UnixNano()), Type: webhook.TypeRoomViewers, Room: r.name, At: now, Viewers: &n}
	r.describe(&ev)
	r.m.hooks.Add(r.hookRoom(), []webhook.Event{ev})
}

// rememberSeq keeps, without a store, the last seq of a room that ended, so
// that a room created again with its name continues the sequence (event ids
// stay unique); with a store the log itself says where to continue.
func (m *Master) rememberSeq(name string, seq int64) {
	if m.cfg.Store != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.closedSeqs) >= maxClosedSeqs {
		clear(m.closedSeqs)
	}
	m.closedSeqs[name] = seq
}

func (m *Master) closedSeq(name string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closedSeqs[name]
}
