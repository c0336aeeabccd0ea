package mongo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The rooms collection holds one document per room name: the fields of
// chatfleet.Room and an _id (roomDoc). This release keys a room by its name
// (_id = name, or name+altKey: CreateRoom), which the embedded store finds
// without reading every room; releases up to 1.3.0 wrote a generated
// ObjectID, and their records are still found by name (findRoom) until the
// name is created again. The unique index on name makes the store, not its
// callers, decide which of two creates of one name wins, whatever the keys.
//
// Stale rooms are found by a reaper (ReapStale, run by every host after its
// sync), not by a TTL index: a TTL index deletes documents, whereas a
// room whose host stopped reporting must stay in the listing, first as stale
// (still holding its name, so the host may come back to it) and then as
// closed; a TTL monitor also runs on its own schedule, once a minute at best,
// and FerretDB does not implement it.

// Room statuses as filters.
var (
	openStatuses   = []chatfleet.RoomStatus{chatfleet.RoomStarting, chatfleet.RoomLive, chatfleet.RoomOffline, chatfleet.RoomStale}
	endedStatuses  = []chatfleet.RoomStatus{chatfleet.RoomClosed, chatfleet.RoomFailed}
	activeStatuses = []chatfleet.RoomStatus{chatfleet.RoomStarting, chatfleet.RoomLive, chatfleet.RoomOffline}
)

// Listing page sizes.
const (
	defaultPage = 50
	maxPage     = 200
)

// syncBatch bounds the writes of one SyncHost call sent as one command. The
// embedded store (FerretDB 1.24 on SQLite) holds a connection of its pool of
// 100 for each update of a command until the command ends: a host of more
// than ~100 rooms, written in one command, stalled it until the call timed
// out (TestSyncHostManyRooms). 32 leaves room for three hosts syncing at once
// and everyone else; on MongoDB it costs a round trip per 32 rooms.
const syncBatch = 32

// altKey makes a room name's second key, name+altKey; no room name holds it.
const altKey = "~"

// otherKey is the key of the room named name that is not key: name+altKey
// for name, name for anything else.
func otherKey(name string, key any) string {
	if key == name {
		return name + altKey
	}
	return name
}

// createAttempts bounds how often CreateRoom retries when the room it
// conflicts with disappears under it.
const createAttempts = 3

// roomDoc is a stored room with its _id: in what this release writes, the
// name or, for a room created over an ended one keyed by the name, the name
// and altKey (CreateRoom); anything in what it reads (1.3.0, which reads any
// _id and writes it back as it read it, is what this release can be rolled
// back to).
type roomDoc struct {
	ID             any `bson:"_id"`
	chatfleet.Room `bson:",inline"`
}

// validStatus reports whether s is one of the room statuses.
func validStatus(s chatfleet.RoomStatus) bool {
	return slices.Contains(openStatuses, s) || slices.Contains(endedStatuses, s)
}

// CreateRoom stores r, filling Status (starting), CreatedAt and UpdatedAt
// (now) when they are empty; r's times are rounded to the millisecond as
// stored. A room of that name whose status is open is ECONFLICT with its Host
// and Port; a closed or failed one is deleted and r takes its place. Of two
// concurrent creates of one name exactly one wins, the other is ECONFLICT. It
// returns EINVALID for a bad name or a status that is not open, EUNAVAILABLE
// if the server cannot be reached.
func (s *Store) CreateRoom(ctx context.Context, r *chatfleet.Room) error {
	if err := chatfleet.ValidateRoomName(r.Name); err != nil {
		return err
	}
	if r.Status == "" {
		r.Status = chatfleet.RoomStarting
	}
	if !slices.Contains(activeStatuses, r.Status) {
		return invalid("a new room must be starting, live or offline, not %q", r.Status)
	}
	if len(r.Edges) > chatfleet.MaxRoomEdges {
		return invalid("a room has at most %d edges, not %d", chatfleet.MaxRoomEdges, len(r.Edges))
	}
	now := s.stamp()
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = now
	}
	r.CreatedAt, r.UpdatedAt = ms(r.CreatedAt), ms(r.UpdatedAt)

	ctx, cancel := s.ctx(ctx)
	defer cancel()
	// One create of a name at a time in this process, so that none of them
	// deletes what another just inserted (below).
	unlock, err := s.creates.lock(ctx, r.Name)
	if err != nil {
		return fail("create room", err)
	}
	defer unlock()
	key := r.Name
	for range createAttempts {
		_, err := s.rooms.InsertOne(ctx, roomDoc{ID: key, Room: *r})
		if err == nil {
			return nil
		}
		if !mongodrv.IsDuplicateKeyError(err) {
			return fail("create room", err)
		}
		old, err := s.findRoom(ctx, r.Name)
		if errors.Is(err, mongodrv.ErrNoDocuments) {
			// Deleted meanwhile, or the key is held by a document of
			// another name: try again, under the other key.
			key = otherKey(r.Name, key)
			continue
		} else if err != nil {
			return fail("create room", err)
		}
		if old.Status.Open() {
			return &chatfleet.Error{
				Code:    chatfleet.ECONFLICT,
				Message: fmt.Sprintf("room %q exists", r.Name),
				Host:    old.HostAddr,
				Port:    old.Port,
			}
		}
		// Delete the ended room only if it is still ended, then insert again,
		// under the name's other key: the unique index decides between
		// concurrent creates. FerretDB's deletes are not atomic (it reads the
		// document, then deletes by _id): were the new room keyed as the
		// ended one, a concurrent create that read the ended room could
		// delete it, and both would "win". Within a process the lock above
		// rules that out; between processes the other key leaves it to three
		// creates of the name within one delete (MongoDB's deletes are
		// atomic).
		_, err = s.rooms.DeleteOne(ctx, bson.D{
			{Key: "_id", Value: old.ID},
			{Key: "status", Value: bson.D{{Key: "$in", Value: endedStatuses}}},
		})
		if err != nil {
			return fail("create room", err)
		}
		key = otherKey(r.Name, old.ID)
	}
	return chatfleet.Errorf(chatfleet.ECONFLICT, "room %q is being created by someone else", r.Name)
}

// Room returns the room named name; ENOTFOUND if none, EUNAVAILABLE if the
// server cannot be reached.
func (s *Store) Room(ctx context.Context, name string) (*chatfleet.Room, error) {
	return s.room(ctx, name, s.findRoom)
}

// RoomByKey returns the room named name if its record is keyed by its name,
// as every record this release writes is; ENOTFOUND if there is none or it
// is an older record. On the embedded store one lookup, where Room reads
// every room for a name it does not find by key.
func (s *Store) RoomByKey(ctx context.Context, name string) (*chatfleet.Room, error) {
	return s.room(ctx, name, s.byKey)
}

func (s *Store) room(ctx context.Context, name string, find func(context.Context, string) (roomDoc, error)) (*chatfleet.Room, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	d, err := find(ctx, name)
	if errors.Is(err, mongodrv.ErrNoDocuments) {
		return nil, notFound("room %q not found", name)
	} else if err != nil {
		return nil, fail("get room", err)
	}
	return &d.Room, nil
}

// findRoom reads the room named name: by its key (byKey), and failing that
// by name, for a record keyed by an older release.
func (s *Store) findRoom(ctx context.Context, name string) (roomDoc, error) {
	d, err := s.byKey(ctx, name)
	if !errors.Is(err, mongodrv.ErrNoDocuments) {
		return d, err
	}
	d = roomDoc{}
	err = s.rooms.FindOne(ctx, bson.D{{Key: "name", Value: name}}).Decode(&d)
	return d, err
}

// byKey reads the record keyed by name or by its second key (_id = name or
// name+altKey: the one filter the embedded store looks up without reading
// and decoding every room); mongodrv.ErrNoDocuments if there is none. A
// record so keyed whose name is another is not that room.
func (s *Store) byKey(ctx context.Context, name string) (roomDoc, error) {
	for _, key := range []string{name, name + altKey} {
		var d roomDoc
		err := s.rooms.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&d)
		if err == nil && d.Name == name {
			return d, nil
		}
		if err != nil && !errors.Is(err, mongodrv.ErrNoDocuments) {
			return d, err
		}
	}
	return roomDoc{}, mongodrv.ErrNoDocuments
}

// UpdateRoom sets the fields of upd that are not nil on the room named name,
// and its UpdatedAt to now. It returns ENOTFOUND if there is no such room,
// EINVALID for an unknown status or a negative viewer count.
func (s *Store) UpdateRoom(ctx context.Context, name string, upd chatfleet.RoomUpdate) error {
	set := bson.D{{Key: "updatedAt", Value: s.stamp()}}
	if upd.Status != nil {
		if !validStatus(*upd.Status) {
			return invalid("unknown room status %q", *upd.Status)
		}
		set = append(set, bson.E{Key: "status", Value: *upd.Status})
	}
	if upd.ProducerLive != nil {
		set = append(set, bson.E{Key: "producerLive", Value: *upd.ProducerLive})
	}
	if upd.HLSURL != nil {
		set = append(set, bson.E{Key: "hlsUrl", Value: *upd.HLSURL})
	}
	if upd.Viewers != nil {
		if *upd.Viewers < 0 {
			return invalid("viewers must not be negative")
		}
		set = append(set, bson.E{Key: "viewers", Value: *upd.Viewers})
	}
	if upd.Edges != nil {
		if len(*upd.Edges) > chatfleet.MaxRoomEdges {
			return invalid("a room has at most %d edges, not %d", chatfleet.MaxRoomEdges, len(*upd.Edges))
		}
		set = append(set, bson.E{Key: "edges", Value: *upd.Edges})
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	// Found, then written, by key: two lookups instead of one read of every
	// room on the embedded store. A record deleted between the two may have
	// been created again under another key: look once more.
	for range 2 {
		d, err := s.findRoom(ctx, name)
		if errors.Is(err, mongodrv.ErrNoDocuments) {
			break
		} else if err != nil {
			return fail("update room", err)
		}
		res, err := s.rooms.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, bson.D{{Key: "$set", Value: set}})
		if err != nil {
			return fail("update room", err)
		}
		if res.MatchedCount > 0 {
			return nil
		}
	}
	return notFound("room %q not found", name)
}

// listCursor is what a listing cursor encodes: the sort order and the sort
// key and name of the last room of the page.
type listCursor struct {
	Sort chatfleet.RoomSort `json:"s"`
	Key  int64              `json:"k"` // viewers, or createdAt in Unix milliseconds
	Name string             `json:"n"`
}

func (c listCursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (listCursor, error) {
	var c listCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Name == "" {
		return c, invalid("invalid cursor")
	}
	return c, nil
}

// ListRooms returns one page of rooms in the order f.Sort says, names
// breaking ties, and the cursor of the next page ("" after the last). The
// cursor is opaque: base64 of the last room's sort key and name. A page never
// repeats nor skips a room that did not change meanwhile. It returns
// EINVALID for an unknown sort or a bad cursor, or one made for another sort.
func (s *Store) ListRooms(ctx context.Context, f chatfleet.RoomFilter) ([]*chatfleet.Room, string, error) {
	if f.Sort == "" {
		f.Sort = chatfleet.SortNewest
	}
	var key string
	switch f.Sort {
	case chatfleet.SortViewers:
		key = "viewers"
	case chatfleet.SortNewest:
		key = "createdAt"
	default:
		return nil, "", invalid("unknown sort %q: want %q or %q", f.Sort, chatfleet.SortViewers, chatfleet.SortNewest)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultPage
	}
	limit = min(limit, maxPage)

	filter := bson.D{}
	if f.OpenOnly {
		filter = append(filter, bson.E{Key: "status", Value: bson.D{{Key: "$in", Value: openStatuses}}})
	}
	if f.HostID != "" {
		filter = append(filter, bson.E{Key: "hostId", Value: f.HostID})
	}
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		if c.Sort != f.Sort {
			return nil, "", invalid("the cursor is for sort %q, not %q", c.Sort, f.Sort)
		}
		var k any = c.Key
		if f.Sort == chatfleet.SortNewest {
			k = time.UnixMilli(c.Key).UTC()
		}
		// After (key, name) in the order key descending, name ascending.
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: key, Value: bson.D{{Key: "$lt", Value: k}}}},
			bson.D{{Key: key, Value: k}, {Key: "name", Value: bson.D{{Key: "$gt", Value: c.Name}}}},
		}})
	}
	opts := options.Find().
		SetSort(bson.D{{Key: key, Value: -1}, {Key: "name", Value: 1}}).
		SetLimit(int64(limit + 1))

	ctx, cancel := s.ctx(ctx)
	defer cancel()
	cur, err := s.rooms.Find(ctx, filter, opts)
	if err != nil {
		return nil, "", fail("list rooms", err)
	}
	rooms := make([]*chatfleet.Room, 0, limit+1)
	if err := cur.All(ctx, &rooms); err != nil {
		return nil, "", fail("list rooms", err)
	}
	if len(rooms) <= limit {
		return rooms, "", nil
	}
	rooms = rooms[:limit]
	last := rooms[limit-1]
	next := listCursor{Sort: f.Sort, Key: int64(last.Viewers), Name: last.Name}
	if f.Sort == chatfleet.SortNewest {
		next.Key = last.CreatedAt.UnixMilli()
	}
	return rooms, next.encode(), nil
}

// SyncHost makes the stored rooms of hostID match rooms, the host's truth, in
// one read and at most two writes:
//
//   - a reported room that is not stored is created, with CreatedAt now
//     unless the report has one;
//   - a reported room stored open on this host gets the reported fields
//     (address, port, status, producer, HLS URL, viewers, paid), keeping its
//     CreatedAt;
//   - a reported room stored closed or failed, on any host, is replaced by
//     the report;
//   - a reported room stored open on another host is left alone: that host
//     holds the name;
//   - a room stored open on this host and not reported is closed, with no
//     viewers and no producer.
//
// Every room it writes gets UpdatedAt now. A stored open room of this host
// whose report changed nothing is written (UpdatedAt now) only if its
// UpdatedAt is before refreshBefore: afterwards no open room of the host is
// older than that, for ReapStale, and a host's unchanged rooms cost a write
// every few syncs instead of every sync. Ended rooms it does not touch keep
// theirs.
// A report with no status counts as live if its producer is, offline if not.
// It returns EINVALID for an empty hostID or a bad room name or status.
func (s *Store) SyncHost(ctx context.Context, hostID string, rooms []*chatfleet.Room, refreshBefore time.Time) error {
	if hostID == "" {
		return invalid("host id is empty")
	}
	now := s.stamp()
	reported := make(map[string]chatfleet.Room, len(rooms))
	names := make([]string, 0, len(rooms))
	for _, r := range rooms {
		if err := chatfleet.ValidateRoomName(r.Name); err != nil {
			return err
		}
		doc := *r
		doc.HostID, doc.UpdatedAt, doc.CreatedAt = hostID, now, ms(doc.CreatedAt)
		if doc.Status == "" {
			doc.Status = chatfleet.RoomOffline
			if doc.ProducerLive {
				doc.Status = chatfleet.RoomLive
			}
		}
		if !validStatus(doc.Status) {
			return invalid("room %q: unknown status %q", doc.Name, doc.Status)
		}
		if _, dup := reported[doc.Name]; !dup {
			names = append(names, doc.Name)
		}
		reported[doc.Name] = doc
	}

	ctx, cancel := s.ctx(ctx)
	defer cancel()
	stored := map[string]roomDoc{}
	if len(names) > 0 {
		cur, err := s.rooms.Find(ctx, bson.D{{Key: "name", Value: bson.D{{Key: "$in", Value: names}}}})
		if err != nil {
			return fail("sync host", err)
		}
		var docs []roomDoc
		if err := cur.All(ctx, &docs); err != nil {
			return fail("sync host", err)
		}
		for _, d := range docs {
			stored[d.Name] = d
		}
	}

	var writes []mongodrv.WriteModel
	var unchanged []string // this host's open rooms whose report changed nothing, due a refresh
	for _, name := range names {
		doc := reported[name]
		old, ok := stored[name]
		switch {
		case !ok:
			if doc.CreatedAt.IsZero() {
				doc.CreatedAt = now
			}
			writes = append(writes, mongodrv.NewInsertOneModel().SetDocument(roomDoc{ID: name, Room: doc}))
		case old.HostID == hostID && old.Status.Open() && sameReport(old.Room, doc):
			if old.UpdatedAt.Before(refreshBefore) {
				unchanged = append(unchanged, name)
			}
		case old.HostID == hostID && old.Status.Open():
			writes = append(writes, mongodrv.NewUpdateOneModel().
				SetFilter(bson.D{{Key: "_id", Value: old.ID}, {Key: "hostId", Value: hostID}}).
				SetUpdate(bson.D{{Key: "$set", Value: bson.D{
					{Key: "hostAddr", Value: doc.HostAddr},
					{Key: "port", Value: doc.Port},
					{Key: "status", Value: doc.Status},
					{Key: "producerLive", Value: doc.ProducerLive},
					{Key: "hlsUrl", Value: doc.HLSURL},
					{Key: "viewers", Value: doc.Viewers},
					{Key: "paid", Value: doc.Paid},
					{Key: "updatedAt", Value: now},
				}}}))
		case !old.Status.Open():
			if doc.CreatedAt.IsZero() {
				doc.CreatedAt = now
			}
			writes = append(writes, mongodrv.NewReplaceOneModel().
				SetFilter(bson.D{{Key: "_id", Value: old.ID}, {Key: "status", Value: bson.D{{Key: "$in", Value: endedStatuses}}}}).
				SetReplacement(doc))
		}
	}
	if len(unchanged) > 0 {
		// One write refreshes them all (one read of the collection on the
		// embedded store, where each update of one room reads all of them).
		writes = append(writes, mongodrv.NewUpdateManyModel().
			SetFilter(bson.D{
				{Key: "hostId", Value: hostID},
				{Key: "status", Value: bson.D{{Key: "$in", Value: openStatuses}}},
				{Key: "name", Value: bson.D{{Key: "$in", Value: unchanged}}},
			}).
			SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "updatedAt", Value: now}}}}))
	}
	for len(writes) > 0 {
		n := min(len(writes), syncBatch)
		_, err := s.rooms.BulkWrite(ctx, writes[:n], options.BulkWrite().SetOrdered(false))
		// A room created by someone else between the read and the insert
		// keeps its name; the next sync sees it.
		if err != nil && !onlyDuplicates(err) {
			return fail("sync host", err)
		}
		writes = writes[n:]
	}

	_, err := s.rooms.UpdateMany(ctx,
		bson.D{
			{Key: "hostId", Value: hostID},
			{Key: "status", Value: bson.D{{Key: "$in", Value: openStatuses}}},
			{Key: "name", Value: bson.D{{Key: "$nin", Value: names}}},
		},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "status", Value: chatfleet.RoomClosed},
			{Key: "viewers", Value: 0},
			{Key: "producerLive", Value: false},
			{Key: "updatedAt", Value: now},
		}}})
	return fail("sync host", err)
}

// sameReport reports whether the fields a sync writes to a stored open room
// of its host are those of the report.
func sameReport(stored, report chatfleet.Room) bool {
	return stored.HostAddr == report.HostAddr && stored.Port == report.Port && stored.Status == report.Status &&
		stored.ProducerLive == report.ProducerLive && stored.HLSURL == report.HLSURL &&
		stored.Viewers == report.Viewers && stored.Paid == report.Paid
}

// ReapStale marks stale the open rooms whose UpdatedAt is before staleBefore,
// and closes the stale rooms whose UpdatedAt is before closeBefore, with no
// viewers and no producer. Marking a room stale leaves its UpdatedAt alone,
// so both limits count from the host's last report; closing sets it to now.
// It closes before it marks, so a room is counted once per call: a room
// found silent for longer than both limits is marked now and closed by the
// next call.
func (s *Store) ReapStale(ctx context.Context, staleBefore, closeBefore time.Time) (stale, closed int, err error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := s.rooms.UpdateMany(ctx,
		bson.D{
			{Key: "status", Value: chatfleet.RoomStale},
			{Key: "updatedAt", Value: bson.D{{Key: "$lt", Value: closeBefore}}},
		},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "status", Value: chatfleet.RoomClosed},
			{Key: "viewers", Value: 0},
			{Key: "producerLive", Value: false},
			{Key: "updatedAt", Value: s.stamp()},
		}}})
	if err != nil {
		return 0, 0, fail("reap stale rooms", err)
	}
	closed = int(res.ModifiedCount)
	res, err = s.rooms.UpdateMany(ctx,
		bson.D{
			{Key: "status", Value: bson.D{{Key: "$in", Value: activeStatuses}}},
			{Key: "updatedAt", Value: bson.D{{Key: "$lt", Value: staleBefore}}},
		},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: chatfleet.RoomStale}}}})
	if err != nil {
		return 0, closed, fail("reap stale rooms", err)
	}
	return int(res.ModifiedCount), closed, nil
}

// onlyDuplicates reports whether err is a bulk write error whose every write
// error is a duplicate key.
func onlyDuplicates(err error) bool {
	var bwe mongodrv.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return false
	}
	for _, we := range bwe.WriteErrors {
		if !mongodrv.IsDuplicateKeyError(we) {
			return false
		}
	}
	return true
}

// nameLocks holds a lock per name while it is held or waited for; the zero
// value is ready. It holds no more names than goroutines are in lock.
type nameLocks struct {
	mu sync.Mutex
	m  map[string]*nameLock
}

type nameLock struct {
	held  chan struct{} // one token while the name is locked
	users int           // holding or waiting, under nameLocks.mu
}

// lock locks name and returns its unlock, or ctx's error if ctx ends first.
func (l *nameLocks) lock(ctx context.Context, name string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*nameLock{}
	}
	nl := l.m[name]
	if nl == nil {
		nl = &nameLock{held: make(chan struct{}, 1)}
		l.m[name] = nl
	}
	nl.users++
	l.mu.Unlock()
	leave := func() {
		l.mu.Lock()
		if nl.users--; nl.users == 0 {
			delete(l.m, name)
		}
		l.mu.Unlock()
	}
	select {
	case nl.held <- struct{}{}:
		return func() { <-nl.held; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}
