package master

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/internal/privfile"
	"github.com/chatfleet/chatfleet/webhook"
)

// RoomOptions are the options of the host API's create (hostapi.RoomOptions,
// whose fields document them), with the checks and defaults the master
// applies. They are kept in the room's state file, which also holds the
// room's webhook secret: that file is mode 0600, the secret never given to
// the room process and never logged.
type RoomOptions hostapi.RoomOptions

// Limits of the options shown in listings.
const (
	maxHLSURLLen = 2048 // bytes, as the control API and the room take it
	maxTitleLen  = 120  // bytes
	// maxOwnerNameLen is the control API's limit of a display name.
	maxOwnerNameLen = 64 // bytes
)

// validate checks o for a host configured with cfg; EINVALID if it is wrong.
func (o RoomOptions) validate(cfg *Config) error {
	if o.HistorySize < 0 || o.HistorySize > 10000 {
		return chatfleet.Errorf(chatfleet.EINVALID, "options.historySize must be 0 to 10000")
	}
	if o.HLSURL != "" {
		if u, err := netguard.HTTPURL(o.HLSURL, maxHLSURLLen); err != nil || u.User != nil {
			return chatfleet.Errorf(chatfleet.EINVALID, "options.hlsUrl: want an http(s) URL of at most %d bytes, without credentials", maxHLSURLLen)
		}
	}
	if !listingText(o.Title, maxTitleLen) {
		return chatfleet.Errorf(chatfleet.EINVALID, "options.title: want at most %d bytes of printable characters", maxTitleLen)
	}
	if !listingText(o.OwnerName, maxOwnerNameLen) {
		return chatfleet.Errorf(chatfleet.EINVALID, "options.ownerName: want at most %d bytes of printable characters", maxOwnerNameLen)
	}
	if !hostapi.ValidRole(o.Role) {
		return chatfleet.Errorf(chatfleet.EINVALID, "options.role: want %q or %q", hostapi.RoleOrigin, hostapi.RoleEdge)
	}
	if o.Role != "" && !cfg.NATS.Enabled() {
		return chatfleet.Errorf(chatfleet.EINVALID, "this host has no NATS_URL: it runs no origins or edges")
	}
	return o.validateWebhooks(cfg)
}

// listingText reports whether s, shown in listings, is at most max bytes
// of printable UTF-8 (empty is fine).
func listingText(s string, max int) bool {
	return len(s) <= max && utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// validateWebhooks checks the room's own webhook URLs and secret: the URLs
// as webhook.ValidateURLs does (public addresses only unless
// cfg.Webhooks.AllowPrivate); a secret given with URLs must be 16 to 256 bytes
// (without URLs it is ignored: withWebhookSecret drops it).
func (o RoomOptions) validateWebhooks(cfg *Config) error {
	if err := webhook.ValidateURLs(o.WebhookURLs, cfg.Webhooks.AllowPrivate); err != nil {
		return chatfleet.Errorf(chatfleet.EINVALID, "options.webhookUrls: %v", err)
	}
	if n := len(o.WebhookSecret); len(o.WebhookURLs) > 0 && n > 0 && (n < minHookSecretLen || n > maxHookSecretLen) {
		return chatfleet.Errorf(chatfleet.EINVALID, "options.webhookSecret must be %d to %d bytes", minHookSecretLen, maxHookSecretLen)
	}
	return nil
}

// edge reports whether the room is an edge: it serves viewers of a room
// whose origin, on another host, sequences it. An edge has no event log, no
// lifecycle events, no webhooks and no record in the store: the origin's
// master keeps all of them.
func (o RoomOptions) edge() bool { return o.Role == hostapi.RoleEdge }

// withWebhookSecret returns o with the secret that signs its webhooks: a
// room with webhookUrls but no webhookSecret gets a new random one, also
// returned (to be given back once, in the create answer); a secret without
// URLs is dropped, as it would sign nothing. An edge delivers nothing: its
// URLs are dropped too (the origin's master delivers the room's events).
func (o RoomOptions) withWebhookSecret() (RoomOptions, string) {
	if o.edge() {
		o.WebhookURLs = nil
	}
	switch {
	case len(o.WebhookURLs) == 0:
		o.WebhookSecret = ""
	case o.WebhookSecret == "":
		o.WebhookSecret = "whsec_" + rand.Text()
		return o, o.WebhookSecret
	}
	return o, ""
}

// assignment returns o as a spare room process is given it.
func (o RoomOptions) assignment() ipc.Assignment {
	return ipc.Assignment{Instance: o.Instance, Owner: o.OwnerID, AllowAnonymous: o.AllowAnonymous, HistorySize: o.HistorySize, Paid: o.Paid, HLSURL: o.HLSURL, Role: o.Role}
}

// RoomInfo is a room as the master's API lists it (hostapi.RoomInfo).
type RoomInfo struct {
	hostapi.RoomInfo
	// webhookSecret is the secret CreateRoom made for the room's webhooks,
	// for the create answer only.
	webhookSecret string
}

// room supervises one room process. Its supervisor goroutine owns the
// process; other goroutines send commands through send, drain, closeRoom,
// kill and detach.
type room struct {
	m         *Master
	name      string
	port      int
	opts      RoomOptions
	createdAt time.Time
	log       *slog.Logger

	// Files the master keeps for restarts: the TCP listener and the control
	// socket listener. Owned by the supervisor.
	tcp, ctl *os.File
	spare    *spare // the process to start with, if CreateRoom took a spare

	ready  chan struct{} // closed on the first Ready
	done   chan struct{} // closed when supervision ends
	stopCh chan struct{} // closed by detach

	mu        sync.Mutex
	pid       int
	conn      *ipc.Conn
	status    chatfleet.RoomStatus
	stats     chatfleet.RoomStats
	restarts  int
	phase     phase // supervised, closing or detached
	answered  bool  // the current process answered its control connection
	readyOnce sync.Once
	hist      []chatfleet.Event // the room's last events, oldest first
	lastSeq   int64             // the highest seq the room reported
	cpuAt     time.Time         // when stats.CPUSeconds was reported
	cpuRate   float64           // cores used between the last two reports
	told      told              // what the webhooks were told of the room's life (lifecycle.go)
	proto     int               // the master–room protocol of the current process (ipc.ProtoOf its ready)
}

// phase is where a room's supervision stands. It only moves forward.
type phase int

const (
	// phaseSupervised: the room's process runs, or is started again after
	// a crash.
	phaseSupervised phase = iota
	// phaseClosing: an end was asked for or announced; the next exit of
	// the process is its end, not a crash.
	phaseClosing
	// phaseDetached: the master stopped supervising the room without
	// touching its process (a restart in place); the next master adopts it.
	phaseDetached
)

// advance moves r to phase p, unless it is past p already; r.mu must be held.
func (r *room) advance(p phase) { r.phase = max(r.phase, p) }

func (m *Master) newRoom(name string, port int, opts RoomOptions, created time.Time) *room {
	return &room{
		m: m, name: name, port: port, opts: opts, createdAt: created,
		log:    m.log.With("room", name, "port", port),
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
		stopCh: make(chan struct{}),
		status: chatfleet.RoomStarting,
	}
}

func (r *room) path(ext string) string { return r.m.roomPath(r.port, ext) }

func (r *room) info() RoomInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RoomInfo{RoomInfo: hostapi.RoomInfo{Name: r.name, Port: r.port, PID: r.pid, Status: r.status, Restarts: r.restarts, Role: r.opts.Role, CreatedAt: r.createdAt, Stats: r.stats}}
}

// domain returns the room as the store keeps it: what was given at create
// (the title, and the create's hlsUrl while the producer announces none)
// with the room's own state.
func (r *room) domain(now time.Time) *chatfleet.Room {
	in := r.info()
	return &chatfleet.Room{
		Name: r.name, Title: r.opts.Title, OwnerName: r.opts.OwnerName, HostID: r.m.cfg.HostID, HostAddr: r.m.cfg.PublicHost, Port: r.port,
		Status: in.Status, ProducerLive: in.Stats.ProducerLive, HLSURL: cmp.Or(in.Stats.HLSURL, r.opts.HLSURL),
		Viewers: in.Stats.Viewers, Paid: r.opts.Paid, Instance: r.opts.Instance, OwnerID: r.opts.OwnerID,
		CreatedAt: r.createdAt, UpdatedAt: now,
	}
}

// send delivers msg to the room process, if it is connected.
func (r *room) send(msg ipc.Msg) error {
	r.mu.Lock()
	c := r.conn
	r.mu.Unlock()
	if c == nil {
		return chatfleet.Errorf(chatfleet.EUNAVAILABLE, "room %q is not connected", r.name)
	}
	if err := c.Send(msg); err != nil {
		return fmt.Errorf("send %s to room %s: %w", msg.Type, r.name, err)
	}
	return nil
}

// sendFrame delivers a frame encoded once for many rooms, if r is connected.
func (r *room) sendFrame(typ string, frame []byte) error {
	r.mu.Lock()
	c := r.conn
	r.mu.Unlock()
	if c == nil {
		return chatfleet.Errorf(chatfleet.EUNAVAILABLE, "room %q is not connected", r.name)
	}
	if err := c.SendFrame(frame, 5*time.Second); err != nil {
		return fmt.Errorf("send %s to room %s: %w", typ, r.name, err)
	}
	return nil
}

// closeRoom asks the room to tell its clients why and exit; a room that is
// not connected is killed.
func (r *room) closeRoom(reason string) {
	r.setClosing()
	r.noteCloseReason(reason)
	if err := r.send(ipc.Msg{Type: ipc.TypeClose, Reason: reason}); err != nil {
		r.kill()
	}
}

// drain asks the room to warn its clients and close them over window.
func (r *room) drain(reason string, window time.Duration) {
	r.setClosing()
	r.noteCloseReason(reason)
	if err := r.send(ipc.Msg{Type: ipc.TypeDrain, Reason: reason, Deadline: window}); err != nil {
		r.kill()
	}
}

func (r *room) setClosing() {
	r.mu.Lock()
	r.advance(phaseClosing)
	r.mu.Unlock()
}

// kill ends the room process at once; the supervisor will not restart it.
func (r *room) kill() {
	r.mu.Lock()
	r.advance(phaseClosing)
	pid := r.pid
	r.mu.Unlock()
	if pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// detach stops supervising without touching the process, for a restart.
func (r *room) detach() {
	r.mu.Lock()
	r.advance(phaseDetached)
	c := r.conn
	r.mu.Unlock()
	select {
	case <-r.stopCh:
	default:
		close(r.stopCh)
	}
	if c != nil {
		c.Close()
	}
	<-r.done
}

// exitInfo says how a room process ended.
type exitInfo struct {
	code   int    // -1 if unknown or killed by a signal
	status string // for logs
}

// supervise runs the room until it ends for good. With adoptPID set it first
// takes over that running process through conn.
func (r *room) supervise(adoptPID int, conn *ipc.Conn) {
	defer r.m.wg.Done()
	defer close(r.done)
	var crashes []time.Time
	backoff := r.m.cfg.RestartBackoff
	for {
		var wait func() (exitInfo, bool)
		if adoptPID != 0 {
			if !r.opts.edge() { // an edge delivers nothing
				r.m.hooks.Replay(r.hookRoom()) // before the room's new events
			}
			wait = r.adopt(adoptPID, conn)
			adoptPID, conn = 0, nil
		} else {
			var err error
			if wait, err = r.start(); err != nil {
				r.log.Error("room start failed", "err", err)
				wait = func() (exitInfo, bool) { return exitInfo{code: -1, status: err.Error()}, true }
			}
		}
		exit, ok := wait()
		if !ok { // detached
			return
		}
		r.mu.Lock()
		r.conn, r.pid = nil, 0
		closing := r.phase == phaseClosing
		r.mu.Unlock()
		if closing || exit.code == ipc.ExitClosed || exit.code == ipc.ExitOrphaned {
			r.log.Info("room ended", "exit", exit.status)
			r.finish(chatfleet.RoomClosed)
			return
		}
		now := r.m.cfg.Now()
		crashes = append(crashes, now)
		for len(crashes) > 0 && now.Sub(crashes[0]) > r.m.cfg.CrashWindow {
			crashes = crashes[1:]
		}
		r.m.metrics.roomCrashes.Inc()
		r.log.Error("room process crashed", "exit", exit.status, "crashes", len(crashes), "stderr", r.stderrTail())
		if len(crashes) >= r.m.cfg.CrashLimit {
			r.log.Error("room failed: too many crashes", "crashes", len(crashes), "window", r.m.cfg.CrashWindow)
			r.m.metrics.roomFailures.Inc()
			r.finish(chatfleet.RoomFailed)
			return
		}
		r.mu.Lock()
		r.status = chatfleet.RoomStarting
		r.restarts++
		r.mu.Unlock()
		select {
		case <-time.After(backoff):
		case <-r.stopCh:
			return
		}
		backoff = min(backoff*2, 5*time.Second)
		r.mu.Lock()
		closing = r.phase == phaseClosing
		r.mu.Unlock()
		if closing { // closed or killed while it was down
			r.log.Info("room ended while down")
			r.finish(chatfleet.RoomClosed)
			return
		}
	}
}

// start starts the room's process (or gives the room to the spare CreateRoom
// took) and its control session, and returns a function that waits for the
// process to end (false if the room was detached first).
func (r *room) start() (func() (exitInfo, bool), error) {
	if err := r.bind(); err != nil {
		return nil, err
	}
	var proc *child
	if sp := r.spare; sp != nil {
		r.spare = nil
		if err := sp.assign(r); err != nil {
			return nil, err
		}
		proc = sp.proc
	} else {
		var err error
		if proc, err = r.m.spawn(r.path(".stderr"), r.m.launch(ipc.Launch{Name: r.name, Port: r.port, Options: r.opts.assignment()}), r.tcp, r.ctl); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	r.pid, r.answered = proc.pid(), false
	r.mu.Unlock()
	if err := r.writeState(proc.pid()); err != nil {
		r.log.Error("write room state", "err", err)
	}
	// The master holds the control listener, so this connects at once; the
	// session's connection is closed when the process ends, which ends the
	// session even if the process never accepted it.
	sessDone := make(chan struct{})
	var link ctlLink
	c, err := net.Dial("unix", r.path(".sock"))
	if err != nil {
		r.log.Error("connect to room control socket", "err", err)
		close(sessDone)
	} else {
		running := func() bool {
			select {
			case <-proc.exited:
				return false
			default:
				return true
			}
		}
		go func() {
			defer close(sessDone)
			r.sessions(ipc.NewConn(c), true, running, &link)
		}()
	}
	return func() (exitInfo, bool) {
		select {
		case <-proc.exited:
			// What a process that answered sent before it exited (its last
			// events) is still in the socket: let the session read to the
			// end first. (One that never accepted its connection gives no EOF.)
			r.mu.Lock()
			answered := r.answered
			r.mu.Unlock()
			if answered {
				select {
				case <-sessDone:
				case <-time.After(time.Second):
				}
			}
			link.close()
			r.closeConn()
			<-sessDone
			return proc.exit, true
		case <-r.stopCh:
			return exitInfo{}, false
		}
	}, nil
}

// bind makes sure the master holds the room's TCP listener and control
// socket listener.
func (r *room) bind() error {
	if r.tcp == nil {
		f, err := listenTCP(r.m.cfg.RoomBind, r.port)
		if err != nil {
			return err
		}
		r.tcp = f
	}
	if r.ctl == nil {
		f, err := bindControl(r.path(".sock"))
		if err != nil {
			return err
		}
		r.ctl = f
	}
	return nil
}

// listenTCP binds port and returns the listener as a file to hand to a child.
func listenTCP(host string, port int) (*os.File, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, fmt.Errorf("room listener file: %w", err)
	}
	return f, nil
}

// adopt takes over a room process a previous master started, through conn
// (or a new connection if conn is nil).
func (r *room) adopt(pid int, conn *ipc.Conn) func() (exitInfo, bool) {
	r.mu.Lock()
	r.pid = pid
	r.mu.Unlock()
	sessDone := make(chan struct{})
	go func() {
		defer close(sessDone)
		r.sessions(conn, false, func() bool { return alive(pid) }, new(ctlLink))
	}()
	return func() (exitInfo, bool) {
		select {
		case <-sessDone:
		case <-r.stopCh:
			return exitInfo{}, false
		}
		// The control sessions ended: the process is gone or going, or
		// could not be reconnected. Wait for it; one that lives on without
		// its control channel is killed.
		deadline := time.Now().Add(3 * time.Second)
		for {
			if e, gone := reap(pid); gone {
				return e, true
			}
			if time.Now().After(deadline) {
				r.log.Error("adopted room lost its control channel; killing it", "pid", pid)
				syscall.Kill(pid, syscall.SIGKILL)
				deadline = time.Now().Add(time.Hour)
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-r.stopCh:
				return exitInfo{}, false
			}
		}
	}
}

// reap reports whether pid has ended, reaping it if it is our child (after an
// in-place restart the rooms are children of the new image).
func reap(pid int) (exitInfo, bool) {
	var ws syscall.WaitStatus
	p, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	switch {
	case err == nil && p == pid:
		return waitStatusInfo(ws), true
	case err == nil:
		return exitInfo{}, false // our child, still running
	}
	if !alive(pid) {
		return exitInfo{code: -1, status: "exited (not our child: status unknown)"}, true
	}
	return exitInfo{}, false
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}

func exitOf(ps *os.ProcessState, err error) exitInfo {
	if ps == nil {
		return exitInfo{code: -1, status: fmt.Sprint(err)}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
		return waitStatusInfo(ws)
	}
	return exitInfo{code: ps.ExitCode(), status: ps.String()}
}

func waitStatusInfo(ws syscall.WaitStatus) exitInfo {
	switch {
	case ws.Exited():
		return exitInfo{code: ws.ExitStatus(), status: fmt.Sprintf("exit status %d", ws.ExitStatus())}
	case ws.Signaled():
		return exitInfo{code: -1, status: "killed by signal " + ws.Signal().String()}
	}
	return exitInfo{code: -1, status: fmt.Sprintf("wait status %#x", uint32(ws))}
}

// Reconnecting to a room process whose control session ended while it runs
// on: at most reconnectTries tries in a row, the first after reconnectWait,
// each wait twice the one before (1.55 s in all).
const (
	reconnectTries = 5
	reconnectWait  = 50 * time.Millisecond
)

// ctlLink holds the connection of a process run's current control session,
// so that the process's end can close it: a connection the process never
// accepted gives no EOF while the master holds the listener.
type ctlLink struct {
	mu     sync.Mutex
	c      *ipc.Conn
	closed bool
}

// set makes c the current connection; after close it closes c and returns
// false.
func (l *ctlLink) set(c *ipc.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return false
	}
	l.c = c
	return true
}

// close closes the current connection and any later one.
func (l *ctlLink) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.c != nil {
		l.c.Close()
	}
}

// sessions runs the control sessions of one process run: the first on c (a
// nil c: a new connection), then, each time a session ends while the
// process runs on (the room closed a connection it could not write to in
// time, or a frame was bad), another on a new connection, as for an
// adoption: hello, ready, cache, bans; the resume only while no session of
// a started process got that far. It returns when the process is gone
// (running reports false), the room is closing or detached, or
// reconnectTries connections in a row gave no session.
func (r *room) sessions(c *ipc.Conn, started bool, running func() bool, link *ctlLink) {
	fails, wait := 0, reconnectWait
	for {
		if c != nil {
			if !link.set(c) {
				return
			}
			if r.session(c, started) {
				started, fails, wait = false, 0, reconnectWait
			}
			r.mu.Lock()
			if r.conn == c {
				r.conn = nil // never written to again
			}
			r.mu.Unlock()
		}
		if fails == reconnectTries {
			r.log.Error("room control channel lost; cannot reconnect", "tries", fails)
			return
		}
		select {
		case <-time.After(wait):
		case <-r.stopCh:
			return
		}
		fails, wait = fails+1, wait*2
		r.mu.Lock()
		stop := r.phase != phaseSupervised
		r.mu.Unlock()
		if stop || !running() {
			return
		}
		r.log.Warn("room control channel lost while the room runs; reconnecting", "try", fails)
		nc, err := net.DialTimeout("unix", r.path(".sock"), time.Second)
		if err != nil {
			r.log.Warn("reconnect to room control socket", "err", err)
			c = nil
			continue
		}
		c = ipc.NewConn(nc)
	}
}

// session runs the control channel of one process run: hello, ready, for a
// process the master just started the history to resume from, the cache,
// then stats and events until the connection ends. served reports whether
// it got that far.
func (r *room) session(c *ipc.Conn, started bool) (served bool) {
	defer c.Close()
	if err := c.Send(ipc.Msg{Type: ipc.TypeHello, MasterPID: os.Getpid(), Proto: ipc.Version}); err != nil {
		r.log.Error("room hello", "err", err)
		return false
	}
	msg, err := c.Recv()
	if err != nil || msg.Type != ipc.TypeReady || msg.Room != r.name || msg.Port != r.port {
		r.log.Error("room did not report ready", "err", err, "got", msg.Type, "room", msg.Room)
		return false
	}
	r.mu.Lock()
	r.proto = ipc.ProtoOf(msg)
	r.mu.Unlock()
	if err := ipc.CheckProto(ipc.ProtoOf(msg)); err != nil {
		// Ending the session ends the room's process: a started one is
		// started again by this binary, an adopted one killed and started
		// again; either resumes from the room's event log.
		// The pid is the master's own record: a room's word is not trusted.
		r.mu.Lock()
		pid := r.pid
		r.mu.Unlock()
		r.log.Error("room cannot be supervised; restarting it with its event log", "err", err, "pid", pid)
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL) // not r.kill: the room is not closing
		}
		return false
	}
	r.mu.Lock()
	r.answered = true
	r.mu.Unlock()
	if started && r.opts.edge() {
		// An edge takes its history from the origin's stream, not from a log
		// of its own: it resumes from nothing.
		if err := c.Send(ipc.Msg{Type: ipc.TypeResume}); err != nil {
			r.log.Error("room resume", "err", err)
			return false
		}
	} else if started {
		evs, seq := r.resumeData()
		if r.takeOpenPending() {
			ev := r.logOpened(seq)
			evs, seq = append(evs, ev), ev.Seq
		}
		if err := c.Send(ipc.Msg{Type: ipc.TypeResume, Events: evs, Seq: seq}); err != nil {
			r.log.Error("room resume", "err", err)
			return false
		}
	}
	cache := r.m.cache.currentFrame()
	if err := c.SendFrame(cache, 5*time.Second); err != nil {
		r.log.Error("room cache", "err", err)
		return false
	}
	r.mu.Lock()
	r.conn = c
	if r.phase == phaseDetached {
		r.mu.Unlock()
		return false
	}
	if r.status == chatfleet.RoomStarting {
		r.status = chatfleet.RoomOffline
	}
	r.mu.Unlock()
	if msg.Stats != nil { // a room already serving (adopted) says how it is
		r.handle(ipc.Msg{Type: ipc.TypeStats, Stats: msg.Stats})
	}
	// A cache pushed while the room was not yet connected is sent now.
	if now := r.m.cache.currentFrame(); !bytes.Equal(now, cache) {
		c.SendFrame(now, 5*time.Second)
	}
	// Then the room's bans: its whole list, then changes (bans.go).
	defer r.m.bans.attach(r, c, msg.BanSnapshot)()
	r.readyOnce.Do(func() { close(r.ready) })
	r.log.Info("room ready", "pid", msg.PID)
	for {
		msg, err := c.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.log.Warn("room control channel", "err", err)
			}
			return true
		}
		r.handle(msg)
	}
}

// handle applies one message from the room process.
func (r *room) handle(msg ipc.Msg) {
	switch msg.Type {
	case ipc.TypeStats:
		if msg.Stats == nil {
			return
		}
		r.mu.Lock()
		now := r.m.cfg.Now()
		if !r.cpuAt.IsZero() && msg.Stats.CPUSeconds >= r.stats.CPUSeconds {
			if dt := now.Sub(r.cpuAt).Seconds(); dt > 0 {
				r.cpuRate = (msg.Stats.CPUSeconds - r.stats.CPUSeconds) / dt
			}
		}
		r.cpuAt = now
		r.stats = *msg.Stats
		if r.status == chatfleet.RoomLive || r.status == chatfleet.RoomOffline {
			r.status = chatfleet.RoomOffline
			if msg.Stats.ProducerLive {
				r.status = chatfleet.RoomLive
			}
		}
		r.mu.Unlock()
		r.reportViewers(msg.Stats.Viewers)
		r.adjustCores(msg.Stats.Conns, msg.Stats.Procs)
	case ipc.TypeEvent:
		switch msg.Event {
		case "ban":
			if msg.Ban != nil {
				r.m.bans.roomBan(r, *msg.Ban)
			}
		case "log":
			r.logEvents(msg.Events)
		case "closed":
			r.setClosing()
			r.noteCloseReason(msg.Reason)
			r.log.Info("room closing", "reason", msg.Reason)
		}
	default:
		r.log.Warn("unknown message from room", "type", msg.Type)
	}
}

func (r *room) closeConn() {
	r.mu.Lock()
	c := r.conn
	r.conn = nil
	r.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// finish releases everything the room held and forgets it.
func (r *room) finish(status chatfleet.RoomStatus) {
	r.mu.Lock()
	r.status = status
	announced := !r.told.openPending && !r.opts.edge()
	r.mu.Unlock()
	if announced {
		r.logClosed(status)
	}
	if r.tcp != nil {
		r.tcp.Close()
	}
	if r.ctl != nil {
		r.ctl.Close()
	}
	for _, ext := range []string{".json", ".sock", ".stderr", ".hooks"} {
		os.Remove(r.path(ext))
	}
	r.m.hooks.ForgetRoom(r.name)
	r.m.bans.forgetRoom(r.name)
	r.m.forget(r, status)
}

func (r *room) writeState(pid int) error {
	b, err := json.Marshal(stateFile{Format: stateFormat, Name: r.name, Port: r.port, PID: pid, CreatedAt: r.createdAt, Options: r.opts})
	if err != nil {
		return err
	}
	return privfile.Write(r.path(".json"), b) // it holds the room's webhook secret
}

// stderrTail returns the last lines the room process wrote to stderr.
func (r *room) stderrTail() string { return tail(r.path(".stderr")) }

// forget removes r from the master once its process is gone for good and
// records the end in the store.
func (m *Master) forget(r *room, status chatfleet.RoomStatus) {
	m.cores.release(r)
	m.mu.Lock()
	if m.rooms[r.name] == r {
		delete(m.rooms, r.name)
	}
	if m.ports[r.port] == r.name {
		delete(m.ports, r.port)
	}
	m.mu.Unlock()
	// The store's record of an edge's room is its origin's: an edge's end
	// does not end it.
	if m.cfg.Store != nil && !r.opts.edge() {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StoreTimeout)
		defer cancel()
		if err := m.cfg.Store.UpdateRoom(ctx, r.name, chatfleet.RoomUpdate{Status: &status}); err != nil && chatfleet.ErrorCode(err) != chatfleet.ENOTFOUND {
			m.metrics.storeErrors.Inc()
			m.log.Warn("record room end", "room", r.name, "err", err)
		}
	}
	if status == chatfleet.RoomFailed && m.cfg.Notify != nil {
		m.cfg.Notify()
	}
}

// CreateRoom starts a room process for name and waits until it is ready.
// It returns EINVALID for a bad name, ECONFLICT (with the port) if the room
// exists, EUNAVAILABLE if the host is draining, full or the room cannot start.
func (m *Master) CreateRoom(ctx context.Context, name string, opts RoomOptions) (RoomInfo, error) {
	if err := chatfleet.ValidateRoomName(name); err != nil {
		return RoomInfo{}, err
	}
	if err := opts.validate(&m.cfg); err != nil {
		return RoomInfo{}, err
	}
	opts, madeSecret := opts.withWebhookSecret()
	m.mu.Lock()
	if m.draining || m.stopping {
		m.mu.Unlock()
		return RoomInfo{}, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "host is not accepting new rooms")
	}
	if r, ok := m.rooms[name]; ok {
		m.mu.Unlock()
		e := chatfleet.Errorf(chatfleet.ECONFLICT, "room %q exists", name)
		e.Host, e.Port = m.cfg.PublicHost, r.port
		return RoomInfo{}, e
	}
	if len(m.rooms) >= m.cfg.MaxRooms {
		m.mu.Unlock()
		return RoomInfo{}, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "host is full (%d rooms)", m.cfg.MaxRooms)
	}
	port, tcp := m.allocPort()
	if tcp == nil {
		m.mu.Unlock()
		return RoomInfo{}, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "no free room port in %d-%d", m.cfg.RoomPortMin, m.cfg.RoomPortMax)
	}
	r := m.newRoom(name, port, opts, m.cfg.Now())
	r.tcp = tcp
	if r.spare = m.takeSpare(); r.spare != nil {
		m.kickSpares()
	}
	r.told.openPending = !opts.edge() // an edge's life is not in the room's log
	m.rooms[name] = r
	m.ports[port] = name
	m.wg.Add(1)
	m.mu.Unlock()
	go r.supervise(0, nil)

	timer := time.NewTimer(m.cfg.ReadyTimeout)
	defer timer.Stop()
	select {
	case <-r.ready:
		m.metrics.roomsCreated.Inc()
		r.log.Info("room created")
		info := r.info()
		info.webhookSecret = madeSecret
		return info, nil
	case <-r.done:
		return RoomInfo{}, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "room %q failed to start", name)
	case <-timer.C:
	case <-ctx.Done():
	}
	r.kill()
	return RoomInfo{}, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "room %q did not start in time", name)
}

// allocPort binds the lowest free room port; m.mu must be held.
func (m *Master) allocPort() (int, *os.File) {
	for p := m.cfg.RoomPortMin; p <= m.cfg.RoomPortMax; p++ {
		if _, used := m.ports[p]; used {
			continue
		}
		if f, err := listenTCP(m.cfg.RoomBind, p); err == nil {
			return p, f
		}
	}
	return 0, nil
}

// room returns the room named name or ENOTFOUND.
func (m *Master) room(name string) (*room, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rooms[name]
	if !ok {
		return nil, chatfleet.Errorf(chatfleet.ENOTFOUND, "room %q not found", name)
	}
	return r, nil
}

// CloseRoom tells the room's clients why, ends its process and frees its
// port, waiting up to ctx's deadline. ENOTFOUND if there is no such room.
func (m *Master) CloseRoom(ctx context.Context, name, reason string) error {
	r, err := m.room(name)
	if err != nil {
		return err
	}
	// A room adopted a moment ago may not have its control session yet
	// (after a restart in place): wait for it, so that the room is told.
	select {
	case <-r.ready:
	case <-r.done:
		return nil
	case <-ctx.Done():
	}
	r.closeRoom(reason)
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		r.kill()
		<-r.done
		return nil
	}
}

// Global sends text to every client of every room; it returns how many rooms
// it reached.
func (m *Master) Global(text string) int {
	m.mu.Lock()
	rooms := m.roomList()
	m.mu.Unlock()
	n := 0
	for _, r := range rooms {
		if r.send(ipc.Msg{Type: ipc.TypeGlobal, Text: text}) == nil {
			n++
		}
	}
	return n
}

// adoptAll takes over the rooms a previous master left in StateDir: live ones
// through their control socket, dead ones by starting them again on their port.
func (m *Master) adoptAll(ctx context.Context) {
	files, _ := filepath.Glob(filepath.Join(m.cfg.StateDir, "rooms", "*.json"))
	for _, f := range files {
		st, err := readState(f)
		if err == nil && st.Format > stateFormat {
			m.log.Warn("room state file of a newer release: reading the fields this one knows", "file", f, "format", st.Format, "known", stateFormat)
		}
		if err != nil || chatfleet.ValidateRoomName(st.Name) != nil || st.Port < m.cfg.RoomPortMin || st.Port > m.cfg.RoomPortMax {
			m.log.Error("ignoring bad room state file", "file", f, "err", err)
			os.Remove(f)
			continue
		}
		m.mu.Lock()
		if _, dup := m.rooms[st.Name]; dup {
			m.mu.Unlock()
			os.Remove(f)
			continue
		}
		r := m.newRoom(st.Name, st.Port, st.Options, st.CreatedAt)
		m.rooms[st.Name] = r
		m.ports[st.Port] = st.Name
		m.wg.Add(1)
		m.mu.Unlock()

		conn, err := m.dialRoom(r, st.PID)
		if err != nil {
			r.log.Warn("room not adoptable; starting it again", "pid", st.PID, "err", err)
			go r.supervise(0, nil)
			continue
		}
		r.log.Info("adopting room", "pid", st.PID)
		r.mu.Lock()
		r.status = chatfleet.RoomOffline
		r.pid = st.PID // known now, so that a kill before the session starts reaches it
		r.mu.Unlock()
		go r.supervise(st.PID, conn)
	}
}

// dialRoom connects to the control socket of a room process left by a
// previous master, after checking the process is that room.
func (m *Master) dialRoom(r *room, pid int) (*ipc.Conn, error) {
	if pid <= 0 || !alive(pid) {
		return nil, errors.New("process is gone")
	}
	// A room process runs `chatserver room ... -port <port> ...`, or was a
	// spare (`chatserver room ... -spare`) given the room later; its ready
	// on the room's control socket names it.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !ipc.IsRoomCmdline(cmdline, r.port) {
		return nil, errors.New("process is not this room")
	}
	c, err := net.DialTimeout("unix", r.path(".sock"), time.Second)
	if err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ipc.NewConn(c), nil
}
