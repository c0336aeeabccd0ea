// Package room is the server of one chat room, run inside the room's own
// process: WebSocket (and SSE) clients, chat, presence, history and recovery,
// stream state, moderation, flood control and the room's lifecycle. The wire
// messages are those of package protocol; docs/protocol.md describes them.
//
// One goroutine, Run's hub loop, owns the room's state and its client set:
// it alone registers, removes and closes clients. Connection goroutines (a
// reader per WebSocket, the handler of an SSE stream) decode client messages
// and pass them to the hub; the hub answers by queueing pre-encoded frames on
// each client's byte-bounded send queue, which a short-lived writer drains
// into one coalesced write. A client that cannot keep up is dropped; nobody
// waits for it.
package room

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

// Config is what a room is built from. Zero fields take their defaults.
type Config struct {
	Name           string                 // the room's name; required
	Instance       string                 // the room's instance id: join tokens must carry it (none: tokens without one)
	Owner          string                 // the owner's user id: the producer; moderation never acts on it
	HLSURL         string                 // the stream URL given at create: a stream announced live without one uses it
	Settings       chatfleet.RoomSettings // zero fields follow the cache's defaults, then chatfleet.DefaultRoomSettings
	Tokens         *token.Issuer          // verifies join tokens; required
	AllowedOrigins []string               // browser origins allowed, exactly "scheme://host[:port]"; empty: same origin only; "*": any
	Log            *slog.Logger           // defaults to slog.Default()
	Now            func() time.Time       // defaults to time.Now

	// OnEvent is called from the hub goroutine for what the master must
	// know (see Event); it must not block. Nil: events are dropped.
	OnEvent func(Event)
	// LogEvents makes the room report its sequenced events in batches
	// (Event{Type: EventLog}) so that the master can store them and a restarted
	// room can Resume.
	LogEvents bool

	// ProducerGrace is how long a live stream outlasts its producer's last
	// connection: then the room announces it offline (a stream event with
	// live false and a reason), and back live with the same URL if the
	// producer returns. Default 30 s.
	ProducerGrace time.Duration

	// Resume and StartSeq restore a room after a restart: the last events it
	// sequenced (oldest first, as reported in EventLog) refill its history, and
	// its sequence continues from the larger of StartSeq and the last event's Seq.
	Resume   []chatfleet.Event
	StartSeq int64

	// Entitle, when set (paid rooms), is asked whether viewers may enter (at
	// the handshake) and stay (every EntitleEvery, default 60 s, in one batch
	// for all viewers); see entitle.go. Nil: no checks.
	Entitle      Checker
	EntitleEvery time.Duration

	// Edge, when set, makes this room an edge of an origin on another host
	// (docs/scaleout.md): it sequences nothing, takes the origin's events
	// through Deliver, and passes its clients' messages to the origin
	// through Edge.Relay. See edge.go.
	Edge *Edge

	ReadLimit        int64         // bytes in one client message; default 4096 (more if MaxMessageLen needs it); above it: close 1009
	SendQueueBytes   int           // bytes queued for one connection before it is dropped (4008); default 256 KiB
	MsgRate          float64       // messages per second per viewer (all its connections); default 5
	MsgBurst         int           // default 10
	AbuseStrikes     int           // refused messages within 10 s before the connection is closed 1008; default 2*MsgBurst
	RoomMsgRate      float64       // chat messages per second for the whole room; default 2000
	RoomMsgBurst     int           // default RoomMsgRate/4, at least 1
	MaxConnsPerUser  int           // default 16; more are closed 1008
	PresenceMax      int           // join/leave are broadcast while the room has at most this many users; default 500
	WriteWait        time.Duration // deadline of one write; default 10 s
	PongWait         time.Duration // read deadline, extended by every pong and message; pings every half of it; default 60 s
	HandshakeTimeout time.Duration // WebSocket handshake; default 10 s
	WriteDelay       time.Duration // least time between two writes to one connection (coalescing), plus writeCost per connection of the room (Room.writeDelay); default 10 ms, negative: none
	CloseWait        time.Duration // how long Run waits for clients to take their close frame; default 3 s

	// Bans is the list the room applies (the master's, see ApplyBans);
	// nil: an empty one. The room process fills it before the room exists.
	Bans        *BanList
	MaxRoomBans int // bans of this room (its own, the master's and local) before a moderator's ban is refused; default 10,000

	ModRate       float64 // moderation messages per second per producer or moderator; default 10
	ModBurst      int     // default 50
	MaxMutes      int     // mutes held at once; at the cap a mute is refused (limit_reached); default 10,000
	MaxRolesSeen  int     // user ids remembered with a role above viewer (moderation protects them absent); default 10,000
	MaxConnsPerIP int     // open connections from one client address; default 1000, negative: no cap
	MaxRoomConns  int     // open connections in the room; default 20,000
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// address (the right-most address not in them); none: the TCP peer.
	TrustedProxies []netip.Prefix
	BodyTimeout    time.Duration // reading a POST /send body; default 10 s
}

// DefaultProducerGrace is Config.ProducerGrace's default.
const DefaultProducerGrace = 30 * time.Second

// ReasonProducerLeft is the reason of the stream event that ends a live
// stream whose producer has been gone for the grace.
const ReasonProducerLeft = "the producer left"

// Event types reported through Config.OnEvent.
const (
	EventBan      = "ban"      // Ban: a moderator banned a user; the master stores it and pushes it to the fleet
	EventClosed   = "closed"   // Reason, Cause: the room ended
	EventStream   = "stream"   // Live, HLSURL: the producer announced its stream
	EventPresence = "presence" // Producer, Viewers, Conns: a producer came or went, or the audience changed (at most once a second)
	EventLog      = "log"      // Log: sequenced events since the last batch (only with Config.LogEvents)
)

// Causes of EventClosed.
const (
	CauseProducer = "producer" // the producer sent close
	CauseIdle     = "idle"     // no producer for IdleTimeoutSec
	CauseClose    = "close"    // Close was called
	CauseDrain    = "drain"    // Drain finished
	CauseContext  = "context"  // Run's context ended
	// CauseOrigin (edge.go): an edge's origin ended the room.
)

// Event is something the master must know about a room.
type Event struct {
	Type     string
	Ban      *chatfleet.Ban    // EventBan
	Reason   string            // EventClosed
	Cause    string            // EventClosed
	Live     bool              // EventStream
	HLSURL   string            // EventStream
	Producer bool              // EventPresence: a producer is connected
	Viewers  int               // EventPresence: distinct users
	Conns    int               // EventPresence
	Log      []chatfleet.Event // EventLog
}

// Room is one chat room. Create it with New, serve Handler on its listener,
// and call Run; every other method is safe from any goroutine.
type Room struct {
	cfg     Config
	name    string
	log     *slog.Logger
	now     func() time.Time
	origins map[string]bool
	anyOrig bool

	upgrader websocket.Upgrader

	in    chan request  // readers, SSE handlers, POSTs, Remote to the hub; FIFO per connection
	cmds  chan func()   // the API (ApplyCache, Global, Close, Drain) to the hub
	deliv chan delivery // an edge's origin events (Deliver) to the hub

	// An edge's: nil while current, else why not (SetCurrent); relays end
	// with edgeCtx, which ends with Run.
	stale      atomic.Pointer[string]
	edgeCtx    context.Context
	edgeCancel context.CancelFunc
	created    time.Time

	running atomic.Bool
	ending  chan struct{} // closed when the hub decides the room ends; goroutines stop waiting on it
	done    chan struct{} // closed when Run returns
	closing atomic.Bool   // the room ends or drains: refuse new clients
	policy  atomic.Pointer[policy]
	live    atomic.Int64 // connection goroutines alive (reader or SSE handler)
	connsMu sync.Mutex
	conns   map[*client]struct{} // every connection, registered or not, until its goroutine ends
	maxLen  atomic.Int64         // the hub's MaxMessageLen, for the read limit
	nextID  atomic.Uint64
	logLim  *rate.Limiter // rate of per-connection warnings

	stats  stats
	ent    *entitlements // nil unless Config.Entitle is set
	bans   *BanList      // Config.Bans
	limits *connLimits
	pace   *pacer // when writers write (client.take)
	shared shared // the batch they write alike (client.writeBatch)

	h *hub // the hub's state; touched by the hub goroutine only
}

// policy is the hub's immutable snapshot of who may enter, read by
// handshakes (bans are in Room.bans).
type policy struct {
	anonymous bool
}

type stats struct {
	conns, viewers, seq, messages, deliveries, slowDrops atomic.Int64
	live                                                 atomic.Bool

	mu       sync.Mutex
	hlsURL   string
	lastAt   time.Time
	lastMsgs int64
}

// New checks cfg and returns a room ready to Run. It returns EINVALID for a
// bad name, missing token issuer or malformed allowed origin.
func New(cfg Config) (*Room, error) {
	if err := chatfleet.ValidateRoomName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Tokens == nil {
		return nil, chatfleet.Errorf(chatfleet.EINVALID, "room %s: no token issuer", cfg.Name)
	}
	if cfg.HLSURL != "" {
		if err := validHLS(cfg.HLSURL); err != nil {
			return nil, chatfleet.Errorf(chatfleet.EINVALID, "room %s: hlsUrl: %v", cfg.Name, err)
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SendQueueBytes <= 0 {
		cfg.SendQueueBytes = 256 << 10
	}
	if cfg.MsgRate <= 0 {
		cfg.MsgRate = 5
	}
	if cfg.MsgBurst <= 0 {
		cfg.MsgBurst = 10
	}
	if cfg.AbuseStrikes <= 0 {
		cfg.AbuseStrikes = 2 * cfg.MsgBurst
	}
	if cfg.RoomMsgRate <= 0 {
		cfg.RoomMsgRate = 2000
	}
	if cfg.RoomMsgBurst <= 0 {
		cfg.RoomMsgBurst = max(1, int(cfg.RoomMsgRate/4))
	}
	if cfg.MaxConnsPerUser <= 0 {
		cfg.MaxConnsPerUser = 16
	}
	if cfg.PresenceMax <= 0 {
		cfg.PresenceMax = 500
	}
	if cfg.WriteWait <= 0 {
		cfg.WriteWait = 10 * time.Second
	}
	if cfg.PongWait <= 0 {
		cfg.PongWait = 60 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.WriteDelay == 0 {
		cfg.WriteDelay = 10 * time.Millisecond
	} else if cfg.WriteDelay < 0 {
		cfg.WriteDelay = 0
	}
	if cfg.CloseWait <= 0 {
		cfg.CloseWait = 3 * time.Second
	}
	if cfg.ProducerGrace <= 0 {
		cfg.ProducerGrace = DefaultProducerGrace
	}
	if cfg.Bans == nil {
		cfg.Bans = NewBanList(cfg.Name)
	}
	cfg.MaxRoomBans = cmp.Or(max(cfg.MaxRoomBans, 0), 10000)
	if cfg.ModRate <= 0 {
		cfg.ModRate = 10
	}
	cfg.ModBurst = cmp.Or(max(cfg.ModBurst, 0), 50)
	cfg.MaxMutes = cmp.Or(max(cfg.MaxMutes, 0), 10000)
	cfg.MaxRolesSeen = cmp.Or(max(cfg.MaxRolesSeen, 0), 10000)
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = 1000
	}
	cfg.MaxRoomConns = cmp.Or(max(cfg.MaxRoomConns, 0), 20000)
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 10 * time.Second
	}
	if cfg.Edge != nil {
		e := *cfg.Edge
		if e.Relay == nil {
			return nil, chatfleet.Errorf(chatfleet.EINVALID, "room %s: an edge needs Edge.Relay", cfg.Name)
		}
		e.MaxInFlight = cmp.Or(max(e.MaxInFlight, 0), DefaultRelayInFlight)
		if e.RelayTimeout <= 0 {
			e.RelayTimeout = DefaultRelayTimeout
		}
		cfg.Edge = &e
	}
	r := &Room{
		cfg:     cfg,
		pace:    newPacer(),
		name:    cfg.Name,
		log:     cfg.Log.With("room", cfg.Name),
		now:     cfg.Now,
		origins: map[string]bool{},
		in:      make(chan request, 1024),
		cmds:    make(chan func(), 64),
		deliv:   make(chan delivery, 1024),
		ending:  make(chan struct{}),
		done:    make(chan struct{}),
		logLim:  rate.NewLimiter(1, 10),
		conns:   map[*client]struct{}{},
	}
	for _, o := range cfg.AllowedOrigins {
		if o == "*" {
			r.anyOrig = true
			continue
		}
		n, err := normalizeOrigin(o)
		if err != nil {
			return nil, chatfleet.Errorf(chatfleet.EINVALID, "room %s: allowed origin %q: %v", cfg.Name, o, err)
		}
		r.origins[n] = true
	}
	r.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		ReadBufferSize:   readBufferSize,
		WriteBufferSize:  writeBufferSize,
		WriteBufferPool:  writePool,
		CheckOrigin:      func(*http.Request) bool { return true }, // checked before the upgrade
		Error:            upgradeError,
	}
	r.ent = newEntitlements(cfg)
	r.bans = cfg.Bans
	r.limits = newConnLimits(cfg)
	r.h = newHub(r)
	r.policy.Store(&policy{anonymous: cfg.Settings.AllowAnonymous})
	r.stats.lastAt = r.now()
	r.created = r.now()
	r.edgeCtx, r.edgeCancel = context.WithCancel(context.Background())
	return r, nil
}

// normalizeOrigin returns o as "scheme://host[:port]" in lower case, or an
// error if o is not an origin.
func normalizeOrigin(o string) (string, error) {
	u, err := netguard.HTTPURL(o, 0)
	if err != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", errors.New("want scheme://host[:port]")
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// Run is the room's hub loop: it owns the client set and every piece of room
// state, and returns when the room ends (the producer closed it, the idle
// timeout, Close, Drain or ctx). Before returning it gives clients up to
// CloseWait to receive their close frames. It returns nil, or ctx's error if
// ctx ended the room. Run may be called once.
func (r *Room) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("room: Run called twice")
	}
	if r.ent != nil {
		go r.entitleLoop(ctx)
	}
	err := r.h.run(ctx)
	r.edgeCancel()
	r.waitConns()
	close(r.done)
	return err
}

// waitConns closes the connections the hub did not (those that arrived as
// the room ended), waits up to CloseWait for connection goroutines to finish,
// then cuts the connections still open.
func (r *Room) waitConns() {
	r.connsMu.Lock()
	for c := range r.conns {
		c.shut(r.h.life.endCode, r.h.life.endReason, false)
	}
	r.connsMu.Unlock()
	deadline := time.Now().Add(r.cfg.CloseWait)
	for r.live.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r.connsMu.Lock()
	for c := range r.conns {
		c.kill()
	}
	r.connsMu.Unlock()
}

// Done is closed when Run has returned.
func (r *Room) Done() <-chan struct{} { return r.done }

// do runs f on the hub goroutine, unless the room has ended. It does not wait
// for f; before Run starts, f waits in a queue.
func (r *Room) do(f func()) {
	select {
	case r.cmds <- f:
	case <-r.ending:
	}
}

// ApplyCache takes the fleet's shared data: blocked words, and setting
// defaults for the settings the room's Config left zero. Its bans are not
// read: they come through ApplyBans.
func (r *Room) ApplyCache(c *chatfleet.Cache) {
	if c == nil {
		return
	}
	cp := *c
	cp.Bans = nil
	cp.BlockedWords = append([]string(nil), c.BlockedWords...)
	r.do(func() { r.h.applyCache(&cp) })
}

// ApplyBans changes the room's ban list as the master says (see
// BanList.Update): connected users a new ban keeps out are closed with 4004
// at once, and their handshakes are refused with 403; a removed ban lets its
// user in at once.
func (r *Room) ApplyBans(steps ...BanStep) {
	steps = slices.Clone(steps)
	r.do(func() { r.h.applyBans(steps) })
}

// Global sends every client a sequenced system message of kind "global".
// An edge ignores it: its origin's comes with the origin's events.
func (r *Room) Global(text string) {
	if r.cfg.Edge != nil {
		return
	}
	r.do(func() { r.h.system(protocol.KindGlobal, text) })
}

// Close ends the room: every client gets a system message of kind "closing"
// with reason, then the close code 1001 with reason; Run returns.
func (r *Room) Close(reason string) {
	r.do(func() { r.h.end(protocol.CloseGoingAway, reason, CauseClose) })
}

// Drain ends the room gently for a host restart: every client gets a system
// message of kind "drain" with reason at once; then the clients are closed
// with 1012 and reason, spread evenly over window; then the room ends. New
// clients are refused with 503 meanwhile.
func (r *Room) Drain(reason string, window time.Duration) {
	r.do(func() { r.h.drain(reason, window) })
}

// Stats returns the room's counters. MsgsPerSec is measured since the
// previous call to Stats (or the start). CPUSeconds and RSSBytes are the
// process's, left to the caller.
// Conns returns the number of open client connections.
func (r *Room) Conns() int { return int(r.stats.conns.Load()) }

func (r *Room) Stats() chatfleet.RoomStats {
	s := &r.stats
	st := chatfleet.RoomStats{
		Conns:        int(s.conns.Load()),
		Viewers:      int(s.viewers.Load()),
		ProducerLive: s.live.Load(),
		Seq:          s.seq.Load(),
		Messages:     s.messages.Load(),
		Deliveries:   s.deliveries.Load(),
		SlowDrops:    s.slowDrops.Load(),
	}
	now := r.now()
	s.mu.Lock()
	st.HLSURL = s.hlsURL
	if d := now.Sub(s.lastAt).Seconds(); d > 0 {
		st.MsgsPerSec = float64(st.Messages-s.lastMsgs) / d
	}
	s.lastAt, s.lastMsgs = now, st.Messages
	s.mu.Unlock()
	return st
}

func (r *Room) emit(e Event) {
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(e)
	}
}

// warn logs a per-connection warning, at most about once a second per room.
func (r *Room) warn(msg string, args ...any) {
	if r.logLim.Allow() {
		r.log.Warn(msg, args...)
	}
}
