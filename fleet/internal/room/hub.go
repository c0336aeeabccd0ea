package room

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/protocol"
)

type reqKind uint8

const (
	reqRegister   reqKind = iota // a connection is ready for its welcome
	reqMessage                   // a message read from a connection
	reqUnregister                // a connection ended
	reqPost                      // a message POSTed to /send
)

// request is what connection goroutines and handlers send to the hub.
type request struct {
	kind   reqKind
	c      *client
	msg    protocol.ClientMsg
	err    error // the message did not decode
	binary bool  // the client sent a binary frame

	// reqPost: the sender and where its single reply goes.
	who   protocol.User
	reply chan *protocol.ServerMsg

	// Filled by the hub while it handles the request.
	u       *user
	replied bool
	seq     int64 // the event this request caused, for the POST's ack
}

// user is one distinct participant: all its connections count once.
type user struct {
	info     protocol.User
	conns    int
	lim      *rate.Limiter // every message; a producer's or moderator's is the room's ceiling
	modLim   *rate.Limiter // moderation messages (producer and moderators)
	lastChat time.Time     // for slow mode
	strikes  int           // refused messages ...
	strikeAt time.Time     // ... since this time
}

// hub is the room's state, owned by the goroutine running Run.
type hub struct {
	r *Room

	clients  []*client // registered connections; client.idx is the position
	users    map[string]*user
	sorted   []protocol.User // users sorted for the viewers list; nil when stale
	producer *client
	staff    map[string]*staff // user ids seen with a role above viewer (at most MaxRolesSeen)

	seq      int64
	hist     history
	stream   protocol.StreamState
	slowMode int
	mutes    map[string]time.Time // user id -> end of the mute; zero: until unmuted or the room ends; at most MaxMutes

	cache   *chatfleet.Cache // its Bans are not used: see Room.bans
	blocked map[string]bool  // lower-cased blocked words
	pruneAt time.Time        // when expired bans were last dropped

	maxLen      int // characters in a chat message
	idleTimeout int // seconds without a producer; <0: never
	roomLim     *rate.Limiter

	idle  *time.Timer
	idleC <-chan time.Time

	// The producer's grace: a live stream whose producer is gone ends when
	// it fires; away is the URL to go back live with when it returns.
	grace  *time.Timer
	graceC <-chan time.Time
	away   string

	draining    bool
	drainReason string
	drainList   []*client
	drainDone   int
	drainStart  time.Time
	drainWindow time.Duration
	drainTick   *time.Ticker
	drainC      <-chan time.Time

	ended     bool
	endCode   int
	endReason string
	err       error

	slow       []*client // shut for being too slow, to remove after the current step
	countDirty bool      // the viewer count changed without a join/leave broadcast
	presence   struct {
		producer       bool
		viewers, conns int
	}
	logBuf []chatfleet.Event
}

func newHub(r *Room) *hub {
	h := &hub{
		r:        r,
		users:    map[string]*user{},
		mutes:    map[string]time.Time{},
		staff:    map[string]*staff{},
		slowMode: r.cfg.Settings.SlowModeSeconds,
		roomLim:  rate.NewLimiter(rate.Limit(r.cfg.RoomMsgRate), r.cfg.RoomMsgBurst),
	}
	h.applySettings()
	h.resume(r.cfg.Resume, r.cfg.StartSeq)
	return h
}

// resume refills the history from a previous life of the room and restores
// the stream and slow mode state its events announced.
func (h *hub) resume(evs []chatfleet.Event, startSeq int64) {
	h.seq = max(startSeq, 0)
	for _, ev := range evs {
		if ev.Seq <= h.hist.last() || len(ev.Data) == 0 || !json.Valid(ev.Data) {
			continue
		}
		h.hist.add(&frame{data: ev.Data, seq: ev.Seq}, ev.Type == protocol.TypeChat)
		h.seq = max(h.seq, ev.Seq)
		switch ev.Type {
		case protocol.TypeStream, protocol.TypeSlowMode:
			if m, err := protocol.DecodeServer(ev.Data); err == nil {
				if ev.Type == protocol.TypeStream {
					h.stream = protocol.StreamState{Live: m.Live, HLSURL: m.HLSURL}
				} else {
					h.slowMode = m.Seconds
				}
			}
		}
	}
	h.r.stats.seq.Store(h.seq)
	h.publishStream()
}

func (h *hub) run(ctx context.Context) error {
	r := h.r
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	h.armIdle()
	h.armGrace() // a room resumed live has no producer yet
	for !h.ended {
		select {
		case <-ctx.Done():
			h.end(protocol.CloseGoingAway, "room shutting down", CauseContext)
			h.err = ctx.Err()
		case req := <-r.in:
			h.handle(&req)
		case f := <-r.cmds:
			h.safely(f)
		case <-tick.C:
			h.safely(h.tick)
		case <-h.idleC:
			h.end(protocol.CloseGoingAway, fmt.Sprintf("no producer for %d seconds", h.idleTimeout), CauseIdle)
		case <-h.graceC:
			h.safely(h.producerGone)
		case <-h.drainC:
			h.safely(h.drainStep)
		}
		h.reap()
	}
	if h.idle != nil {
		h.idle.Stop()
	}
	if h.grace != nil {
		h.grace.Stop()
	}
	if h.drainTick != nil {
		h.drainTick.Stop()
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

// handle processes one request; a panic is logged and answered with an
// internal error, and the room goes on.
func (h *hub) handle(req *request) {
	defer func() {
		if p := recover(); p != nil {
			h.r.log.Error("panic handling a client message", "type", req.msg.Type, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !req.replied {
				h.fail(req, protocol.CodeInternal, "internal error")
			}
		}
	}()
	switch req.kind {
	case reqRegister:
		h.add(req.c)
	case reqUnregister:
		h.remove(req.c)
	case reqMessage:
		c := req.c
		if c.idx < 0 {
			return // removed meanwhile
		}
		if req.binary {
			h.drop(c, protocol.CloseUnsupported, "binary frames are not supported", false)
			return
		}
		req.who, req.u = c.info, c.user
		h.message(req, c.anon)
	case reqPost:
		req.u = h.users[req.who.UserID]
		if req.u == nil {
			h.fail(req, chatfleet.ECONFLICT, "not in the room: open /events or /ws first")
			return
		}
		h.message(req, false)
		if !req.replied {
			h.reply(req, &protocol.ServerMsg{Type: protocol.TypeAck, Seq: req.seq})
		}
	}
}

// add registers a connection: it gets its welcome, and the room a join if the
// user was not there yet.
func (h *hub) add(c *client) {
	r := h.r
	if h.draining {
		c.shut(protocol.CloseRestart, h.drainReason, false)
		return
	}
	if b, ok := h.banned(c.info.UserID); ok {
		h.push(c, h.private(protocol.KindBanned, banText(b)))
		c.shut(protocol.CloseBanned, "banned", false)
		return
	}
	u := h.users[c.info.UserID]
	if u != nil && u.conns >= r.cfg.MaxConnsPerUser {
		c.shut(protocol.ClosePolicy, "too many connections for this user", false)
		return
	}
	joined := u == nil
	if joined {
		u = &user{info: c.info}
		h.setLimits(u)
		h.users[c.info.UserID] = u
		h.sorted = nil
	} else if rank(c.info.Role) > rank(u.info.Role) {
		u.info.Role = c.info.Role
		h.setLimits(u)
		h.sorted = nil
	}
	c.user = u
	u.conns++
	c.idx = len(h.clients)
	h.clients = append(h.clients, c)

	if c.info.Role == chatfleet.RoleProducer {
		old := h.producer
		h.producer = c
		h.stopIdle()
		h.stopGrace()
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

// staff is what the room remembers of a user id seen with a role above
// viewer, present or not: the highest role, by which moderation ranks it, and
// its rate limiters, so that reconnecting does not refill them.
type staff struct {
	role        chatfleet.Role
	lim, modLim *rate.Limiter
}

// setLimits gives u the rate limits of its role: a viewer's own rate; a
// producer or moderator the room's chat ceiling for every message (the room's
// limiter still applies to chat) and ModRate for moderation.
func (h *hub) setLimits(u *user) {
	cfg := &h.r.cfg
	if !u.info.Role.CanModerate() {
		u.lim = rate.NewLimiter(rate.Limit(cfg.MsgRate), cfg.MsgBurst)
		return
	}
	if st := h.seenRole(u.info.UserID, u.info.Role); st != nil {
		u.lim, u.modLim = st.lim, st.modLim
		return
	}
	u.lim = rate.NewLimiter(rate.Limit(cfg.RoomMsgRate), cfg.RoomMsgBurst)
	u.modLim = rate.NewLimiter(rate.Limit(cfg.ModRate), cfg.ModBurst)
}

// seenRole remembers that user id held role, if above viewer, and returns
// what the room keeps of it. At MaxRolesSeen ids, new ones are not
// remembered (nil, logged).
func (h *hub) seenRole(id string, role chatfleet.Role) *staff {
	st := h.staff[id]
	if rank(role) == 0 {
		return st
	}
	if st == nil {
		if len(h.staff) >= h.r.cfg.MaxRolesSeen {
			h.r.warn("too many producers and moderators to remember", "max", h.r.cfg.MaxRolesSeen)
			return nil
		}
		cfg := &h.r.cfg
		st = &staff{role: role, lim: rate.NewLimiter(rate.Limit(cfg.RoomMsgRate), cfg.RoomMsgBurst),
			modLim: rate.NewLimiter(rate.Limit(cfg.ModRate), cfg.ModBurst)}
		h.staff[id] = st
	}
	if rank(role) > rank(st.role) {
		st.role = role
	}
	return st
}

// highestRole is the highest role user id has held in the room.
func (h *hub) highestRole(id string) chatfleet.Role {
	role := chatfleet.RoleViewer
	if st := h.staff[id]; st != nil {
		role = st.role
	}
	if u := h.users[id]; u != nil && rank(u.info.Role) > rank(role) {
		role = u.info.Role
	}
	return role
}

// remove unregisters c (if it still is) and tells the room when its user's
// last connection went.
func (h *hub) remove(c *client) {
	if c.idx < 0 {
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
		h.armIdle()
		h.armGrace()
		defer h.reportPresence() // a producer's going is reported at once
	}
	u := c.user
	u.conns--
	if u.conns == 0 {
		delete(h.users, u.info.UserID)
		h.sorted = nil
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

func (h *hub) publishCounts() {
	s := &h.r.stats
	s.conns.Store(int64(len(h.clients)))
	s.viewers.Store(int64(len(h.users)))
}

func (h *hub) publishStream() {
	s := &h.r.stats
	s.live.Store(h.stream.Live)
	s.mu.Lock()
	s.hlsURL = h.stream.HLSURL
	s.mu.Unlock()
}

// presenceChange broadcasts a join or leave, unless the room is too large
// (or ending), where clients get a periodic count instead.
func (h *hub) presenceChange(typ string, u *user) {
	if h.draining || h.ended || len(h.users) > h.r.cfg.PresenceMax || (typ == protocol.TypeLeave && len(h.users) >= h.r.cfg.PresenceMax) {
		h.countDirty = true
		return
	}
	h.broadcast(&protocol.ServerMsg{Type: typ, UserID: u.info.UserID, Name: u.info.Name, Role: u.info.Role, ViewerCount: len(h.users)})
}

// tick runs every second: counts for large rooms, presence (audience
// changes are reported at most once a second) and log events for the master.
func (h *hub) tick() {
	if h.countDirty && !h.ended {
		h.countDirty = false
		h.fanout(h.encode(&protocol.ServerMsg{Type: protocol.TypeCount, ViewerCount: len(h.users)}, 0))
	}
	h.reportPresence()
	h.flushLog()
	now := h.now()
	h.pruneMutes(now)
	if now.Sub(h.pruneAt) >= time.Minute {
		h.pruneAt = now
		h.r.bans.Prune(now)
	}
}

func (h *hub) reportPresence() {
	p := h.presence
	p.producer, p.viewers, p.conns = h.producer != nil, len(h.users), len(h.clients)
	if p != h.presence {
		h.presence = p
		h.r.emit(Event{Type: EventPresence, Producer: p.producer, Viewers: p.viewers, Conns: p.conns})
	}
}

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
	if h.ended {
		return
	}
	h.broadcast(&protocol.ServerMsg{Type: protocol.TypeSystem, Kind: kind, Text: text})
}

// welcome queues c's welcome: who it is, the room's state, and the history
// after lastSeq (all of it when !has).
func (h *hub) welcome(c *client, lastSeq int64, has bool) {
	frames, missed := h.hist.since(h.seq, lastSeq, has)
	st := h.stream
	m := protocol.ServerMsg{
		Type:        protocol.TypeWelcome,
		TS:          h.now().UnixMilli(),
		You:         &c.info,
		Room:        h.r.name,
		Seq:         h.seq,
		Stream:      &st,
		ViewerCount: len(h.users),
		SlowMode:    h.slowMode,
		Missed:      missed,
		FirstSeq:    h.hist.first(),
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

// reply sends the answer to one request: on its connection, or to its POST.
func (h *hub) reply(req *request, m *protocol.ServerMsg) {
	if req.reply != nil {
		if !req.replied { // the channel holds one reply; never block the hub
			req.reply <- m
		}
		req.replied = true
		return
	}
	req.replied = true
	if req.c != nil && req.c.idx >= 0 {
		h.push(req.c, h.encode(m, 0))
	}
}

func (h *hub) fail(req *request, code, msg string) {
	h.reply(req, &protocol.ServerMsg{Type: protocol.TypeError, Code: code, Message: msg, Ref: req.msg.ClientID})
}

// message checks the sender's rate, then does what the message asks.
func (h *hub) message(req *request, anon bool) {
	now := h.now()
	u := req.u
	if !u.lim.AllowN(now, 1) {
		h.limited(req, now)
		return
	}
	if req.err != nil {
		h.fail(req, chatfleet.ErrorCode(req.err), chatfleet.ErrorMessage(req.err))
		return
	}
	m := &req.msg
	switch m.Type {
	case protocol.TypePing:
		h.reply(req, &protocol.ServerMsg{Type: protocol.TypePong, TS: now.UnixMilli()})
	case protocol.TypeHello, protocol.TypeResume:
		if req.c == nil {
			h.fail(req, protocol.CodeUnsupported, m.Type+" is for WebSocket connections; SSE resumes with Last-Event-ID")
			return
		}
		req.replied = true
		h.welcome(req.c, m.LastSeq, m.HasLastSeq)
	case protocol.TypeChat:
		h.chat(req, anon, now)
	case protocol.TypeViewers:
		h.viewers(req)
	case protocol.TypeStream:
		if req.who.Role != chatfleet.RoleProducer {
			h.fail(req, protocol.CodeForbidden, "only the producer announces the stream")
			return
		}
		h.announce(req)
	case protocol.TypeClose:
		if req.who.Role != chatfleet.RoleProducer {
			h.fail(req, protocol.CodeForbidden, "only the producer closes the room")
			return
		}
		reason := m.Reason
		if reason == "" {
			reason = "the producer closed the room"
		}
		h.reply(req, &protocol.ServerMsg{Type: protocol.TypeAck, Seq: h.seq + 1})
		h.end(protocol.CloseGoingAway, reason, CauseProducer)
	default:
		if !req.who.Role.CanModerate() {
			h.fail(req, protocol.CodeForbidden, m.Type+": only the producer and moderators may moderate")
			return
		}
		if u.modLim == nil || !u.modLim.AllowN(now, 1) {
			h.limited(req, now)
			return
		}
		h.moderate(req, now)
	}
}

// limited refuses a message over the sender's rate; sustained flooding closes
// the connection with 1008.
func (h *hub) limited(req *request, now time.Time) {
	u := req.u
	if now.Sub(u.strikeAt) > 10*time.Second {
		u.strikes = 0
	}
	u.strikes++
	u.strikeAt = now
	if req.c != nil && u.strikes > h.r.cfg.AbuseStrikes {
		u.strikes = 0
		h.r.warn("closing a flooding client", "conn", req.c.id, "user", u.info.UserID)
		h.drop(req.c, protocol.ClosePolicy, "rate limit exceeded", true)
		return
	}
	h.fail(req, protocol.CodeRateLimited, "too many messages: slow down")
}

func (h *hub) chat(req *request, anon bool, now time.Time) {
	m, u := &req.msg, req.u
	switch {
	case anon:
		h.fail(req, protocol.CodeForbidden, "guests cannot chat: sign in")
		return
	case h.muted(u.info.UserID, now):
		h.fail(req, protocol.CodeMuted, "you are muted")
		return
	case strings.TrimSpace(m.Text) == "":
		h.fail(req, protocol.CodeInvalid, "empty message")
		return
	case utf8.RuneCountInString(m.Text) > h.maxLen:
		h.fail(req, protocol.CodeTooLarge, fmt.Sprintf("message longer than %d characters", h.maxLen))
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

func (h *hub) muted(id string, now time.Time) bool {
	until, ok := h.mutes[id]
	if ok && !until.IsZero() && !now.Before(until) {
		delete(h.mutes, id)
		return false
	}
	return ok
}

func (h *hub) viewers(req *request) {
	size := req.msg.PageSize
	if size == 0 {
		size = 50
	}
	if h.sorted == nil {
		h.sorted = make([]protocol.User, 0, len(h.users))
		for _, u := range h.users {
			h.sorted = append(h.sorted, u.info)
		}
		slices.SortFunc(h.sorted, func(a, b protocol.User) int {
			return cmp.Or(cmp.Compare(rank(b.Role), rank(a.Role)), cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.UserID, b.UserID))
		})
	}
	from := min(req.msg.Page*size, len(h.sorted))
	to := min(from+size, len(h.sorted))
	users := h.sorted[from:to]
	if users == nil {
		users = []protocol.User{}
	}
	h.reply(req, &protocol.ServerMsg{Type: protocol.TypeViewers, Page: req.msg.Page, PageSize: size, Users: users, Total: len(h.sorted)})
}

// announce sets the stream state the producer announced.
func (h *hub) announce(req *request) {
	m := &req.msg
	st := protocol.StreamState{Live: m.Live}
	if m.Live {
		st.HLSURL = cmp.Or(m.HLSURL, h.r.cfg.HLSURL)
		if st.HLSURL == "" {
			h.fail(req, protocol.CodeMissingField, `stream: field "hlsUrl" is required when live is true (the room was created without one)`)
			return
		}
		if err := validHLS(st.HLSURL); err != nil {
			h.fail(req, protocol.CodeInvalid, "hlsUrl: "+err.Error())
			return
		}
	}
	h.away = ""
	req.seq = h.setStream(st, "")
}

// setStream makes st the stream state, tells the clients (with reason, if
// any) and the master, and returns the event's seq.
func (h *hub) setStream(st protocol.StreamState, reason string) int64 {
	h.stream = st
	h.publishStream()
	seq := h.broadcast(&protocol.ServerMsg{Type: protocol.TypeStream, Live: st.Live, HLSURL: st.HLSURL, Reason: reason})
	h.r.emit(Event{Type: EventStream, Live: st.Live, HLSURL: st.HLSURL})
	return seq
}

// armGrace starts the producer's grace when a live stream has no producer.
func (h *hub) armGrace() {
	if h.producer != nil || !h.stream.Live || h.ended {
		return
	}
	if h.grace == nil {
		h.grace = time.NewTimer(h.r.cfg.ProducerGrace)
		h.graceC = h.grace.C
		return
	}
	h.grace.Reset(h.r.cfg.ProducerGrace)
}

func (h *hub) stopGrace() {
	if h.grace != nil {
		h.grace.Stop()
	}
}

// producerGone ends the live stream of a producer gone for the grace,
// keeping its URL for its return.
func (h *hub) producerGone() {
	if h.producer != nil || !h.stream.Live || h.ended {
		return
	}
	h.away = h.stream.HLSURL
	h.r.log.Info("producer gone for the grace: stream offline", "grace", h.r.cfg.ProducerGrace)
	h.setStream(protocol.StreamState{}, ReasonProducerLeft)
}

// producerBack puts the stream of a producer who left while live back
// live with the URL it had announced.
func (h *hub) producerBack() {
	if h.away == "" || h.stream.Live || h.ended {
		return
	}
	url := h.away
	h.away = ""
	h.setStream(protocol.StreamState{Live: true, HLSURL: url}, "the producer is back")
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

func rank(r chatfleet.Role) int {
	switch r {
	case chatfleet.RoleProducer:
		return 2
	case chatfleet.RoleModerator:
		return 1
	}
	return 0
}

// moderate does delete, mute, unmute, kick, ban and slowmode for a producer
// or moderator.
func (h *hub) moderate(req *request, now time.Time) {
	m := &req.msg
	by := req.who
	switch m.Type {
	case protocol.TypeSlowMode:
		h.slowMode = m.Seconds
		req.seq = h.broadcast(&protocol.ServerMsg{Type: protocol.TypeSlowMode, Seconds: m.Seconds, By: &by})
		return
	case protocol.TypeDelete:
		if m.Seq > h.seq {
			h.fail(req, protocol.CodeNotFound, fmt.Sprintf("no message %d", m.Seq))
			return
		}
		if e := h.hist.find(m.Seq); e != nil {
			switch {
			case !e.chat:
				h.fail(req, protocol.CodeInvalid, fmt.Sprintf("event %d is not a chat message", m.Seq))
				return
			case e.deleted:
				h.fail(req, protocol.CodeNotFound, fmt.Sprintf("message %d is already deleted", m.Seq))
				return
			}
			e.deleted = true
		}
		req.seq = h.broadcast(&protocol.ServerMsg{Type: protocol.TypeDeleted, Target: m.Seq, By: &by})
		return
	}

	if m.Type == protocol.TypeBan && m.Fleet {
		h.fail(req, protocol.CodeForbidden, "ban: fleet bans are made by the operator through the admin API; leave out fleet for a ban from this room")
		return
	}
	// The rest act on a user, who must rank below the moderator by the
	// highest role seen in the room, present or not; never on the owner.
	if m.UserID == by.UserID {
		h.fail(req, protocol.CodeInvalid, m.Type+": not on yourself")
		return
	}
	if h.r.cfg.Owner != "" && m.UserID == h.r.cfg.Owner {
		h.fail(req, protocol.CodeForbidden, m.Type+": the room's owner cannot be moderated")
		return
	}
	target := h.users[m.UserID]
	role, name := h.highestRole(m.UserID), ""
	if target != nil {
		name = target.info.Name
	}
	if rank(role) >= rank(by.Role) {
		h.fail(req, protocol.CodeForbidden, fmt.Sprintf("%s: a %s cannot act on a %s", m.Type, by.Role, role))
		return
	}
	switch m.Type {
	case protocol.TypeMute:
		var until time.Time
		var untilMS int64
		if m.Seconds > 0 {
			until = now.Add(time.Duration(m.Seconds) * time.Second)
			untilMS = until.UnixMilli()
		}
		if _, ok := h.mutes[m.UserID]; !ok && len(h.mutes) >= h.r.cfg.MaxMutes {
			h.pruneMutes(now)
			if len(h.mutes) >= h.r.cfg.MaxMutes {
				h.fail(req, protocol.CodeLimitReached, fmt.Sprintf("mute: the room holds %d mutes, its most; unmute someone first", len(h.mutes)))
				return
			}
		}
		h.mutes[m.UserID] = until
		req.seq = h.broadcast(&protocol.ServerMsg{Type: protocol.TypeMuted, UserID: m.UserID, Name: name, Seconds: m.Seconds, Until: untilMS, By: &by})
	case protocol.TypeUnmute:
		if !h.muted(m.UserID, now) {
			h.fail(req, protocol.CodeNotFound, m.UserID+" is not muted")
			return
		}
		delete(h.mutes, m.UserID)
		req.seq = h.broadcast(&protocol.ServerMsg{Type: protocol.TypeUnmuted, UserID: m.UserID, Name: name, By: &by})
	case protocol.TypeKick:
		if target == nil {
			h.fail(req, protocol.CodeNotFound, m.UserID+" is not in the room")
			return
		}
		reason := m.Reason
		if reason == "" {
			reason = "kicked by a moderator"
		}
		req.seq = h.broadcast(&protocol.ServerMsg{Type: protocol.TypeKicked, UserID: m.UserID, Name: name, Reason: m.Reason, By: &by})
		h.disconnect(m.UserID, protocol.KindKicked, reason, protocol.CloseKicked)
	case protocol.TypeBan:
		if _, own := h.r.bans.Len(); own >= h.r.cfg.MaxRoomBans {
			h.fail(req, protocol.CodeLimitReached, fmt.Sprintf("ban: the room holds %d bans, its most; the operator can lift some", own))
			return
		}
		b := chatfleet.Ban{ID: newID(), UserID: m.UserID, Room: h.r.name, By: by.UserID, Reason: m.Reason, CreatedAt: now}
		if m.Minutes > 0 {
			b.Until = now.Add(time.Duration(m.Minutes) * time.Minute)
		}
		h.r.bans.AddLocal(b)
		req.seq = h.ban(b, name, &by)
		h.r.emit(Event{Type: EventBan, Ban: &b})
	}
}

// ban tells the room about b and closes the banned user's connections with
// 4004. It returns the seq of the banned event.
func (h *hub) ban(b chatfleet.Ban, name string, by *protocol.User) int64 {
	m := &protocol.ServerMsg{Type: protocol.TypeBanned, UserID: b.UserID, Name: name, Reason: b.Reason, Fleet: b.Room == "", By: by}
	if !b.Until.IsZero() {
		m.Until = b.Until.UnixMilli()
		m.Minutes = int((b.Until.Sub(b.CreatedAt) + time.Minute - 1) / time.Minute)
	}
	seq := h.broadcast(m)
	h.disconnect(b.UserID, protocol.KindBanned, banText(b), protocol.CloseBanned)
	return seq
}

func banText(b chatfleet.Ban) string {
	s := "you are banned from this room"
	if b.Room == "" {
		s = "you are banned"
	}
	if b.Reason != "" {
		s += ": " + b.Reason
	}
	return s
}

// disconnect closes every connection of user id after a private system
// message.
func (h *hub) disconnect(id, kind, text string, code int) {
	var cs []*client
	for _, c := range h.clients {
		if c.info.UserID == id && !c.gone {
			cs = append(cs, c)
		}
	}
	f := h.private(kind, text)
	for _, c := range cs {
		h.push(c, f)
		h.drop(c, code, text, false)
	}
}

func newID() string { return strings.ToLower(rand.Text()[:20]) }

// banned reports whether a ban keeps user id out of this room now.
func (h *hub) banned(id string) (chatfleet.Ban, bool) {
	return h.r.bans.Banned(id, h.now())
}

// applyCache takes a new cache: blocked words, setting defaults.
func (h *hub) applyCache(c *chatfleet.Cache) {
	h.cache = c
	h.blocked = map[string]bool{}
	for _, w := range c.BlockedWords {
		if w = strings.ToLower(strings.TrimSpace(w)); w != "" {
			h.blocked[w] = true
		}
	}
	h.applySettings()
}

// applyBans changes the ban list; connected users a new ban keeps out are
// told and closed.
func (h *hub) applyBans(steps []BanStep) {
	added, err := h.r.bans.Update(steps...)
	if err != nil {
		h.r.log.Error("ban list from the master not applied; keeping the one held", "err", err)
		return
	}
	if slices.ContainsFunc(steps, func(st BanStep) bool { return st.Reset }) {
		// The whole list changed: check everyone present.
		ids := make([]string, 0, len(h.users))
		for id := range h.users {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if b, ok := h.banned(id); ok {
				h.ban(b, h.users[id].info.Name, nil)
			}
		}
		return
	}
	for _, b := range added {
		if u := h.users[b.UserID]; u != nil {
			if b, ok := h.banned(b.UserID); ok {
				h.ban(b, u.info.Name, nil)
			}
		}
	}
}

// pruneMutes drops the mutes that ended.
func (h *hub) pruneMutes(now time.Time) {
	for id, until := range h.mutes {
		if !until.IsZero() && !now.Before(until) {
			delete(h.mutes, id)
		}
	}
}

// applySettings resolves the settings: the room's own, else the cache's
// defaults, else the built-in defaults.
func (h *hub) applySettings() {
	own, def := h.r.cfg.Settings, chatfleet.DefaultRoomSettings
	var cached chatfleet.RoomSettings
	if h.cache != nil {
		cached = h.cache.Defaults
	}
	pick := func(own, cached, def int) int {
		return cmp.Or(own, cached, def)
	}
	h.maxLen = max(1, pick(own.MaxMessageLen, cached.MaxMessageLen, def.MaxMessageLen))
	h.hist.resize(max(1, pick(own.HistorySize, cached.HistorySize, def.HistorySize)))
	idle := pick(own.IdleTimeoutSec, cached.IdleTimeoutSec, def.IdleTimeoutSec)
	if idle != h.idleTimeout {
		h.idleTimeout = idle
		if h.idle != nil && h.producer == nil {
			h.armIdle()
		}
	}
	h.r.maxLen.Store(int64(h.maxLen))
}

// armIdle starts the no-producer countdown.
func (h *hub) armIdle() {
	if h.producer != nil || h.ended {
		return
	}
	if h.idleTimeout <= 0 {
		h.stopIdle()
		return
	}
	d := time.Duration(h.idleTimeout) * time.Second
	if h.idle == nil {
		h.idle = time.NewTimer(d)
		h.idleC = h.idle.C
		return
	}
	h.idle.Reset(d)
}

func (h *hub) stopIdle() {
	if h.idle != nil {
		h.idle.Stop()
	}
}

// end closes the room: a closing notice (except after a drain, which warned
// already), every client closed with code and reason, EventClosed.
func (h *hub) end(code int, reason string, cause string) {
	if h.ended {
		return
	}
	r := h.r
	r.closing.Store(true)
	if cause != CauseDrain {
		h.system(protocol.KindClosing, reason)
	}
	for _, c := range h.clients {
		c.shut(code, reason, false)
		c.idx = -1
		c.gone = true
	}
	h.clients, h.users, h.producer = nil, map[string]*user{}, nil
	h.publishCounts()
	h.ended, h.endCode, h.endReason = true, code, reason
	h.flushLog()
	r.emit(Event{Type: EventClosed, Reason: reason, Cause: cause})
	close(r.ending)
}

// drain warns everyone, then closes the clients evenly over window.
func (h *hub) drain(reason string, window time.Duration) {
	if h.ended || h.draining {
		return
	}
	h.draining, h.drainReason = true, reason
	h.r.closing.Store(true)
	h.system(protocol.KindDrain, reason)
	if window <= 0 || len(h.clients) == 0 {
		h.end(protocol.CloseRestart, reason, CauseDrain)
		return
	}
	h.drainList = slices.Clone(h.clients)
	h.drainStart, h.drainWindow = time.Now(), window
	step := min(max(window/time.Duration(len(h.drainList)+1), 10*time.Millisecond), time.Second)
	h.drainTick = time.NewTicker(step)
	h.drainC = h.drainTick.C
}

func (h *hub) drainStep() {
	elapsed := time.Since(h.drainStart)
	if elapsed >= h.drainWindow {
		h.end(protocol.CloseRestart, h.drainReason, CauseDrain)
		return
	}
	target := int(float64(len(h.drainList)) * float64(elapsed) / float64(h.drainWindow))
	for ; h.drainDone < target; h.drainDone++ {
		if c := h.drainList[h.drainDone]; c.idx >= 0 {
			h.drop(c, protocol.CloseRestart, h.drainReason, false)
		}
	}
}
