// Package hostapi is the contract of a fleet host's HTTP API, served by the
// chatserver master and called by the control API, the benchmarks and the
// tests: its paths, its request and answer types and a client. Two ports
// serve it: the API port, with the fleet key (KEY), creates, lists and closes
// rooms; the admin port, with the admin key (ADMIN_KEY), does that and
// everything an operator does to a host. Answers are in the data envelope
// ({"data": …}), errors in the error envelope ({"error": {"code", …}}).
package hostapi

import (
	"time"

	"github.com/chatfleet/chatfleet"
)

// Paths of the host API. The room paths take a room name (path-escaped).
const (
	InfoPath         = "/api/v1/"              // GET: AppInfo (no key on the API port)
	RoomPath         = "/api/v1/room/"         // + name, API port: POST creates, GET, DELETE closes
	RoomsPath        = "/api/v1/rooms"         // GET, both ports: RoomList
	AdminRoomPath    = "/api/v1/rooms/"        // + name, admin port: GET, DELETE closes
	MessagesPath     = "/api/v1/messages"      // POST, admin: GlobalRequest, answers RoomCount
	BansPath         = "/api/v1/bans"          // POST, admin: BanChanges, answers RoomCount
	CacheRefreshPath = "/api/v1/cache/refresh" // POST, admin: answers RoomCount
	StatsPath        = "/api/v1/stats"         // GET, admin: HostStats
)

// Action is what an operator asks of a whole host, through the admin port.
type Action string

// The host actions: drain and resume answer the new state (200); restart
// and shutdown answer a message (202) and happen after the answer.
const (
	Drain    Action = "drain"
	Resume   Action = "resume"
	Restart  Action = "restart"
	Shutdown Action = "shutdown"
)

// Path returns the admin path of a: POST /api/v1/<action>.
func (a Action) Path() string { return "/api/v1/" + string(a) }

// AppInfo answers GET /api/v1/: which server this is.
type AppInfo struct {
	App     string `json:"app"`
	Version string `json:"version"`
}

// RoomOptions are chosen when a room is created and kept across restarts.
// The host checks them and refuses a create with bad ones (EINVALID); the
// master keeps them as they are (its RoomOptions is this type, with methods).
type RoomOptions struct {
	// Instance is this life of the room's name: the room refuses join
	// tokens of another. OwnerID is the producer's user id.
	Instance string `json:"instance,omitempty"`
	OwnerID  string `json:"ownerId,omitempty"`
	// WebhookSecret signs the deliveries to WebhookURLs (16 to 256 bytes);
	// the host makes one when WebhookURLs come without it and answers it
	// once, in Created.
	WebhookSecret  string `json:"webhookSecret,omitempty"`
	AllowAnonymous bool   `json:"allowAnonymous,omitempty"`
	HistorySize    int    `json:"historySize,omitempty"`
	Paid           bool   `json:"paid,omitempty"`
	// WebhookURLs get the room's events (docs/events.md); webhook.ValidateURLs
	// says which are taken.
	WebhookURLs []string `json:"webhookUrls,omitempty"`
	// HLSURL, Title and OwnerName are kept by the host, whose sync writes them to the
	// store (the hlsUrl until the producer announces its own).
	HLSURL string `json:"hlsUrl,omitempty"`
	Title  string `json:"title,omitempty"`
	// OwnerName is the producer's display name, kept for listings like Title.
	OwnerName string `json:"ownerName,omitempty"`
	// Role is the room process's part in a room spread over hosts
	// (docs/scaleout.md): "" a plain room, RoleOrigin or RoleEdge. A host
	// without NATS_URL refuses the last two.
	Role string `json:"role,omitempty"`
}

// The roles of a room process (RoomOptions.Role) besides the plain room's "".
const (
	// RoleOrigin sequences the room and publishes its events to its edges.
	RoleOrigin = "origin"
	// RoleEdge serves viewers of a room whose origin runs on another host:
	// it sequences nothing, keeps no event log and is not the room's record.
	RoleEdge = "edge"
)

// ValidRole reports whether role is "", RoleOrigin or RoleEdge.
func ValidRole(role string) bool { return role == "" || role == RoleOrigin || role == RoleEdge }

// CreateRequest is the body of POST RoomPath+name.
type CreateRequest struct {
	Options RoomOptions `json:"options"`
}

// Created answers a create (201). A room of that name that runs already is
// a 409 whose error carries the room's host and port.
type Created struct {
	Port    int    `json:"port"`
	Message string `json:"message"`
	// WebhookSecret is the secret the host made for the room's webhookUrls
	// (none was given): the only time it is told.
	WebhookSecret string `json:"webhookSecret,omitempty"`
}

// RoomInfo is a room as a host lists it.
type RoomInfo struct {
	Name      string               `json:"name"`
	Port      int                  `json:"port"`
	PID       int                  `json:"pid"`
	Status    chatfleet.RoomStatus `json:"status"`
	Restarts  int                  `json:"restarts"`
	Role      string               `json:"role,omitempty"` // RoomOptions.Role: "" (plain), RoleOrigin or RoleEdge
	CreatedAt time.Time            `json:"createdAt"`
	Stats     chatfleet.RoomStats  `json:"stats"`
}

// RoomList answers GET RoomsPath.
type RoomList struct {
	Rooms []RoomInfo `json:"rooms"`
}

// CloseRequest is the optional body of DELETE RoomPath+name and
// AdminRoomPath+name: the reason the room's clients are told (at most 200
// bytes; the host has a default).
type CloseRequest struct {
	Reason string `json:"reason"`
}

// Message answers a close, a restart and a shutdown.
type Message struct {
	Message string `json:"message"`
}

// GlobalRequest is the body of POST MessagesPath: 1 to 1000 bytes of text
// for every client of every room.
type GlobalRequest struct {
	Text string `json:"text"`
}

// BanChanges is the body of POST BansPath: bans the control API wrote to
// the store, for the host's rooms to apply at once. Fleet bans (Room "")
// reach every room, a room's bans that room.
type BanChanges struct {
	Add    []chatfleet.Ban `json:"add,omitempty"`
	Remove []chatfleet.Ban `json:"remove,omitempty"`
}

// RoomCount answers the calls that reach every room of a host (a global
// message, bans, a cache refresh): how many rooms were told.
type RoomCount struct {
	Rooms int `json:"rooms"`
}

// ActionAnswer answers an Action: State after a drain or a resume, Message
// after a restart or a shutdown.
type ActionAnswer struct {
	State   chatfleet.HostState `json:"state,omitempty"`
	Message string              `json:"message,omitempty"`
}

// HostStats answers GET StatsPath: the host and its rooms, summed.
type HostStats struct {
	HostID     string  `json:"hostId"`
	State      string  `json:"state"`
	Rooms      int     `json:"rooms"`
	Conns      int     `json:"conns"`
	Viewers    int     `json:"viewers"`
	MsgsPerSec float64 `json:"msgsPerSec"`
	CPU        float64 `json:"cpu"`      // cores used by the master and its rooms
	MemBytes   int64   `json:"memBytes"` // RSS of the master and its rooms
	SlowDrops  int64   `json:"slowDrops"`
	UptimeSec  float64 `json:"uptimeSec"`
	Version    string  `json:"version"`
}
