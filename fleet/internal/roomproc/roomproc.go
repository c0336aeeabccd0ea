// Package roomproc is the room process: `chatserver room ...`, started by the
// master with the room's TCP listener as fd 3 and its control socket
// listener as fd 4. It serves one room (package room) on the listener and
// talks to the master over the control socket (package ipc).
package roomproc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/fleet/internal/master"
	"github.com/chatfleet/chatfleet/fleet/internal/procstat"
	"github.com/chatfleet/chatfleet/fleet/internal/room"
	"github.com/chatfleet/chatfleet/token"
)

// Main runs a room process with the arguments after "room" and returns its
// exit code (see the Exit constants of package master).
func Main(args []string, log *slog.Logger) int {
	fs := flag.NewFlagSet("room", flag.ContinueOnError)
	name := fs.String("name", "", "room name")
	port := fs.Int("port", 0, "room port (the listener is fd 3)")
	statsEvery := fs.Duration("stats-every", 2*time.Second, "how often to report stats to the master")
	orphanGrace := fs.Duration("orphan-grace", 60*time.Second, "how long to wait for a master before draining and exiting")
	anon := fs.Bool("allow-anonymous", false, "let viewers in without a token")
	history := fs.Int("history", 0, "messages kept for join and recovery (0: the fleet default)")
	paid := fs.Bool("paid", false, "the room is paid (entitlement checks)")
	if err := fs.Parse(args); err != nil {
		return master.ExitUsage
	}
	if chatfleet.ValidateRoomName(*name) != nil || *port <= 0 {
		fmt.Fprintln(os.Stderr, "room: -name and -port are required")
		return master.ExitUsage
	}
	log = log.With("room", *name, "port", *port, "pid", os.Getpid())
	tokens, err := token.NewIssuer(os.Getenv("TOKEN_SECRET"))
	if err != nil {
		log.Error("room cannot start", "err", err)
		return master.ExitUsage
	}
	tcp, err := net.FileListener(os.NewFile(3, "room-tcp"))
	if err != nil {
		log.Error("inherited room listener", "err", err)
		return master.ExitSetup
	}
	ctl, err := net.FileListener(os.NewFile(4, "room-ctl"))
	if err != nil {
		log.Error("inherited control socket", "err", err)
		return master.ExitSetup
	}
	// A room outlives its master: a broken stdout pipe must not kill it, and
	// the terminal's signals are the master's to handle.
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP, syscall.SIGINT)
	p := &proc{
		name: *name, port: *port, log: log, ctl: ctl,
		statsEvery: *statsEvery, orphanGrace: *orphanGrace,
		events:  make(chan ipc.Msg, 1024),
		cacheCh: make(chan *chatfleet.Cache, 1),
	}
	return p.run(tcp, tokens, *anon, *history, *paid)
}

// proc is one room process: the room, its HTTP server and its master link.
type proc struct {
	name        string
	port        int
	log         *slog.Logger
	ctl         net.Listener
	statsEvery  time.Duration
	orphanGrace time.Duration
	events      chan ipc.Msg          // room events for the master, in order
	cacheCh     chan *chatfleet.Cache // the first cache, before the room exists

	mu           sync.Mutex
	conn         *ipc.Conn // the current master, nil while orphaned
	room         *room.Room
	cacheVersion int64
	orphanTimer  *time.Timer
	orphaned     bool
}

func (p *proc) run(tcp net.Listener, tokens *token.Issuer, anon bool, history int, paid bool) int {
	go p.acceptMasters()

	// The room needs the fleet's cache (bans, defaults) before it serves.
	var cache *chatfleet.Cache
	select {
	case cache = <-p.cacheCh:
	case <-time.After(10 * time.Second):
		p.log.Error("no cache from the master; starting with defaults")
		cache = &chatfleet.Cache{Defaults: chatfleet.DefaultRoomSettings}
	}
	settings := cache.Defaults
	if settings.HistorySize == 0 {
		settings = chatfleet.DefaultRoomSettings
	}
	if history > 0 {
		settings.HistorySize = history
	}
	settings.AllowAnonymous = settings.AllowAnonymous || anon
	var origins []string
	for _, o := range strings.Split(os.Getenv("ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	rm, err := room.New(room.Config{
		Name: p.name, Settings: settings, Tokens: tokens, AllowedOrigins: origins, Log: p.log,
		OnEvent: p.onEvent,
	})
	if err != nil {
		p.log.Error("room cannot start", "err", err)
		return master.ExitUsage
	}
	rm.ApplyCache(cache)
	p.mu.Lock()
	p.room = rm
	p.mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		select {
		case <-term:
			p.log.Info("SIGTERM: draining")
			rm.Drain("server shutting down", 5*time.Second)
		case <-ctx.Done():
		}
	}()

	srv := &http.Server{Handler: rm.Handler(), ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)}
	go func() {
		if err := srv.Serve(tcp); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("room listener failed", "err", err)
			rm.Close("room listener failed")
		}
	}()
	go p.sendLoop(ctx)
	go p.statsLoop(ctx, rm)

	if err := rm.Run(ctx); err != nil {
		p.log.Error("room stopped", "err", err)
	}
	// Tell the master this end is on purpose, then go.
	p.send(ipc.Msg{Type: ipc.TypeEvent, Event: "closed", Reason: "room ended"})
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	srv.Shutdown(sctx)
	scancel()
	p.mu.Lock()
	orphaned := p.orphaned
	p.mu.Unlock()
	if orphaned {
		return master.ExitOrphaned
	}
	return master.ExitClosed
}

// acceptMasters serves the control socket: each new master connection
// replaces the previous one (a restarted master re-adopting the room).
func (p *proc) acceptMasters() {
	for {
		c, err := p.ctl.Accept()
		if err != nil {
			return
		}
		go p.masterSession(ipc.NewConn(c))
	}
}

func (p *proc) masterSession(c *ipc.Conn) {
	msg, err := c.Recv()
	if err != nil || msg.Type != ipc.TypeHello {
		c.Close()
		return
	}
	if err := c.Send(ipc.Msg{Type: ipc.TypeReady, Room: p.name, Port: p.port, PID: os.Getpid()}); err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	old := p.conn
	p.conn = c
	if p.orphanTimer != nil {
		p.orphanTimer.Stop()
		p.orphanTimer = nil
	}
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
	p.log.Info("master connected", "masterPid", msg.MasterPID)
	for {
		msg, err := c.Recv()
		if err != nil {
			break
		}
		p.handle(msg)
	}
	p.mu.Lock()
	if p.conn == c {
		p.conn = nil
		p.log.Warn("master gone; waiting for one to come back", "grace", p.orphanGrace)
		p.orphanTimer = time.AfterFunc(p.orphanGrace, p.orphan)
	}
	p.mu.Unlock()
	c.Close()
}

// orphan drains the room when no master came back in time.
func (p *proc) orphan() {
	p.mu.Lock()
	if p.conn != nil {
		p.mu.Unlock()
		return
	}
	p.orphaned = true
	rm := p.room
	p.mu.Unlock()
	p.log.Error("no master came back; draining the room", "grace", p.orphanGrace)
	if rm != nil {
		rm.Drain("host daemon is gone", 5*time.Second)
	} else {
		os.Exit(master.ExitOrphaned)
	}
}

// handle applies one master command.
func (p *proc) handle(msg ipc.Msg) {
	p.mu.Lock()
	rm := p.room
	if msg.Type == ipc.TypeCache && msg.Cache != nil {
		if msg.Cache.Version < p.cacheVersion {
			p.mu.Unlock()
			return // an older snapshot that crossed a newer one
		}
		p.cacheVersion = msg.Cache.Version
	}
	p.mu.Unlock()
	if rm == nil {
		if msg.Type == ipc.TypeCache && msg.Cache != nil {
			select {
			case p.cacheCh <- msg.Cache:
			default:
			}
		}
		return
	}
	switch msg.Type {
	case ipc.TypeCache:
		if msg.Cache != nil {
			rm.ApplyCache(msg.Cache)
		}
	case ipc.TypeGlobal:
		rm.Global(msg.Text)
	case ipc.TypeClose:
		rm.Close(msg.Reason)
	case ipc.TypeDrain:
		rm.Drain(msg.Reason, msg.Deadline)
	default:
		p.log.Warn("unknown master command", "type", msg.Type)
	}
}

// onEvent is called by the room; it never blocks the room. The master needs
// bans (to store and spread them) and the room's end; stream and presence
// changes reach it in the periodic stats.
func (p *proc) onEvent(ev room.Event) {
	if ev.Type != room.EventBan && ev.Type != room.EventClosed {
		return
	}
	msg := ipc.Msg{Type: ipc.TypeEvent, Event: ev.Type, Ban: ev.Ban, Reason: ev.Reason}
	select {
	case p.events <- msg:
	default:
		p.log.Error("event queue to master full; event dropped", "event", ev.Type)
	}
}

// sendLoop forwards room events to the master in order, holding them while
// no master is connected.
func (p *proc) sendLoop(ctx context.Context) {
	var pending []ipc.Msg
	retry := time.NewTicker(200 * time.Millisecond)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-p.events:
			pending = append(pending, m)
		case <-retry.C:
		}
		for len(pending) > 0 && p.send(pending[0]) == nil {
			pending = pending[1:]
		}
	}
}

func (p *proc) send(m ipc.Msg) error {
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	if c == nil {
		return errors.New("no master")
	}
	return c.Send(m)
}

func (p *proc) statsLoop(ctx context.Context, rm *room.Room) {
	t := time.NewTicker(p.statsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := rm.Stats()
		s.CPUSeconds, s.RSSBytes = procstat.CPU().Seconds(), procstat.RSS()
		p.send(ipc.Msg{Type: ipc.TypeStats, Stats: &s})
	}
}
