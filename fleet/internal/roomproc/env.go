package roomproc

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/chatfleet/chatfleet/internal/envconf"
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

// readEnv reads the room limits; literal names, one call each, so that
// infra's tests find the variables read.
func readEnv(getenv func(string) string) (envSettings, error) {
	r := envconf.New(getenv)
	s := envSettings{
		idle:      r.DurIn("ROOM_IDLE_TIMEOUT", DefaultIdleTimeout, time.Second, time.Hour),
		grace:     r.DurIn("ROOM_PRODUCER_GRACE", DefaultProducerGrace, time.Second, 10*time.Minute),
		perIP:     r.IntIn("MAX_CONNS_PER_IP", DefaultMaxConnsPerIP, 0, 1_000_000),
		roomConns: r.IntIn("MAX_ROOM_CONNS", DefaultMaxRoomConns, 1, 1_000_000),
		modRate:   DefaultModRate,
		modBurst:  r.IntIn("ROOM_MOD_BURST", DefaultModBurst, 1, 10_000),
		maxBans:   r.IntIn("MAX_ROOM_BANS", DefaultMaxRoomBans, 1, 1_000_000),
	}
	if s.perIP == 0 {
		s.perIP = -1 // 0 turns the cap off
	}
	if v := r.Str("TRUSTED_PROXIES", ""); v != "" {
		var err error
		if s.proxies, err = netguard.ParsePrefixes(v); err != nil {
			r.Fail("TRUSTED_PROXIES: %v", err)
		}
	}
	if v := r.Str("ROOM_MOD_RATE", ""); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= 0.01 && f <= 1000) {
			r.Fail("ROOM_MOD_RATE=%q: want messages per second from 0.01 to 1000", v)
		} else {
			s.modRate = f
		}
	}
	return s, r.Err()
}
