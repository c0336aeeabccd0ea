package mongo

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/chatfleet/chatfleet"
	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Audit log page sizes.
const (
	defaultAuditPage = 100
	maxAuditPage     = 1000
)

// The settings collection holds one document per setting, by _id.
const (
	blockedWordsID = "blockedWords" // {_id, words: [string], updatedAt}
	roomDefaultsID = "roomDefaults" // {_id, ...chatfleet.RoomSettings, updatedAt}
)

// Bans are kept in two shapes (docs/store.md): the fleet's, one document
// each in the bans collection; each room's, all in one document of the
// roombans collection, {_id: room, bans: [...]}, so that a room's list is one
// read by _id and is bounded with its document.

// roomBansDoc is a room's bans as stored.
type roomBansDoc struct {
	ID   string          `bson:"_id"`
	Bans []chatfleet.Ban `bson:"bans"`
}

// prepBan checks b and fills its ID and CreatedAt.
func (s *Store) prepBan(b *chatfleet.Ban) error {
	if b.UserID == "" {
		return invalid("a ban needs a user id")
	}
	if b.ID == "" {
		b.ID = bson.NewObjectID().Hex()
	}
	if b.CreatedAt.IsZero() {
		b.CreatedAt = s.now()
	}
	b.CreatedAt, b.Until = ms(b.CreatedAt), ms(b.Until)
	return nil
}

// AddBan stores b, filling ID (a new ObjectID in hex) and CreatedAt (now)
// when empty; b's times are rounded to the millisecond as stored. It returns
// EINVALID if UserID is empty, ECONFLICT if a ban with b's ID exists.
func (s *Store) AddBan(ctx context.Context, b *chatfleet.Ban) error {
	if err := s.prepBan(b); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if b.Room == "" {
		_, err := s.bans.InsertOne(ctx, b)
		if mongodrv.IsDuplicateKeyError(err) {
			return chatfleet.Errorf(chatfleet.ECONFLICT, "ban %q exists", b.ID)
		}
		return fail("add ban", err)
	}
	added, err := s.addRoomBans(ctx, b.Room, []chatfleet.Ban{*b})
	if err == nil && added == 0 {
		return chatfleet.Errorf(chatfleet.ECONFLICT, "ban %q exists", b.ID)
	}
	return err
}

// AddBans stores bans (a host's queue of room bans, say) in one write per
// room and one for the fleet's, without reading first: a ban stored already
// (a retried batch) is not stored again.
func (s *Store) AddBans(ctx context.Context, bans []chatfleet.Ban) error {
	byRoom := map[string][]chatfleet.Ban{}
	var order []string
	for i := range bans {
		b := bans[i]
		if err := s.prepBan(&b); err != nil {
			return err
		}
		if _, ok := byRoom[b.Room]; !ok {
			order = append(order, b.Room)
		}
		byRoom[b.Room] = append(byRoom[b.Room], b)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	for _, room := range order {
		if room != "" {
			if err := s.appendRoomBans(ctx, room, byRoom[room]); err != nil {
				return err
			}
			continue
		}
		docs := make([]any, len(byRoom[room]))
		for i, b := range byRoom[room] {
			docs[i] = b
		}
		_, err := s.bans.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		if err != nil && !onlyDuplicates(err) && !mongodrv.IsDuplicateKeyError(err) {
			return fail("add bans", err)
		}
	}
	return nil
}

// migrateRoomBans moves room bans an earlier release kept in the bans
// collection (one document each, with a room) into their rooms' documents,
// so that the bans collection holds the fleet's bans only.
func (s *Store) migrateRoomBans(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	cur, err := s.bans.Find(ctx, bson.D{{Key: "room", Value: bson.D{{Key: "$exists", Value: true}}}})
	if err != nil {
		return fail("find room bans to move", err)
	}
	var old []chatfleet.Ban
	if err := cur.All(ctx, &old); err != nil {
		return fail("find room bans to move", err)
	}
	if len(old) == 0 {
		return nil
	}
	byRoom := map[string][]chatfleet.Ban{}
	for _, b := range old {
		byRoom[b.Room] = append(byRoom[b.Room], b)
	}
	for room, bans := range byRoom {
		if _, err := s.addRoomBans(ctx, room, bans); err != nil {
			return err
		}
	}
	_, err = s.bans.DeleteMany(ctx, bson.D{{Key: "room", Value: bson.D{{Key: "$exists", Value: true}}}})
	return fail("move room bans", err)
}

// roomBans returns the stored bans of room (none if it has no document),
// one per id.
func (s *Store) roomBans(ctx context.Context, room string) ([]chatfleet.Ban, error) {
	var doc roomBansDoc
	err := s.roomBansColl.FindOne(ctx, bson.D{{Key: "_id", Value: room}}).Decode(&doc)
	if errors.Is(err, mongodrv.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fail("get room bans", err)
	}
	seen := make(map[string]bool, len(doc.Bans))
	return slices.DeleteFunc(doc.Bans, func(b chatfleet.Ban) bool {
		dup := seen[b.ID]
		seen[b.ID] = true
		return dup
	}), nil
}

// appendRoomBans adds bans to room's document in one write: $addToSet, so
// a ban sent again exactly as stored (a retry) is not added twice; reads
// keep one ban per id besides.
func (s *Store) appendRoomBans(ctx context.Context, room string, bans []chatfleet.Ban) error {
	add := make(bson.A, len(bans))
	for i, b := range bans {
		add[i] = b
	}
	_, err := s.roomBansColl.UpdateOne(ctx, bson.D{{Key: "_id", Value: room}},
		bson.D{{Key: "$addToSet", Value: bson.D{{Key: "bans", Value: bson.D{{Key: "$each", Value: add}}}}}},
		options.UpdateOne().SetUpsert(true))
	return fail("add room bans", err)
}

// addRoomBans appends those of bans whose ids room's document lacks, and
// returns how many it appended.
func (s *Store) addRoomBans(ctx context.Context, room string, bans []chatfleet.Ban) (int, error) {
	have, err := s.roomBans(ctx, room)
	if err != nil {
		return 0, err
	}
	ids := make(map[string]bool, len(have))
	for _, b := range have {
		ids[b.ID] = true
	}
	var add bson.A
	for _, b := range bans {
		if !ids[b.ID] {
			ids[b.ID] = true
			add = append(add, b)
		}
	}
	if len(add) == 0 {
		return 0, nil
	}
	_, err = s.roomBansColl.UpdateOne(ctx, bson.D{{Key: "_id", Value: room}},
		bson.D{{Key: "$push", Value: bson.D{{Key: "bans", Value: bson.D{{Key: "$each", Value: add}}}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil {
		return 0, fail("add room bans", err)
	}
	return len(add), nil
}

// pullRoomBans removes bans, exactly as read, from room's document; bans
// added meanwhile stay.
func (s *Store) pullRoomBans(ctx context.Context, room string, bans []chatfleet.Ban) error {
	vals := make(bson.A, len(bans))
	for i, b := range bans {
		vals[i] = b
	}
	_, err := s.roomBansColl.UpdateOne(ctx, bson.D{{Key: "_id", Value: room}},
		bson.D{{Key: "$pullAll", Value: bson.D{{Key: "bans", Value: vals}}}})
	return fail("remove room bans", err)
}

// RemoveBan deletes the ban with id, a fleet ban or a room's; ENOTFOUND if
// there is none. A room ban is found by scanning the rooms' documents: the
// admin API removes bans by user, through RemoveUserBans.
func (s *Store) RemoveBan(ctx context.Context, id string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := s.bans.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return fail("remove ban", err)
	}
	if res.DeletedCount > 0 {
		return nil
	}
	cur, err := s.roomBansColl.Find(ctx, bson.D{{Key: "bans._id", Value: id}})
	if err != nil {
		return fail("find room ban", err)
	}
	var docs []roomBansDoc
	if err := cur.All(ctx, &docs); err != nil {
		return fail("find room ban", err)
	}
	removed := 0
	for _, d := range docs {
		gone := slices.DeleteFunc(slices.Clone(d.Bans), func(b chatfleet.Ban) bool { return b.ID != id })
		if err := s.pullRoomBans(ctx, d.ID, gone); err != nil {
			return err
		}
		removed += len(gone)
	}
	if removed == 0 {
		return notFound("ban %q not found", id)
	}
	return nil
}

// activeFilter selects fleet bans active at now, if now is set.
func activeFilter(now time.Time) bson.D {
	// Only fleet bans: a room ban left here by an interrupted move stays its room's.
	f := bson.D{{Key: "room", Value: bson.D{{Key: "$exists", Value: false}}}}
	if now.IsZero() {
		return f
	}
	return append(f, bson.E{Key: "$or", Value: bson.A{
		bson.D{{Key: "until", Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{{Key: "until", Value: bson.D{{Key: "$gt", Value: now}}}},
	}})
}

// Bans returns one page of the bans f selects, by ID. Expired bans stay
// stored until removed; f.Now leaves them out.
func (s *Store) Bans(ctx context.Context, f chatfleet.BanFilter) ([]chatfleet.Ban, error) {
	switch {
	case f.Limit == 0:
		f.Limit = 100
	case f.Limit < 0 || f.Limit > chatfleet.MaxBanPage:
		return nil, invalid("ban page size must be 1 to %d", chatfleet.MaxBanPage)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if f.Room != "" {
		all, err := s.roomBans(ctx, f.Room)
		if err != nil {
			return nil, err
		}
		bans := []chatfleet.Ban{}
		for _, b := range all {
			if b.ID > f.After && (f.Now.IsZero() || b.Active(f.Now)) {
				bans = append(bans, b)
			}
		}
		slices.SortFunc(bans, func(a, b chatfleet.Ban) int { return strings.Compare(a.ID, b.ID) })
		return bans[:min(len(bans), f.Limit)], nil
	}
	filter := activeFilter(f.Now)
	if f.After != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: f.After}}})
	}
	// One query, streamed in batches, whatever the page size: the embedded
	// store reads the whole collection for every query (docs/store.md), so
	// paging through many small queries would cost it the square.
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(f.Limit)).SetBatchSize(1000)
	cur, err := s.bans.Find(ctx, filter, opts)
	if err != nil {
		return nil, fail("list bans", err)
	}
	bans := []chatfleet.Ban{}
	if err := cur.All(ctx, &bans); err != nil {
		return nil, fail("list bans", err)
	}
	return bans, nil
}

// CountBans counts the bans of room ("": the fleet's) active at now.
func (s *Store) CountBans(ctx context.Context, room string, now time.Time) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if room != "" {
		all, err := s.roomBans(ctx, room)
		n := 0
		for _, b := range all {
			if b.Active(now) {
				n++
			}
		}
		return n, err
	}
	n, err := s.bans.CountDocuments(ctx, activeFilter(now))
	if err != nil {
		return 0, fail("count bans", err)
	}
	return int(n), nil
}

// RemoveUserBans deletes every ban of userID in room ("": the fleet's bans)
// and returns them; ENOTFOUND if there was none.
func (s *Store) RemoveUserBans(ctx context.Context, room, userID string) ([]chatfleet.Ban, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var bans []chatfleet.Ban
	if room != "" {
		all, err := s.roomBans(ctx, room)
		if err != nil {
			return nil, err
		}
		for _, b := range all {
			if b.UserID == userID {
				bans = append(bans, b)
			}
		}
	} else {
		cur, err := s.bans.Find(ctx, append(activeFilter(time.Time{}), bson.E{Key: "userId", Value: userID}))
		if err != nil {
			return nil, fail("find bans", err)
		}
		if err := cur.All(ctx, &bans); err != nil {
			return nil, fail("find bans", err)
		}
	}
	if len(bans) == 0 {
		return nil, notFound("no ban of %q", userID)
	}
	var err error
	if room != "" {
		err = s.pullRoomBans(ctx, room, bans)
	} else {
		ids := make(bson.A, len(bans))
		for i, b := range bans {
			ids[i] = b.ID
		}
		_, err = s.bans.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	}
	if err != nil {
		return nil, fail("remove bans", err)
	}
	return bans, nil
}

// BlockedWords returns the stored blocked words, none (an empty list) if
// none were ever set.
func (s *Store) BlockedWords(ctx context.Context) ([]string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var doc struct {
		Words []string `bson:"words"`
	}
	err := s.settings.FindOne(ctx, bson.D{{Key: "_id", Value: blockedWordsID}}).Decode(&doc)
	if err != nil && !errors.Is(err, mongodrv.ErrNoDocuments) {
		return nil, fail("get blocked words", err)
	}
	if doc.Words == nil {
		doc.Words = []string{}
	}
	return doc.Words, nil
}

// SetBlockedWords replaces the blocked words with words.
func (s *Store) SetBlockedWords(ctx context.Context, words []string) error {
	if words == nil {
		words = []string{}
	}
	set := bson.D{{Key: "words", Value: words}, {Key: "updatedAt", Value: s.stamp()}}
	return s.setSetting(ctx, "set blocked words", blockedWordsID, set)
}

// RoomDefaults returns the stored room defaults, or
// chatfleet.DefaultRoomSettings if none are stored.
func (s *Store) RoomDefaults(ctx context.Context) (chatfleet.RoomSettings, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var rs chatfleet.RoomSettings
	err := s.settings.FindOne(ctx, bson.D{{Key: "_id", Value: roomDefaultsID}}).Decode(&rs)
	if errors.Is(err, mongodrv.ErrNoDocuments) {
		return chatfleet.DefaultRoomSettings, nil
	} else if err != nil {
		return chatfleet.RoomSettings{}, fail("get room defaults", err)
	}
	return rs, nil
}

// SetRoomDefaults stores rs as the room defaults; EINVALID if a field is
// negative.
func (s *Store) SetRoomDefaults(ctx context.Context, rs chatfleet.RoomSettings) error {
	if rs.HistorySize < 0 || rs.MaxMessageLen < 0 || rs.SlowModeSeconds < 0 || rs.IdleTimeoutSec < 0 {
		return invalid("room settings must not be negative")
	}
	set := bson.D{
		{Key: "historySize", Value: rs.HistorySize},
		{Key: "maxMessageLen", Value: rs.MaxMessageLen},
		{Key: "slowModeSeconds", Value: rs.SlowModeSeconds},
		{Key: "allowAnonymous", Value: rs.AllowAnonymous},
		{Key: "idleTimeoutSec", Value: rs.IdleTimeoutSec},
		{Key: "updatedAt", Value: s.stamp()},
	}
	return s.setSetting(ctx, "set room defaults", roomDefaultsID, set)
}

// setSetting upserts the fields set into the settings document id. Two
// first upserts of one id may race to insert it; the loser, which gets a
// duplicate key, tries again once and then updates.
func (s *Store) setSetting(ctx context.Context, op, id string, set bson.D) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var err error
	for range 2 {
		_, err = s.settings.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
			bson.D{{Key: "$set", Value: set}}, options.UpdateOne().SetUpsert(true))
		if !mongodrv.IsDuplicateKeyError(err) {
			break
		}
	}
	return fail(op, err)
}

// Audit appends e, filling ID (a new ObjectID in hex) and At (now) when
// empty; At is rounded to the millisecond as stored. It returns EINVALID if
// Action is empty.
func (s *Store) Audit(ctx context.Context, e *chatfleet.AuditEntry) error {
	if e.Action == "" {
		return invalid("an audit entry needs an action")
	}
	if e.ID == "" {
		e.ID = bson.NewObjectID().Hex()
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	e.At = ms(e.At)
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.audit.InsertOne(ctx, e)
	return fail("audit", err)
}

// AuditLog returns the entries f selects, newest first (ID breaking ties).
// Page with f.Before set to the At of the last entry of the previous page;
// entries sharing that millisecond are then skipped.
func (s *Store) AuditLog(ctx context.Context, f chatfleet.AuditFilter) ([]chatfleet.AuditEntry, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultAuditPage
	}
	limit = min(limit, maxAuditPage)
	filter := bson.D{}
	if f.Target != "" {
		filter = append(filter, bson.E{Key: "target", Value: f.Target})
	}
	if !f.Before.IsZero() {
		filter = append(filter, bson.E{Key: "at", Value: bson.D{{Key: "$lt", Value: f.Before}}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(int64(limit))
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	cur, err := s.audit.Find(ctx, filter, opts)
	if err != nil {
		return nil, fail("audit log", err)
	}
	entries := []chatfleet.AuditEntry{}
	if err := cur.All(ctx, &entries); err != nil {
		return nil, fail("audit log", err)
	}
	return entries, nil
}
