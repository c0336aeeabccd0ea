// Package chatfleet holds the domain of the chatfleet live video chat platform:
// rooms, hosts, bans, the shared cache the fleet pushes to its rooms, the audit
// log, error codes and the store interfaces the adapters implement.
//
// It imports the standard library only; every other package of the project
// depends on it, never the other way round.
package chatfleet

import (
	"regexp"
	"time"
)

// Version is the release (CHANGELOG.md); `make` builds set it from the git tag with
// -ldflags "-X github.com/chatfleet/chatfleet.Version=...".
var Version = "1.4.0"

// MaxRoomNameLen is the longest room name accepted.
const MaxRoomNameLen = 64

var roomNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// ValidateRoomName reports whether name is a valid room name: 1 to 64 ASCII
// letters, digits, '-' or '_', starting with a letter or digit. It returns an
// EINVALID error saying what is wrong otherwise.
func ValidateRoomName(name string) error {
	switch {
	case name == "":
		return Errorf(EINVALID, "room name is empty")
	case len(name) > MaxRoomNameLen:
		return Errorf(EINVALID, "room name is longer than %d characters", MaxRoomNameLen)
	case !roomNameRE.MatchString(name):
		return Errorf(EINVALID, "room name must be ASCII letters, digits, '-' or '_', starting with a letter or digit")
	}
	return nil
}

// RoomStatus is where a room is in its life.
type RoomStatus string

// Room statuses, as stored and listed.
const (
	RoomStarting RoomStatus = "starting" // created, process not yet ready
	RoomLive     RoomStatus = "live"     // serving, producer connected
	RoomOffline  RoomStatus = "offline"  // serving, no producer
	RoomClosed   RoomStatus = "closed"   // ended; the name may be used again
	RoomFailed   RoomStatus = "failed"   // crashed too often; the name may be used again
	RoomStale    RoomStatus = "stale"    // its host stopped reporting
)

// Open reports whether a room in status s holds its name.
func (s RoomStatus) Open() bool {
	return s != RoomClosed && s != RoomFailed && s != ""
}

// Room is one chat room as the store and the listing know it.
type Room struct {
	Name         string     `json:"name" bson:"name"`
	Title        string     `json:"title,omitempty" bson:"title,omitempty"`         // given at create, for listings
	OwnerName    string     `json:"ownerName,omitempty" bson:"ownerName,omitempty"` // the producer's display name given at create, for listings
	HostID       string     `json:"hostId" bson:"hostId"`
	HostAddr     string     `json:"hostAddr" bson:"hostAddr"` // host name or IP clients use for the room port
	Port         int        `json:"port" bson:"port"`
	Status       RoomStatus `json:"status" bson:"status"`
	ProducerLive bool       `json:"producerLive" bson:"producerLive"`
	HLSURL       string     `json:"hlsUrl,omitempty" bson:"hlsUrl,omitempty"`
	Viewers      int        `json:"viewers" bson:"viewers"`
	Paid         bool       `json:"paid,omitempty" bson:"paid,omitempty"`
	Instance     string     `json:"instance,omitempty" bson:"instance,omitempty"` // this life of the name: join tokens carry it
	OwnerID      string     `json:"ownerId,omitempty" bson:"ownerId,omitempty"`   // the producer's user id
	// Edges are the room's processes on other hosts that serve viewers
	// (docs/scaleout.md); the room's own host, port and URLs are its
	// origin's. At most MaxRoomEdges.
	Edges     []RoomEdge `json:"edges,omitempty" bson:"edges,omitempty"`
	CreatedAt time.Time  `json:"createdAt" bson:"createdAt"`
	UpdatedAt time.Time  `json:"updatedAt" bson:"updatedAt"`
}

// MaxRoomEdges bounds the edges of one room.
const MaxRoomEdges = 16

// RoomEdge is where one edge of a room runs, and its URLs as the control
// API gives them to viewers.
type RoomEdge struct {
	HostID   string `json:"hostId" bson:"hostId"`
	HostAddr string `json:"hostAddr" bson:"hostAddr"`
	Port     int    `json:"port" bson:"port"`
	WSURL    string `json:"wsUrl,omitempty" bson:"wsUrl,omitempty"`
	SSEURL   string `json:"sseUrl,omitempty" bson:"sseUrl,omitempty"`
}

// Role is what a room participant may do.
type Role string

// Roles carried in join tokens.
const (
	RoleProducer  Role = "producer"
	RoleModerator Role = "moderator"
	RoleViewer    Role = "viewer"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	return r == RoleProducer || r == RoleModerator || r == RoleViewer
}

// CanModerate reports whether r may delete, mute, kick, ban and set slow mode.
func (r Role) CanModerate() bool { return r == RoleProducer || r == RoleModerator }

// Ban keeps a user out of one room (Room set) or of the whole fleet (Room empty).
type Ban struct {
	ID        string    `json:"id" bson:"_id"`
	UserID    string    `json:"userId" bson:"userId"`
	Room      string    `json:"room,omitempty" bson:"room,omitempty"`
	By        string    `json:"by" bson:"by"`
	Reason    string    `json:"reason,omitempty" bson:"reason,omitempty"`
	Until     time.Time `json:"until,omitzero" bson:"until,omitempty"` // zero: forever
	CreatedAt time.Time `json:"createdAt" bson:"createdAt"`
}

// Active reports whether the ban holds at time now.
func (b Ban) Active(now time.Time) bool { return b.Until.IsZero() || now.Before(b.Until) }

// Applies reports whether the ban keeps user out of room at time now.
func (b Ban) Applies(user, room string, now time.Time) bool {
	return b.UserID == user && (b.Room == "" || b.Room == room) && b.Active(now)
}

// RoomSettings are the defaults a room starts with; the store holds the
// fleet's defaults and the host daemon pushes them to its rooms.
type RoomSettings struct {
	HistorySize     int  `json:"historySize" bson:"historySize"`         // messages kept for join and recovery
	MaxMessageLen   int  `json:"maxMessageLen" bson:"maxMessageLen"`     // characters in one chat message
	SlowModeSeconds int  `json:"slowModeSeconds" bson:"slowModeSeconds"` // 0: off
	AllowAnonymous  bool `json:"allowAnonymous" bson:"allowAnonymous"`   // viewers without a token
	IdleTimeoutSec  int  `json:"idleTimeoutSec" bson:"idleTimeoutSec"`   // close a room with no producer after this
}

// DefaultRoomSettings are used where the store holds none.
var DefaultRoomSettings = RoomSettings{
	HistorySize:    100,
	MaxMessageLen:  500,
	IdleTimeoutSec: 300,
}

// Cache is the shared data a host daemon loads from the store, refreshes and
// pushes to every room it runs. Rooms never query the store for it.
type Cache struct {
	Version      int64        `json:"version"` // increases with every change
	Bans         []Ban        `json:"bans"`
	BlockedWords []string     `json:"blockedWords"`
	Defaults     RoomSettings `json:"defaults"`
}

// Banned reports whether user may not enter room at time now.
func (c *Cache) Banned(user, room string, now time.Time) (Ban, bool) {
	for _, b := range c.Bans {
		if b.Applies(user, room, now) {
			return b, true
		}
	}
	return Ban{}, false
}

// AuditEntry records one admin or moderation action.
type AuditEntry struct {
	ID     string    `json:"id" bson:"_id"`
	At     time.Time `json:"at" bson:"at"`
	Actor  string    `json:"actor" bson:"actor"`   // user id, "admin" or a host id
	Action string    `json:"action" bson:"action"` // e.g. "room.close", "ban", "host.drain"
	Target string    `json:"target" bson:"target"` // room name, user id or host id
	Detail string    `json:"detail,omitempty" bson:"detail,omitempty"`
}

// HostState is whether a host takes new rooms.
type HostState string

// Host states, as reported in heartbeats and listed by the load balancer.
const (
	HostAccepting HostState = "accepting"
	HostDraining  HostState = "draining"
	HostDown      HostState = "down" // set by the load balancer when heartbeats stop
)

// Capacity is what a host can carry.
type Capacity struct {
	MaxRooms int `json:"maxRooms"`
	MaxConns int `json:"maxConns"`
}

// Load is what a host carries now.
type Load struct {
	Rooms      int     `json:"rooms"`
	Conns      int     `json:"conns"`
	MsgsPerSec float64 `json:"msgsPerSec"`
	CPU        float64 `json:"cpu"` // fraction of one core used by the host's processes
	MemBytes   int64   `json:"memBytes"`
}

// PickRequest says what host a new room wants: the optional body of a load
// balancer's POST /api/v1/pick (lbclient.Picker sends it, the load-balancer
// service decodes it).
type PickRequest struct {
	Region  string   `json:"region,omitempty"`  // prefer hosts of this region, fall back to any
	Exclude []string `json:"exclude,omitempty"` // host ids not to pick, e.g. one that just failed to create the room
}

// Host is one fleet host as it reports itself in heartbeats.
type Host struct {
	ID         string    `json:"id"`
	APIURL     string    `json:"apiUrl"`             // the chatserver API, e.g. http://10.0.0.5:80
	AdminURL   string    `json:"adminUrl,omitempty"` // the chatserver admin API, reachable from the control API only
	RoomHost   string    `json:"roomHost"`           // host name clients use for room ports
	RoomURL    string    `json:"roomUrl,omitempty"`  // proxy scheme, e.g. wss://h.example.com/rooms/{port}
	PortMin    int       `json:"portMin"`
	PortMax    int       `json:"portMax"`
	Region     string    `json:"region,omitempty"`
	Zone       string    `json:"zone,omitempty"`
	Version    string    `json:"version"`
	Capacity   Capacity  `json:"capacity"`
	Load       Load      `json:"load"`
	State      HostState `json:"state"`
	LastSeen   time.Time `json:"lastSeen,omitzero"`
	ReportedAt time.Time `json:"reportedAt,omitzero"`
}

// RoomStats is what a room process reports to its master every few seconds.
type RoomStats struct {
	Conns        int     `json:"conns"`
	Viewers      int     `json:"viewers"` // distinct users
	ProducerLive bool    `json:"producerLive"`
	HLSURL       string  `json:"hlsUrl,omitempty"`
	Seq          int64   `json:"seq"`
	Messages     int64   `json:"messages"`   // chat messages accepted since start
	Deliveries   int64   `json:"deliveries"` // frames queued to clients since start
	SlowDrops    int64   `json:"slowDrops"`  // clients dropped for not keeping up
	MsgsPerSec   float64 `json:"msgsPerSec"` // over the last report interval
	CPUSeconds   float64 `json:"cpuSeconds"` // user+system since start
	RSSBytes     int64   `json:"rssBytes"`
	Procs        int     `json:"procs,omitempty"` // the cores (GOMAXPROCS) the room process uses now
}
