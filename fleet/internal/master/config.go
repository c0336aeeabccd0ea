package master

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/chatfleet/chatfleet/fleet/internal/bus"
	"github.com/chatfleet/chatfleet/fleet/internal/entitle"
	"github.com/chatfleet/chatfleet/fleet/internal/hooks"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/fleet/internal/roomproc"
	"github.com/chatfleet/chatfleet/internal/envconf"
)

// ConfigFromEnv reads the host daemon's configuration through getenv
// (os.Getenv in production; docs/operations.md lists the variables) and
// checks it before anything starts: a bad value, KEY or ADMIN_KEY missing or
// equal, or a room setting the rooms would refuse (ENTITLEMENT_*, the room
// limits: rooms read them from the environment they inherit) is an error
// naming the variable.
//
// Settings left unset stay zero for setDefaults, except the few whose
// default belongs to the environment, not to Config (see below). The caller
// still sets the host's identity (hostinfo), the store, the listeners,
// Notify and Log.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	r := envconf.New(getenv)
	c := Config{
		// Config's zero port means "any free port" (tests); a host's
		// ports are 80 and 8090 unless told otherwise.
		Port:            r.Int("PORT", 80),
		AdminPort:       r.Int("ADMIN_PORT", 8090),
		BindAddr:        r.Str("BIND_ADDR", ""),
		Key:             r.Str("KEY", ""),
		AdminKey:        r.Str("ADMIN_KEY", ""),
		RoomPortMin:     r.Int("ROOM_PORT_MIN", 0),
		RoomPortMax:     r.Int("ROOM_PORT_MAX", 0),
		RoomBind:        r.Str("ROOM_BIND", ""),
		MaxRooms:        r.Int("MAX_ROOMS", 0),
		MaxConns:        r.Int("MAX_CONNS", 0),
		APIURL:          r.Str("API_URL", ""),
		AdminURL:        r.Str("ADMIN_URL", ""),
		RoomURL:         r.Str("ROOM_URL", ""),
		CacheFile:       r.Str("CACHE_FILE", ""),
		CacheEvery:      r.Dur("CACHE_REFRESH", 0),
		StoreTimeout:    r.Dur("STORE_TIMEOUT", 0),
		SyncEvery:       r.Dur("SYNC_EVERY", 0),
		StatsEvery:      r.Dur("STATS_EVERY", 0),
		StaleAfter:      r.Dur("STALE_AFTER", 0),
		CloseStaleAfter: r.Dur("CLOSE_STALE_AFTER", 0),
		DrainWindow:     r.Dur("DRAIN_WINDOW", 0),
		StopDeadline:    r.Dur("STOP_DEADLINE", 0),
		ReadyTimeout:    r.Dur("ROOM_READY_TIMEOUT", 0),
		// Config's zero means no spares (tests want none); a host keeps
		// two ready unless told otherwise.
		Spares:         r.Int("ROOM_SPARES", 2),
		OrphanGrace:    r.Dur("ORPHAN_GRACE", 0),
		EventRetention: r.Dur("EVENT_RETENTION", 0),
		Webhooks: hooks.Config{
			URLs:    r.List("WEBHOOK_URLS"),
			Secret:  r.Str("WEBHOOK_SECRET", ""),
			Queue:   r.Int("WEBHOOK_QUEUE", 0),
			Backoff: r.Dur("WEBHOOK_BACKOFF", 0),
			// Rooms' own webhookUrls may reach private addresses: development only.
			AllowPrivate: r.Flag("WEBHOOK_ALLOW_PRIVATE"),
		},
		MaxFleetBans:   r.Int("MAX_FLEET_BANS", 0),
		MaxRoomBans:    r.Int("MAX_ROOM_BANS", 0),
		MaxPendingBans: r.Int("MAX_PENDING_BANS", 0),
	}
	// One scheduler thread per room process: rooms are many per host, and a
	// room on one thread spends less CPU per delivery (docs/performance.md).
	c.RoomEnv = []string{"GOMAXPROCS=" + r.Str("ROOM_GOMAXPROCS", "1")}
	// Big rooms may take more cores (cores.go), one more per BIG_ROOM_CONNS
	// connections; ROOM_CORES bounds them all together: by default half of
	// the machine's cores, the rest left to the many small rooms and the
	// master. On the 2-core benchmark machine a second core took a
	// 10,000-viewer room's p99 at 10 msg/s from 200-350 ms to 89-102 ms, and
	// at 20 msg/s from 239-330 to 177-268 ms, for ~20 % more CPU per
	// delivery at 20 msg/s (docs/performance.md).
	c.RoomCores = r.IntIn("ROOM_CORES", runtime.NumCPU()/2, 0, 1024)
	c.BigRoomConns = r.IntIn("BIG_ROOM_CONNS", 4000, 100, 1_000_000)
	c.RoomConn = roomConnFromEnv(r)
	// The state is per port, so that hosts on one machine (the local
	// stack, tests) keep apart; StateDir has no default in Config.
	c.StateDir = r.Str("STATE_DIR", fmt.Sprintf("%s/chatserver-%d", os.TempDir(), c.Port))
	if err := r.Err(); err != nil {
		return Config{}, err
	}
	nats, err := bus.ConfigFromEnv(getenv)
	if err != nil {
		return Config{}, err
	}
	c.NATS = nats
	if c.Key == "" || c.AdminKey == "" {
		return Config{}, errors.New("KEY and ADMIN_KEY must be set")
	}
	if c.Key == c.AdminKey {
		return Config{}, errors.New("KEY and ADMIN_KEY must differ")
	}
	// Rooms read ENTITLEMENT_* and their limits from the environment they
	// are given; a mistake (ENTITLEMENT_URL without ENTITLEMENT_SECRET,
	// say) stops the host here rather than every room.
	if _, err := entitle.ConfigFromEnv(getenv); err != nil {
		return Config{}, err
	}
	if err := roomproc.CheckEnv(getenv); err != nil {
		return Config{}, err
	}
	if r.Str("TOKEN_SECRET", "") == "" {
		// Rooms need a secret to check join tokens; without one shared with
		// the control API no issued token verifies, but the host still runs
		// (Warnings says so).
		var b [32]byte
		rand.Read(b[:])
		c.RoomEnv = append(c.RoomEnv, madeUpSecret+hex.EncodeToString(b[:]))
	}
	return c, nil
}

// madeUpSecret starts the RoomEnv entry of the token secret ConfigFromEnv
// makes up when TOKEN_SECRET is unset; the rooms otherwise inherit the
// variable from the master's environment.
const madeUpSecret = "TOKEN_SECRET="

// Warnings returns what an operator of a host configured with c must not
// overlook, one log message each: settings that make the host less safe or
// less useful, on purpose or not.
func (c Config) Warnings() []string {
	var out []string
	if c.Webhooks.AllowPrivate {
		out = append(out, "WEBHOOK_ALLOW_PRIVATE=1: rooms' webhook URLs may reach this host and its private network; for development only")
	}
	for _, kv := range c.RoomEnv {
		if strings.HasPrefix(kv, madeUpSecret) {
			out = append(out, "TOKEN_SECRET is not set: using a random one, so no token of the control API verifies")
		}
	}
	return out
}

// roomConnFromEnv reads the connection settings every room gets; unset ones are
// left to the room's defaults (package room).
func roomConnFromEnv(r *envconf.Reader) ipc.ConnSettings {
	var c ipc.ConnSettings
	if c.PongWait = r.Dur("PONG_WAIT", 0); c.PongWait != 0 && (c.PongWait < 2*time.Second || c.PongWait > 10*time.Minute) {
		r.Fail("PONG_WAIT=%v: want 2s to 10m", c.PongWait)
	}
	if c.WriteWait = r.Dur("WRITE_WAIT", 0); c.WriteWait != 0 && (c.WriteWait < time.Second || c.WriteWait > 5*time.Minute) {
		r.Fail("WRITE_WAIT=%v: want 1s to 5m", c.WriteWait)
	}
	if c.SendQueueBytes = r.Int("SEND_QUEUE_BYTES", 0); c.SendQueueBytes != 0 && (c.SendQueueBytes < 16<<10 || c.SendQueueBytes > 64<<20) {
		r.Fail("SEND_QUEUE_BYTES=%d: want 16384 to 67108864", c.SendQueueBytes)
	}
	return c
}
