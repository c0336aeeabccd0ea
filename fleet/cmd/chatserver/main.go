// Command chatserver is the fleet host daemon (the master), and, run as
// `chatserver room ...` by the master, one room process.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/entitle"
	"github.com/chatfleet/chatfleet/fleet/internal/hostinfo"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/fleet/internal/master"
	"github.com/chatfleet/chatfleet/fleet/internal/roomproc"
	"github.com/chatfleet/chatfleet/lbclient"
	"github.com/chatfleet/chatfleet/mongo"
)

// listenFDsEnv carries the API and admin listeners across an in-place
// restart (SIGHUP or admin restart), so no connection is refused meanwhile.
const listenFDsEnv = "CHATSERVER_LISTEN_FDS"

func main() {
	log := newLogger(os.Getenv("LOG_LEVEL"))
	if len(os.Args) > 1 && os.Args[1] == "room" {
		os.Exit(roomproc.Main(os.Args[2:], log))
	}
	if err := run(log); err != nil {
		fmt.Fprintln(os.Stderr, "chatserver:", err)
		os.Exit(1)
	}
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil || level == "" {
		l = slog.LevelError // production logs errors only, as the original did
	}
	return slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: l}))
}

// env reads the configuration; errors name the variable.
type env struct{ err error }

func (e *env) str(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (e *env) int(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("%s=%q: want a whole number", name, v)
	}
	return n
}

func (e *env) dur(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("%s=%q: want a duration such as 30s", name, v)
	}
	return d
}

// flag reads v, the value of the 0/1 setting name.
func (e *env) flag(name, v string) bool {
	switch v {
	case "", "0":
		return false
	case "1":
		return true
	default:
		e.fail("%s=%q: want 0 or 1", name, v)
		return false
	}
}

// fail records the first configuration error.
func (e *env) fail(format string, a ...any) {
	if e.err == nil {
		e.err = fmt.Errorf(format, a...)
	}
}

func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// roomConn reads the connection settings every room gets; unset ones are
// left to the room's defaults (package room).
func roomConn(e *env) ipc.ConnSettings {
	var c ipc.ConnSettings
	if c.PongWait = e.dur("PONG_WAIT", 0); c.PongWait != 0 && (c.PongWait < 2*time.Second || c.PongWait > 10*time.Minute) {
		e.fail("PONG_WAIT=%v: want 2s to 10m", c.PongWait)
	}
	if c.WriteWait = e.dur("WRITE_WAIT", 0); c.WriteWait != 0 && (c.WriteWait < time.Second || c.WriteWait > 5*time.Minute) {
		e.fail("WRITE_WAIT=%v: want 1s to 5m", c.WriteWait)
	}
	if c.SendQueueBytes = e.int("SEND_QUEUE_BYTES", 0); c.SendQueueBytes != 0 && (c.SendQueueBytes < 16<<10 || c.SendQueueBytes > 64<<20) {
		e.fail("SEND_QUEUE_BYTES=%d: want 16384 to 67108864", c.SendQueueBytes)
	}
	return c
}

func run(log *slog.Logger) error {
	var e env
	cfg := master.Config{
		Port:            e.int("PORT", 80),
		AdminPort:       e.int("ADMIN_PORT", 8090),
		BindAddr:        e.str("BIND_ADDR", ""),
		Key:             os.Getenv("KEY"),
		AdminKey:        os.Getenv("ADMIN_KEY"),
		RoomPortMin:     e.int("ROOM_PORT_MIN", 34000),
		RoomPortMax:     e.int("ROOM_PORT_MAX", 0),
		RoomBind:        e.str("ROOM_BIND", ""),
		MaxRooms:        e.int("MAX_ROOMS", 0),
		MaxConns:        e.int("MAX_CONNS", 0),
		APIURL:          os.Getenv("API_URL"),
		AdminURL:        os.Getenv("ADMIN_URL"),
		RoomURL:         os.Getenv("ROOM_URL"),
		CacheFile:       os.Getenv("CACHE_FILE"),
		CacheEvery:      e.dur("CACHE_REFRESH", 0),
		StoreTimeout:    e.dur("STORE_TIMEOUT", 0),
		SyncEvery:       e.dur("SYNC_EVERY", 0),
		StatsEvery:      e.dur("STATS_EVERY", 0),
		StaleAfter:      e.dur("STALE_AFTER", 0),
		CloseStaleAfter: e.dur("CLOSE_STALE_AFTER", 0),
		DrainWindow:     e.dur("DRAIN_WINDOW", 0),
		StopDeadline:    e.dur("STOP_DEADLINE", 0),
		ReadyTimeout:    e.dur("ROOM_READY_TIMEOUT", 0),
		Spares:          e.int("ROOM_SPARES", 2),
		OrphanGrace:     e.dur("ORPHAN_GRACE", 0),
		EventRetention:  e.dur("EVENT_RETENTION", 0),
		WebhookURLs:     list(os.Getenv("WEBHOOK_URLS")),
		WebhookSecret:   os.Getenv("WEBHOOK_SECRET"),
		WebhookQueue:    e.int("WEBHOOK_QUEUE", 0),
		WebhookBackoff:  e.dur("WEBHOOK_BACKOFF", 0),
		MaxFleetBans:    e.int("MAX_FLEET_BANS", 0),
		MaxRoomBans:     e.int("MAX_ROOM_BANS", 0),
		MaxPendingBans:  e.int("MAX_PENDING_BANS", 0),
		// Rooms' own webhookUrls may reach private addresses: development only.
		WebhookAllowPrivate: e.flag("WEBHOOK_ALLOW_PRIVATE", e.str("WEBHOOK_ALLOW_PRIVATE", "")),
		Log:                 log,
	}
	// One scheduler thread per room process: rooms are many per host, and a
	// room on one thread spends less CPU per delivery (docs/performance.md).
	cfg.RoomEnv = []string{"GOMAXPROCS=" + e.str("ROOM_GOMAXPROCS", "1")}
	cfg.RoomConn = roomConn(&e)
	if cfg.RoomPortMax == 0 {
		cfg.RoomPortMax = cfg.RoomPortMin + 999
	}
	cfg.StateDir = e.str("STATE_DIR", fmt.Sprintf("%s/chatserver-%d", os.TempDir(), cfg.Port))
	if e.err != nil {
		return e.err
	}
	if cfg.Key == "" || cfg.AdminKey == "" {
		return errors.New("KEY and ADMIN_KEY must be set")
	}
	if cfg.Key == cfg.AdminKey {
		return errors.New("KEY and ADMIN_KEY must differ")
	}
	// Rooms read ENTITLEMENT_* from the environment they are given; a
	// mistake (ENTITLEMENT_URL without ENTITLEMENT_SECRET, say) stops the
	// host here rather than every paid room.
	if _, err := entitle.ConfigFromEnv(os.Getenv); err != nil {
		return err
	}
	if err := roomproc.CheckEnv(os.Getenv); err != nil {
		return err
	}
	if cfg.WebhookAllowPrivate {
		log.Warn("WEBHOOK_ALLOW_PRIVATE=1: rooms' webhook URLs may reach this host and its private network; for development only")
	}
	if os.Getenv("TOKEN_SECRET") == "" {
		// Rooms need a secret to check join tokens; without one shared with
		// the control API no issued token verifies, but the host still runs.
		var b [32]byte
		rand.Read(b[:])
		cfg.RoomEnv = append(cfg.RoomEnv, "TOKEN_SECRET="+hex.EncodeToString(b[:]))
		log.Warn("TOKEN_SECRET is not set: using a random one, so no token of the control API verifies")
	}

	hcfg, err := hostinfo.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	if hcfg.PublicHost == "" {
		hcfg.PublicHost = "127.0.0.1"
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	info, err := hostinfo.Discover(ctx, hcfg)
	if err != nil {
		return err
	}
	cfg.HostID, cfg.PublicHost, cfg.Region, cfg.Zone = info.ID, info.PublicHost, info.Region, info.Zone

	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		st, err := mongo.Open(ctx, mongo.Config{URI: uri, Database: os.Getenv("MONGODB_DATABASE"), Timeout: cfg.StoreTimeout})
		if err != nil {
			return err
		}
		defer st.Close(context.Background())
		cfg.Store = st
	}

	apiLn, adminLn, err := listeners(cfg)
	if err != nil {
		return err
	}
	cfg.APIListener, cfg.AdminListener = apiLn, adminLn
	// Duplicates that outlive the servers' shutdown, for an in-place restart.
	apiFile, err := apiLn.(*net.TCPListener).File()
	if err != nil {
		return fmt.Errorf("api listener: %w", err)
	}
	adminFile, err := adminLn.(*net.TCPListener).File()
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}

	var reg *lbclient.Registrar
	var m *master.Master
	if lbs := list(os.Getenv("LOADBALANCERS")); len(lbs) > 0 {
		reg, err = lbclient.NewRegistrar(lbclient.RegistrarConfig{
			URLs: lbs, Key: os.Getenv("LOADBALANCER_KEY"), CAFile: os.Getenv("LOADBALANCER_CA_FILE"),
			Every:  e.dur("HEARTBEAT_EVERY", 0),
			Report: func() chatfleet.Host { return m.Host() },
			Log:    log,
		})
		if err != nil {
			return fmt.Errorf("LOADBALANCERS: %w", err)
		}
		cfg.Notify = reg.Nudge
	}
	if e.err != nil {
		return e.err
	}
	m, err = master.New(cfg)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			m.RequestRestart()
		}
	}()
	regCtx, stopReg := context.WithCancel(context.Background())
	defer stopReg()
	regDone := make(chan struct{})
	if reg != nil {
		go func() { reg.Run(regCtx); close(regDone) }()
	} else {
		close(regDone)
	}
	err = m.Run(ctx)
	if errors.Is(err, master.ErrRestart) {
		return reexec(log, apiFile, adminFile)
	}
	stopReg()
	<-regDone
	return err
}

// listeners binds PORT and ADMIN_PORT, or takes them over from the previous
// image of this process after an in-place restart.
func listeners(cfg master.Config) (net.Listener, net.Listener, error) {
	if fds := os.Getenv(listenFDsEnv); fds != "" {
		os.Unsetenv(listenFDsEnv)
		var api, admin int
		if _, err := fmt.Sscanf(fds, "%d,%d", &api, &admin); err == nil {
			a, err1 := net.FileListener(os.NewFile(uintptr(api), "api"))
			b, err2 := net.FileListener(os.NewFile(uintptr(admin), "admin"))
			if err1 == nil && err2 == nil {
				return a, b, nil
			}
		}
	}
	api, err := net.Listen("tcp", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, nil, fmt.Errorf("listen on PORT %d: %w", cfg.Port, err)
	}
	admin, err := net.Listen("tcp", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.AdminPort)))
	if err != nil {
		api.Close()
		return nil, nil, fmt.Errorf("listen on ADMIN_PORT %d: %w", cfg.AdminPort, err)
	}
	return api, admin, nil
}

// reexec replaces this process with the binary now on disk (an upgrade), same
// PID, passing the listeners on; the rooms keep running and are re-adopted.
func reexec(log *slog.Logger, files ...*os.File) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	self = strings.TrimSuffix(self, " (deleted)")
	var fds []string
	for _, f := range files {
		fd := f.Fd()
		if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFD, 0); errno != 0 {
			return fmt.Errorf("restart: keep listener open: %v", errno)
		}
		fds = append(fds, strconv.Itoa(int(fd)))
	}
	env := append(os.Environ(), listenFDsEnv+"="+strings.Join(fds, ","))
	log.Info("restarting in place", "binary", self)
	return syscall.Exec(self, os.Args, env)
}
