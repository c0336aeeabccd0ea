package master

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
)

// child is a room process the master started.
type child struct {
	p      *os.Process
	exited chan struct{} // closed when the process has ended and been reaped
	exit   exitInfo      // how it ended; set before exited is closed
}

// pid is the process id.
func (c *child) pid() int { return c.p.Pid }

// launch returns l with the settings every room of this master gets.
func (m *Master) launch(l ipc.Launch) ipc.Launch {
	l.StatsEvery, l.OrphanGrace, l.Conn = m.cfg.StatsEvery, m.cfg.OrphanGrace, m.cfg.RoomConn
	return l
}

// spawn starts a room process launched as l with files as its fds 3 and up
// (ipc.FDListener...), and its stderr in the file at stderrPath.
func (m *Master) spawn(stderrPath string, l ipc.Launch, files ...*os.File) (*child, error) {
	stderr, err := os.OpenFile(stderrPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("room stderr file: %w", err)
	}
	defer stderr.Close()
	cmd := exec.Command(m.cfg.Self, l.Args()...)
	cmd.ExtraFiles = files
	cmd.Env = roomEnviron(os.Environ(), m.cfg.RoomEnv)
	// The room writes to the master's own stdout (no pipe that would break
	// when the master dies) and its stderr to a file the master reads on a crash.
	cmd.Stdout = os.Stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start room process: %w", err)
	}
	ch := &child{p: cmd.Process, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		ch.exit = exitOf(cmd.ProcessState, err)
		close(ch.exited)
	}()
	return ch, nil
}

// roomEnvNames are the variables of the master's environment a room
// process is given, and roomEnvPrefixes the families of them: what a room
// reads (its token secret, origins, connection limits, entitlement hook,
// ROOM_* settings), the Go runtime's settings and the time zone. Nothing
// else of the master's reaches a room: not its API, admin or load-balancer
// keys, its store URI, its webhook secret, cloud credentials (AWS_*) or the
// control API's keys (FLEET_*). A room process runs code that parses what
// anyone on the internet sends; whoever took it over finds only what the
// room itself needs.
var (
	roomEnvNames = []string{
		"TOKEN_SECRET", "ALLOWED_ORIGINS", "MAX_CONNS_PER_IP", "MAX_ROOM_CONNS", "TRUSTED_PROXIES",
		"LOG_LEVEL", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG", "GOTRACEBACK", "GORACE", "TZ",
	}
	roomEnvPrefixes = []string{"ROOM_", "ENTITLEMENT_"}
)

// roomEnviron returns the environment of a room process: the entries of
// environ (the master's) a room needs (roomEnvNames, roomEnvPrefixes),
// then extra (Config.RoomEnv), which wins.
func roomEnviron(environ, extra []string) []string {
	env := make([]string, 0, len(extra)+16)
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if slices.Contains(roomEnvNames, name) || slices.ContainsFunc(roomEnvPrefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func (m *Master) roomPath(port int, ext string) string {
	return filepath.Join(m.cfg.StateDir, "rooms", strconv.Itoa(port)+ext)
}

// bindControl creates a room's control socket listener at path and returns
// it as a file to hand to the room process.
func bindControl(path string) (*os.File, error) {
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("room control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	ln.Close()
	if err != nil {
		return nil, fmt.Errorf("room control socket file: %w", err)
	}
	return f, nil
}

// A spare is a room process started ahead of need (Config.Spares), with the
// binary's package initialisation done, waiting on a socket pair with the
// master (its fd 3) for a room. CreateRoom binds the room's port and control
// socket as usual and passes them to a spare with the room's name and
// options (assign), instead of starting a process: the room then starts in
// a few milliseconds. A spare holds no port; it exits when its end of the
// pair closes (the master gone, or restarted in place).
type spare struct {
	id     int
	link   *net.UnixConn // the master's end of the socket pair
	proc   *child
	stderr string // the spare's stderr file, renamed to the room's on assign
}

// keepSpares keeps Config.Spares spares ready until ctx ends: at once when
// one is taken, and every 5 s after a failure or a spare's end.
func (m *Master) keepSpares(ctx context.Context) {
	defer close(m.sparesDone)
	if m.cfg.Spares <= 0 {
		return
	}
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		m.fillSpares()
		select {
		case <-ctx.Done():
			return
		case <-m.spareKick:
		case <-t.C:
		}
	}
}

// kickSpares asks keepSpares to refill the pool.
func (m *Master) kickSpares() {
	select {
	case m.spareKick <- struct{}{}:
	default:
	}
}

// fillSpares starts spares, one at a time, until there are Config.Spares,
// the master is stopping, or one fails to start.
func (m *Master) fillSpares() {
	for {
		m.mu.Lock()
		if m.stopping || len(m.spares) >= m.cfg.Spares {
			m.mu.Unlock()
			return
		}
		m.spareSeq++
		id := m.spareSeq
		m.mu.Unlock()

		sp, err := m.startSpare(id)
		m.mu.Lock()
		if err == nil && !m.stopping {
			m.spares = append(m.spares, sp)
			m.metrics.sparesStarted.Inc()
			m.mu.Unlock()
			go m.watchSpare(sp)
			continue
		}
		m.mu.Unlock()
		if err != nil {
			m.log.Error("spare room process did not start", "err", err, "stderr", tail(sp.stderr))
		}
		sp.release()
		return
	}
}

// startSpare starts a spare and waits for its ready. On error the returned
// spare holds what needs releasing.
func (m *Master) startSpare(id int) (*spare, error) {
	sp := &spare{id: id, stderr: filepath.Join(m.cfg.StateDir, "rooms", fmt.Sprintf("spare-%d.stderr", id))}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return sp, fmt.Errorf("spare socket pair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "spare-link"), os.NewFile(uintptr(fds[1]), "spare-link")
	defer theirs.Close()
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return sp, fmt.Errorf("spare link: %w", err)
	}
	sp.link = c.(*net.UnixConn)
	if sp.proc, err = m.spawn(sp.stderr, m.launch(ipc.Launch{Spare: true}), theirs); err != nil {
		return sp, err
	}
	theirs.Close()
	// A process that never answers is given up after ReadyTimeout.
	sp.link.SetReadDeadline(time.Now().Add(m.cfg.ReadyTimeout))
	msg, err := ipc.Decode(sp.link)
	if err != nil {
		return sp, fmt.Errorf("no ready from spare: %w", err)
	}
	if msg.Type != ipc.TypeReady || msg.PID != sp.proc.pid() {
		return sp, fmt.Errorf("unexpected %q from spare (pid %d)", msg.Type, msg.PID)
	}
	sp.link.SetReadDeadline(time.Time{})
	return sp, nil
}

// assign gives r to the spare: the room's name and options, and its TCP and
// control socket listeners as the message's rights.
func (sp *spare) assign(r *room) error {
	a := r.opts.assignment()
	b, err := ipc.Encode(ipc.Msg{Type: ipc.TypeAssign, Room: r.name, Port: r.port, Assign: &a})
	if err == nil {
		sp.link.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _, err = sp.link.WriteMsgUnix(b, syscall.UnixRights(int(r.tcp.Fd()), int(r.ctl.Fd())), nil)
	}
	if err != nil {
		sp.release()
		return fmt.Errorf("assign room to spare %d: %w", sp.proc.pid(), err)
	}
	sp.link.Close()
	os.Rename(sp.stderr, r.path(".stderr"))
	return nil
}

// watchSpare releases a spare that ends before it is taken.
func (m *Master) watchSpare(sp *spare) {
	<-sp.proc.exited
	m.mu.Lock()
	i := slices.Index(m.spares, sp)
	if i < 0 { // taken, or stopped by stopSpares
		m.mu.Unlock()
		return
	}
	m.spares = slices.Delete(m.spares, i, i+1)
	m.mu.Unlock()
	m.log.Error("spare room process ended", "pid", sp.proc.pid(), "exit", sp.proc.exit.status, "stderr", tail(sp.stderr))
	sp.release()
}

// takeSpare returns a ready spare, nil if there is none; m.mu must be held.
// The caller owns the spare.
func (m *Master) takeSpare() *spare {
	if len(m.spares) == 0 {
		return nil
	}
	sp := m.spares[0]
	m.spares = slices.Delete(m.spares, 0, 1)
	return sp
}

// stopSpares ends every spare and waits for them, for a shutdown or restart,
// once keepSpares was told to stop.
func (m *Master) stopSpares() {
	<-m.sparesDone
	m.mu.Lock()
	sps := m.spares
	m.spares = nil
	m.mu.Unlock()
	for _, sp := range sps {
		sp.release()
	}
}

// release ends the spare's process, if it runs, and removes its files.
func (sp *spare) release() {
	if sp.link != nil {
		sp.link.Close() // a spare exits when its link closes
	}
	if sp.proc != nil {
		sp.proc.p.Kill() // a no-op once the process was reaped
		<-sp.proc.exited
	}
	os.Remove(sp.stderr)
}

// tail returns the last bytes of the file at path, trimmed, for logs.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return strings.TrimSpace(string(b))
}
