// Package master is the host daemon of a fleet host: it serves the chatserver
// API and admin listeners, forks one room process per room (the same binary
// run again as `chatserver room`), supervises and re-adopts those processes,
// and caches the store's shared data for them.
//
// # Processes and ownership
//
// The master binds each room's TCP port and creates the room's control
// socket (a Unix socket in StateDir), then starts the room process with both
// as inherited file descriptors 3 and 4. It keeps its own copy of the TCP
// listener while the room runs, so connections that arrive while a crashed
// room is restarted wait in the kernel's backlog instead of being refused.
//
// Room processes run in their own process group and outlive the master: a
// master that dies (or re-executes itself to upgrade) leaves its rooms
// serving; the next master reads StateDir, reconnects to every room's control
// socket and supervises it again. A room that no master reconnects to within
// its orphan grace drains its clients and exits, so no room runs
// unsupervised for long.
package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/bus"
	"github.com/chatfleet/chatfleet/fleet/internal/hooks"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
)

// ErrRestart is returned by Run when the master stopped so that the process
// can re-execute itself (SIGHUP or admin restart), leaving its rooms running.
var ErrRestart = errors.New("master restart requested")

// Config configures a Master. Zero values mean the defaults in comments.
type Config struct {
	HostID      string // default: the machine's host name
	PublicHost  string // host name clients use to reach room ports; default 127.0.0.1
	APIURL      string // how the control API reaches this host; default http://PublicHost:Port
	AdminURL    string // how the control API reaches the admin port; default http://PublicHost:AdminPort
	RoomURL     string // optional proxy scheme for rooms, e.g. wss://h.example.com/rooms/{port}
	Region      string
	Zone        string
	Port        int // API port; the listener may be given instead
	AdminPort   int // admin port
	BindAddr    string
	Key         string           // API key (KEY)
	AdminKey    string           // admin key (ADMIN_KEY)
	RoomPortMin int              // default 34000
	RoomPortMax int              // default 34999
	RoomBind    string           // address room ports bind to; default all interfaces
	MaxRooms    int              // default: the size of the room port range, less if the host's descriptors, memory or task ids cannot take that many (capacity.go)
	MaxConns    int              // reported capacity; default 20000
	StateDir    string           // required: room state files and control sockets
	Self        string           // binary to run rooms with; default os.Executable()
	RoomConn    ipc.ConnSettings // connection settings of every room (PONG_WAIT, WRITE_WAIT, SEND_QUEUE_BYTES)
	RoomEnv     []string         // added to the room processes' environment, e.g. GOMAXPROCS=1
	Spares      int              // room processes kept started ahead of need (spares.go); default 0: none
	// RoomCores is how many cores above their start rooms may use in all
	// (ROOM_CORES; cores.go): a room gets one more for every BigRoomConns
	// connections (BIG_ROOM_CONNS, default 4000) while they last. 0: none.
	RoomCores    int
	BigRoomConns int
	// NATS is how the host's origins and edges reach NATS (NATS_*,
	// docs/scaleout.md); its variables are added to RoomEnv. Without a URL
	// the host runs plain rooms only.
	NATS bus.Config

	Store           chatfleet.Store // nil: no store, the cache comes from CacheFile or defaults
	CacheFile       string          // JSON chatfleet.Cache, used when Store is nil
	CacheEvery      time.Duration   // default 10s
	SyncEvery       time.Duration   // rooms collection sync; default 5s
	StaleAfter      time.Duration   // rooms not updated this long are marked stale; default 30s
	CloseStaleAfter time.Duration   // stale rooms not updated this long are closed; default 5m
	StatsEvery      time.Duration   // room stats reports; default 2s
	StoreTimeout    time.Duration   // per store call; default 3s

	// Bans (bans.go) the host holds and pushes to its rooms: the fleet's
	// (MAX_FLEET_BANS), each room's own (MAX_ROOM_BANS), and the rooms' bans
	// waiting for the store while it is down (MAX_PENDING_BANS).
	MaxFleetBans   int // default 100000
	MaxRoomBans    int // default 10000
	MaxPendingBans int // default 10000

	ReadyTimeout   time.Duration // room start to ready; default 5s
	CrashLimit     int           // crashes within CrashWindow before a room is failed; default 5
	CrashWindow    time.Duration // default 60s
	RestartBackoff time.Duration // first restart delay, doubling up to 5s; default 100ms
	DrainWindow    time.Duration // clients closed over this on drain; default 5s
	StopDeadline   time.Duration // shutdown waits this long for rooms; default 15s
	OrphanGrace    time.Duration // rooms wait this long for a master to come back; default 60s
	EventRetention time.Duration // room events are kept in the store this long; default 7 days

	// Webhooks configures the delivery of every room's events (package
	// hooks, docs/events.md) to Webhooks.URLs and to the room's own
	// RoomOptions.WebhookURLs: its URLs, Secret (required with URLs; at
	// least 16 bytes), AllowPrivate (rooms' own URLs may reach non-public
	// addresses: development only) and timings. The master sets its
	// HostID, Store, StoreTimeout, CursorFile, Metrics, Log and Now.
	Webhooks     hooks.Config
	ViewersEvery time.Duration // room.viewers at most this often per room; default 5s

	// Notify, if set, is called after the host's state changes (drain,
	// resume), so that the load balancers are told at once.
	Notify func()

	APIListener   net.Listener // if set, used instead of binding Port
	AdminListener net.Listener // if set, used instead of binding AdminPort

	Log *slog.Logger
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.StateDir == "" {
		return errors.New("master: StateDir is required")
	}
	if c.HostID == "" {
		c.HostID, _ = os.Hostname()
	}
	if c.PublicHost == "" {
		c.PublicHost = "127.0.0.1"
	}
	if c.BigRoomConns <= 0 {
		c.BigRoomConns = 4000
	}
	if c.RoomPortMin == 0 {
		c.RoomPortMin = 34000
	}
	if c.RoomPortMax == 0 {
		c.RoomPortMax = c.RoomPortMin + 999
	}
	if c.RoomPortMin < 1 || c.RoomPortMax > 65535 || c.RoomPortMin > c.RoomPortMax {
		return fmt.Errorf("master: invalid room port range %d-%d", c.RoomPortMin, c.RoomPortMax)
	}
	if c.MaxRooms == 0 {
		nofile, mem, pids := hostLimits()
		c.MaxRooms = defaultMaxRooms(c.RoomPortMax-c.RoomPortMin+1, nofile, mem, pids)
	}
	if c.MaxConns == 0 {
		c.MaxConns = 20000
	}
	// The rooms read the NATS settings as the master did (bus.ConfigFromEnv).
	c.RoomEnv = append(slices.Clip(c.RoomEnv), c.NATS.Env()...)
	if c.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("master: find own binary: %w", err)
		}
		c.Self = self
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.CacheEvery, 10*time.Second)
	def(&c.SyncEvery, 5*time.Second)
	def(&c.StaleAfter, 30*time.Second)
	def(&c.CloseStaleAfter, 5*time.Minute)
	def(&c.StatsEvery, ipc.DefaultStatsEvery)
	def(&c.StoreTimeout, 3*time.Second)
	def(&c.ReadyTimeout, 5*time.Second)
	def(&c.CrashWindow, 60*time.Second)
	def(&c.RestartBackoff, 100*time.Millisecond)
	def(&c.DrainWindow, 5*time.Second)
	def(&c.StopDeadline, 15*time.Second)
	def(&c.OrphanGrace, ipc.DefaultOrphanGrace)
	def(&c.EventRetention, 7*24*time.Hour)
	def(&c.ViewersEvery, 5*time.Second)
	// The webhook settings left zero take package hooks' defaults.
	if c.Webhooks.Queue < 0 {
		return fmt.Errorf("master: webhook queue %d must be positive", c.Webhooks.Queue)
	}
	if err := validateWebhookURLs("WEBHOOK_URLS", c.Webhooks.URLs); err != nil {
		return fmt.Errorf("master: %w", err)
	}
	if c.Webhooks.Secret != "" && len(c.Webhooks.Secret) < minHookSecretLen {
		return fmt.Errorf("master: WEBHOOK_SECRET must be at least %d bytes", minHookSecretLen)
	}
	if len(c.Webhooks.URLs) > 0 && c.Webhooks.Secret == "" {
		return errors.New("master: WEBHOOK_SECRET is required with WEBHOOK_URLS")
	}
	for _, v := range []struct {
		p        *int
		def, max int
		name     string
	}{
		{&c.MaxFleetBans, 100000, 1000000, "MAX_FLEET_BANS"},
		{&c.MaxRoomBans, 10000, 100000, "MAX_ROOM_BANS"},
		{&c.MaxPendingBans, 10000, 1000000, "MAX_PENDING_BANS"},
	} {
		if *v.p == 0 {
			*v.p = v.def
		}
		if *v.p < 1 || *v.p > v.max {
			return fmt.Errorf("master: %s=%d: want 1 to %d", v.name, *v.p, v.max)
		}
	}
	if c.CrashLimit == 0 {
		c.CrashLimit = 5
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Master is the host daemon. Its methods are safe for concurrent use.
type Master struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	cache   *cacheKeeper
	cores   *cores
	bans    *banKeeper
	events  *eventWriter
	hooks   *hooks.Dispatcher

	mu         sync.Mutex
	rooms      map[string]*room // by name; a room stays here from create until its process is gone
	ports      map[int]string   // room ports in use, by port
	closedSeqs map[string]int64 // without a store: the last seq of rooms that ended, by name
	spares     []*spare         // ready spare room processes, oldest first
	spareSeq   int
	spareKick  chan struct{}
	sparesDone chan struct{} // closed when keepSpares returns
	draining   bool
	stopping   bool
	restartCh  chan struct{}
	shutdownCh chan struct{}
	wg         sync.WaitGroup // room supervisors

	started time.Time

	cpuMu   sync.Mutex
	cpuPrev time.Duration
	cpuAt   time.Time
	cpuRate float64
}

// New returns a Master for cfg; Run starts it.
func New(cfg Config) (*Master, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "rooms"), 0o700); err != nil {
		return nil, fmt.Errorf("master: state dir: %w", err)
	}
	// The room state files hold the rooms' webhook secrets: their folder
	// is this user's only, even if it was made earlier with a wider mode.
	// (StateDir itself is made 0700 when new, but not changed if it exists:
	// it may be a folder others use.)
	if err := os.Chmod(filepath.Join(cfg.StateDir, "rooms"), 0o700); err != nil {
		return nil, fmt.Errorf("master: state dir: %w", err)
	}
	m := &Master{
		cfg:        cfg,
		log:        cfg.Log,
		rooms:      map[string]*room{},
		ports:      map[int]string{},
		closedSeqs: map[string]int64{},
		restartCh:  make(chan struct{}, 1),
		spareKick:  make(chan struct{}, 1),
		sparesDone: make(chan struct{}),
		shutdownCh: make(chan struct{}, 1),
		started:    cfg.Now(),
	}
	m.metrics = newMetrics(m)
	m.bans = newBanKeeper(m)
	m.cache = newCacheKeeper(m)
	m.cores = newCores(roomBaseCores(cfg.RoomEnv), cfg.RoomCores, cfg.BigRoomConns, runtime.NumCPU())
	m.events = newEventWriter(cfg.Store, &m.cfg, m.metrics.storeErrors, m.metrics.eventsDropped)
	m.hooks = newHooks(m)
	return m, nil
}

// Run serves the API and admin listeners, re-adopts the rooms recorded in
// StateDir, and supervises rooms until ctx ends, then drains every room and
// returns nil. It returns ErrRestart, leaving rooms running, when a restart
// was requested.
func (m *Master) Run(ctx context.Context) error {
	apiLn, adminLn, err := m.listeners()
	if err != nil {
		return err
	}
	m.cache.load(ctx)
	m.adoptAll(ctx)

	api := newServer(m.apiHandler(), m.log)
	admin := newServer(m.adminHandler(), m.log)
	errc := make(chan error, 2)
	go func() { errc <- serve(api, apiLn) }()
	go func() { errc <- serve(admin, adminLn) }()

	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	go m.cache.run(bg)
	go m.events.run(bg)
	go m.syncLoop(bg)
	go m.keepSpares(bg)

	m.log.Info("chatserver started", "api", apiLn.Addr().String(), "admin", adminLn.Addr().String(),
		"rooms", fmt.Sprintf("%d-%d", m.cfg.RoomPortMin, m.cfg.RoomPortMax), "version", chatfleet.Version)

	var restart bool
	select {
	case <-ctx.Done():
	case err = <-errc:
		m.log.Error("listener failed", "err", err)
	case <-m.restartCh:
		restart = true
	case <-m.shutdownCh:
	}

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if restart {
		// Let the answer to the admin restart call go out, then stop listening.
		api.Shutdown(sctx)
		admin.Shutdown(sctx)
		m.detachAll()
		stopBG()
		m.stopSpares()
		if m.cfg.Store != nil { // the next image replays undelivered webhooks from the store
			fctx, cancel := context.WithTimeout(context.Background(), 2*m.cfg.StoreTimeout)
			m.events.flush(fctx)
			cancel()
		}
		m.hooks.Stop(2 * time.Second) // what is left is queued again by the next image (hooks.Dispatcher.Replay)
		return ErrRestart
	}
	m.shutdown()
	api.Shutdown(sctx)
	admin.Shutdown(sctx)
	stopBG()
	m.stopSpares()
	m.hooks.Stop(5 * time.Second) // the rooms' last events, room.closed included
	m.syncOnce(context.Background())
	if m.cfg.Store != nil {
		fctx, cancel := context.WithTimeout(context.Background(), 2*m.cfg.StoreTimeout)
		m.events.flush(fctx)
		cancel()
	}
	if err != nil {
		return err
	}
	return nil
}

func (m *Master) listeners() (net.Listener, net.Listener, error) {
	apiLn, adminLn := m.cfg.APIListener, m.cfg.AdminListener
	var err error
	if apiLn == nil {
		if apiLn, err = net.Listen("tcp", net.JoinHostPort(m.cfg.BindAddr, fmt.Sprint(m.cfg.Port))); err != nil {
			return nil, nil, fmt.Errorf("listen on PORT %d: %w", m.cfg.Port, err)
		}
	}
	if adminLn == nil {
		if adminLn, err = net.Listen("tcp", net.JoinHostPort(m.cfg.BindAddr, fmt.Sprint(m.cfg.AdminPort))); err != nil {
			apiLn.Close()
			return nil, nil, fmt.Errorf("listen on ADMIN_PORT %d: %w", m.cfg.AdminPort, err)
		}
	}
	return apiLn, adminLn, nil
}

func serve(s *http.Server, ln net.Listener) error {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// RequestRestart asks Run to return ErrRestart, leaving rooms running.
func (m *Master) RequestRestart() {
	select {
	case m.restartCh <- struct{}{}:
	default:
	}
}

// SetNotify sets Config.Notify, for a notified party made after the master
// (the load-balancer registrar reports Host, so it comes second). Call it
// before Run: the master's goroutines read Notify without a lock.
func (m *Master) SetNotify(f func()) { m.cfg.Notify = f }

// SetDraining stops (true) or resumes (false) accepting new rooms.
func (m *Master) SetDraining(d bool) {
	m.mu.Lock()
	m.draining = d
	m.mu.Unlock()
	if m.cfg.Notify != nil {
		m.cfg.Notify()
	}
}

// shutdown drains every room and waits for their processes to exit, killing
// what is left at StopDeadline.
func (m *Master) shutdown() {
	m.mu.Lock()
	m.stopping = true
	m.draining = true
	rooms := m.roomList()
	m.mu.Unlock()
	m.log.Info("draining rooms for shutdown", "rooms", len(rooms), "window", m.cfg.DrainWindow)
	for _, r := range rooms {
		r.drain("server shutting down", m.cfg.DrainWindow)
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(m.cfg.StopDeadline):
		m.log.Error("rooms did not stop by the deadline; killing them", "deadline", m.cfg.StopDeadline)
		for _, r := range rooms {
			r.kill()
		}
		<-done
	}
}

// detachAll stops supervising every room without stopping it, for a restart.
func (m *Master) detachAll() {
	m.mu.Lock()
	m.stopping = true
	rooms := m.roomList()
	m.mu.Unlock()
	for _, r := range rooms {
		r.detach()
	}
	m.wg.Wait()
}

// roomList returns the rooms sorted by port; m.mu must be held.
func (m *Master) roomList() []*room {
	rs := make([]*room, 0, len(m.rooms))
	for _, r := range m.rooms {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].port < rs[j].port })
	return rs
}

// Rooms returns a snapshot of every room this host runs, sorted by port.
func (m *Master) Rooms() []RoomInfo {
	m.mu.Lock()
	rs := m.roomList()
	m.mu.Unlock()
	out := make([]RoomInfo, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.info())
	}
	return out
}

// Host returns this host as it reports itself to the load balancers.
func (m *Master) Host() chatfleet.Host {
	stats := m.hostStats()
	state := chatfleet.HostAccepting
	m.mu.Lock()
	if m.draining {
		state = chatfleet.HostDraining
	}
	m.mu.Unlock()
	apiURL := m.cfg.APIURL
	if apiURL == "" {
		apiURL = fmt.Sprintf("http://%s", net.JoinHostPort(m.cfg.PublicHost, fmt.Sprint(m.cfg.Port)))
	}
	adminURL := m.cfg.AdminURL
	if adminURL == "" {
		adminURL = fmt.Sprintf("http://%s", net.JoinHostPort(m.cfg.PublicHost, fmt.Sprint(m.cfg.AdminPort)))
	}
	return chatfleet.Host{
		ID:       m.cfg.HostID,
		APIURL:   apiURL,
		AdminURL: adminURL,
		RoomHost: m.cfg.PublicHost,
		RoomURL:  m.cfg.RoomURL,
		PortMin:  m.cfg.RoomPortMin,
		PortMax:  m.cfg.RoomPortMax,
		Region:   m.cfg.Region,
		Zone:     m.cfg.Zone,
		Version:  chatfleet.Version,
		Capacity: chatfleet.Capacity{MaxRooms: m.cfg.MaxRooms, MaxConns: m.cfg.MaxConns},
		Load: chatfleet.Load{
			Rooms:      stats.Rooms,
			Conns:      stats.Conns,
			MsgsPerSec: stats.MsgsPerSec,
			CPU:        stats.CPU,
			MemBytes:   stats.MemBytes,
		},
		State:      state,
		ReportedAt: m.cfg.Now(),
	}
}
