package room

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

// An edge room serves viewers of a room whose origin is on another host
// (docs/scaleout.md). It sequences nothing: the origin's events come through
// Deliver, in seq order, and go into the edge's history and out to its
// clients as they are; its clients' messages, other than ping and
// hello/resume, go to the origin through Edge.Relay, and the origin's answer
// back to the sender. This file is the edge's side; remote.go is the
// origin's.

// Edge is what an edge room needs of its origin.
type Edge struct {
	// Relay passes a client message to the origin and returns the server
	// message (JSON of a protocol.ServerMsg) its sender gets: an ack, an
	// error, a viewers page... Called off the hub goroutine, at most
	// MaxInFlight at once, with a context bounded by RelayTimeout; it must
	// return when the context ends.
	Relay        func(ctx context.Context, who protocol.User, msg protocol.ClientMsg) (json.RawMessage, error)
	MaxInFlight  int           // default 256; beyond, the sender gets an error "unavailable"
	RelayTimeout time.Duration // default 5 s; an error or timeout: the sender gets "unavailable"
}

// Edge defaults and bounds.
const (
	DefaultRelayInFlight = 256
	DefaultRelayTimeout  = 5 * time.Second
	// ackHold is how long an ack waits for the event it acknowledges to
	// reach the edge before it is sent anyway.
	ackHold = 2 * time.Second
	// maxEdgeFrame bounds an origin event and a relay's reply.
	maxEdgeFrame = 1 << 20
	// defaultEdgeDrain is an edge's drain window when the origin's drain
	// event does not say its own.
	defaultEdgeDrain = 5 * time.Second
	// oldEventSkew is how much older than the edge an origin event ending
	// or draining the room may be and still act: older ones come from the
	// stream's past (an earlier room of the same name), not for this edge.
	oldEventSkew = 5 * time.Second
)

// CauseOrigin is the cause of EventClosed when an edge's origin ended the
// room (its system "closing" event).
const CauseOrigin = "origin"

// textProducerAtEdge is the close reason (1008) of a producer connecting to
// an edge.
const textProducerAtEdge = "the producer connects to the room's origin"

// delivery is one origin event on its way to the hub, decoded once.
type delivery struct {
	seq  int64
	data []byte
	typ  string
	m    *protocol.ServerMsg // the decoded event, for the types with side effects
}

// relayCall is one client message relayed to the origin: where its answer
// goes (a connection, or a POST's channel) and, once it came, the answer.
type relayCall struct {
	c     *client
	reply chan *protocol.ServerMsg
	m     *protocol.ServerMsg
	data  []byte    // m as the origin encoded it, for a connection
	due   time.Time // a held ack is sent anyway at this time
}

// Deliver takes the origin's event with seq: data is the frame as the
// origin's clients got it, kept as is (the caller must not change it). It
// is called in seq order from one goroutine; an event at or below the seq
// the edge has is dropped, and so is one that is not a single JSON object
// with a type. It waits while the hub is behind, and returns at once when
// the room has ended. Only for an edge (Config.Edge).
func (r *Room) Deliver(seq int64, data []byte) {
	if r.cfg.Edge == nil {
		return
	}
	d, err := decodeDelivery(seq, data)
	if err != nil {
		r.warn("edge: origin event dropped", "seq", seq, "bytes", len(data), "err", err)
		return
	}
	select {
	case <-r.ending:
		return
	default:
	}
	select {
	case r.deliv <- d:
	case <-r.ending:
	}
}

// decodeDelivery checks an origin event and reads its type; it decodes the
// whole event only for the types the edge acts on.
func decodeDelivery(seq int64, data []byte) (delivery, error) {
	d := delivery{seq: seq, data: data}
	switch {
	case seq <= 0:
		return d, errors.New("seq not positive")
	case len(data) == 0 || len(data) > maxEdgeFrame:
		return d, fmt.Errorf("size %d not within 1..%d", len(data), maxEdgeFrame)
	case bytes.IndexByte(data, '\n') >= 0:
		return d, errors.New("a newline in the frame")
	case !json.Valid(data):
		return d, errors.New("not JSON")
	}
	d.typ = frameType(data)
	switch d.typ {
	case "":
		return d, errors.New("no type")
	case protocol.TypeChat, protocol.TypeJoin, protocol.TypeLeave:
		return d, nil
	}
	m, err := protocol.DecodeServer(data)
	if err != nil {
		return d, err
	}
	d.m = &m
	return d, nil
}

// frameType returns the type of a valid JSON server message: read in place
// from the frames the room encodes ({"type":"chat",...}), else decoded.
func frameType(data []byte) string {
	const prefix = `{"type":"`
	if bytes.HasPrefix(data, []byte(prefix)) {
		rest := data[len(prefix):min(len(data), len(prefix)+32)]
		if i := bytes.IndexByte(rest, '"'); i > 0 && bytes.IndexByte(rest[:i], '\\') < 0 {
			return string(rest[:i])
		}
	}
	var m struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(data, &m) != nil {
		return ""
	}
	return m.Type
}

// SetCount takes the whole room's audience from the origin: the edge's
// clients get it as a count message when it changes, and welcomes carry it.
// Only for an edge.
func (r *Room) SetCount(viewers int) {
	if r.cfg.Edge == nil {
		return
	}
	r.do(func() { r.h.setCount(viewers) })
}

// SetCurrent tells an edge whether it is current (docs/scaleout.md). When it
// is not, every client is closed with 1012 and reason, and new handshakes are
// refused with 503 until SetCurrent(true, ""). Only for an edge.
func (r *Room) SetCurrent(ok bool, reason string) {
	if r.cfg.Edge == nil {
		return
	}
	if ok {
		r.stale.Store(nil)
		return
	}
	reason = protocol.Truncate(cmp.Or(reason, "the room's origin cannot be reached"), 123)
	r.stale.Store(&reason)
	r.do(r.h.closeStale)
}

// deliver applies one origin event: into the history, out to every client,
// then its side effects; acks waiting for it go out after it.
func (h *hub) deliver(d *delivery) {
	if d.seq <= h.seq || h.life.ended {
		return // a duplicate, or older
	}
	h.seq = d.seq
	f := &frame{data: d.data, seq: d.seq}
	h.hist.add(f, d.typ == protocol.TypeChat)
	h.r.stats.seq.Store(d.seq)
	if d.typ == protocol.TypeChat {
		h.r.stats.messages.Add(1)
	}
	h.fanout(f)
	if d.m != nil {
		h.edgeEffect(d.m)
	}
	if len(h.held) > 0 && h.seq >= h.heldMin {
		h.releaseAcks(time.Now())
	}
	if len(h.parked) > 0 {
		h.releaseParked(time.Now())
	}
}

// edgeEffect does at the edge what an origin event does to the room's state
// and to the users it names.
func (h *hub) edgeEffect(m *protocol.ServerMsg) {
	now := h.now()
	switch m.Type {
	case protocol.TypeStream:
		h.stream.state = protocol.StreamState{Live: m.Live, HLSURL: m.HLSURL}
		h.publishStream()
	case protocol.TypeSlowMode:
		h.slowMode = m.Seconds
	case protocol.TypeDeleted:
		if e := h.hist.find(m.Target); e != nil && e.chat {
			e.deleted = true
		}
	case protocol.TypeMuted:
		var until time.Time
		if m.Until > 0 {
			until = time.UnixMilli(m.Until)
		}
		if !h.mod.mute(m.UserID, until, now) {
			h.r.warn("edge: too many mutes to track", "max", h.r.cfg.MaxMutes)
		}
	case protocol.TypeUnmuted:
		h.mod.unmute(m.UserID, now)
	case protocol.TypeKicked:
		h.disconnect(m.UserID, protocol.KindKicked, cmp.Or(m.Reason, "kicked by a moderator"), protocol.CloseKicked)
	case protocol.TypeBanned:
		b := chatfleet.Ban{ID: "edge-" + newID(), UserID: m.UserID, Room: h.r.name, Reason: m.Reason, CreatedAt: now}
		if m.Until > 0 {
			b.Until = time.UnixMilli(m.Until)
		}
		if b.UserID != "" && b.Active(now) {
			if _, own := h.r.bans.Len(); own < h.r.cfg.MaxRoomBans {
				h.r.bans.AddLocal(b)
			}
		}
		if m.Fleet {
			b.Room = "" // its notice says so
		}
		h.disconnect(m.UserID, protocol.KindBanned, banText(b), protocol.CloseBanned)
	case protocol.TypeSystem:
		if time.UnixMilli(m.TS).Before(h.r.created.Add(-oldEventSkew)) {
			return // from before this edge: an earlier room of this name
		}
		switch m.Kind {
		case protocol.KindClosing:
			h.end(protocol.CloseGoingAway, cmp.Or(m.Text, "the room ended"), CauseOrigin)
		case protocol.KindDrain:
			window := defaultEdgeDrain
			if m.Seconds > 0 {
				window = time.Duration(m.Seconds) * time.Second
			}
			h.drainRoom(m.Text, window, false)
		}
	}
}

// setCount sends the edge's clients the room's audience, when it changed.
func (h *hub) setCount(n int) {
	if n < 0 || n == h.edgeCount || h.life.ended {
		return
	}
	h.edgeCount = n
	h.fanout(h.encode(&protocol.ServerMsg{Type: protocol.TypeCount, ViewerCount: n}, 0))
}

// closeStale closes every client with 1012 while the edge is not current.
func (h *hub) closeStale() {
	p := h.r.stale.Load()
	if p == nil {
		return // current again meanwhile
	}
	for len(h.clients) > 0 {
		h.drop(h.clients[len(h.clients)-1], protocol.CloseRestart, *p, false)
	}
}

// edgeRefuses shuts a connection an edge does not serve (a producer's, or
// any while the edge is not current) and reports whether it did.
func (h *hub) edgeRefuses(c *client) bool {
	if p := h.r.stale.Load(); p != nil {
		c.shut(protocol.CloseRestart, *p, false)
		return true
	}
	if c.info.Role == chatfleet.RoleProducer {
		c.shut(protocol.ClosePolicy, textProducerAtEdge, false)
		return true
	}
	return false
}

// relay checks a client message as a room does, then passes it to the
// origin off the hub; the answer comes back through relayDone.
func (h *hub) relay(req *request, anon bool, now time.Time) {
	m := &req.msg
	switch m.Type {
	case protocol.TypeChat:
		if anon {
			h.fail(req, protocol.CodeForbidden, "guests cannot chat: sign in")
			return
		}
		if code, text := h.checkText(m.Text); code != "" {
			h.fail(req, code, text)
			return
		}
	case protocol.TypeViewers:
	case protocol.TypeStream, protocol.TypeClose:
		if req.who.Role != chatfleet.RoleProducer {
			h.fail(req, protocol.CodeForbidden, m.Type+": only the producer may")
			return
		}
	default:
		if !req.who.Role.CanModerate() {
			h.fail(req, protocol.CodeForbidden, m.Type+": only the producer and moderators may moderate")
			return
		}
		if req.u.modLim == nil || !req.u.modLim.AllowN(now, 1) {
			h.limited(req, now)
			return
		}
	}
	if h.relays >= h.r.cfg.Edge.MaxInFlight {
		h.fail(req, chatfleet.EUNAVAILABLE, "the room's origin is busy: try again")
		return
	}
	h.relays++
	call := &relayCall{c: req.c, reply: req.reply}
	req.replied = true // relayDone answers
	go h.r.relayOne(call, req.who, *m)
}

// relayOne asks the origin (Edge.Relay) and hands the answer, or an
// "unavailable" error, to the hub.
func (r *Room) relayOne(call *relayCall, who protocol.User, msg protocol.ClientMsg) {
	ctx, cancel := context.WithTimeout(r.edgeCtx, r.cfg.Edge.RelayTimeout)
	data, m, err := r.callRelay(ctx, who, msg)
	cancel()
	if err != nil {
		r.warn("edge: relay to the origin failed", "type", msg.Type, "user", who.UserID, "err", err)
		m = &protocol.ServerMsg{Type: protocol.TypeError, Code: chatfleet.EUNAVAILABLE, Message: "the room's origin did not answer: try again", Ref: msg.ClientID}
		data, _ = m.Marshal()
	}
	call.m, call.data = m, data
	r.do(func() { r.h.relayDone(call) })
}

// callRelay calls Edge.Relay and checks its answer: one server message that
// a sender may get.
func (r *Room) callRelay(ctx context.Context, who protocol.User, msg protocol.ClientMsg) (data []byte, m *protocol.ServerMsg, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("panic in edge relay", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = errors.New("relay panicked")
		}
	}()
	raw, err := r.cfg.Edge.Relay(ctx, who, msg)
	if err != nil {
		return nil, nil, err
	}
	if len(raw) == 0 || len(raw) > maxEdgeFrame || bytes.IndexByte(raw, '\n') >= 0 {
		return nil, nil, fmt.Errorf("bad reply: %d bytes", len(raw))
	}
	sm, err := protocol.DecodeServer(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("bad reply: %w", err)
	}
	switch sm.Type {
	case protocol.TypeAck, protocol.TypeError, protocol.TypeViewers, protocol.TypePong:
	default:
		return nil, nil, fmt.Errorf("bad reply: type %q", protocol.Truncate(sm.Type, 32))
	}
	return raw, &sm, nil
}

// relayDone answers a relayed message; an ack of an event the edge has not
// delivered yet waits for it (at most ackHold).
func (h *hub) relayDone(call *relayCall) {
	if call.m.Type == protocol.TypeAck && call.m.Seq > h.seq {
		call.due = time.Now().Add(ackHold)
		if len(h.held) == 0 || call.m.Seq < h.heldMin {
			h.heldMin = call.m.Seq
		}
		h.held = append(h.held, call)
		if len(h.held) == 1 {
			h.armHeld(ackHold)
		}
		return
	}
	h.relays--
	h.answer(call)
}

// releaseAcks sends the held acks whose events came, or whose time is up.
func (h *hub) releaseAcks(now time.Time) {
	keep := h.held[:0]
	h.heldMin = math.MaxInt64
	for _, call := range h.held {
		if call.m.Seq <= h.seq || !now.Before(call.due) {
			h.relays--
			h.answer(call)
			continue
		}
		keep = append(keep, call)
		h.heldMin = min(h.heldMin, call.m.Seq)
	}
	clear(h.held[len(keep):])
	h.held = keep
	if len(keep) > 0 {
		h.armHeld(keep[0].due.Sub(now)) // held in arrival order: the first is due first
	}
}

// armHeld makes the hold timer fire within d (it serves held acks and
// parked clients: the earliest of their times wins).
func (h *hub) armHeld(d time.Duration) {
	at := time.Now().Add(d)
	if !h.heldAt.IsZero() && !at.Before(h.heldAt) {
		return // it fires earlier already
	}
	h.heldAt = at
	if h.heldTimer == nil {
		h.heldTimer = time.NewTimer(d)
		h.heldC = h.heldTimer.C
		return
	}
	h.heldTimer.Reset(d)
}

// releaseHeld runs when the hold timer fires.
func (h *hub) releaseHeld() {
	now := time.Now()
	h.heldAt = time.Time{}
	h.releaseAcks(now)
	h.releaseParked(now)
}

// park holds a client that recovers from a lastSeq this edge has not
// reached yet (it comes from another endpoint of the room, a little ahead):
// it gets its welcome once the edge has its lastSeq, at most ackHold later
// (then with missed, as a room answers a lastSeq beyond its seq). It reports
// whether it parked c; at most MaxRoomConns wait.
func (h *hub) park(c *client) bool {
	if !c.hasLastSeq || c.lastSeq <= h.seq || !c.due.IsZero() || len(h.parked) >= h.r.cfg.MaxRoomConns {
		return false
	}
	c.due = time.Now().Add(ackHold)
	c.parked = true
	h.parked = append(h.parked, c)
	h.armHeld(ackHold)
	return true
}

// releaseParked registers the parked clients whose lastSeq the edge has
// reached or whose time is up; those that left meanwhile are forgotten.
func (h *hub) releaseParked(now time.Time) {
	if len(h.parked) == 0 {
		return
	}
	var ready []*client
	keep := h.parked[:0]
	for _, c := range h.parked {
		switch {
		case !c.parked: // its connection ended
		case c.lastSeq <= h.seq || !now.Before(c.due):
			c.parked = false
			ready = append(ready, c)
		default:
			keep = append(keep, c)
		}
	}
	clear(h.parked[len(keep):])
	h.parked = keep
	if len(keep) > 0 {
		h.armHeld(keep[0].due.Sub(now)) // parked in arrival order: the first is due first
	}
	for _, c := range ready {
		h.add(c)
	}
}

// answer gives a relayed message's sender the origin's answer.
func (h *hub) answer(call *relayCall) {
	if call.reply != nil {
		select {
		case call.reply <- call.m:
		default:
		}
		return
	}
	if c := call.c; c != nil && c.idx >= 0 && !c.gone {
		h.push(c, &frame{data: call.data})
	}
}
