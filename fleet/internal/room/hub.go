package room

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/protocol"
)

// hub is the room's state, owned by the goroutine running Run: no locks, and
// nothing else touches it. This file keeps the loop, the client registry, the
// sequence, fan-out and chat. Each other part of the room is a value the hub
// holds, in its own file, that decides while the hub applies the decisions
// (broadcasts, closes): presence (presence.go), moderation (moderation.go),
// the stream and the producer's grace (stream.go), the idle timeout, drain
// and end (drain.go). Requests are dispatched in requests.go, flood control
// is in flood.go, settings in settings.go, resume and history in history.go;
// a spread room's edge is in edge.go, its origin's side in remote.go.
type hub struct {
	r *Room

	clients  []*client // registered connections; client.idx is the position
	producer *client
	slow     []*client // shut for being too slow, to remove after the current step

	seq      int64
	hist     history
	slowMode int
	maxLen   int // characters in a chat message
	roomLim  *rate.Limiter
	logBuf   []chatfleet.Event // events for the master, sent every second

	cache   *chatfleet.Cache // its Bans are not used: see Room.bans
	blocked map[string]bool  // lower-cased blocked words
	pruneAt time.Time        // when expired bans were last dropped

	pres   presence
	mod    moderation
	stream stream
	life   lifecycle
	err    error // what Run returns

	// An origin's (see remote.go): the users on its edges.
	remoteViewers int         // the edges' audience (SetRemoteAudience)
	remote        remoteUsers // who sent through edges

	// An edge's (see edge.go).
	edge      bool
	edgeCount int          // the room's audience, from the origin
	relays    int          // relayed messages not yet answered (held acks included)
	held      []*relayCall // acks waiting for their event, in arrival order
	heldMin   int64        // the least seq of held
	heldTimer *time.Timer  // nil until first armed
	heldC     <-chan time.Time
	heldAt    time.Time // when heldTimer fires; zero: not armed
	parked    []*client // clients waiting for the edge to reach their lastSeq (park)
}

func newHub(r *Room) *hub {
	h := &hub{
		r:        r,
		pres:     newPresence(r.cfg.PresenceMax),
		mod:      newModeration(&r.cfg),
		stream:   stream{graceFor: r.cfg.ProducerGrace},
		slowMode: r.cfg.Settings.SlowModeSeconds,
		roomLim:  rate.NewLimiter(rate.Limit(r.cfg.RoomMsgRate), r.cfg.RoomMsgBurst),
		remote:   newRemoteUsers(maxRemoteUsers),
		edge:     r.cfg.Edge != nil,
	}
	h.applySettings()
	h.resume(r.cfg.Resume, r.cfg.StartSeq)
	return h
}

// run is the hub loop: it handles requests, commands and timers one at a
// time until the room ends.
func (h *hub) run(ctx context.Context) error {
	r := h.r
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	h.life.armIdle(h.producer != nil)
	if !h.edge {
		h.stream.armGrace(h.producer != nil, h.life.ended) // a room resumed live has no producer yet
	}
	for !h.life.ended {
		select {
		case <-ctx.Done():
			h.end(protocol.CloseGoingAway, "room shutting down", CauseContext)
			h.err = ctx.Err()
		case req := <-r.in:
			h.handle(&req)
		case d := <-r.deliv:
			h.safely(func() { h.deliver(&d) })
		case <-h.heldC:
			h.safely(h.releaseHeld)
		case f := <-r.cmds:
			h.safely(f)
		case <-tick.C:
			h.safely(h.tick)
		case <-h.life.idleC:
			h.end(protocol.CloseGoingAway, fmt.Sprintf("no producer for %d seconds", h.life.idleTimeout), CauseIdle)
		case <-h.stream.graceC:
			h.safely(h.producerGone)
		case <-h.life.drainC:
			h.safely(h.drainStep)
		}
		h.reap()
	}
	h.life.stopTimers()
	h.stream.stopGrace()
	if h.heldTimer != nil {
		h.heldTimer.Stop()
	}
	return h.err
}

// safely runs f, logging a panic instead of ending the process.
func (h *hub) safely(f func()) {
	defer func() {
		if p := recover(); p != nil {
			h.r.log.Error("panic in room hub", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	f()
}

func (h *hub) now() time.Time { return h.r.now() }

// add registers a connection: it gets its welcome, and the room a join if the
// user was not there yet.
func (h *hub) add(c *client) {
	if h.life.draining {
		c.shut(protocol.CloseRestart, h.life.drainReason, false)
		return
	}
	if h.edge && (h.edgeRefuses(c) || h.park(c)) {
		return
	}
	if b, ok := h.banned(c.info.UserID); ok {
		h.push(c, h.private(protocol.KindBanned, banText(b)))
		c.shut(protocol.CloseBanned, "banned", false)
		return
	}
	u, joined, promoted := h.pres.enter(c.info, h.r.cfg.MaxConnsPerUser)
	if u == nil {
		c.shut(protocol.ClosePolicy, "too many connections for this user", false)
		return
	}
	if joined || promoted {
		h.setLimits(u)
	}
	c.user = u
	c.idx = len(h.clients)
	h.clients = append(h.clients, c)

	if c.info.Role == chatfleet.RoleProducer {
		old := h.producer
		h.producer = c
		h.life.stopIdle()
		h.stream.stopGrace()
		if old != nil {
			h.drop(old, protocol.CloseReplaced, "replaced by a new producer connection", false)
		}

		defer h.reportPresence() // a producer's coming is reported at once
	}
	h.welcome(c, c.lastSeq, c.hasLastSeq)
	if c == h.producer {
		h.producerBack() // after its welcome: it gets the event like everyone
	}
	if joined {
		h.presenceChange(protocol.TypeJoin, u)
	}
	h.publishCounts()
}

// remove unregisters c (if it still is) and tells the room when its user's
// last connection went.
func (h *hub) remove(c *client) {
	if c.idx < 0 {
		c.parked = false // a parked client that left is not registered later
		return
	}
	last := len(h.clients) - 1
	h.clients[c.idx] = h.clients[last]
	h.clients[c.idx].idx = c.idx
	h.clients[last] = nil
	h.clients = h.clients[:last]
	c.idx = -1
	c.gone = true
	c.shut(protocol.CloseNormal, "", true) // no-op when already shut; frees a dead connection's queue

	if c == h.producer {
		h.producer = nil
		h.life.armIdle(false)
		h.stream.armGrace(false, h.life.ended)
		defer h.reportPresence() // a producer's going is reported at once
	}
	u := c.user
	if h.pres.leave(u) {
		h.presenceChange(protocol.TypeLeave, u)
	}
	h.publishCounts()
}

// drop closes c with code and reason after what is queued (or discarding it)
// and removes it at once.
func (h *hub) drop(c *client, code int, reason string, discard bool) {
	c.shut(code, reason, discard)
	h.remove(c)
}

// reap removes the clients found too slow during the last step; removing one
// may broadcast a leave, which may find more.
func (h *hub) reap() {
	for len(h.slow) > 0 {
		c := h.slow[len(h.slow)-1]
		h.slow = h.slow[:len(h.slow)-1]
		h.remove(c)
	}
}

// tick runs every second: counts for large rooms, presence (audience
// changes are reported at most once a second) and log events for the master.
func (h *hub) tick() {
	if !h.life.ended && !h.edge && h.pres.takeCount() {
		h.fanout(h.encode(&protocol.ServerMsg{Type: protocol.TypeCount, ViewerCount: h.viewerCount()}, 0))
	}
	h.reportPresence()
	h.flushLog()
	now := h.now()
	h.mod.pruneMutes(now)
	if now.Sub(h.pruneAt) >= time.Minute {
		h.pruneAt = now
		h.r.bans.Prune(now)
	}
}

// flushLog sends the master the log events gathered since the last tick.
func (h *hub) flushLog() {
	if len(h.logBuf) > 0 {
		h.r.emit(Event{Type: EventLog, Log: h.logBuf})
		h.logBuf = nil
	}
}

// encode marshals m into a frame; seq is the SSE event id (0: none).
func (h *hub) encode(m *protocol.ServerMsg, seq int64) *frame {
	b, err := m.Marshal()
	if err != nil {
		panic(fmt.Sprintf("encode %s: %v", m.Type, err))
	}
	return &frame{data: b, seq: seq}
}

// broadcast sequences m, keeps it in the history and sends it to every
// client. It returns the seq.
func (h *hub) broadcast(m *protocol.ServerMsg) int64 {
	if h.edge {
		// A bug: an edge sequences nothing (its origin does).
		h.r.log.Error("an edge tried to sequence an event; dropped", "type", m.Type)
		return 0
	}
	now := h.now()
	h.seq++
	m.Seq, m.TS = h.seq, now.UnixMilli()
	f := h.encode(m, h.seq)
	h.hist.add(f, m.Type == protocol.TypeChat)
	h.r.stats.seq.Store(h.seq)
	if h.r.cfg.LogEvents {
		// Written ahead: the master has the event before any client can see
		// it, so a room killed right after resumes without a gap.
		h.r.emit(Event{Type: EventLog, Log: []chatfleet.Event{{Room: h.r.name, Seq: h.seq, Type: m.Type, At: now, Data: f.data}}})
	}
	h.fanout(f)
	return h.seq
}

// fanout queues f on every client: the same bytes for all.
func (h *hub) fanout(f *frame) {
	limit := h.r.cfg.SendQueueBytes
	n := 0
	for _, c := range h.clients {
		if c.gone {
			continue
		}
		n++
		if !c.push(f, limit) {
			h.tooSlow(c)
		}
	}
	h.r.stats.deliveries.Add(int64(n))
}

// push queues one frame for c alone.
func (h *hub) push(c *client, f *frame) {
	if !c.push(f, h.r.cfg.SendQueueBytes) {
		h.tooSlow(c)
	}
	h.r.stats.deliveries.Add(1)
}

// tooSlow shuts c, whose queue is full, and leaves its removal to reap: a
// fan-out must not change h.clients while it ranges over it.
func (h *hub) tooSlow(c *client) {
	if c.gone {
		return
	}
	c.gone = true
	c.shut(protocol.CloseTooSlow, "too slow: the connection did not keep up", true)
	h.slow = append(h.slow, c)
	h.r.stats.slowDrops.Add(1)
	h.r.warn("dropped a slow client", "conn", c.id, "user", c.info.UserID)
}

// private returns a system message for one client (not sequenced).
func (h *hub) private(kind, text string) *frame {
	return h.encode(&protocol.ServerMsg{Type: protocol.TypeSystem, TS: h.now().UnixMilli(), Kind: kind, Text: text}, 0)
}

// system broadcasts a sequenced system message.
func (h *hub) system(kind, text string) {
	if h.life.ended {
		return
	}
	h.broadcast(&protocol.ServerMsg{Type: protocol.TypeSystem, Kind: kind, Text: text})
}

// welcome queues c's welcome: who it is, the room's state, and the history
// after lastSeq (all of it when !has).
func (h *hub) welcome(c *client, lastSeq int64, has bool) {
	frames, missed := h.hist.since(h.seq, lastSeq, has)
	st := h.stream.state
	m := protocol.ServerMsg{
		Type:        protocol.TypeWelcome,
		TS:          h.now().UnixMilli(),
		You:         &c.info,
		Room:        h.r.name,
		Seq:         h.seq,
		Stream:      &st,
		ViewerCount: h.viewerCount(),
		SlowMode:    h.slowMode,
		MaxLen:      h.maxLen,
		Missed:      missed,
		FirstSeq:    h.hist.first(),
	}
	if until, muted := h.mod.mutedUntil(c.info.UserID, h.now()); muted {
		m.Muted = true
		if !until.IsZero() {
			m.Until = until.UnixMilli()
		}
	}
	b, err := m.Marshal()
	if err != nil {
		panic(fmt.Sprintf("encode welcome: %v", err))
	}
	if len(frames) > 0 {
		n := len(b) + 16
		for _, f := range frames {
			n += len(f.data) + 1
		}
		out := make([]byte, 0, n)
		out = append(out, b[:len(b)-1]...)
		out = append(out, `,"history":[`...)
		for i, f := range frames {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, f.data...)
		}
		b = append(out, "]}"...)
	}
	h.push(c, &frame{data: b, seq: h.seq})
}

// chat checks a chat message (guests, mutes, length, slow mode, the room's
// rate), then broadcasts it with blocked words masked and acks it.
func (h *hub) chat(req *request, anon bool, now time.Time) {
	m, u := &req.msg, req.u
	switch {
	case anon:
		h.fail(req, protocol.CodeForbidden, "guests cannot chat: sign in")
		return
	case h.mod.muted(u.info.UserID, now):
		h.fail(req, protocol.CodeMuted, "you are muted")
		return
	}
	if code, text := h.checkText(m.Text); code != "" {
		h.fail(req, code, text)
		return
	}
	if h.slowMode > 0 && !req.who.Role.CanModerate() && !u.lastChat.IsZero() {
		if wait := time.Duration(h.slowMode)*time.Second - now.Sub(u.lastChat); wait > 0 {
			h.fail(req, protocol.CodeSlowMode, fmt.Sprintf("slow mode: one message every %d seconds; wait %.0f more", h.slowMode, wait.Seconds()+0.5))
			return
		}
	}
	if !h.roomLim.AllowN(now, 1) {
		h.fail(req, protocol.CodeRateLimited, "the room is too busy: try again")
		return
	}
	u.lastChat = now
	from := req.who
	seq := h.broadcast(&protocol.ServerMsg{Type: protocol.TypeChat, From: &from, Text: maskWords(m.Text, h.blocked), SendTS: m.SendTS})
	h.r.stats.messages.Add(1)
	req.seq = seq
	h.reply(req, &protocol.ServerMsg{Type: protocol.TypeAck, ClientID: m.ClientID, Seq: seq})
}

// checkText returns the error code and message of a chat text the room
// refuses (empty, too long), or "".
func (h *hub) checkText(text string) (code, msg string) {
	switch {
	case strings.TrimSpace(text) == "":
		return protocol.CodeInvalid, "empty message"
	case utf8.RuneCountInString(text) > h.maxLen:
		return protocol.CodeTooLarge, fmt.Sprintf("message longer than %d characters", h.maxLen)
	}
	return "", ""
}

func validHLS(s string) error {
	if len(s) > protocol.MaxHLSURLLen {
		return fmt.Errorf("longer than %d bytes", protocol.MaxHLSURLLen)
	}
	if u, err := netguard.HTTPURL(s, 0); err != nil || u.User != nil {
		return fmt.Errorf("must be an http or https URL")
	}
	return nil
}
