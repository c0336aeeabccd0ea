package mongo

import (
	"context"
	"errors"
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

// AddBan stores b, filling ID (a new ObjectID in hex) and CreatedAt (now)
// when empty; b's times are rounded to the millisecond as stored. It returns
// EINVALID if UserID is empty, ECONFLICT if a ban with b's ID exists.
func (s *Store) AddBan(ctx context.Context, b *chatfleet.Ban) error {
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
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.bans.InsertOne(ctx, b)
	if mongodrv.IsDuplicateKeyError(err) {
		return chatfleet.Errorf(chatfleet.ECONFLICT, "ban %q exists", b.ID)
	}
	return fail("add ban", err)
}

// RemoveBan deletes the ban with id; ENOTFOUND if there is none.
func (s *Store) RemoveBan(ctx context.Context, id string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := s.bans.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return fail("remove ban", err)
	}
	if res.DeletedCount == 0 {
		return notFound("ban %q not found", id)
	}
	return nil
}

// banScope selects the bans of room, the fleet's ("" : bans with no room),
// active at now if now is set.
func banScope(room string, now time.Time) bson.D {
	f := bson.D{{Key: "room", Value: room}}
	if room == "" {
		f = bson.D{{Key: "room", Value: bson.D{{Key: "$exists", Value: false}}}}
	}
	if !now.IsZero() {
		f = append(f, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "until", Value: bson.D{{Key: "$exists", Value: false}}}},
			bson.D{{Key: "until", Value: bson.D{{Key: "$gt", Value: now}}}},
		}})
	}
	return f
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
	filter := banScope(f.Room, f.Now)
	if f.After != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: f.After}}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(f.Limit))
	ctx, cancel := s.ctx(ctx)
	defer cancel()
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
	n, err := s.bans.CountDocuments(ctx, banScope(room, now))
	if err != nil {
		return 0, fail("count bans", err)
	}
	return int(n), nil
}

// RemoveUserBans deletes every ban of userID in room ("": the fleet's bans)
// and returns them; ENOTFOUND if there was none.
func (s *Store) RemoveUserBans(ctx context.Context, room, userID string) ([]chatfleet.Ban, error) {
	filter := append(banScope(room, time.Time{}), bson.E{Key: "userId", Value: userID})
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	cur, err := s.bans.Find(ctx, filter, options.Find().SetLimit(chatfleet.MaxBanPage))
	if err != nil {
		return nil, fail("find bans", err)
	}
	var bans []chatfleet.Ban
	if err := cur.All(ctx, &bans); err != nil {
		return nil, fail("find bans", err)
	}
	if len(bans) == 0 {
		return nil, notFound("no ban of %q", userID)
	}
	ids := make(bson.A, len(bans))
	for i, b := range bans {
		ids[i] = b.ID
	}
	if _, err := s.bans.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
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
