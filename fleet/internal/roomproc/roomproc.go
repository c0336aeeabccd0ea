// Package roomproc is the room process: `chatserver room ...`, started by the
// master with the room's TCP listener as fd 3 and its control socket
// listener as fd 4. It serves one room (package room) on the listener and
// talks to the master over the control socket (package ipc).
//
// Started with -spare instead, the process is a spare: it does what a room
// process does before it knows its room (the binary's package
// initialisation above all), says so on the socket pair it inherits as fd 3,
// and waits there for the master's assign message, which names the room and
// carries its two listeners. A spare whose master closes the pair exits.
package roomproc

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/entitle"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/fleet/internal/procstat"
	"github.com/chatfleet/chatfleet/fleet/internal/room"
	"github.com/chatfleet/chatfleet/internal/sigprof"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

// Main runs a room process with the arguments after "room" and returns its
// exit code (see the Exit constants of package ipc).
func Main(args []string, log *slog.Logger) int {
	l, err := ipc.ParseLaunch(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "room:", err)
		return ipc.ExitUsage
	}
	log = log.With("pid", os.Getpid())
	limits, err := readEnv(os.Getenv)
	if err != nil {
		log.Error("room cannot start", "err", err)
		return ipc.ExitUsage
	}
	tokens, err := token.NewIssuer(os.Getenv("TOKEN_SECRET"))
	if err != nil {
		log.Error("room cannot start", "err", err)
		return ipc.ExitUsage
	}
	// A room outlives its master: a broken stdout pipe must not kill it, and
	// the terminal's signals are the master's to handle.
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP, syscall.SIGINT)
	name, port, opts := l.Name, l.Port, l.Options
	timings := room.Config{PongWait: l.Conn.PongWait, WriteWait: l.Conn.WriteWait, SendQueueBytes: l.Conn.SendQueueBytes}
	// (An *os.File closes its fd when collected: only wrap fds that are ours.)
	var tcpFile, ctlFile *os.File
	if !l.Spare {
		tcpFile, ctlFile = os.NewFile(ipc.FDListener, "room-tcp"), os.NewFile(ipc.FDControl, "room-ctl")
	} else {
		warmUp(tokens)
		a, files, err := awaitAssignment()
		if errors.Is(err, io.EOF) {
			return ipc.ExitClosed // the master is gone or restarted: it will start others
		}
		if err != nil {
			log.Error("spare: bad assignment", "err", err)
			return ipc.ExitSetup
		}
		name, port, opts = a.Room, a.Port, *a.Assign
		tcpFile, ctlFile = files[0], files[1]
	}
	log = log.With("room", name, "port", port)
	tcp, err := net.FileListener(tcpFile)
	if err != nil {
		log.Error("inherited room listener", "err", err)
		return ipc.ExitSetup
	}
	ctl, err := net.FileListener(ctlFile)
	if err != nil {
		log.Error("inherited control socket", "err", err)
		return ipc.ExitSetup
	}
	tcpFile.Close()
	ctlFile.Close()
	profileOnSignal(os.Getenv("ROOM_PPROF_DIR"), name, log)
	p := &proc{
		name: name, port: port, log: log, ctl: ctl,
		statsEvery: l.StatsEvery, orphanGrace: l.OrphanGrace,
		cacheCh: make(chan *chatfleet.Cache, 1), kick: make(chan struct{}, 1),
		bans: room.NewBanList(name), bansDone: make(chan struct{}),
	}
	return p.run(tcp, tokens, opts, timings, limits)
}

// warmUp runs, once, what a room's first join runs (a token check, client
// and server messages through JSON), so that a spare's room does not pay
// for the first use of those code paths and their caches.
func warmUp(tokens *token.Issuer) {
	tok, err := tokens.Issue("warm-up", "", "warm-up", "warm-up", chatfleet.RoleViewer, time.Minute)
	if err == nil {
		tokens.Verify(tok, "warm-up", "")
	}
	protocol.Decode([]byte(`{"type":"chat","text":"warm-up","clientId":"w"}`))
	u := protocol.User{UserID: "warm-up", Name: "warm-up", Role: chatfleet.RoleViewer}
	m := protocol.ServerMsg{Type: protocol.TypeWelcome, You: &u, Room: "warm-up", Stream: &protocol.StreamState{}, History: []json.RawMessage{[]byte(`{"type":"chat"}`)}}
	m.Marshal()
}

// awaitAssignment is a spare's wait for its room. It tells the master it is
// ready on the socket pair inherited as fd 3, then reads the assign message,
// which carries the room's TCP and control socket listeners as rights.
// io.EOF means the master closed the pair first.
func awaitAssignment() (ipc.Msg, []*os.File, error) {
	f := os.NewFile(ipc.FDSpareLink, "spare-link")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return ipc.Msg{}, nil, err
	}
	defer c.Close()
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ipc.Msg{}, nil, errors.New("fd 3 is not a unix socket")
	}
	b, err := ipc.Encode(ipc.Msg{Type: ipc.TypeReady, PID: os.Getpid()})
	if err == nil {
		_, err = uc.Write(b)
	}
	if err != nil {
		return ipc.Msg{}, nil, io.EOF
	}
	buf, oob := make([]byte, 16<<10), make([]byte, syscall.CmsgSpace(2*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil || n == 0 {
		return ipc.Msg{}, nil, io.EOF
	}
	var fds []int
	if cmsgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil && len(cmsgs) == 1 {
		fds, _ = syscall.ParseUnixRights(&cmsgs[0])
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "room-listener")
	}
	msg, err := ipc.Decode(bytes.NewReader(buf[:n]))
	if err == nil && (msg.Type != ipc.TypeAssign || chatfleet.ValidateRoomName(msg.Room) != nil || msg.Port <= 0 || msg.Assign == nil || len(files) != 2) {
		err = fmt.Errorf("got %q for room %q port %d with %d files", msg.Type, msg.Room, msg.Port, len(files))
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return ipc.Msg{}, nil, err
	}
	return msg, files, nil
}

// proc is one room process: the room, its HTTP server and its master link.
type proc struct {
	name        string
	port        int
	log         *slog.Logger
	ctl         net.Listener
	statsEvery  time.Duration
	orphanGrace time.Duration
	cacheCh     chan *chatfleet.Cache // the first cache, before the room exists
	bans        *room.BanList         // filled by the master's bans frames, before and after the room exists
	bansDone    chan struct{}         // closed at the first complete ban list
	doneOnce    sync.Once
	staged      []room.BanStep // a ban list being sent again (Reset...Done), applied at once at Done
	stagedBans  int

	// The frames for the master (see send), written in order by sendLoop;
	// writeWait bounds one frame's write there (0: defaultWriteWait).
	qmu         sync.Mutex
	queue       []outFrame    // not yet written whole, oldest first
	writing     bool          // a write to the master is under way (send's or sendLoop's)
	kick        chan struct{} // wakes sendLoop: a frame queued or a master connected
	writeWait   time.Duration
	unencodable atomic.Int64 // messages dropped because they could not be encoded

	mu           sync.Mutex
	conn         *ipc.Conn // the current master, nil while orphaned
	connRaw      net.Conn  // conn's connection, for send's non-blocking writes
	room         *room.Room
	cacheVersion int64
	resumeEvents []chatfleet.Event // history to resume from, sent before the first cache
	resumeSeq    int64
	orphanTimer  *time.Timer
	orphaned     bool

	spread *spread // an origin's or edge's NATS side; nil for a plain room
}

// run serves the room; timings holds the connection settings the master set
// (zero: the room's defaults), limits those of the environment.
func (p *proc) run(tcp net.Listener, tokens *token.Issuer, opts ipc.Assignment, timings room.Config, limits envSettings) int {
	go p.acceptMasters()
	log := p.log
	cache := p.awaitMaster()
	if cache == nil {
		log.Error("no cache from the master; starting with defaults")
		cache = &chatfleet.Cache{Defaults: chatfleet.DefaultRoomSettings}
	}
	// Message length and idle timeout are left zero so that they follow the
	// fleet's defaults in every cache the master pushes; history size (which
	// the resumed history needs at start), slow mode and anonymity are the
	// assignment's or the defaults' at start.
	settings := chatfleet.RoomSettings{
		HistorySize:     cmp.Or(opts.HistorySize, cache.Defaults.HistorySize),
		SlowModeSeconds: cache.Defaults.SlowModeSeconds,
		AllowAnonymous:  cache.Defaults.AllowAnonymous || opts.AllowAnonymous,
	}
	var origins []string
	for _, o := range strings.Split(os.Getenv("ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	p.mu.Lock()
	resume, startSeq := p.resumeEvents, p.resumeSeq
	p.resumeEvents = nil
	p.mu.Unlock()
	rcfg := room.Config{
		Name: p.name, Instance: opts.Instance, Owner: opts.Owner, HLSURL: opts.HLSURL,
		Settings: settings, Tokens: tokens, AllowedOrigins: origins, Log: log,
		OnEvent: p.onEvent, LogEvents: true, Resume: resume, StartSeq: startSeq,
		PongWait: timings.PongWait, WriteWait: timings.WriteWait, SendQueueBytes: timings.SendQueueBytes,
		Bans: p.bans, MaxRoomBans: limits.maxBans, ModRate: limits.modRate, ModBurst: limits.modBurst,
		MaxConnsPerIP: limits.perIP, MaxRoomConns: limits.roomConns, TrustedProxies: limits.proxies,
		ProducerGrace: limits.grace,
		BodyTimeout:   min(10*time.Second, limits.idle), // a POST /send body idle as long as a keep-alive is cut too
	}
	if opts.Role != "" {
		sp, err := connectSpread(opts.Role, p.name, p.port, log)
		if err != nil {
			log.Error("room cannot start", "role", opts.Role, "err", err)
			return ipc.ExitSetup
		}
		defer sp.close()
		sp.configure(&rcfg)
		p.spread = sp
	}
	if opts.Paid {
		if err := entitlements(&rcfg, log); err != nil {
			log.Error("room cannot start", "err", err)
			return ipc.ExitUsage
		}
	}
	rm, err := room.New(rcfg)
	if err != nil {
		log.Error("room cannot start", "err", err)
		return ipc.ExitUsage
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
			log.Info("SIGTERM: draining")
			rm.Drain("server shutting down", 5*time.Second)
		case <-ctx.Done():
		}
	}()

	srv := &http.Server{Handler: rm.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: limits.idle, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() {
		if err := srv.Serve(tcp); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("room listener failed", "err", err)
			rm.Close("room listener failed")
		}
	}()
	if err := p.spread.start(ctx, rm, opts.Instance, resume, startSeq); err != nil {
		log.Error("room cannot start", "role", opts.Role, "err", err)
		return ipc.ExitSetup
	}
	go p.sendLoop(ctx)
	go p.statsLoop(ctx, rm)
	go trimLoop(ctx, rm)

	if err := rm.Run(ctx); err != nil {
		log.Error("room stopped", "err", err)
	}
	// Tell the master this end is on purpose (after what is still queued,
	// for up to a second), then go.
	if frame := p.encode(ipc.Msg{Type: ipc.TypeEvent, Event: room.EventClosed, Reason: "room ended"}); frame != nil {
		if written := p.send(frame, true); written != nil && p.connected() {
			waitWritten(written, time.Second)
		}
	}
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	srv.Shutdown(sctx)
	scancel()
	p.mu.Lock()
	orphaned := p.orphaned
	p.mu.Unlock()
	if orphaned {
		return ipc.ExitOrphaned
	}
	return ipc.ExitClosed
}

// awaitMaster waits until the master has sent the first cache and the whole
// ban list (its bans frames up to Done), or 10 seconds; it returns the cache,
// nil if none came. A room serves no client before, so that nobody banned
// slips in.
func (p *proc) awaitMaster() *chatfleet.Cache {
	var cache *chatfleet.Cache
	done := p.bansDone
	timeout := time.After(10 * time.Second)
	for cache == nil || done != nil {
		select {
		case cache = <-p.cacheCh:
		case <-done:
			done = nil
		case <-timeout:
			if done != nil {
				all, _ := p.bans.Len()
				p.log.Error("no complete ban list from the master; serving with the bans received so far", "bans", all)
			}
			return cache
		}
	}
	return cache
}

// maxStaged bounds the bans held while a ban list is sent again: beyond it,
// the frames apply as they come.
const maxStaged = 1 << 20

// applyBans takes one bans frame. Before the room exists it fills the list
// the room will start with; afterwards the room applies it (closing the
// users a new ban keeps out). A list sent again (Reset ... Done) to a running
// room is staged and applied at once at Done, so that handshakes never see
// it half sent.
func (p *proc) applyBans(u *ipc.BanUpdate) {
	if u == nil {
		return
	}
	step := room.BanStep{Reset: u.Reset, Snapshot: u.Snapshot, Remove: u.Remove, Lift: u.Lift, Add: u.Add}
	p.mu.Lock()
	rm := p.room
	var steps []room.BanStep
	switch {
	case rm == nil:
		// Under p.mu: the room cannot start serving meanwhile. A bad part
		// of the snapshot is left out (see BanList.Update).
		if _, err := p.bans.Update(step); err != nil {
			p.log.Error("ban list from the master: frame not applied", "err", err)
		}
	case u.Reset && !u.Done:
		p.staged, p.stagedBans = []room.BanStep{step}, len(step.Add)
	case p.staged != nil && !u.Done && p.stagedBans+len(step.Add) <= maxStaged:
		p.staged, p.stagedBans = append(p.staged, step), p.stagedBans+len(step.Add)
	default:
		steps = append(p.staged, step)
		p.staged, p.stagedBans = nil, 0
	}
	p.mu.Unlock()
	if len(steps) > 0 {
		rm.ApplyBans(steps...)
	}
	if u.Done {
		p.doneOnce.Do(func() { close(p.bansDone) })
	}
}

// entitlements configures the entitlement hook of a paid room from the
// environment the master passed on (ENTITLEMENT_*); without ENTITLEMENT_URL
// a paid room lets every viewer in, and says so.
func entitlements(cfg *room.Config, log *slog.Logger) error {
	ecfg, err := entitle.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	if ecfg.URL == "" {
		log.Warn("paid room without ENTITLEMENT_URL: viewers are not checked")
		return nil
	}
	cfg.Entitle, cfg.EntitleEvery = entitle.New(ecfg), ecfg.Interval
	return nil
}

// acceptMasters serves the control socket: each new master connection
// replaces the previous one (a restarted master re-adopting the room).
func (p *proc) acceptMasters() {
	for {
		c, err := p.ctl.Accept()
		if err != nil {
			return
		}
		go p.masterSession(c)
	}
}

func (p *proc) masterSession(nc net.Conn) {
	c := ipc.NewConn(nc)
	msg, err := c.Recv()
	if err != nil || msg.Type != ipc.TypeHello {
		c.Close()
		return
	}
	ready := ipc.Msg{Type: ipc.TypeReady, Room: p.name, Port: p.port, PID: os.Getpid(), Proto: ipc.Version, BanSnapshot: true}
	p.mu.Lock()
	rm := p.room
	p.mu.Unlock()
	if rm != nil {
		// A master re-adopting the room knows at once whether it is live,
		// so its first sync to the store does not say offline.
		s := rm.Stats()
		ready.Stats = &s
	}
	if err := c.Send(ready); err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	old := p.conn
	p.conn, p.connRaw = c, nc
	if p.orphanTimer != nil {
		p.orphanTimer.Stop()
		p.orphanTimer = nil
	}
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
	p.wake() // what was queued meanwhile goes to this master
	p.log.Info("master connected", "masterPid", msg.MasterPID, "proto", ipc.ProtoOf(msg))
	for {
		msg, err := c.Recv()
		if err != nil {
			break
		}
		p.handle(msg)
	}
	p.lostMaster(c)
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
		os.Exit(ipc.ExitOrphaned)
	}
}

// handle applies one master command.
func (p *proc) handle(msg ipc.Msg) {
	if msg.Type == ipc.TypeBans {
		p.applyBans(msg.Bans)
		return
	}
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
		if msg.Type == ipc.TypeResume {
			p.mu.Lock()
			p.resumeEvents, p.resumeSeq = msg.Events, msg.Seq
			p.mu.Unlock()
			return
		}
		if msg.Type == ipc.TypeCache && msg.Cache != nil {
			select {
			case p.cacheCh <- msg.Cache:
			default:
			}
		}
		return
	}
	switch msg.Type {
	case ipc.TypeProcs:
		if n := min(max(msg.Procs, 1), runtime.NumCPU()); n != runtime.GOMAXPROCS(0) {
			p.log.Info("cores for the room", "from", runtime.GOMAXPROCS(n), "to", n)
		}
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
	case ipc.TypeResume:
		// Only a room that has not started resumes.
	default:
		p.log.Warn("unknown master command", "type", msg.Type)
	}
}

// maxQueue bounds the frames held for an absent or slow master.
const maxQueue = 10000

// defaultWriteWait is how long sendLoop gives one frame before it gives up
// on the master's connection.
const defaultWriteWait = 5 * time.Second

// outFrame is a frame for the master, encoded once. sent bytes of it are on
// connection on already (a partial write at once, see send): the rest must
// follow there, or the whole frame go to the next master. written, which
// also tells queued frames apart, is closed once the frame is written whole.
type outFrame struct {
	frame   []byte
	sent    int
	on      *ipc.Conn
	written chan struct{}
}

// onEvent is called by the room's goroutine. The master needs the event log
// (sent before the events reach clients, so that a room killed right after
// can be resumed without a gap), bans (to store and spread them) and the
// room's end; stream and presence changes reach it in the periodic stats.
// It never waits for the master (see send).
func (p *proc) onEvent(ev room.Event) {
	msg := ipc.Msg{Type: ipc.TypeEvent, Event: ev.Type}
	switch ev.Type {
	case room.EventLog:
		msg.Events = ev.Log
		p.spread.published(ev.Log)
	case room.EventBan:
		msg.Ban = ev.Ban
	case room.EventClosed:
		msg.Reason = ev.Reason
	default:
		return
	}
	if frame := p.encode(msg); frame != nil {
		p.send(frame, true)
	}
}

// encode returns msg as a frame, or nil if it cannot be encoded: such a
// message is logged, counted and dropped (queued, it would block every
// later one).
func (p *proc) encode(msg ipc.Msg) []byte {
	frame, err := ipc.Encode(msg)
	if err != nil {
		p.log.Error("room message for the master cannot be encoded; dropped", "err", err, "unencodable", p.unencodable.Add(1))
		return nil
	}
	return frame
}

// send delivers frame to the master, after the frames queued before it.
//
// With now set (the room's goroutine: events written ahead of their
// delivery), if nothing is queued or being written, it writes the frame at
// once with one non-blocking write: a master that keeps up (the normal case)
// has the event before any client, and a slow or stopped one (its socket
// full) costs the room nothing. What the socket does not take is queued for
// sendLoop; a partial write's rest must follow on the same connection.
//
// It returns a channel closed once the frame is written whole, nil if it
// was at once.
func (p *proc) send(frame []byte, now bool) <-chan struct{} {
	c, nc := p.master()
	f := outFrame{frame: frame}
	p.qmu.Lock()
	if now && c != nil && len(p.queue) == 0 && !p.writing {
		p.writing = true // sendLoop stays off the connection meanwhile
		p.qmu.Unlock()
		n, err := writeNow(nc, frame)
		if err != nil {
			p.log.Error("write to the master failed; closing its connection", "err", err)
			p.lostMaster(c)
			n = 0 // the whole frame to the next master
		}
		p.qmu.Lock()
		p.writing = false
		if n == len(frame) {
			more := len(p.queue) > 0 // queued meanwhile (stats)
			p.qmu.Unlock()
			if more {
				p.wake()
			}
			return nil
		}
		// It was first in line: what is left goes first, before what
		// was queued meanwhile (stats).
		f.sent, f.on, f.written = n, c, make(chan struct{})
		p.queue = slices.Insert(p.queue, 0, f)
	} else {
		f.written = make(chan struct{})
		p.queue = append(p.queue, f)
	}
	if over := len(p.queue) - maxQueue; over > 0 {
		head := p.queue[0]
		clear(p.queue[:over])
		p.queue = p.queue[over:]
		if head.sent > 0 {
			// Partly on a connection: its rest must follow there. The
			// oldest after it go instead.
			p.queue[0] = head
		}
		p.log.Error("the master does not take room events; oldest dropped", "dropped", over)
	}
	p.qmu.Unlock()
	p.wake()
	return f.written
}

// wake tells sendLoop there is something to do.
func (p *proc) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// writeNow writes what the socket of nc takes of b at once, with one
// write(2) that never waits; it returns how many bytes that was. A full
// socket is not an error.
func writeNow(nc net.Conn, b []byte) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return 0, nil // not a socket: sendLoop writes it
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	nc.SetWriteDeadline(time.Time{}) // sendLoop's last one may have passed
	var n int
	var werr error
	if err := raw.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), b)
		return true // one try: never wait for room in the socket
	}); err != nil {
		return 0, err
	}
	if errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR) {
		return max(n, 0), nil
	}
	return max(n, 0), werr
}

// waitWritten waits until written is closed or d has passed.
func waitWritten(written <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-written:
	case <-t.C:
	}
}

// sendLoop writes the queued frames in order to the current master, each
// whole as far as any master can tell. A write that fails or times out
// (p.writeWait) may leave part of a frame on the connection, so the
// connection is closed and the frame stays first in the queue, to be sent
// whole to the next master (which ignores the log events it already has).
func (p *proc) sendLoop(ctx context.Context) {
	for {
		c, _ := p.master()
		p.qmu.Lock()
		var f outFrame
		ok := c != nil && len(p.queue) > 0 && !p.writing
		if ok {
			f = p.queue[0]
			p.writing = true
			if f.on != c {
				f.sent = 0 // its start went to a master since replaced
			}
		}
		p.qmu.Unlock()
		if !ok {
			select {
			case <-p.kick:
				continue
			case <-ctx.Done():
				return
			}
		}
		err := c.SendFrame(f.frame[f.sent:], cmp.Or(p.writeWait, defaultWriteWait))
		p.qmu.Lock()
		p.writing = false
		if len(p.queue) > 0 && p.queue[0].written == f.written { // not dropped meanwhile
			if err == nil {
				p.queue[0] = outFrame{}
				p.queue = p.queue[1:]
			} else {
				p.queue[0].sent, p.queue[0].on = 0, nil
			}
		}
		p.qmu.Unlock()
		if err != nil {
			if m, _ := p.master(); m == c { // not a connection a new master replaced
				p.log.Error("write to the master failed; closing its connection", "err", err)
			}
			p.lostMaster(c)
			continue
		}
		close(f.written)
	}
}

// master returns the current master's connection (c, and nc under it), nil
// while there is none.
func (p *proc) master() (c *ipc.Conn, nc net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn, p.connRaw
}

// connected reports whether a master is connected.
func (p *proc) connected() bool {
	c, _ := p.master()
	return c != nil
}

// lostMaster closes c and, if it is the current master's connection, waits
// for another master (draining the room if none comes in time). A connection
// lost this way is never written to again.
func (p *proc) lostMaster(c *ipc.Conn) {
	p.mu.Lock()
	if p.conn == c {
		p.conn, p.connRaw = nil, nil
		p.log.Warn("master gone; waiting for one to come back", "grace", p.orphanGrace)
		p.orphanTimer = time.AfterFunc(p.orphanGrace, p.orphan)
	}
	p.mu.Unlock()
	c.Close()
}

// idleStatsEvery is how many stats intervals an idle room lets pass between
// reports: stats that did not change but for the process's CPU and memory
// are sent every idleStatsEvery-th interval only. At 1,000 idle rooms a
// report every 2 s was 500 frames a second for the master to decode and
// half of each idle room's CPU (docs/performance.md, "Host density").
const idleStatsEvery = 15

// statsLoop reports the room's stats to the master every p.statsEvery when
// they changed, and at least every idleStatsEvery intervals (a new master
// connection gets the next report at once).
func (p *proc) statsLoop(ctx context.Context, rm *room.Room) {
	t := time.NewTicker(p.statsEvery)
	defer t.Stop()
	var last chatfleet.RoomStats
	var lastConn *ipc.Conn
	skipped := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := rm.Stats()
		c, _ := p.master()
		if c == nil {
			continue // the next master gets fresh stats, not these
		}
		if c == lastConn && s == last && skipped < idleStatsEvery-1 {
			skipped++
			continue
		}
		last, lastConn, skipped = s, c, 0
		s.CPUSeconds, s.RSSBytes = procstat.CPU().Seconds(), procstat.RSS()
		s.Procs = runtime.GOMAXPROCS(0)
		if frame := p.encode(ipc.Msg{Type: ipc.TypeStats, Stats: &s}); frame != nil {
			p.send(frame, false)
		}
	}
}

// trimBurst is the change in connections after which a room gives memory back.
const trimBurst = 1000

// trimLoop gives memory back to the OS once a burst of joins (or leaves) of
// at least trimBurst connections has settled for a second: the handshakes'
// garbage and the readers' stacks, grown while thousands of handshakes ran,
// would otherwise stay in the process until the heap next grew to them.
// debug.FreeOSMemory collects, shrinks stacks and returns the free pages.
func trimLoop(ctx context.Context, rm *room.Room) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	base, prev := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := rm.Conns()
		if abs(n-base) >= trimBurst && abs(n-prev) <= n/100 {
			debug.FreeOSMemory()
			base = n
		}
		prev = n
	}
}

func abs(n int) int { return max(n, -n) }

// profileOnSignal, when dir is set (ROOM_PPROF_DIR, for benchmarks), makes
// SIGUSR1 start a CPU profile of this room process and the next SIGUSR1 stop
// it, writing dir/room-<name>-<pid>-<n>.cpu.prof and, beside it, .heap.prof.
func profileOnSignal(dir, name string, log *slog.Logger) {
	sigprof.OnSignal(dir, "room-"+name, func(base string) {
		if h, err := os.Create(base + ".heap.prof.tmp"); err == nil {
			pprof.Lookup("heap").WriteTo(h, 1) // text: with runtime.MemStats (stacks, heap idle)
			h.Close()
			os.Rename(base+".heap.prof.tmp", base+".heap.prof")
		}
	}, func(err error) { log.Error("cpu profile", "err", err) })
}
