package roomproc

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/chatfleet/chatfleet/internal/netguard"
)

// envSettings are the limits a room process reads from its environment
// (the master passes these names on to rooms); unset ones take the defaults.
type envSettings struct {
	idle      time.Duration  // ROOM_IDLE_TIMEOUT: idle keep-alive connections are closed after it
	perIP     int            // MAX_CONNS_PER_IP: connections from one client address; -1: no cap (set 0)
	roomConns int            // MAX_ROOM_CONNS: connections in the room
	proxies   []netip.Prefix // TRUSTED_PROXIES: peers whose X-Forwarded-For is believed
	modRate   float64        // ROOM_MOD_RATE: moderation messages per second per producer or moderator
	modBurst  int            // ROOM_MOD_BURST
	maxBans   int            // MAX_ROOM_BANS: bans of the room before a moderator's ban is refused
	grace     time.Duration  // ROOM_PRODUCER_GRACE: a live stream outlasts its producer's connections this long
}

// Defaults of the room limits read from the environment.
const (
	DefaultIdleTimeout   = 30 * time.Second
	DefaultMaxConnsPerIP = 1000
	DefaultMaxRoomConns  = 20000
	DefaultModRate       = 10.0
	DefaultModBurst      = 50
	DefaultMaxRoomBans   = 10000
	DefaultProducerGrace = 30 * time.Second
)

// CheckEnv reports the first bad room setting in the environment getenv
// reads, so that chatserver refuses it at start instead of every room
// failing later.
func CheckEnv(getenv func(string) string) error {
	_, err := readEnv(getenv)
	return err
}

func readEnv(getenv func(string) string) (envSettings, error) {
	s := envSettings{idle: DefaultIdleTimeout, perIP: DefaultMaxConnsPerIP, roomConns: DefaultMaxRoomConns,
		modRate: DefaultModRate, modBurst: DefaultModBurst, maxBans: DefaultMaxRoomBans, grace: DefaultProducerGrace}
	if v := getenv("ROOM_IDLE_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > time.Hour {
			return s, fmt.Errorf("ROOM_IDLE_TIMEOUT=%q: want a duration from 1s to 1h", v)
		}
		s.idle = d
	}
	if v := getenv("ROOM_PRODUCER_GRACE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 10*time.Minute {
			return s, fmt.Errorf("ROOM_PRODUCER_GRACE=%q: want a duration from 1s to 10m", v)
		}
		s.grace = d
	}
	var err error
	if s.perIP, err = envInt("MAX_CONNS_PER_IP", getenv("MAX_CONNS_PER_IP"), s.perIP, 0, 1_000_000, "0 turns the cap off"); err != nil {
		return s, err
	}
	if s.perIP == 0 {
		s.perIP = -1
	}
	if s.roomConns, err = envInt("MAX_ROOM_CONNS", getenv("MAX_ROOM_CONNS"), s.roomConns, 1, 1_000_000, ""); err != nil {
		return s, err
	}
	if v := getenv("TRUSTED_PROXIES"); v != "" {
		if s.proxies, err = netguard.ParsePrefixes(v); err != nil {
			return s, fmt.Errorf("TRUSTED_PROXIES: %v", err)
		}
	}
	if v := getenv("ROOM_MOD_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= 0.01 && f <= 1000) {
			return s, fmt.Errorf("ROOM_MOD_RATE=%q: want messages per second from 0.01 to 1000", v)
		}
		s.modRate = f
	}
	if s.modBurst, err = envInt("ROOM_MOD_BURST", getenv("ROOM_MOD_BURST"), s.modBurst, 1, 10_000, ""); err != nil {
		return s, err
	}
	if s.maxBans, err = envInt("MAX_ROOM_BANS", getenv("MAX_ROOM_BANS"), s.maxBans, 1, 1_000_000, ""); err != nil {
		return s, err
	}
	return s, nil
}

// envInt parses v, the value of the variable name: def if v is empty.
func envInt(name, v string, def, lo, hi int, note string) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		if note != "" {
			note = "; " + note
		}
		return def, fmt.Errorf("%s=%q: want a whole number from %d to %d%s", name, v, lo, hi, note)
	}
	return n, nil
}
