// Package bus carries one room across hosts on NATS JetStream: the origin (the
// room process that sequences) publishes every sequenced event, its edges
// (room processes of the same room on other hosts) consume them in order,
// relay their clients' messages to the origin by request/reply, and report
// their audience. docs/scaleout.md is the design; this file is the contract
// both sides speak, and the configuration every fleet process reads.
//
// A host without NATS_URL never imports a connection: its rooms run alone,
// exactly as without this package.
package bus

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/chatfleet/chatfleet/internal/envconf"
	"github.com/chatfleet/chatfleet/protocol"
)

// Config is how a process reaches NATS. The zero Config (no URL) is "no
// NATS": a host without it runs no origins or edges.
type Config struct {
	URL       string // NATS_URL: one or more nats:// or tls:// URLs, comma-separated
	CredsFile string // NATS_CREDS: a user credentials file (JWT and nkey seed)
	CAFile    string // NATS_CA: PEM roots to verify the servers' TLS certificates (tls:// URLs)
	// StreamMaxAge bounds how long the stream keeps a room's events
	// (NATS_STREAM_MAX_AGE, default 1h); StreamMaxPerRoom how many
	// (NATS_STREAM_MAX_PER_ROOM, default 10,000): a new edge and a viewer's
	// lastSeq recover from within them.
	StreamMaxAge     time.Duration
	StreamMaxPerRoom int
}

// Enabled reports whether a NATS server is configured.
func (c Config) Enabled() bool { return c.URL != "" }

// Defaults of the stream's bounds.
const (
	DefaultStreamMaxAge     = time.Hour
	DefaultStreamMaxPerRoom = 10000
)

// ConfigFromEnv reads the NATS settings; literal names, one call each, so
// that infra's tests find the variables read.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	r := envconf.New(getenv)
	c := Config{
		URL:              r.Str("NATS_URL", ""),
		CredsFile:        r.Str("NATS_CREDS", ""),
		CAFile:           r.Str("NATS_CA", ""),
		StreamMaxAge:     r.DurIn("NATS_STREAM_MAX_AGE", DefaultStreamMaxAge, time.Minute, 30*24*time.Hour),
		StreamMaxPerRoom: r.IntIn("NATS_STREAM_MAX_PER_ROOM", DefaultStreamMaxPerRoom, 100, 10_000_000),
	}
	if c.URL == "" && (c.CredsFile != "" || c.CAFile != "") {
		r.Fail("NATS_CREDS and NATS_CA need NATS_URL")
	}
	return c, r.Err()
}

// Env returns c as the variables ConfigFromEnv reads, for a room process's
// environment.
func (c Config) Env() []string {
	if !c.Enabled() {
		return nil
	}
	env := []string{"NATS_URL=" + c.URL,
		"NATS_STREAM_MAX_AGE=" + c.StreamMaxAge.String(),
		"NATS_STREAM_MAX_PER_ROOM=" + strconv.Itoa(c.StreamMaxPerRoom)}
	if c.CredsFile != "" {
		env = append(env, "NATS_CREDS="+c.CredsFile)
	}
	if c.CAFile != "" {
		env = append(env, "NATS_CA="+c.CAFile)
	}
	return env
}

// The stream and the subjects of a room R (a valid room name is a valid
// subject token: letters, digits, '-', '_').
const (
	// StreamName is the one JetStream stream of every room's events,
	// subjects "chatfleet.room.*.events", file storage, at most
	// StreamMaxPerRoom messages per subject and StreamMaxAge old, old ones
	// discarded, a 2-minute duplicate window (see HeaderMsgID).
	StreamName    = "CHATFLEET_ROOMS"
	StreamSubject = "chatfleet.room.*.events"
)

// EventsSubject: the origin's sequenced events, in the stream. Each message's
// data is the event's frame exactly as the origin's clients get it (a
// protocol.ServerMsg with seq); its headers are HeaderSeq and HeaderMsgID.
func EventsSubject(room string) string { return "chatfleet.room." + room + ".events" }

// RelaySubject: core NATS request/reply, edges to the origin: a Relay
// request, answered with a RelayReply.
func RelaySubject(room string) string { return "chatfleet.room." + room + ".relay" }

// AudienceSubject: core NATS, edges to the origin, every AudienceEvery: an
// EdgeReport.
func AudienceSubject(room string) string { return "chatfleet.room." + room + ".audience" }

// CountSubject: core NATS, the origin to its edges, every AudienceEvery: a
// Count (the room's whole audience; it is also the origin's heartbeat).
func CountSubject(room string) string { return "chatfleet.room." + room + ".count" }

// Headers of an events message.
const (
	HeaderSeq   = "Chatfleet-Seq" // the event's room seq, decimal
	HeaderMsgID = "Nats-Msg-Id"   // "<instance>:<seq>": an event published again (a restarted origin) is stored once
	// JetStream deduplicates ids across the whole stream (every room), so
	// the instance (hostapi.RoomOptions.Instance) must be unique in the
	// fleet; a Publisher given none uses "room-<room>".
)

// AudienceEvery is how often edges report and the origin counts.
const AudienceEvery = time.Second

// Relay is a client message an edge passes to the origin: who sent it (as
// the edge's handshake verified it from the join token) and the message,
// already decoded and checked by the edge (the origin decodes it again).
type Relay struct {
	Edge string             `json:"edge"` // the edge's id (EdgeReport.Edge)
	Who  protocol.User      `json:"who"`
	Msg  protocol.ClientMsg `json:"msg"`
}

// RelayReply is the origin's answer to one Relay: the server message the
// sender gets (an ack with the event's seq, an error, a viewers page...).
type RelayReply struct {
	Msg json.RawMessage `json:"msg"`
}

// EdgeReport is an edge's audience.
type EdgeReport struct {
	Edge    string `json:"edge"`    // "<host id>/<port>": unique in the fleet
	Viewers int    `json:"viewers"` // distinct users connected to the edge
	Conns   int    `json:"conns"`
}

// Count is the room's audience as the origin sums it: its own users plus
// every edge's last report (an edge silent for 3*AudienceEvery no longer
// counts).
type Count struct {
	Viewers int   `json:"viewers"`
	Seq     int64 `json:"seq"`   // the origin's last seq: an edge behind it knows it is
	Edges   int   `json:"edges"` // edges reporting
}

// MaxPayload bounds every message of this package an edge or origin accepts
// (a relayed chat message is at most a few KiB).
const MaxPayload = 64 << 10
