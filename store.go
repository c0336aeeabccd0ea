package chatfleet

import (
	"context"
	"time"
)

// RoomUpdate changes some fields of a stored room; nil fields stay as they are.
type RoomUpdate struct {
	Status       *RoomStatus
	ProducerLive *bool
	HLSURL       *string
	Viewers      *int
	Edges        *[]RoomEdge // at most MaxRoomEdges
}

// RoomSort orders a listing.
type RoomSort string

// Listing orders.
const (
	SortViewers RoomSort = "viewers" // most viewers first, then name
	SortNewest  RoomSort = "newest"  // newest first, then name
)

// RoomFilter selects rooms for a listing page.
type RoomFilter struct {
	OpenOnly bool     // only rooms whose status holds their name (starting, live, offline, stale)
	HostID   string   // only rooms on this host, if set
	Sort     RoomSort // SortNewest if empty
	Limit    int      // page size; 50 if zero, at most 200
	Cursor   string   // opaque, from the previous page; "" for the first
}

// RoomStore keeps the rooms collection, the listing's source of truth.
// Every method honours ctx's deadline and returns EUNAVAILABLE when the store
// cannot be reached.
type RoomStore interface {
	// CreateRoom stores r. A room of that name whose status is open is a
	// conflict (ECONFLICT, with the existing room's host and port); a closed or
	// failed one is replaced. Of two concurrent creates of one name one wins.
	CreateRoom(ctx context.Context, r *Room) error
	// Room returns the room named name, or ENOTFOUND.
	Room(ctx context.Context, name string) (*Room, error)
	// RoomByKey is Room for records keyed by their name, which is every
	// record written since 1.4.0; an older one is ENOTFOUND. One lookup by
	// key, for checks whose answer something else confirms.
	RoomByKey(ctx context.Context, name string) (*Room, error)
	// UpdateRoom applies upd to the room named name and sets UpdatedAt; ENOTFOUND if none.
	UpdateRoom(ctx context.Context, name string, upd RoomUpdate) error
	// ListRooms returns one page of rooms and the cursor of the next page ("" at the end).
	ListRooms(ctx context.Context, f RoomFilter) ([]*Room, string, error)
	// SyncHost makes the stored open rooms of hostID match rooms (the host's
	// truth): missing ones are created or updated, open ones the host no longer
	// has are closed. Every room it writes gets UpdatedAt now; a room whose
	// report changed nothing is written only if its UpdatedAt is before
	// refreshBefore, so that afterwards no open room of the host is older.
	SyncHost(ctx context.Context, hostID string, rooms []*Room, refreshBefore time.Time) error
	// ReapStale marks open rooms not updated since staleBefore as stale, and
	// closes stale rooms not updated since closeBefore. It returns how many
	// rooms it marked and closed.
	ReapStale(ctx context.Context, staleBefore, closeBefore time.Time) (stale, closed int, err error)
}

// BanFilter selects one page of bans, in the order of their IDs.
type BanFilter struct {
	Room  string    // "": the fleet's bans only; a room name: that room's bans only
	Now   time.Time // if set, only bans active at Now
	After string    // paging: only bans whose ID sorts after this; "" from the start
	Limit int       // 100 if zero, at most MaxBanPage
}

// MaxBanPage is the largest page of bans a store returns: enough for the
// fleet's bans in one query.
const MaxBanPage = 1 << 20

// BanStore keeps bans: the fleet's (Room empty) and each room's.
type BanStore interface {
	// AddBan stores b, filling ID and CreatedAt when empty; ECONFLICT if
	// its ID is stored.
	AddBan(ctx context.Context, b *Ban) error
	// AddBans stores bans, skipping those whose ID is stored (a retried
	// batch never duplicates).
	AddBans(ctx context.Context, bans []Ban) error
	// RemoveBan deletes the ban with id; ENOTFOUND if none.
	RemoveBan(ctx context.Context, id string) error
	// RemoveUserBans deletes every ban of userID in room ("": the fleet's
	// bans) and returns what it deleted; ENOTFOUND if there was none.
	RemoveUserBans(ctx context.Context, room, userID string) ([]Ban, error)
	// Bans returns one page of the bans f selects.
	Bans(ctx context.Context, f BanFilter) ([]Ban, error)
	// CountBans counts the bans of room ("": the fleet's) active at now.
	CountBans(ctx context.Context, room string, now time.Time) (int, error)
}

// AllBans reads every ban f selects, up to max (f.After and f.Limit are its
// own), in one query. It returns at most max bans, and whether there were more.
func AllBans(ctx context.Context, s BanStore, f BanFilter, max int) ([]Ban, bool, error) {
	f.After, f.Limit = "", min(max+1, MaxBanPage)
	bans, err := s.Bans(ctx, f)
	if err != nil {
		return nil, false, err
	}
	if len(bans) > max {
		return bans[:max], true, nil
	}
	return bans, false, nil
}

// SettingsStore keeps the blocked-words list and the room setting defaults.
type SettingsStore interface {
	BlockedWords(ctx context.Context) ([]string, error)
	SetBlockedWords(ctx context.Context, words []string) error
	// RoomDefaults returns the stored defaults, or DefaultRoomSettings if none are stored.
	RoomDefaults(ctx context.Context) (RoomSettings, error)
	SetRoomDefaults(ctx context.Context, s RoomSettings) error
}

// AuditFilter selects audit entries, newest first.
type AuditFilter struct {
	Target string    // only entries on this target, if set
	Before time.Time // only entries before this time, if set (paging)
	Limit  int       // 100 if zero, at most 1000
}

// AuditStore keeps the audit log of admin and moderation actions.
type AuditStore interface {
	// Audit appends e, filling ID and At when empty.
	Audit(ctx context.Context, e *AuditEntry) error
	AuditLog(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
}

// Event is one entry of a room's numbered event log: chat messages, presence,
// moderation and lifecycle events, in the order the room sequenced them.
type Event struct {
	Room string    `json:"room" bson:"room"`
	Seq  int64     `json:"seq" bson:"seq"`
	Type string    `json:"type" bson:"type"`
	At   time.Time `json:"at" bson:"at"`
	Data []byte    `json:"data,omitempty" bson:"data,omitempty"` // the event's JSON as the room sent it
}

// EventStore keeps each room's event log, written by rooms in batches, so a
// room restarted on another process or host resumes its history and sequence.
type EventStore interface {
	// AppendEvents stores evs; appending an event whose (room, seq) is already
	// stored is a no-op, so a retried batch never duplicates.
	AppendEvents(ctx context.Context, evs []Event) error
	// Events returns at most limit events of room with Seq > afterSeq, oldest first.
	Events(ctx context.Context, room string, afterSeq int64, limit int) ([]Event, error)
	// LastEvents returns the last n events of room, oldest first.
	LastEvents(ctx context.Context, room string, n int) ([]Event, error)
	// TrimEvents deletes events stored before olderThan; it returns how many.
	TrimEvents(ctx context.Context, olderThan time.Time) (int, error)
}

// Store is everything the fleet and the control API keep in the backing store.
type Store interface {
	RoomStore
	BanStore
	SettingsStore
	AuditStore
	EventStore
	// Ping checks the store answers within ctx's deadline.
	Ping(ctx context.Context) error
	Close(ctx context.Context) error
}

// LoadCache reads the shared cache from s: at most maxBans of the fleet's
// bans (the rooms' own bans are not in it). The host daemon calls it at start
// and periodically.
func LoadCache(ctx context.Context, s Store, now time.Time, maxBans int) (*Cache, error) {
	bans, _, err := AllBans(ctx, s, BanFilter{Now: now}, maxBans)
	if err != nil {
		return nil, err
	}
	words, err := s.BlockedWords(ctx)
	if err != nil {
		return nil, err
	}
	defaults, err := s.RoomDefaults(ctx)
	if err != nil {
		return nil, err
	}
	return &Cache{Bans: bans, BlockedWords: words, Defaults: defaults}, nil
}
